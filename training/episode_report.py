"""``ecgwatch-train episodes``: the episodes a device would publish, against the rhythms cardiologists annotated.

Every shared MIT-BIH record is classified leave one person out (as ``ecgwatch-train crossperson`` does: the
autoencoder cross-fitted, the trees fitted without the person), and its beats go through the daemon's own
episode rules (:mod:`ecgwatch.detection.episodes`). Published episodes are compared with the annotated rhythm
spans, as EC57 compares episodes: an annotated episode is found when a published one of the same kind overlaps
it; a published one is a true positive when it overlaps an annotated one; duration Se and +P are the shares of
annotated and published time that overlap. Pauses are annotated where two annotated beats are >= 2.5 s apart.
Only what lies after the first :data:`training.aami.SKIP_S` seconds counts.

Also: episode starts per device-hour, kinds re-opened within their gap (flapping; none by design), onset
delay (from the annotated onset to the start event), and pages (episodes that reached ``warning``) per
device-day, overall and on the records' normal-rhythm stretches.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecgwatch.datasets.mitbih import Record
from ecgwatch.detection.episodes import SEVERITIES, DeviceEpisodes, Rules, close_all, observe_beat, observe_unreadable
from training.aami import SKIP_S
from training.beat_classifier import Run

LABELS = {
    "ventricular_tachycardia": ("VT",),
    "svt": ("SVTA",),
    "bigeminy": ("B",),
    "trigeminy": ("T",),
    "atrial_fibrillation": ("AFIB", "AFL"),
    "bradycardia": ("SBR",),
    "pause": (),  # from the annotated beats
}
NORMAL = ("N",)


@dataclass(frozen=True)
class Published:
    kind: str
    started: float
    ended: float
    severity: str  # the highest it reached
    announced: float  # device time of its start event


def publish(result: Run, rules: Rules) -> list[Published]:
    """The episodes the daemon would publish for this run of beats, with when each start event went out."""
    streamed = result.streamed
    state, events = DeviceEpisodes(), []
    strips = iter(streamed.strips)
    strip = next(strips, None)
    for beat, verdict in zip(streamed.beats, result.verdicts, strict=True):
        while strip is not None and strip[0] + strip[1] <= beat.t:
            if strip[2] != "ok":
                events += [(strip[0] + strip[1], e) for e in observe_unreadable(state, rules, "d", strip[0], strip[1])]
            strip = next(strips, None)
        found = observe_beat(state, rules, "d", beat.t, verdict.beat_class, beat.rr_s, verdict.fibrillation)
        events += [(beat.t, e) for e in found]
    end = streamed.beats[-1].t if streamed.beats else 0.0
    events += [(end, e) for e in close_all(state, rules, "d", end)]
    out: dict[str, dict[str, Any]] = {}
    for t, event in events:
        entry = out.setdefault(event["id"], {"kind": event["kind"], "started": event["started"], "announced": t,
                                             "severity": event["severity"], "ended": end})  # fmt: skip
        entry["severity"] = max(entry["severity"], event["severity"], key=SEVERITIES.index)
        if event["type"] == "end":
            entry["ended"] = event["ended"]
    return [Published(**v) for v in out.values()]


def annotated(record: Record, kind: str, rules: Rules) -> list[tuple[float, float]]:
    """The record's episodes of ``kind``, in seconds."""
    if kind == "pause":
        t = record.beats / record.fs
        gaps = np.flatnonzero(np.diff(t) >= rules.pause_s)
        return [(float(t[i]), float(t[i + 1])) for i in gaps]
    return [(s.start / record.fs, s.end / record.fs) for s in record.rhythms if s.label in LABELS[kind]]


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def _counted(span: tuple[float, float]) -> bool:
    return span[1] > SKIP_S


def compare(record: Record, published: list[Published], rules: Rules) -> dict[str, dict[str, Any]]:
    """Per kind: episode and duration counts, onset delays, false episodes (on this record)."""
    out = {}
    for kind in LABELS:
        truth = [s for s in annotated(record, kind, rules) if _counted(s)]
        ours = [p for p in published if p.kind == kind and _counted((p.started, p.ended))]
        spans = [(max(p.started, SKIP_S), max(p.ended, p.started + 0.5)) for p in ours]
        raw, truth = truth, [(max(a, SKIP_S), b) for a, b in truth]
        found = [any(_overlap(a, b) > 0 for b in spans) for a in truth]
        true = [any(_overlap(b, a) > 0 for a in truth) for b in spans]
        # Per annotated onset after SKIP_S that was found: how long until an episode covering it was announced
        # (0 when one was already open: a kind merged over its gap).
        delays = [max(0.0, min(p.announced for p, b in zip(ours, spans, strict=True) if _overlap(a, b) > 0) - a[0])
                  for a, hit in zip(raw, found, strict=True) if hit and a[0] >= SKIP_S]  # fmt: skip
        out[kind] = {
            "annotated": len(truth),
            "found": int(sum(found)),
            "published": len(spans),
            "true": int(sum(true)),
            "annotated_s": float(sum(b - a for a, b in truth)),
            "published_s": float(sum(b - a for a, b in spans)),
            "overlap_s": float(sum(_overlap(a, b) for a in truth for b in spans)),
            "delays": [float(d) for d in delays if np.isfinite(d)],
        }
    return out


def _pages_on_normal(record: Record, published: list[Published]) -> int:
    normal = [(s.start / record.fs, s.end / record.fs) for s in record.rhythms if s.label in NORMAL]
    return sum(
        1
        for p in published
        if p.severity != "info" and _counted((p.started, p.ended))
        and any(a <= p.started and p.ended <= b for a, b in normal)
    )  # fmt: skip


def report(results: dict[str, Run], rules: Rules, out: Path) -> dict[str, Any]:
    records: dict[str, Any] = {}
    for name, result in results.items():
        record = result.streamed.record
        published = publish(result, rules)
        counted = [p for p in published if _counted((p.started, p.ended))]
        hours = (len(record.signal) / record.fs - SKIP_S) / 3600
        records[name] = {
            "hours": hours,
            "starts": len(counted),
            "flaps": _flaps(published, rules),
            "pages": sum(p.severity != "info" for p in counted),
            "pages_on_normal": _pages_on_normal(record, published),
            "normal_hours": sum(
                s.end - max(s.start, SKIP_S * record.fs)
                for s in record.rhythms
                if s.label in NORMAL and s.end > SKIP_S * record.fs
            )
            / record.fs
            / 3600,
            "kinds": compare(record, published, rules),
            "episodes": [p.__dict__ for p in published],
        }
        _timeline(record, published, rules, out / "timelines" / f"{name}.png")
    summary = _summary(records)
    document = {
        "rules": {k: v for k, v in rules.__dict__.items() if k != "kinds"},
        "summary": summary,
        "records": records,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "episodes.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "episodes.md").write_text(_markdown(document))
    return document


def _normal_hours(record: Record) -> float:
    skip = SKIP_S * record.fs
    spans = [(max(s.start, skip), s.end) for s in record.rhythms if s.label in NORMAL and s.end > skip]
    return sum(b - a for a, b in spans) / record.fs / 3600


def _flaps(published: list[Published], rules: Rules) -> int:
    """Episodes of a kind that started within that kind's gap after the previous one of that kind ended."""
    flaps = 0
    for kind, kind_rules in rules.kinds.items():
        ours = sorted((p for p in published if p.kind == kind), key=lambda p: p.started)
        flaps += sum(1 for a, b in itertools.pairwise(ours) if b.started - a.ended < kind_rules.gap_s)
    return flaps


def _summary(records: dict[str, Any]) -> dict[str, Any]:
    hours = sum(r["hours"] for r in records.values())
    normal_hours = sum(r["normal_hours"] for r in records.values())
    kinds: dict[str, Any] = {}
    for kind in LABELS:
        c = {k: sum(r["kinds"][kind][k] for r in records.values()) for k in
             ("annotated", "found", "published", "true", "annotated_s", "published_s", "overlap_s")}  # fmt: skip
        delays = [d for r in records.values() for d in r["kinds"][kind]["delays"]]
        false_days = sum((r["kinds"][kind]["published"] - r["kinds"][kind]["true"]) for r in records.values()) / (
            hours / 24
        )
        kinds[kind] = {
            **c,
            "episode_se": c["found"] / c["annotated"] if c["annotated"] else None,
            "episode_pp": c["true"] / c["published"] if c["published"] else None,
            "duration_se": c["overlap_s"] / c["annotated_s"] if c["annotated_s"] else None,
            "duration_pp": c["overlap_s"] / c["published_s"] if c["published_s"] else None,
            "median_onset_delay_s": float(np.median(delays)) if delays else None,
            "false_per_device_day": false_days,
        }
    return {
        "device_hours": hours,
        "starts_per_device_hour": sum(r["starts"] for r in records.values()) / hours,
        "flaps": sum(r["flaps"] for r in records.values()),
        "pages_per_device_day": sum(r["pages"] for r in records.values()) / (hours / 24),
        "pages_per_device_day_on_normal": sum(r["pages_on_normal"] for r in records.values()) / (normal_hours / 24)
        if normal_hours
        else None,
        "kinds": kinds,
    }


def _f(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _markdown(document: dict[str, Any]) -> str:
    s = document["summary"]
    lines = [
        "# Episodes against the annotated rhythms",
        "",
        "Each shared MIT-BIH record classified leave one person out, its beats through the daemon's episode rules; "
        "only what lies after the first 5 minutes counts. Command: `ecgwatch-train episodes --data DIR --out DIR`.",
        "",
        f"- {s['device_hours']:.1f} device-hours; **{s['starts_per_device_hour']:.2f} episode starts per "
        f"device-hour**; {s['flaps']} kinds re-opened within their gap.",
        f"- Pages (episodes that reached warning or critical): {_f(s['pages_per_device_day'], 1)} per device-day; "
        f"{_f(s['pages_per_device_day_on_normal'], 1)} per device-day on normal-rhythm stretches.",
        "",
        "| kind | annotated | found | episode Se | published | episode +P | duration Se | duration +P | "
        "median onset delay (s) | false per device-day |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, k in s["kinds"].items():
        lines.append(
            f"| {kind} | {k['annotated']} | {k['found']} | {_f(k['episode_se'])} | {k['published']} | "
            f"{_f(k['episode_pp'])} | {_f(k['duration_se'])} | {_f(k['duration_pp'])} | "
            f"{_f(k['median_onset_delay_s'], 0)} | {_f(k['false_per_device_day'], 1)} |"
        )
    lines += ["", "| record | starts | pages | kinds published |", "|---|---|---|---|"]
    for name, r in document["records"].items():
        kinds = sorted({e["kind"] for e in r["episodes"]})
        lines.append(f"| {name} | {r['starts']} | {r['pages']} | {', '.join(kinds) or '-'} |")
    lines += ["", "Timelines: `timelines/<record>.png` (annotated spans light, published episodes dark)."]
    return "\n".join(lines) + "\n"


def _timeline(record: Record, published: list[Published], rules: Rules, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [*LABELS, "frequent_ectopy", "tachycardia", "signal_lost"]
    fig, ax = plt.subplots(figsize=(14, 0.45 * len(kinds) + 1.2))
    colours = {"info": "tab:blue", "warning": "tab:orange", "critical": "tab:red"}
    for row, kind in enumerate(kinds):
        if kind in LABELS:
            for a, b in annotated(record, kind, rules):
                ax.broken_barh([(a / 60, max(b - a, 1) / 60)], (row - 0.4, 0.35), color="0.75")
        for p in published:
            if p.kind == kind:
                ax.broken_barh([(p.started / 60, max(p.ended - p.started, 1) / 60)], (row + 0.05, 0.35),
                               color=colours[p.severity])  # fmt: skip
    ax.axvline(SKIP_S / 60, color="k", linestyle=":", linewidth=1)
    ax.set_yticks(range(len(kinds)), kinds)
    ax.set_xlabel("minutes (grey: annotated; blue/orange/red: published info/warning/critical)")
    ax.set_title(f"record {record.name}")
    ax.set_xlim(0, len(record.signal) / record.fs / 60)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
