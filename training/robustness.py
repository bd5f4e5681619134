"""``ecgwatch-train robustness``: false alarms and recall when the signal is not clean.

Watches record noise, wander, mains, muscle bursts, a lead worn upside down, and hearts that speed up; a
detector that pages on those is worse than none. Each condition is judged against the clean signal: the
false-alarm rate on non-PVC beats must stay within :data:`FAR_FACTOR` times the clean rate (floored at
:data:`FAR_FLOOR`, so that one alarm among a few hundred beats is not a failure), or the quality gate must
have marked the beats unreadable (then they raise a signal-quality episode, not an anomaly).

Two paths are measured, each with its shipped model:

- **strips** (the daemon's default): MIT-BIH records streamed as 10 s strips through the daemon's
  segmentation, scored by the population model after each device enrolled on its first clean minutes; the
  condition applies to everything after enrolment, as when a watch slips or a user starts running.
- **pre-cut beats** (the ``ecg/<device>/beat`` topic): ECG5000 test beats, perturbed beat by beat, scored by
  the ECG5000 model. These beats carry no context, so there is no quality gate and no device to adapt to.

The population model was trained on these six records, so the strips figures measure robustness relative
to clean signal, not generalisation (``ecgwatch-train crossperson`` does that).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import signal as sps
from tqdm import tqdm

from ecgwatch import artifact
from ecgwatch.datasets import make_split
from ecgwatch.datasets.ecg5000 import Beats
from ecgwatch.datasets.ecg_artifacts import ARTIFACTS, apply
from ecgwatch.datasets.mitbih import Record
from ecgwatch.scorer import Scorer
from training.beat_classifier import detect
from training.mitbih_eval import StreamedRecord, stream_record
from training.population import ENROLMENT_S

FAR_FACTOR = 2.0
FAR_FLOOR = 0.005
ECG5000_FS = 140 / 0.8  # ECG5000 beats are resampled to 140 samples: about 175 Hz for a beat at 75/min


@dataclass(frozen=True)
class Condition:
    kind: str  # an artifact of ecgwatch.datasets.ecg_artifacts, or "clean", "shift", "warp"
    level: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Condition:
        """``kind`` or ``kind:level`` (``noise:20``, ``shift:3``, ``reversed``), as the CLI takes them."""
        kind, _, level = text.partition(":")
        if kind not in (*ARTIFACTS, "clean", "shift", "warp"):
            raise ValueError(f"unknown condition {kind!r}; one of clean, shift, warp, {', '.join(ARTIFACTS)}")
        return cls(kind, float(level) if level else 0.0)

    @property
    def name(self) -> str:
        units = {"noise": " dB", "emg": " dB", "wander": "", "mains": "", "shift": " samples", "warp": "x"}
        if self.kind in ("clean", "reversed"):
            return self.kind
        level = f"{self.level:.0%}" if self.kind in ("wander", "mains") else f"{self.level:g}"
        return f"{self.kind} {level}{units[self.kind]}"


CONDITIONS = (
    Condition("clean"),
    *(Condition("noise", db) for db in (30, 20, 10)),
    *(Condition("wander", f) for f in (0.1, 0.3, 0.5)),
    *(Condition("mains", f) for f in (0.05, 0.1, 0.2)),
    *(Condition("emg", db) for db in (20, 10, 0)),
    *(Condition("shift", s) for s in (1, 3, 5)),
    Condition("reversed"),
    *(Condition("warp", w) for w in (0.9, 1.1)),
)


@dataclass
class Outcome:
    """One condition on one path: counts pooled over records (or beats)."""

    non_pvc: int = 0
    false_alarms: int = 0
    pvc: int = 0
    pvc_caught: int = 0
    unreadable: int = 0
    beats: int = 0

    def add(self, other: Outcome) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def far(self) -> float:
        return self.false_alarms / self.non_pvc if self.non_pvc else 0.0

    @property
    def recall(self) -> float:
        return self.pvc_caught / self.pvc if self.pvc else float("nan")

    @property
    def unreadable_share(self) -> float:
        return self.unreadable / self.beats if self.beats else 1.0

    def verdict(self, clean_far: float) -> str:
        """``scored`` (false alarms within the bound), ``unreadable`` (the gate held most beats back) or
        ``FAIL``."""
        if self.far <= FAR_FACTOR * max(clean_far, FAR_FLOOR):
            return "scored"
        return "unreadable" if self.unreadable_share >= 0.9 else "FAIL"


# --- strips: MIT-BIH records through the daemon's path ---------------------------------------------------
def first_minutes(record: Record, minutes: float) -> Record:
    """The record's first ``minutes`` (a quick look; the report uses whole records)."""
    end = int(minutes * 60 * record.fs)
    keep = record.beats < end
    return dataclasses.replace(
        record, signal=record.signal[:end], beats=record.beats[keep], symbols=record.symbols[keep]
    )


def perturbed_record(record: Record, condition: Condition, after_s: float, seed: int) -> Record:
    """The record with ``condition`` on everything after ``after_s`` (enrolment stays clean)."""
    k = int(after_s * record.fs)
    head, tail = record.signal[:k], record.signal[k:]
    if condition.kind in ARTIFACTS:
        rng = np.random.default_rng(seed)
        tail = apply(condition.kind, tail, record.fs, rng, condition.level)
        return dataclasses.replace(record, signal=np.concatenate([head, tail]))
    if condition.kind == "warp":
        ratio = Fraction(condition.level).limit_denominator(20)
        tail = sps.resample_poly(tail, ratio.numerator, ratio.denominator)
        beats = np.where(record.beats < k, record.beats, k + (record.beats - k) * float(ratio))
        return dataclasses.replace(record, signal=np.concatenate([head, tail]), beats=np.round(beats).astype(int))
    return record


def shifted(streamed: StreamedRecord, samples: int, after_s: float) -> StreamedRecord:
    """Beats after ``after_s`` cut ``samples`` window samples late, as a segmentation that misplaces every R
    peak would (the same unit as on the pre-cut path, where a window is one beat)."""
    beats = [
        dataclasses.replace(b, window=shift(b.window[None], samples)[0])
        if b.window is not None and b.t >= after_s
        else b
        for b in streamed.beats
    ]
    return dataclasses.replace(streamed, beats=beats)


def shift(x: np.ndarray, samples: int) -> np.ndarray:
    """Windows ``(N, T)`` moved right by ``samples``, the first value repeated in front."""
    return np.concatenate([np.repeat(x[:, :1], samples, axis=1), x[:, :-samples]], axis=1)


def strips_outcome(record: Record, condition: Condition, model: artifact.LoadedModel, enrol_s: float) -> Outcome:
    streamed = stream_record(perturbed_record(record, condition, enrol_s, seed=int(record.name)), model.window)
    if condition.kind == "shift":
        streamed = shifted(streamed, int(condition.level), enrol_s)
    result = detect(streamed, model, enrol_s)
    t = np.array([b.t for b in streamed.beats])
    after = (t >= enrol_s) & (result.labels != "-")
    called = np.array([v.beat_class for v in result.verdicts], dtype=object)
    flagged = np.isin(called, ["S", "V"])
    normal, ventricular = after & (result.labels == "N"), after & (result.labels == "V")
    return Outcome(
        non_pvc=int((normal & (called != None)).sum()),  # noqa: E711 (an object array)
        false_alarms=int((normal & flagged).sum()),
        pvc=int(ventricular.sum()),
        pvc_caught=int((ventricular & (called == "V")).sum()),
        unreadable=int((after & (called == None)).sum()),  # noqa: E711
        beats=int(after.sum()),
    )


# --- pre-cut beats: ECG5000 through the beat topic's path -------------------------------------------------
def perturbed_beats(x: np.ndarray, condition: Condition, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if condition.kind in ARTIFACTS:
        return np.stack([apply(condition.kind, beat, ECG5000_FS, rng, condition.level) for beat in x])
    if condition.kind == "shift":
        return shift(x, int(condition.level))
    if condition.kind == "warp":
        n = x.shape[1]
        grid = (np.arange(n) - n / 2) / condition.level + n / 2  # stretched about the centre
        return np.stack([np.interp(grid, np.arange(n), beat) for beat in x])
    return x


def beats_outcome(test: Beats, condition: Condition, model: artifact.LoadedModel) -> Outcome:
    scores = Scorer(model, torch.device("cpu")).score(perturbed_beats(test.x, condition, seed=0)).scores
    flagged = scores > model.threshold
    anomaly = test.is_anomaly
    return Outcome(
        non_pvc=int((~anomaly).sum()),
        false_alarms=int(flagged[~anomaly].sum()),
        pvc=int(anomaly.sum()),
        pvc_caught=int(flagged[anomaly].sum()),
        unreadable=0,
        beats=len(anomaly),
    )


# --- the suite --------------------------------------------------------------------------------------------
def run(
    records: list[Record],
    ecg5000: Beats | None,
    out: Path,
    conditions: tuple[Condition, ...] = CONDITIONS,
    enrol_s: float = ENROLMENT_S,
) -> dict[str, Any]:
    """Every condition on both paths; writes robustness.json, robustness.md and robustness.png to ``out``."""
    paths: dict[str, dict[str, Outcome]] = {}
    population = artifact.load(artifact.POPULATION_MODEL_DIR)
    reference = artifact.load(artifact.REFERENCE_MODEL_DIR)
    test = None if ecg5000 is None else make_split(ecg5000, reference.metadata["data"]["split_seed"]).test
    for condition in tqdm(conditions, desc="robustness", unit="condition", disable=None):
        pooled = Outcome()
        for record in records:
            pooled.add(strips_outcome(record, condition, population, enrol_s))
        paths.setdefault(f"strips: population model `{population.version}`, adapted", {})[condition.name] = pooled
        if test is not None:
            name = f"pre-cut beats: ECG5000 model `{reference.version}`"
            paths.setdefault(name, {})[condition.name] = beats_outcome(test, condition, reference)
    report = _report(paths, [r.name for r in records], enrol_s)
    out.mkdir(parents=True, exist_ok=True)
    (out / "robustness.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "robustness.md").write_text(_markdown(report))
    _figure(report, out / "robustness.png")
    return report


def _report(paths: dict[str, dict[str, Outcome]], records: list[str], enrol_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {"records": records, "enrolment_s": enrol_s, "far_factor": FAR_FACTOR}
    out |= {"far_floor": FAR_FLOOR, "paths": {}}
    for path, outcomes in paths.items():
        clean = outcomes["clean"].far
        out["paths"][path] = {
            name: {
                **dataclasses.asdict(o),
                "far": o.far,
                "recall": o.recall,
                "unreadable_share": o.unreadable_share,
                "verdict": o.verdict(clean),
            }
            for name, o in outcomes.items()
        }
    return out


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Robustness: false alarms and recall when the signal is not clean",
        "",
        f"A condition passes when its false-alarm rate on non-PVC beats is at most {report['far_factor']:g}x the "
        f"clean rate (floored at {report['far_floor']:.1%}) or the quality gate marked at least 90% of the beats "
        f"unreadable. Strips: MIT-BIH records {', '.join(report['records'])}, each device enrolled on its first "
        f"{report['enrolment_s']:g} s of clean signal, the condition on everything after. Pre-cut beats: ECG5000 "
        "test beats (recall is of the four anomalous classes; there is no quality gate on that path).",
    ]
    for path, rows in report["paths"].items():
        lines += [
            "",
            f"## {path}",
            "",
            "| condition | false alarms | rate | recall | unreadable | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in rows.items():
            lines.append(
                f"| {name} | {r['false_alarms']}/{r['non_pvc']} | {r['far']:.2%} | {r['recall']:.3f} "
                f"| {r['unreadable_share']:.1%} | {r['verdict']} |"
            )
    return "\n".join(lines) + "\n"


def _figure(report: dict[str, Any], path: Path) -> Path:
    paths = report["paths"]
    fig, axes = plt.subplots(len(paths), 1, figsize=(11, 3.6 * len(paths)), squeeze=False)
    for ax, (name, rows) in zip(axes[:, 0], paths.items(), strict=True):
        labels = list(rows)
        far = [rows[k]["far"] * 100 for k in labels]
        colours = ["tab:green" if rows[k]["verdict"] != "FAIL" else "tab:red" for k in labels]
        ax.bar(labels, far, color=colours)
        bound = report["far_factor"] * max(rows["clean"]["far"], report["far_floor"]) * 100
        ax.axhline(bound, color="black", linestyle="--", label=f"bound {bound:.2f}%")
        ax.set_ylabel("false alarms (% of non-PVC)")
        ax.set_title(name, fontsize=9)
        ax.tick_params(axis="x", rotation=60, labelsize=8)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
