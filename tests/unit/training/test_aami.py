import numpy as np

from ecgwatch.datasets.mitbih import Record, RhythmSpan
from training.aami import Detections, rates, score, total


def record() -> Record:
    """Ten minutes at 1 beat/s (360 Hz); beats from 300 s on count. An AF stretch from 400 s to 500 s."""
    beats = np.arange(1, 600) * 360
    symbols = np.array(["N"] * len(beats))
    symbols[[350, 360, 370]] = "V"
    symbols[380] = "A"
    symbols[390] = "F"
    rhythms = (
        RhythmSpan(0, 400 * 360, "N"),
        RhythmSpan(400 * 360, 500 * 360, "AFIB"),
        RhythmSpan(500 * 360, 601 * 360, "N"),
    )
    return Record("t", np.zeros(601 * 360), 360.0, beats, symbols, rhythms)


def test_ec57_counts_from_a_detector_that_misses_one_pvc_and_flags_a_normal_beat_in_af() -> None:
    rec = record()
    t = rec.beats / rec.fs + 0.05  # within 150 ms
    classes = np.array(["N"] * len(t), dtype=object)
    classes[[350, 360]] = "V"  # 370 missed
    classes[390] = "V"  # fusion called V
    classes[450] = "V"  # a normal beat in AF
    classes[380] = "S"
    classes[500] = None  # unreadable
    keep = np.ones(len(t), dtype=bool)
    keep[520] = False  # one beat not found
    extra = np.array([455.5])  # one detection between beats, called V
    det = Detections(np.concatenate([t[keep], extra]), np.concatenate([classes[keep], np.array(["V"], dtype=object)]))
    c = score(rec, det)
    assert c["annotated"] == 300  # 299 s .. 599 s
    assert c["matched"] == 299
    assert c["found"] == 300
    assert (c["v"], c["v_caught"]) == (3, 2)
    assert c["called_v"] == 5  # 2 V + F + N + the stray one
    assert c["called_v_not_fusion"] == 4
    assert (c["n_af"], c["n_af_flagged"]) == (100, 1)
    assert (c["s"], c["s_caught"]) == (1, 1)
    assert c["unreadable"] == 1
    r = rates(total([c, c]))
    assert r["veb_se"] == 2 / 3
    assert r["veb_pp"] == 2 / 5
    assert r["veb_pp_ec57"] == 2 / 4
