"""``ecgwatch-train synthetic``: a sanity check on people nobody recorded: neurokit2's ECGSYN.

Each synthetic person has their own heart rate, rate variability and P-QRS-T morphology (the ECGSYN
model's wave amplitudes and widths drawn around its defaults) and a gain; every beat is normal, so every
flagged beat is a false alarm. The shipped population model, adapted to each synthetic device after its
enrolment, is compared with the ECG5000 model's own score on the same beats (it flagged 98-100% of
ECGSYN beats when it was the shipped model). Used as a check, not as training data: the population model is
trained on recorded people only (docs/crossperson.md says why).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgwatch import artifact
from ecgwatch.datasets.mitbih import Record
from ecgwatch.detection.segmentation import Window
from ecgwatch.scorer import Scorer
from training.beat_classifier import detect
from training.mitbih_eval import stream_record
from training.population import ENROLMENT_S

FS = 360.0
ECGSYN_AMPLITUDES = (1.2, -5.0, 30.0, -7.5, 0.75)  # P, Q, R, S, T (ECGSYN's defaults)
ECGSYN_WIDTHS = (0.25, 0.1, 0.1, 0.1, 0.4)


@dataclass(frozen=True)
class Person:
    seed: int
    heart_rate: float
    heart_rate_std: float
    amplitudes: tuple[float, ...]
    widths: tuple[float, ...]
    gain: float

    @classmethod
    def draw(cls, seed: int) -> Person:
        rng = np.random.default_rng(seed)
        return cls(
            seed=seed,
            heart_rate=float(rng.uniform(55, 95)),
            heart_rate_std=float(rng.uniform(1, 5)),
            amplitudes=tuple(float(a * rng.uniform(0.75, 1.25)) for a in ECGSYN_AMPLITUDES),
            widths=tuple(float(w * rng.uniform(0.8, 1.2)) for w in ECGSYN_WIDTHS),
            gain=float(rng.uniform(0.5, 2.0)),
        )


def record_of(person: Person, minutes: float) -> Record:
    """The person's ECG as a record whose annotated beats are NeuroKit2's R peaks on the clean signal."""
    import neurokit2 as nk

    signal = nk.ecg_simulate(
        duration=int(minutes * 60),
        sampling_rate=int(FS),
        heart_rate=person.heart_rate,
        heart_rate_std=person.heart_rate_std,
        method="ecgsyn",
        random_state=person.seed,
        ai=person.amplitudes,
        bi=person.widths,
    )
    signal = np.asarray(signal) * person.gain
    peaks = np.asarray(nk.ecg_peaks(signal, sampling_rate=int(FS))[1]["ECG_R_Peaks"], dtype=int)
    return Record(f"ecgsyn-{person.seed}", signal, FS, peaks, np.full(len(peaks), "N"))


def false_alarms(
    record: Record, population: artifact.LoadedModel, reference: artifact.LoadedModel, enrol_s: float = ENROLMENT_S
) -> dict[str, Any]:
    """Flagged / judged normal beats after enrolment: the population model adapted, and the ECG5000 model."""
    streamed = stream_record(record, population.window)
    result = detect(streamed, population, enrol_s)
    t = np.array([b.t for b in streamed.beats])
    judged = [v.beat_class for v, when in zip(result.verdicts, t, strict=True) if when >= enrol_s and v.beat_class]
    adapted = {"non_pvc": len(judged), "false_alarms": sum(c != "N" for c in judged)}
    rr = stream_record(record, Window())
    later = [b.window for b in rr.beats if b.window is not None and b.t >= enrol_s and b.quality == "ok"]
    own = Scorer(reference, torch.device("cpu")).score(np.stack(later)).scores > reference.threshold
    return {
        "person": record.name,
        "beats": adapted["non_pvc"],
        "adapted_false_alarms": adapted["false_alarms"],
        "ecg5000_false_alarms": int(own.sum()),
        "ecg5000_beats": len(own),
    }


def run(people: int, minutes: float, out: Path, enrol_s: float = ENROLMENT_S) -> dict[str, Any]:
    population, reference = artifact.load(artifact.POPULATION_MODEL_DIR), artifact.load(artifact.REFERENCE_MODEL_DIR)
    rows = [
        false_alarms(record_of(Person.draw(seed), minutes), population, reference, enrol_s) for seed in range(people)
    ]
    pooled = {k: sum(r[k] for r in rows) for k in ("beats", "adapted_false_alarms", "ecg5000_false_alarms")}
    pooled["ecg5000_beats"] = sum(r["ecg5000_beats"] for r in rows)
    report = {"people": rows, "pooled": pooled, "minutes": minutes, "enrolment_s": enrol_s}
    out.mkdir(parents=True, exist_ok=True)
    (out / "synthetic.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Synthetic people (neurokit2 ECGSYN): false alarms on normal beats",
        "",
        f"{people} people, {minutes:g} minutes each, enrolment {enrol_s:g} s; every beat is normal.",
        "",
        "| person | beats judged | population model, adapted | ECG5000 model, its own score |",
        "|---|---|---|---|",
    ]
    for r in [*rows, {"person": "pooled", **pooled}]:
        lines.append(
            f"| {r['person']} | {r['beats']} | {r['adapted_false_alarms']} ({_share(r, 'adapted_false_alarms')}) "
            f"| {r['ecg5000_false_alarms']} ({r['ecg5000_false_alarms'] / max(r['ecg5000_beats'], 1):.1%}) |"
        )
    (out / "synthetic.md").write_text("\n".join(lines) + "\n")
    return report


def _share(row: dict[str, Any], key: str) -> str:
    return f"{row[key] / max(row['beats'], 1):.1%}"
