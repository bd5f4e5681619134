"""A device's rhythm: the usual R-R interval that prematurity is measured against, and atrial fibrillation.

**Usual interval.** The median of the last :data:`HISTORY` intervals that ended in a beat of the device's
dominant shape (its normal beat, :mod:`ecgwatch.detection.templates`). Before, every interval counted, so in
bigeminy the "usual" interval was half couplings and half pauses, and a PVC looked barely premature; counting
only beats *classified* normal instead stuck the reference at the old rate when a tachycardia set in.

**Atrial fibrillation** is an irregularly irregular rhythm: successive intervals differ by a large share of the
interval itself, beat after beat. The statistic is the median of ``|RR_i - RR_(i-1)|`` over the last
:data:`AF_WINDOW` intervals between two beats of the dominant shape (so an ectopic beat and the pause after
it never count, whether or not the classifier caught it), divided by their median interval: a median-filtered
irregularity in the spirit of Petrenas et al. (2015, "Low-complexity detection of atrial fibrillation in
continuous long-term monitoring"), which ignores the isolated ectopic beat that a mean would not. On the 29
MIT-BIH records it sits at 0.13-0.31 (5th-95th percentile) in atrial fibrillation and below 0.05 in 95% of
the other rhythms; AF starts above :data:`AF_ON` and ends below :data:`AF_OFF`.

While a device is in AF, prematurity says nothing (every beat is early or late): the beat classifier then
judges by shape alone, and no beat is called supraventricular.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

HISTORY = 16
AF_WINDOW = 40
AF_MIN = 20  # intervals before irregularity is judged at all
AF_ON, AF_OFF = 0.10, 0.07


def median(values: Iterable[float]) -> float:
    """The median of a few dozen floats: numpy's costs ten times more on lists this short, on every beat."""
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


@dataclass(frozen=True)
class Timing:
    """A beat's intervals against the device's usual one (NaN where unknown)."""

    premature: float  # R-R before / usual
    pause: float  # R-R after / usual
    ratio: float  # R-R after / R-R before
    local: float  # R-R before / the mean of the last four intervals
    irregularity: float  # the AF statistic as it stood before this beat

    def vector(self) -> list[float]:
        return [self.premature, self.pause, self.ratio, self.local, self.irregularity]


NAMES = ("premature", "pause", "ratio", "local", "irregularity")


@dataclass
class Rhythm:
    """R-R history of one device (persisted with its state)."""

    normal: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))  # ending in a dominant-shape beat
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))  # any readable beat's
    regular: deque[float] = field(default_factory=lambda: deque(maxlen=AF_WINDOW))  # between dominant-shape beats
    fibrillation: bool = False
    last_dominant: bool = False  # the last readable beat had the dominant shape

    def timing(self, rr_before: float | None, rr_after: float | None) -> Timing:
        usual = self.usual(rr_before)
        before = np.nan if rr_before is None or usual is None else rr_before / usual
        after = np.nan if rr_after is None or usual is None else rr_after / usual
        ratio = np.nan if rr_before is None or rr_after is None or rr_before <= 0 else rr_after / rr_before
        last = list(self.recent)[-4:]
        local = np.nan if rr_before is None or not last else rr_before / (sum(last) / len(last))
        return Timing(before, after, ratio, local, self.irregularity())

    def overall(self, rr_before: float | None) -> float:
        """``rr_before`` against the median of every recent interval, whatever the beats' shapes: how a
        template's members come, which decides which template is the device's normal one."""
        if rr_before is None or not self.recent:
            return 1.0
        return rr_before / median(self.recent)

    def usual(self, fallback: float | None = None) -> float | None:
        if self.normal:
            return median(self.normal)
        if self.recent:
            return median(self.recent)
        return fallback

    def irregularity(self) -> float:
        if len(self.regular) < AF_MIN:
            return np.nan
        intervals = list(self.regular)
        return median([abs(b - a) for a, b in itertools.pairwise(intervals)]) / median(intervals)

    def observe(self, rr_before: float | None, dominant: bool, beat_class: str) -> None:
        """Fold a readable beat in, once it has been classified (N, S, V, or "?" while enrolling)."""
        if rr_before is not None and rr_before > 0:
            self.recent.append(rr_before)
            if dominant and beat_class != "V":
                self.normal.append(rr_before)
            if dominant and self.last_dominant:
                self.regular.append(rr_before)
        self.last_dominant = dominant
        irregular = self.irregularity()
        if not np.isnan(irregular):
            self.fibrillation = irregular > AF_ON if not self.fibrillation else irregular >= AF_OFF
