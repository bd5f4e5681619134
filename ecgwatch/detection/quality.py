"""What can be read in a strip: per beat a noise index and how alike it is to other beats, per strip a verdict.

A beat in noise is not judged (an unreadable beat is never an anomaly), but a beat that is only *unlike the
others* must be: multiform PVCs and atrial fibrillation are what the detector is for. Per beat: the slope energy
outside the QRS (noise) and the best correlation with the strip's median beat or any other beat. Per strip:
flat lines (leads off), clipping, too few beats or a silence with noise in it, too many noisy beats, spikes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QRS_HALF_S = 0.06
AMPLITUDE_GATE = 0.2  # detections under this fraction of the median QRS amplitude are not beats
WINDOW_BEFORE_S, WINDOW_AFTER_S = 0.25, 0.40  # the span the quality indices look at
NOISY_INDEX, NOISY_INDEX_WITH_ODD_SHAPE, ODD_SHAPE = 0.05, 0.03, 0.7
MIN_BEATS, MAX_GAP_S, RAIL_FRACTION = 3, 3.0, 0.01
CHAOS_CORRELATION, CHAOS_FRACTION, NOISY_FRACTION, SPIKE_RATIO = 0.8, 0.25, 0.25, 4.0
PEAKY = 5.0  # beats unlike each other in a strip this peaky are ECG (multiform PVCs, AF), not noise
QUALITY_REASONS = ("ok", "noisy", "unreadable", "saturated", "leads_off", "reversed", "incomplete")


def qrs_amplitudes(cleaned: np.ndarray, peaks: np.ndarray, fs: float) -> np.ndarray:
    h = round(QRS_HALF_S * fs)
    return np.array([np.ptp(cleaned[max(0, p - h) : p + h + 1]) for p in peaks])


@dataclass(frozen=True)
class Indices:
    best_correlation: np.ndarray  # per peak, NaN where the window does not fit
    noise: np.ndarray  # slope RMS outside the QRS / max(own, median QRS amplitude)
    amplitude: np.ndarray  # QRS peak-to-peak / the median's


def quality_indices(cleaned: np.ndarray, peaks: np.ndarray, fs: float) -> Indices:
    n = len(peaks)
    amplitude = qrs_amplitudes(cleaned, peaks, fs) if n else np.empty(0)
    reference = float(np.median(amplitude)) if n else 1.0
    relative = amplitude / (reference + 1e-12)
    before, after = round(WINDOW_BEFORE_S * fs), round(WINDOW_AFTER_S * fs)
    q_before, q_after = round(QRS_HALF_S * fs), round(0.08 * fs)
    fits = (peaks - before >= 0) & (peaks + after <= len(cleaned))
    correlation = np.full(n, np.nan)
    noise = np.full(n, np.nan)
    if fits.sum() >= 2:
        windows = np.stack([cleaned[p - before : p + after] for p in peaks[fits]])
        z = (windows - windows.mean(1, keepdims=True)) / (windows.std(1, keepdims=True) + 1e-12)
        template = np.median(windows, axis=0)
        tz = (template - template.mean()) / (template.std() + 1e-12)
        peers = z @ z.T / windows.shape[1]
        np.fill_diagonal(peers, -1.0)
        correlation[fits] = np.maximum(z @ tz / windows.shape[1], peers.max(axis=1))
    # Slopes outside every QRS: at 240/min the next beat's QRS falls inside a beat's span and read as noise.
    slope = np.diff(cleaned, prepend=cleaned[0]) if len(cleaned) else cleaned
    quiet = np.ones(len(cleaned), dtype=bool)
    for p in peaks:
        quiet[max(0, p - q_before) : p + q_after] = False
    for i in np.flatnonzero(fits):
        p = peaks[i]
        span = slope[p - before : p + after][quiet[p - before : p + after]]
        if len(span):
            noise[i] = np.sqrt(np.mean(span**2)) / (reference + 1e-12) / max(relative[i], 1.0)
    return Indices(correlation, noise, relative)


def beat_quality(indices: Indices) -> list[str]:
    """Per beat: "noisy" when its surroundings are mostly noise, else "ok" (unknown stays "ok")."""
    noisy = (indices.noise > NOISY_INDEX) | (
        (indices.best_correlation < ODD_SHAPE) & (indices.noise > NOISY_INDEX_WITH_ODD_SHAPE)
    )
    return ["noisy" if flag else "ok" for flag in noisy]


def strip_quality(raw: np.ndarray, cleaned: np.ndarray, fs: float, peaks: np.ndarray, indices: Indices) -> str:
    """The strip's verdict: "ok", or why its beats cannot be trusted (then every beat in it carries it)."""
    if not np.ptp(raw) > 0 or _flat_fraction(raw, fs) > 0.5:
        return "leads_off"
    high, low = raw.max(), raw.min()
    eps = 1e-6 * (high - low)
    if np.mean((raw >= high - eps) | (raw <= low + eps)) > RAIL_FRACTION:
        return "saturated"
    gated = peaks[indices.amplitude >= AMPLITUDE_GATE]
    edges = np.concatenate([[0], np.sort(gated), [len(raw)]])
    # A 2 s strip at 60/min holds two beats: ask for one beat per 2 s, at most MIN_BEATS (the gap test below
    # still catches a strip with no heartbeat in it).
    needed = min(MIN_BEATS, max(1, int(len(raw) / fs / 2)))
    if len(gated) < needed or np.max(np.diff(edges)) / fs > MAX_GAP_S:
        return "unreadable"
    known = ~np.isnan(indices.best_correlation)
    if known.any() and np.mean(indices.noise[known] > NOISY_INDEX) > NOISY_FRACTION:
        return "noisy"
    if (
        known.any()
        and np.mean(indices.best_correlation[known] < CHAOS_CORRELATION) > CHAOS_FRACTION
        and kurtosis(cleaned) < PEAKY
    ):
        return "unreadable"
    if indices.amplitude.max(initial=0.0) > SPIKE_RATIO:
        return "unreadable"
    return "ok"


def kurtosis(x: np.ndarray) -> float:
    """Pearson's kurtosis: ECG's sharp QRS complexes make it peaky (zhao2018's kSQI: > 5 for usable ECG)."""
    centred = x - x.mean()
    variance = float(np.mean(centred**2))
    return float(np.mean(centred**4) / variance**2) if variance > 0 else 0.0


def _flat_fraction(raw: np.ndarray, fs: float) -> float:
    """Share of half-second stretches with (almost) no signal: a lead that came off."""
    width = max(1, round(0.5 * fs))
    spans = np.array([np.ptp(raw[i : i + width]) for i in range(0, len(raw) - width + 1, width)])
    if not len(spans):
        return 0.0
    return float(np.mean(spans < 0.02 * (np.percentile(spans, 90) + 1e-12)))
