import numpy as np
import pytest

from ecgwatch.detection.segmentation import Window
from ecgwatch.detection.templates import MAX_TEMPLATES, Spans, TemplateBank, shift

WINDOW = Window(kind="fixed", seq_len=140, before_s=0.25, after_s=0.45, margin=6)
SPANS = Spans.of(WINDOW)


def beat(width: float, depth: float = -1.0, offset: int = 0) -> np.ndarray:
    """A QRS-like dip at the R position (pointing down, as windows are cut), ``width`` in samples."""
    x = np.arange(WINDOW.length, dtype=float)
    return depth * np.exp(-0.5 * ((x - SPANS.r - offset) / width) ** 2) + 0.2 * np.exp(-0.5 * ((x - 110) / 8) ** 2)


def test_beats_of_one_shape_share_a_template_even_when_shifted() -> None:
    bank = TemplateBank()
    for k in range(40):
        bank.add(beat(3.0, offset=(k % 5) - 2), SPANS, 1.0, 1.0)
    assert len(bank.templates) == 1
    assert bank.members == [40]


def test_a_wide_beat_starts_its_own_template_and_the_on_time_one_stays_dominant() -> None:
    """Bigeminy: as many wide, premature beats as normal ones; the normal one is the device's normal."""
    bank = TemplateBank()
    for _ in range(30):
        bank.add(beat(3.0), SPANS, 1.2, 1.0)  # after a compensatory pause
        bank.add(beat(9.0, depth=-1.4), SPANS, 0.6, 1.6)
    assert len(bank.templates) == 2
    assert bank.dominant() == 0
    assert bank.premature[1] == pytest.approx(0.6)


def test_a_full_bank_forgets_its_least_used_template() -> None:
    bank = TemplateBank()
    for _ in range(20):
        bank.add(beat(3.0), SPANS, 1.0, 1.0)
    x = np.arange(WINDOW.length, dtype=float)
    for k in range(MAX_TEMPLATES + 3):  # each a different pair of lobes within the QRS span
        odd = np.exp(-0.5 * ((x - SPANS.qrs[0] - 3 * k) / 2.0) ** 2) - np.exp(
            -0.5 * ((x - SPANS.qrs[1] + 2 * k) / 2.0) ** 2
        )
        bank.add(odd * (1 + k % 3), SPANS, 1.0, 1.0)
    assert len(bank.templates) == MAX_TEMPLATES
    assert bank.dominant() == 0  # the well-used normal template survives


def test_shift_moves_a_window_and_holds_its_edges() -> None:
    x = np.arange(10.0)
    assert shift(x, 2).tolist() == [2, 3, 4, 5, 6, 7, 8, 9, 9, 9]
    assert shift(x, -1).tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8]


def test_a_minute_of_tachycardia_does_not_become_the_normal_beat_but_a_lasting_change_does() -> None:
    bank = TemplateBank()
    for _ in range(100):
        bank.add(beat(3.0), SPANS, 1.0, 1.0)
        bank.vote(0, 0.02)
    wide = beat(9.0, depth=-1.4)
    for _ in range(120):  # a run of VT: its beats come on time with each other
        found = bank.add(wide, SPANS, 1.0, 1.0)
        bank.vote(found.index, 0.97)
    assert bank.dominant() == 0
    for _ in range(600):  # ten minutes of it: the normal beat has faded, the new one took over
        found = bank.add(wide, SPANS, 1.0, 1.0)
        bank.vote(found.index, 0.97)
    assert bank.dominant() == 1
