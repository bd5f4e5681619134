import numpy as np

from ecgwatch.detection.rhythm import AF_MIN, Rhythm


def feed(rhythm: Rhythm, intervals: np.ndarray, dominant: bool = True) -> None:
    for rr in intervals:
        rhythm.observe(float(rr), dominant, "N")


def test_prematurity_is_measured_against_the_dominant_beats_intervals() -> None:
    rhythm = Rhythm()
    feed(rhythm, np.full(20, 1.0))
    timing = rhythm.timing(0.6, 1.4)
    assert timing.premature == 0.6
    assert timing.pause == 1.4
    assert timing.ratio == 1.4 / 0.6


def test_irregularly_irregular_intervals_are_fibrillation_and_sinus_rhythm_is_not() -> None:
    rng = np.random.default_rng(0)
    sinus, fibrillating = Rhythm(), Rhythm()
    feed(sinus, 0.8 + 0.02 * np.sin(np.arange(60) / 3))  # respiratory sinus arrhythmia
    feed(fibrillating, rng.uniform(0.4, 1.0, 60))
    assert not sinus.fibrillation
    assert fibrillating.fibrillation
    feed(fibrillating, np.full(60, 0.7))  # back to a regular rhythm
    assert not fibrillating.fibrillation


def test_ectopic_beats_do_not_make_a_regular_rhythm_irregular() -> None:
    """Bigeminy: every other beat early, then a pause; only dominant-to-dominant intervals count."""
    rhythm = Rhythm()
    for _ in range(AF_MIN * 3):
        rhythm.observe(1.2, True, "N")  # the pause after the ectopic beat ends in a normal beat ...
        rhythm.observe(0.6, False, "V")  # ... whose interval started at an ectopic one
    assert not rhythm.fibrillation
