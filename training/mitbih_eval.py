"""Other people's ECG through the daemon's own path, offline: MIT-BIH records streamed as strips, segmented
with :mod:`ecgwatch.detection.segmentation`, scored with a model artifact, matched to the cardiologists' annotations.

``ecgwatch-train strips-report`` writes, per record: beats found against the annotations, the false-alarm
rate on non-PVC beats with and without the quality gate, PVC recall, and the episodes a day a device would
raise (:mod:`ecgwatch.detection.episodes`, the daemon's rules).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgwatch import artifact
from ecgwatch.datasets.mitbih import Record, load_record, records_in
from ecgwatch.detection.episodes import DeviceEpisodes, Rules, close_all, observe_beat, observe_unreadable
from ecgwatch.detection.segmentation import FoundBeat, Strip, Window, close, push
from ecgwatch.scorer import Scorer

STRIP_S = 10.0
TOLERANCE_S = 0.150


@dataclass(frozen=True)
class StreamedRecord:
    """A record's beats as the daemon finds them, each matched (or not) to an annotated beat."""

    record: Record
    beats: list[FoundBeat]
    annotation: np.ndarray  # per found beat: index of the matched annotated beat, -1 if none
    strips: list[tuple[float, float, str]]  # (start s, seconds, quality) of every strip

    @property
    def pvc(self) -> np.ndarray:
        """Per found beat: a matched PVC."""
        return np.array([a >= 0 and bool(self.record.pvc[a]) for a in self.annotation], dtype=bool)

    @property
    def readable(self) -> np.ndarray:
        return np.array([b.quality == "ok" for b in self.beats], dtype=bool)


def stream_record(record: Record, window: Window | None = None, strip_s: float = STRIP_S) -> StreamedRecord:
    track = None
    beats: list[FoundBeat] = []
    strips: list[tuple[float, float, str]] = []
    size = round(strip_s * record.fs)
    for seq, start in enumerate(range(0, len(record.signal), size)):
        samples = record.signal[start : start + size]
        result = push(track, Strip(seq, start / record.fs, record.fs, samples), window or Window())
        track, beats = result.track, beats + result.beats
        strips.append((start / record.fs, len(samples) / record.fs, result.quality))
    if track is not None:  # the stream ends: its last beats come out, as the daemon lets them out when idle
        beats += close(track, window or Window())[1]
    return StreamedRecord(record, beats, match(record, beats), strips)


def match(record: Record, beats: list[FoundBeat]) -> np.ndarray:
    """One-to-one nearest matches within 150 ms (annotation index per found beat, -1 where none)."""
    found = np.array([round(b.t * record.fs) for b in beats])
    out = np.full(len(found), -1)
    taken = np.zeros(len(record.beats), dtype=bool)
    tolerance = TOLERANCE_S * record.fs
    for i in np.argsort(found):
        lo, hi = np.searchsorted(record.beats, [found[i] - tolerance, found[i] + tolerance + 1])
        candidates = [k for k in range(lo, hi) if not taken[k]]
        if candidates:
            k = min(candidates, key=lambda j: abs(int(record.beats[j]) - int(found[i])))
            taken[k], out[i] = True, k
    return out


def scores(scorer: Scorer, streamed: StreamedRecord) -> np.ndarray:
    """Scores of the beats that have a window (NaN for the incomplete ones)."""
    out = np.full(len(streamed.beats), np.nan)
    have = [i for i, b in enumerate(streamed.beats) if b.window is not None]
    if have:
        out[have] = scorer.score(np.stack([streamed.beats[i].window for i in have])).scores  # type: ignore[misc]
    return out


def episodes(
    streamed: StreamedRecord, classes: Sequence[str | None], fibrillation: Sequence[bool], rules: Rules
) -> list[dict[str, Any]]:
    """Every episode event the daemon's rules raise over the record, in time order, the open ones ended at the
    record's end (as the daemon ends them when a device goes quiet)."""
    state, events = DeviceEpisodes(), []
    order = sorted(range(len(streamed.beats)), key=lambda i: streamed.beats[i].t)
    k = 0
    for start, seconds, quality in streamed.strips:
        while k < len(order) and streamed.beats[order[k]].t < start + seconds:
            i = order[k]
            beat = streamed.beats[i]
            events += observe_beat(state, rules, "d", beat.t, classes[i], beat.rr_s, bool(fibrillation[i]))
            k += 1
        if quality != "ok" and not any(start <= b.t < start + seconds and b.quality == "ok" for b in streamed.beats):
            events += observe_unreadable(state, rules, "d", start, seconds)
    end = streamed.strips[-1][0] + streamed.strips[-1][1] if streamed.strips else 0.0
    return events + close_all(state, rules, "d", end)


def strips_report(model_dir: Path, data: Path, out: Path, rules: Rules | None = None) -> dict[str, Any]:
    """The shipped (or any) model on every record in ``data``: the per-record table, as JSON and markdown."""
    rules = rules or Rules()
    loaded = artifact.load(model_dir)
    scorer = Scorer(loaded, torch.device("cpu"))
    rows = []
    for name in records_in(data):
        streamed = stream_record(load_record(data, name), Window(seq_len=loaded.seq_len))
        score = scores(scorer, streamed)
        anomalous = score > loaded.threshold
        rows.append(_row(streamed, anomalous, rules))
    report = {"model": loaded.version, "threshold": loaded.threshold, "strip_seconds": STRIP_S, "records": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "strips_report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "strips_report.md").write_text(_markdown(report))
    return report


def _row(streamed: StreamedRecord, anomalous: np.ndarray, rules: Rules) -> dict[str, Any]:
    record, matched = streamed.record, streamed.annotation >= 0
    non_pvc, pvc, readable = matched & ~streamed.pvc, streamed.pvc, streamed.readable
    hours = len(record.signal) / record.fs / 3600
    classes = [("V" if a else "N") if r else None for a, r in zip(anomalous, readable, strict=True)]
    starts = [e for e in episodes(streamed, classes, [False] * len(classes), rules) if e["type"] == "start"]
    per_day = {
        k: round(sum(e["kind"] == k for e in starts) / hours * 24, 1) for k in sorted({e["kind"] for e in starts})
    }
    return {
        "record": record.name,
        "paced": record.paced,
        "annotated": len(record.beats),
        "found": len(streamed.beats),
        "sensitivity": float(matched.sum() / len(record.beats)),
        "positive_predictivity": float(matched.mean()) if len(matched) else float("nan"),
        "unreadable_share": float(1 - readable.mean()),
        "false_alarm_rate_ungated": float(anomalous[non_pvc].mean()),
        "false_alarm_rate": float((anomalous & readable)[non_pvc].mean()),
        "pvc": int(pvc.sum()),
        "pvc_recall": float((anomalous & readable)[pvc].mean()) if pvc.any() else float("nan"),
        "episodes_per_day": per_day,
    }


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# MIT-BIH records as strips, model `{report['model']}`",
        "",
        f"Each record streamed as {report['strip_seconds']:g} s strips through the daemon's segmentation and "
        "scored with the model at its threshold. Beats are matched to the annotations within 150 ms. "
        "False alarms are anomalous non-PVC beats (`pvc = 0` is 'not a PVC', not 'normal'); the gated rate "
        "leaves out beats the quality gate marks unreadable, as the daemon does.",
        "",
        "| record | beats found / annotated | Se | +P | unreadable | false alarms (ungated) | false alarms (gated) "
        "| PVC recall (n) | episode starts a day |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["records"]:
        episodes_text = ", ".join(f"{k} {v:g}" for k, v in r["episodes_per_day"].items()) or "none"
        lines.append(
            f"| {r['record']}{' (paced)' if r['paced'] else ''} | {r['found']} / {r['annotated']} "
            f"| {r['sensitivity']:.4f} | {r['positive_predictivity']:.4f} | {r['unreadable_share']:.1%} "
            f"| {r['false_alarm_rate_ungated']:.1%} | {r['false_alarm_rate']:.1%} | {r['pvc_recall']:.2f} ({r['pvc']}) "
            f"| {episodes_text} |"
        )
    return "\n".join(lines) + "\n"
