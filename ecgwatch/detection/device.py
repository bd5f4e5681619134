"""One device's detector: its template bank, its rhythm and the classifier, beat by beat in time order.

The daemon's publishing thread and training's evaluation both run :meth:`DeviceDetector.step` on every beat
of a device in time order, so a beat is classified the same way offline and in service. A readable beat
joins the bank and the rhythm history; after enrolment it is classified from its features:

- **V** (ventricular ectopic) when the classifier's probability passes its threshold. While the device is in
  atrial fibrillation a stricter threshold applies: the classifier sees the irregularity and weighs timing
  less, and a classifier without timing features did worse on the fibrillating people of DS1 (V sensitivity
  0.59 against 0.75, leave one person out).
- **S** (supraventricular ectopic) when its shape is the device's normal one, it comes at most
  :data:`S_PREMATURE` of the usual interval, with a pause after it, and the device is not fibrillating.
- **N** otherwise. Unreadable beats get no class: they are not judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ecgwatch.detection import features
from ecgwatch.detection.classifier import Trees
from ecgwatch.detection.rhythm import Rhythm, Timing
from ecgwatch.detection.segmentation import FoundBeat, Window
from ecgwatch.detection.templates import Spans, TemplateBank

S_PREMATURE = 0.75  # an S beat comes at <= 75% of the usual interval ...
S_PAUSE = 1.1  # ... and is followed by a longer one
S_SHAPE = 0.95  # ... with the normal QRS


@dataclass(frozen=True)
class Classifiers:
    """The tree ensemble and its operating points (shipped in the model artifact)."""

    trees: Trees  # P(V) from features.NAMES
    threshold: float  # P(V) above which a beat is V
    fibrillation_threshold: float  # the same while the device is in atrial fibrillation


@dataclass(frozen=True)
class Verdict:
    """What the detector says of one beat (``beat_class`` None: unreadable or enrolling, not judged)."""

    beat_class: str | None
    probability: float | None  # P(ventricular) from the classifier in use
    fibrillation: bool
    timing: Timing | None
    features: np.ndarray | None  # in features.NAMES order, for training and for the event's terms
    template: int | None = None  # the template the beat joined


@dataclass
class DeviceDetector:
    window: Window
    bank: TemplateBank = field(default_factory=TemplateBank)
    rhythm: Rhythm = field(default_factory=Rhythm)
    run: int = 0  # readable beats in a row outside the dominant template

    @property
    def spans(self) -> Spans:
        return Spans.of(self.window)

    def step(
        self,
        beat: FoundBeat,
        ae: tuple[float, float] | None,
        classifiers: Classifiers | None,
        label: str | None = None,
    ) -> Verdict:
        """Fold one beat in. ``ae``: the autoencoder's (morphology, embedding) terms once the device is fitted;
        ``classifiers`` None while enrolling (the bank and rhythm still learn); ``label``: the annotated
        class, which training uses in place of the prediction for the rhythm's history."""
        fibrillation = self.rhythm.fibrillation
        if beat.quality != "ok" or beat.window is None:
            return Verdict(None, None, fibrillation, None, None)
        timing = self.rhythm.timing(beat.rr_s, beat.rr_next_s)
        pause = 1.0 if np.isnan(timing.pause) else timing.pause
        match = self.bank.add(beat.window, self.spans, self.rhythm.overall(beat.rr_s), pause)
        dominant = match.index == self.bank.dominant()
        self.run = 0 if dominant else self.run + 1
        x = features.vector(beat.window, self.bank, match, self.spans, timing, ae or (np.nan, np.nan), self.run)
        if classifiers is None or ae is None:
            beat_class, probability = None, None
        else:
            beat_class, probability = _classify(x, timing, fibrillation, classifiers)
        if label is not None or probability is not None:
            self.bank.vote(match.index, float(label == "V") if label is not None else float(probability or 0.0))
        self.rhythm.observe(beat.rr_s, dominant, label or beat_class or "?")
        return Verdict(beat_class, probability, fibrillation, timing, x, match.index)


INDEX = {name: k for k, name in enumerate(features.NAMES)}


def _classify(x: np.ndarray, timing: Timing, fibrillation: bool, classifiers: Classifiers) -> tuple[str, float]:
    probability = float(classifiers.trees.probability(x)[0])
    if probability > (classifiers.fibrillation_threshold if fibrillation else classifiers.threshold):
        return "V", probability
    if fibrillation:
        return "N", probability
    normal_shape = x[INDEX["correlation"]] >= S_SHAPE and x[INDEX["template_dominant"]] == 1.0
    if normal_shape and timing.premature <= S_PREMATURE and timing.pause >= S_PAUSE:
        return "S", probability
    return "N", probability
