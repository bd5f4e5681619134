"""Episodes from a device's classified beats: onset, hysteresis, the gap that stops flapping, counts, severity."""

from __future__ import annotations

import pytest

from ecgwatch.detection.episodes import DeviceEpisodes, Rules, close_all, observe_beat, observe_unreadable

RULES = Rules()


def feed(state: DeviceEpisodes, pattern: str, start: float = 0.0, every: float = 0.5, af: bool = False) -> list[dict]:
    """One beat every ``every`` s (120/min by default): ``N``, ``S``, ``V``, or ``u`` unreadable."""
    events = []
    for i, mark in enumerate(pattern):
        cls = None if mark == "u" else mark
        events += observe_beat(state, RULES, "d1", start + i * every, cls, every, af)
    return events


def kinds(events: list[dict]) -> list[tuple[str, str]]:
    return [(e["kind"], e["type"]) for e in events]


def test_ventricular_tachycardia_starts_at_its_first_beat_and_counts_every_beat() -> None:
    state = DeviceEpisodes()
    events = feed(state, "NNNVVVVNN")
    assert kinds(events) == [("ventricular_tachycardia", "start")]
    start = events[0]
    assert start["started"] == 1.5  # the first V, not the third
    assert (start["beats"], start["anomalous"]) == (3, 3)  # the beats that opened it
    assert start["severity"] == "critical"
    ended = feed(state, "N" * 700, start=4.5)  # more than the 300 s gap later
    end = next(e for e in ended if e["type"] == "end")
    assert end["id"] == start["id"]
    assert end["ended"] == 3.0  # the last V
    assert (end["beats"], end["anomalous"]) == (4, 4)
    assert end["duration_s"] == 1.5


def test_runs_within_the_gap_are_one_episode_and_runs_beyond_it_two() -> None:
    state = DeviceEpisodes()
    events = feed(state, "NNVVVNNNNNNNNNNVVVVNN")  # two runs 5 s apart
    events += feed(state, "N" * 700, start=10.5)  # 350 s of normal beats
    events += feed(state, "VVV", start=400.0)
    assert kinds(events) == [
        ("ventricular_tachycardia", "start"),
        ("ventricular_tachycardia", "end"),
        ("ventricular_tachycardia", "start"),
    ]
    assert events[1]["anomalous"] == 7  # both runs in the one episode


def test_slow_ventricular_runs_are_not_tachycardia() -> None:
    state = DeviceEpisodes()
    assert feed(state, "NNVVVNN", every=0.8) == []  # 75/min


def test_bigeminy_that_breaks_for_a_beat_goes_on() -> None:
    """The flapping seen from outside: 112 bigeminy episodes an hour, a new one at every broken pair."""
    state = DeviceEpisodes()
    pattern = "NVNVNV" + "NN" + "NVNVNVNVNV" + "NN" + "NVNVNV" + "NNNN" + "NVNVNVNVNVNVNVNVNVNV"
    events = feed(state, pattern, every=0.8)  # 43 s: past bigeminy's 30 s minimum
    assert kinds(events) == [("bigeminy", "start")]
    assert events[0]["started"] == 0.0
    events = feed(state, "N" * 400, start=50.0, every=0.8)
    assert kinds(events) == [("bigeminy", "end")]
    assert events[0]["anomalous"] == 21


def test_trigeminy() -> None:
    state = DeviceEpisodes()
    events = feed(state, "NNV" * 14, every=0.8)  # 33 s
    assert kinds(events) == [("trigeminy", "start")]
    assert events[0]["started"] == 0.0
    assert (events[0]["beats"], events[0]["anomalous"]) == (39, 13)


def test_atrial_fibrillation_is_published_after_its_minimum_dated_from_its_onset_and_escalates() -> None:
    state = DeviceEpisodes()
    feed(state, "N" * 40)
    events = feed(state, "N" * 80, start=20.0, af=True)  # 40 s of AF: under the 60 s minimum
    assert events == []
    events = feed(state, "N" * 80, start=60.0, af=True)
    start = next(e for e in events if e["type"] == "start")
    assert start["kind"] == "atrial_fibrillation"
    assert start["started"] == pytest.approx(20.0 - 19 * 0.5)  # backdated: the detector turns late
    assert start["severity"] == "info"
    events = feed(state, "N" * 600, start=100.0, af=True)  # five more minutes
    assert [e["severity"] for e in events if e["type"] == "update"][-1] == "warning"


def test_a_short_burst_of_fibrillation_is_never_published() -> None:
    state = DeviceEpisodes()
    events = feed(state, "N" * 100, af=True) + feed(state, "N" * 800, start=50.0)
    assert events == []


def test_pauses_in_readable_signal() -> None:
    state = DeviceEpisodes()
    feed(state, "N" * 10, every=1.0)
    events = observe_beat(state, RULES, "d1", 12.6, "N", 2.6)
    assert kinds(events) == [("pause", "start")]
    assert events[0]["started"] == pytest.approx(10.0)
    assert events[0]["severity"] == "warning"
    events = observe_beat(state, RULES, "d1", 16.0, "N", 3.4)  # a longer one within the gap: same, critical
    assert kinds(events) == [("pause", "update")]
    assert events[0]["severity"] == "critical"


def test_frequent_ectopy_needs_a_minute_of_it() -> None:
    state = DeviceEpisodes()
    scattered = "VNNNNNNNNN" * 50  # one PVC in ten at 120/min: 12 a minute, no pattern, for 250 s
    assert feed(state, scattered) == []
    events = feed(state, scattered, start=250.0)  # another 250 s of it: past the 5 minute minimum
    assert kinds(events)[0] == ("frequent_ectopy", "start")
    assert {k for k in kinds(events)[1:]} == {("frequent_ectopy", "update")}  # a minute apart
    assert events[0]["started"] == 0.0


def test_unreadable_beats_neither_open_nor_close() -> None:
    state = DeviceEpisodes()
    events = feed(state, "NNVVuVN", every=0.3)
    assert kinds(events) == [("ventricular_tachycardia", "start")]
    assert events[0]["started"] == pytest.approx(0.6)


def test_signal_lost_after_thirty_seconds_unreadable_until_a_readable_beat() -> None:
    state = DeviceEpisodes()
    assert observe_unreadable(state, RULES, "d1", 100.0, 20.0) == []
    started = observe_unreadable(state, RULES, "d1", 120.0, 20.0)
    assert kinds(started) == [("signal_lost", "start")]
    assert started[0]["started"] == 100.0
    assert feed(state, "N", start=141) == []  # signal is back: it ends unless lost again within its gap
    events = feed(state, "N" * 260, start=142)
    assert kinds(events) == [("signal_lost", "end")]
    assert events[0]["ended"] == 140.0


def test_a_device_that_goes_quiet_ends_its_episodes() -> None:
    state = DeviceEpisodes()
    feed(state, "NNVVVV")
    assert kinds(close_all(state, RULES, "d1", 10.0)) == [("ventricular_tachycardia", "end")]
    assert state.open == {}


def test_state_survives_serialisation_mid_episode() -> None:
    state = DeviceEpisodes()
    feed(state, "NNVVV")
    copy = DeviceEpisodes.from_dict(state.to_dict())
    events = feed(copy, "N" * 700, start=3.0)
    assert kinds(events) == [("ventricular_tachycardia", "end")]
