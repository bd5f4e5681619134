"""A device's beat morphologies: a small bank of templates learnt online, as Holter systems and OSEA keep them.

Each readable beat is matched to the bank by the correlation of its QRS (re-aligned within a few samples) and
by its amplitude; a beat like none of them starts a new template, and the least used is forgotten when the
bank is full. A template follows its members slowly (a lead that shifts, a QRS that grows over an hour), and
keeps how its members came: their mean prematurity and the pause after them.

The **dominant** template is the device's normal beat: the most used of those whose members come on time (so
bigeminy, half its beats ventricular, does not make the PVC the normal) and that the classifier has not been
calling ventricular (so a minute of ventricular tachycardia, whose beats come "on time" with each other, does not
become the normal beat and its beats normal; in record 223 every other beat of a 55 s run was called N). A
template that has outgrown the normal one several times over takes over anyway: a lasting change of the
normal beat (a bundle-branch block that comes and goes, a watch moved) must not stay "ventricular" for hours.
Beats are judged against it, and their template's own history says what the beat's shape has meant so far.

Windows are the fixed windows of :class:`ecgwatch.detection.segmentation.Window`, in the device's units with
its usual QRS pointing down (as the segmentation cuts them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ecgwatch.detection.segmentation import Window

MAX_TEMPLATES = 8
MATCH_CORRELATION = 0.9
MATCH_AMPLITUDE = (0.6, 1.6)  # QRS peak-to-peak against the template's
ALIGN = 6  # samples each way a beat may be re-aligned (about 30 ms at 0.7 s / 139)
FOLLOW = 1 / 16  # a template moves at least this far towards each new member
DECAY = 1 - 1 / 512  # use counts fade over ~500 beats, so a morphology that stopped gives way
ON_TIME = 0.9  # a template whose members come at >= 0.9 of the usual interval, on average, can be dominant
QRS_BEFORE_S, QRS_AFTER_S = 0.10, 0.12
TAKEOVER = 3.0
VOTE_RATE = 1 / 16
SPREAD_PRIOR = 0.05  # a new template's members' spread until it has some (typical of clean normal beats)


@dataclass(frozen=True)
class Spans:
    """Where things sit in a window, in samples: its R peak and the QRS span the bank matches on."""

    r: int
    qrs: tuple[int, int]
    step_s: float

    @classmethod
    def of(cls, window: Window) -> Spans:
        step = (window.before_s + window.after_s) / (window.seq_len - 1)
        r = window.margin + round(window.before_s / step)
        return cls(r, (r - round(QRS_BEFORE_S / step), r + round(QRS_AFTER_S / step)), step)


@dataclass
class Match:
    """Which template a beat joined (or started), how well it matched before joining, and its alignment."""

    index: int
    correlation: float
    lag: int
    new: bool


@dataclass
class TemplateBank:
    """Up to :data:`MAX_TEMPLATES` templates (full windows), with per-template use and rhythm statistics."""

    templates: list[np.ndarray] = field(default_factory=list)
    uses: list[float] = field(default_factory=list)  # decayed member counts
    members: list[int] = field(default_factory=list)  # members ever (sets how fast a template follows)
    premature: list[float] = field(default_factory=list)  # members' mean R-R before / usual
    pause: list[float] = field(default_factory=list)  # members' mean R-R after / usual
    spread: list[float] = field(default_factory=list)  # members' mean RMS distance from it / its QRS size
    votes: list[float] = field(default_factory=list)  # members' recent P(ventricular), from the classifier

    def match(self, window: np.ndarray, spans: Spans) -> Match | None:
        """The best template for ``window`` (by QRS correlation over the alignment range), or None if empty."""
        if not self.templates:
            return None
        lo, hi = spans.qrs
        lagged = np.stack([window[lo + k : hi + k] for k in range(-ALIGN, ALIGN + 1)])
        lagged = _unit(lagged)
        bank = _unit(np.stack([t[lo:hi] for t in self.templates]))
        correlation = lagged @ bank.T  # (lags, templates)
        lag, index = np.unravel_index(int(np.argmax(correlation)), correlation.shape)
        return Match(int(index), float(correlation[lag, index]), int(lag) - ALIGN, False)

    def add(self, window: np.ndarray, spans: Spans, premature: float, pause: float) -> Match:
        """Put a readable beat into the bank: join its template, or start one. Returns where it went."""
        found = self.match(window, spans)
        for k in range(len(self.uses)):
            self.uses[k] *= DECAY
        if found is not None and found.correlation >= MATCH_CORRELATION and self._same_size(window, found, spans):
            k = found.index
            shifted = shift(window, found.lag)
            rate = max(1.0 / (self.members[k] + 1), FOLLOW)
            distance = _distance(shifted, self.templates[k], spans)
            self.spread[k] += max(rate, 1 / 64) * (distance - self.spread[k])
            self.templates[k] = (1 - rate) * self.templates[k] + rate * shifted
            self.uses[k] += 1.0
            self.members[k] += 1
            self.premature[k] += rate * (premature - self.premature[k])
            self.pause[k] += rate * (pause - self.pause[k])
            return found
        if len(self.templates) >= MAX_TEMPLATES:
            self._forget(int(np.argmin(self.uses)))
        self.templates.append(np.asarray(window, dtype=np.float64).copy())
        self.uses.append(1.0)
        self.members.append(1)
        self.premature.append(premature)
        self.pause.append(pause)
        self.spread.append(SPREAD_PRIOR)
        self.votes.append(0.0)
        correlation = found.correlation if found is not None else 1.0
        return Match(len(self.templates) - 1, correlation, 0, True)

    def dominant(self) -> int:
        """The device's normal template: the most used of the on-time ones that are not voted ventricular (the
        most used on-time one if none is left, the most used of all if none is on time); one used
        :data:`TAKEOVER` times more than that wins regardless of its votes."""
        uses = np.asarray(self.uses)
        on_time = np.asarray(self.premature) >= ON_TIME
        normal = on_time & (np.asarray(self.votes) <= 0.5)
        pool = normal if normal.any() else on_time
        best = int(np.argmax(np.where(pool, uses, uses * 1e-3)))
        rival = int(np.argmax(np.where(on_time, uses, uses * 1e-3)))
        return rival if uses[rival] > TAKEOVER * uses[best] else best

    def vote(self, index: int, probability: float) -> None:
        """The classifier's P(ventricular) for a member just classified: what this shape has meant lately."""
        self.votes[index] += VOTE_RATE * (probability - self.votes[index])

    def share(self, index: int) -> float:
        return float(self.uses[index] / max(sum(self.uses), 1e-12))

    def _same_size(self, window: np.ndarray, found: Match, spans: Spans) -> bool:
        lo, hi = spans.qrs
        own = np.ptp(window[lo + found.lag : hi + found.lag])
        ratio = own / max(float(np.ptp(self.templates[found.index][lo:hi])), 1e-12)
        return MATCH_AMPLITUDE[0] < ratio < MATCH_AMPLITUDE[1]

    def _forget(self, k: int) -> None:
        for values in (self.templates, self.uses, self.members, self.premature, self.pause, self.spread, self.votes):
            values.pop(k)


def shift(window: np.ndarray, lag: int) -> np.ndarray:
    """The window moved ``lag`` samples earlier (its sample ``i + lag`` at ``i``), edges held."""
    if lag == 0:
        return np.asarray(window, dtype=np.float64)
    index = np.clip(np.arange(len(window)) + lag, 0, len(window) - 1)
    return np.asarray(window, dtype=np.float64)[index]


def _distance(window: np.ndarray, template: np.ndarray, spans: Spans) -> float:
    """RMS of window - template (each mean removed), in units of the template's QRS peak-to-peak."""
    lo, hi = spans.qrs
    a, b = window - window.mean(), template - template.mean()
    return float(np.sqrt(np.mean((a - b) ** 2)) / max(float(np.ptp(template[lo:hi])), 1e-9))


def _unit(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=-1, keepdims=True)
    return centred / (np.linalg.norm(centred, axis=-1, keepdims=True) + 1e-12)
