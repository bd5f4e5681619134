"""AAMI EC57 beat-by-beat scoring: how the field reports a detector on MIT-BIH, and how the acceptance checks
score ours.

Each annotated beat after the first :data:`SKIP_S` seconds is matched one-to-one to the nearest detected beat
within :data:`TOLERANCE_S`; ventricular flutter stretches (``(VFL``) are left out, as EC57 does. Then:

- beat detection: Se = matched annotations / annotations, +P = matched detections / detections;
- VEB (ventricular ectopic beats, AAMI class V): Se = V beats called V / V beats, where a V beat that was not
  found or marked unreadable counts as missed; +P = V beats called V / beats called V, including detections
  that match no annotation. EC57 does not count a fusion beat (F) called V against +P (``veb_pp_ec57``, the
  figure published results quote); ``veb_pp`` counts it, the stricter reading;
- false alarms: N beats flagged (called anything but N) / N beats, inside atrial fibrillation or flutter
  (``(AFIB``, ``(AFL``) and outside it;
- SVEB Se: S beats called S / S beats;
- unreadable: the share of matched beats the detector would not judge.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgwatch.datasets.mitbih import Record

SKIP_S = 300.0
TOLERANCE_S = 0.150
FIBRILLATION = ("AFIB", "AFL")
COUNTS = (
    "annotated", "found", "matched", "v", "v_caught", "called_v", "called_v_not_fusion", "n", "n_flagged", "n_af",
    "n_af_flagged",
    "s", "s_caught", "unreadable",
)  # fmt: skip


@dataclass(frozen=True)
class Detections:
    """What a detector said, per detected beat: time (s from the record's start) and class (None: not judged)."""

    t: np.ndarray
    beat_class: np.ndarray  # object array of "N", "S", "V", "Q" or None


def match(annotated_s: np.ndarray, found_s: np.ndarray, tolerance_s: float = TOLERANCE_S) -> np.ndarray:
    """One-to-one nearest matches: per detection the index of its annotated beat, -1 where none."""
    out = np.full(len(found_s), -1)
    taken = np.zeros(len(annotated_s), dtype=bool)
    for i in np.argsort(found_s):
        lo = np.searchsorted(annotated_s, found_s[i] - tolerance_s, side="left")
        hi = np.searchsorted(annotated_s, found_s[i] + tolerance_s, side="right")
        free = [k for k in range(lo, hi) if not taken[k]]
        if free:
            k = min(free, key=lambda j: abs(annotated_s[j] - found_s[i]))
            taken[k], out[i] = True, k
    return out


def score(record: Record, detections: Detections) -> dict[str, int]:
    """The EC57 counts for one record (sum them over records, then take :func:`rates`)."""
    fs = record.fs
    annotated_s = record.beats / fs
    excluded = [(s.start / fs, s.end / fs) for s in record.rhythms if s.label == "VFL"]

    def counted(t: np.ndarray) -> np.ndarray:
        inside = np.zeros(len(t), dtype=bool)
        for a, b in excluded:
            inside |= (t >= a) & (t < b)
        return (t >= SKIP_S) & ~inside

    keep_a, keep_f = counted(annotated_s), counted(detections.t)
    matched = match(annotated_s, detections.t)
    called = np.full(len(annotated_s), None, dtype=object)
    found = np.zeros(len(annotated_s), dtype=bool)
    for i, k in enumerate(matched):
        if k >= 0:
            called[k], found[k] = detections.beat_class[i], True
    classes = record.classes
    af = np.isin(record.rhythm_at(record.beats), FIBRILLATION)
    n, v, s = keep_a & (classes == "N"), keep_a & (classes == "V"), keep_a & (classes == "S")
    flagged = np.array([c not in (None, "N") for c in called])
    is_v = np.array([c == "V" for c in called])
    stray_v = sum(1 for i, k in enumerate(matched) if keep_f[i] and k < 0 and detections.beat_class[i] == "V")
    return {
        "annotated": int(keep_a.sum()),
        "found": int(keep_f.sum()),
        "matched": int((keep_a & found).sum()),
        "v": int(v.sum()),
        "v_caught": int((v & is_v).sum()),
        "called_v": int((keep_a & is_v).sum()) + stray_v,
        "called_v_not_fusion": int((keep_a & is_v & (classes != "F")).sum()) + stray_v,
        "n": int(n.sum()),
        "n_flagged": int((n & flagged).sum()),
        "n_af": int((n & af).sum()),
        "n_af_flagged": int((n & af & flagged).sum()),
        "s": int(s.sum()),
        "s_caught": int((s & np.array([c == "S" for c in called])).sum()),
        "unreadable": int((keep_a & found & np.array([c is None for c in called])).sum()),
    }


def total(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    out = dict.fromkeys(COUNTS, 0)
    for c in counts:
        for k in COUNTS:
            out[k] += c[k]
    return out


def rates(c: dict[str, int]) -> dict[str, float]:
    """The figures EC57 reports, from summed counts (NaN where nothing was there to count)."""

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {
        "beat_se": ratio(c["matched"], c["annotated"]),
        "beat_pp": ratio(c["matched"], c["found"]),
        "veb_se": ratio(c["v_caught"], c["v"]),
        "veb_pp": ratio(c["v_caught"], c["called_v"]),
        "veb_pp_ec57": ratio(c["v_caught"], c["called_v_not_fusion"]),
        "n_false_alarms": ratio(c["n_flagged"], c["n"]),
        "n_false_alarms_af": ratio(c["n_af_flagged"], c["n_af"]),
        "n_false_alarms_not_af": ratio(c["n_flagged"] - c["n_af_flagged"], c["n"] - c["n_af"]),
        "sveb_se": ratio(c["s_caught"], c["s"]),
        "unreadable": ratio(c["unreadable"], c["matched"]),
    }


OSEA_CLASSES = {1: "N", 5: "V"}  # and 13, "unknown": not judged


def osea(path: Path) -> dict[str, Detections]:
    """OSEA's output on the shared records (``peers/osea/mitbih_beats.jsonl``), per record."""
    rows: dict[str, list[tuple[float, str | None]]] = {}
    with path.open() as handle:
        for line in handle:
            beat = json.loads(line)
            rows.setdefault(str(beat["record"]), []).append((float(beat["t_s"]), OSEA_CLASSES.get(beat["osea_type"])))
    return {
        name: Detections(np.array([t for t, _ in beats]), np.array([c for _, c in beats], dtype=object))
        for name, beats in rows.items()
    }
