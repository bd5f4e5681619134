"""Realistic artifacts of wearable ECG, seeded, for the simulator and the robustness suite.

Levels are relative to the clean signal, so they mean the same in any unit: noise by signal-to-noise ratio
(dB, against the signal's power), wander and mains by their amplitude as a fraction of the signal's
range (its 1-99th percentile span, so a beat's range).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import signal as sps


def _span(x: np.ndarray) -> float:
    low, high = np.percentile(x, [1, 99])
    return float(high - low)


def _power_for_snr(x: np.ndarray, snr_db: float) -> float:
    return float(np.var(x) / 10 ** (snr_db / 10))


def white_noise(x: np.ndarray, fs: float, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    return x + rng.normal(0.0, np.sqrt(_power_for_snr(x, snr_db)), len(x))


def baseline_wander(x: np.ndarray, fs: float, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Breathing and movement: a sum of slow sines (0.05-0.5 Hz) peaking at ``fraction`` of the range."""
    t = np.arange(len(x)) / fs
    wander = sum(np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 2 * np.pi)) for _ in range(3))
    wander = np.asarray(wander) / (np.max(np.abs(wander)) + 1e-12)
    return x + fraction * _span(x) * wander


def mains(x: np.ndarray, fs: float, fraction: float, rng: np.random.Generator, hz: float = 50.0) -> np.ndarray:
    t = np.arange(len(x)) / fs
    return x + fraction * _span(x) * np.sin(2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi))


def emg_bursts(x: np.ndarray, fs: float, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Muscle noise (band-limited 20-150 Hz) in bursts of 0.5-2 s covering about a third of the strip."""
    band = sps.butter(4, [20.0, min(150.0, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
    noise = sps.sosfilt(band, rng.normal(0.0, 1.0, len(x)))
    noise *= np.sqrt(_power_for_snr(x, snr_db)) / (noise.std() + 1e-12)
    envelope = np.zeros(len(x))
    position = int(rng.uniform(0, 1.0) * fs)
    while position < len(x):
        length = int(rng.uniform(0.5, 2.0) * fs)
        envelope[position : position + length] = 1.0
        position += length + int(rng.uniform(1.0, 4.0) * fs)
    return x + envelope * noise


def motion(x: np.ndarray, fs: float, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Motion: a few abrupt baseline shifts of ``fraction`` of the range that decay over a second."""
    out = x.copy()
    for _ in range(max(1, int(len(x) / fs / 10))):
        at = int(rng.uniform(0, len(x)))
        decay = np.exp(-np.arange(len(x) - at) / fs)
        out[at:] += rng.choice([-1, 1]) * fraction * _span(x) * decay
    return out


def electrode_pop(x: np.ndarray, fs: float, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """An electrode losing contact: a step of several times the range, recovering over ~0.3 s."""
    out = x.copy()
    at = int(rng.uniform(0.2, 0.8) * len(x))
    out[at:] += fraction * _span(x) * np.exp(-np.arange(len(x) - at) / (0.3 * fs))
    return out


def reversed_lead(x: np.ndarray, fs: float, level: float, rng: np.random.Generator) -> np.ndarray:
    return -x


ARTIFACTS: dict[str, tuple[Callable[[np.ndarray, float, float, np.random.Generator], np.ndarray], float]] = {
    "noise": (white_noise, 20.0),  # SNR dB
    "wander": (baseline_wander, 0.3),  # fraction of the range
    "mains": (mains, 0.1),
    "emg": (emg_bursts, 10.0),  # SNR dB within the bursts
    "motion": (motion, 0.5),
    "pop": (electrode_pop, 5.0),
    "reversed": (reversed_lead, 0.0),
}


def apply(kind: str, x: np.ndarray, fs: float, rng: np.random.Generator, level: float | None = None) -> np.ndarray:
    """``x`` with artifact ``kind`` at ``level`` (its default when None); see :data:`ARTIFACTS`."""
    if kind not in ARTIFACTS:
        raise ValueError(f"unknown artifact {kind!r}; one of {sorted(ARTIFACTS)}")
    function, default = ARTIFACTS[kind]
    return function(np.asarray(x, dtype=np.float64), fs, default if level is None else level, rng)
