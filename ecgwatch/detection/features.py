"""What the beat classifier sees of a beat: its shape against the device's normal beat, its template's history,
the autoencoder's verdict on it, and its timing.

Every feature is relative to the device itself (a ratio or a difference against its dominant template, in
units of that template's QRS), so a classifier fitted on some people reads other people's beats on the same
scale: a ventricular beat is wider, shaped and often pointed otherwise than *this person's* normal beat,
whatever their lead, amplitude or bundle-branch block.
"""

from __future__ import annotations

import numpy as np

from ecgwatch.detection.rhythm import NAMES as TIMING_NAMES
from ecgwatch.detection.rhythm import Timing
from ecgwatch.detection.templates import Match, Spans, TemplateBank, _distance, shift

SHAPE_NAMES = (
    "correlation",  # QRS against the dominant QRS, re-aligned
    "amplitude",  # QRS peak-to-peak / the dominant's
    "width",  # QRS width / the dominant's
    "area",  # QRS area (baseline removed) / the dominant's
    "polarity",  # (max / peak-to-peak) of the QRS minus the dominant's: a beat pointing the other way
    "difference",  # RMS of beat - dominant over the QRS, in units of the dominant's QRS peak-to-peak
    "slope",  # steepest QRS slope / the dominant's
    "t_difference",  # the same RMS over 150-400 ms after R (the T wave)
    "p_difference",  # and before the QRS (P wave, or a preceding T wave when premature)
    "window_correlation",  # over the whole window
    "lag",  # samples of re-alignment
    "distance",  # RMS of beat - dominant over the window, in multiples of the dominant members' own
)
TEMPLATE_NAMES = (
    "template_share",  # of the device's recent beats, how many are in this beat's template
    "template_premature",  # its members' mean prematurity
    "template_pause",  # and the pause after them
    "template_dominant",  # 1 if the beat is in the dominant template
    "template_members",  # log of how many beats it has gathered
    "template_correlation",  # the template's QRS against the dominant's
    "template_width",  # its QRS width / the dominant's
    "match_correlation",  # how well the beat matched its template
    "run",  # beats in a row (this one included) outside the dominant template: a run of tachycardia
)
MODEL_NAMES = ("ae_morphology", "ae_embedding")  # log of the autoencoder's terms (ecgwatch.detection.adaptation)
NAMES = SHAPE_NAMES + TEMPLATE_NAMES + MODEL_NAMES + TIMING_NAMES
# How P(V) may move with each feature (+1 up, -1 down, 0 free): what a cardiologist knows of ventricular beats,
# imposed on the trees so that a few people's quirks cannot teach them otherwise. Halved the false alarms on
# normal beats on DS1, leave one person out (0.36% -> 0.15%), at the same sensitivity.
MONOTONE = {
    "correlation": -1, "window_correlation": -1, "difference": 1, "distance": 1, "t_difference": 1,
    "ae_morphology": 1, "ae_embedding": 1, "template_share": -1, "template_dominant": -1,
    "template_correlation": -1, "template_premature": -1, "premature": -1, "pause": 1, "ratio": 1, "local": -1,
}  # fmt: skip


def width(segment: np.ndarray) -> float:
    """QRS width in samples: the span over which the slope exceeds a fifth of its steepest."""
    slope = np.abs(np.diff(segment))
    above = np.flatnonzero(slope > 0.2 * (slope.max() + 1e-12))
    return float(above[-1] - above[0] + 1) if len(above) else 1.0


def shape(window: np.ndarray, dominant: np.ndarray, lag: int, spans: Spans) -> list[float]:
    """:data:`SHAPE_NAMES` of one beat (re-aligned by ``lag``) against the dominant template."""
    beat = shift(window, lag)
    lo, hi = spans.qrs
    qrs, ref = beat[lo:hi], dominant[lo:hi]
    base, ref_base = np.median(beat[: lo - 10]), np.median(dominant[: lo - 10])
    scale = max(float(np.ptp(ref)), 1e-9)
    after = slice(spans.r + round(0.15 / spans.step_s), spans.r + round(0.40 / spans.step_s))
    before = slice(0, lo)
    ref_max = (ref - ref_base).max() / scale
    return [
        _correlation(qrs, ref),
        float(np.ptp(qrs)) / scale,
        width(qrs) / width(ref),
        float(np.abs(qrs - base).sum() / max(np.abs(ref - ref_base).sum(), 1e-9)),
        float((qrs - base).max() / max(float(np.ptp(qrs)), 1e-9) - ref_max),
        _rms_difference(qrs, ref) / scale,
        float(np.abs(np.diff(qrs)).max() / max(float(np.abs(np.diff(ref)).max()), 1e-9)),
        _rms_difference(beat[after], dominant[after]) / scale,
        _rms_difference(beat[before], dominant[before]) / scale,
        _correlation(beat, dominant),
        float(lag),
    ]


def distance(window: np.ndarray, dominant: np.ndarray, lag: int, spans: Spans, spread: float) -> float:
    """How far the beat is from the dominant template, against how far its own members usually are: the
    same RMS is nothing on a noisy person and everything on a clean one."""
    return _distance(shift(window, lag), dominant, spans) / max(spread, 1e-3)


def template(bank: TemplateBank, match: Match, dominant: int, spans: Spans, run: int) -> list[float]:
    """:data:`TEMPLATE_NAMES`: what the beat's template has been on this device so far."""
    lo, hi = spans.qrs
    own, ref = bank.templates[match.index], bank.templates[dominant]
    return [
        bank.share(match.index),
        bank.premature[match.index],
        bank.pause[match.index],
        float(match.index == dominant),
        float(np.log1p(bank.members[match.index])),
        _correlation(own[lo:hi], ref[lo:hi]),
        width(own[lo:hi]) / width(ref[lo:hi]),
        match.correlation,
        float(run),
    ]


def vector(
    window: np.ndarray,
    bank: TemplateBank,
    match: Match,
    spans: Spans,
    timing: Timing,
    ae: tuple[float, float],
    run: int,
) -> np.ndarray:
    """The beat's features in :data:`NAMES` order (after it joined ``bank`` as ``match``)."""
    dominant = bank.dominant()
    lag = match.lag if match.index == dominant else _best_lag(window, bank.templates[dominant], spans)
    model = [float(np.log(max(v, 1e-3))) for v in ae]
    values = shape(window, bank.templates[dominant], lag, spans)
    values.append(distance(window, bank.templates[dominant], lag, spans, bank.spread[dominant]))
    values += template(bank, match, dominant, spans, run)
    return np.array(values + model + timing.vector(), dtype=np.float64)


def _best_lag(window: np.ndarray, dominant: np.ndarray, spans: Spans) -> int:
    probe = TemplateBank([dominant], [1.0], [1], [1.0], [1.0], [1.0], [0.0])
    found = probe.match(window, spans)
    return 0 if found is None else found.lag


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def _rms_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean(((a - a.mean()) - (b - b.mean())) ** 2)))
