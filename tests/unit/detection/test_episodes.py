"""Episodes from a device's beats: what opens them, what closes them, and what they count."""

from __future__ import annotations

from ecgwatch.detection.episodes import DeviceEpisodes, Rules, observe_beat, observe_unreadable

RULES = Rules()


def feed(state: DeviceEpisodes, pattern: str, start: float = 0.0, every: float = 1.0) -> list[dict]:
    """One beat a second: ``N`` normal, ``A`` anomalous, ``u`` unreadable."""
    events = []
    for i, mark in enumerate(pattern):
        events += observe_beat(state, RULES, "d1", start + i * every, mark != "u", mark == "A")
    return events


def kinds(events: list[dict]) -> list[tuple[str, str]]:
    return [(e["kind"], e["type"]) for e in events]


def test_a_run_opens_at_three_anomalous_beats_and_closes_at_the_next_normal() -> None:
    state = DeviceEpisodes()
    assert kinds(feed(state, "NNAA")) == []
    events = feed(state, "ANN", start=4)
    assert kinds(events) == [("run", "start"), ("run", "end")]
    start, end = events
    assert start["id"] == end["id"]
    assert end["ended"] == 5.0
    assert end["beats"] == 1  # the normal beat that ended it
    assert start["started"] == 4.0


def test_unreadable_beats_neither_open_nor_close_runs() -> None:
    state = DeviceEpisodes()
    events = feed(state, "AAuuAN")
    assert kinds(events) == [("run", "start"), ("run", "end")]
    assert events[0]["started"] == 4.0  # the third readable anomalous beat: the unreadable ones do not break it
    assert events[-1]["beats"] == 1


def test_frequent_ectopy_opens_at_six_a_minute_and_closes_below_half() -> None:
    state = DeviceEpisodes()
    scattered = "ANNNN" * 6  # one anomalous beat in five: no run, no bigeminy
    events = feed(state, scattered)
    assert ("frequent_ectopy", "start") in kinds(events)
    assert ("run", "start") not in kinds(events)
    quiet = feed(state, "N" * 60, start=30)
    assert kinds(quiet) == [("frequent_ectopy", "end")]


def test_bigeminy_opens_after_four_pairs_and_closes_when_the_alternation_breaks() -> None:
    state = DeviceEpisodes()
    events = feed(state, "NANANANA")
    assert ("bigeminy", "start") in kinds(events)
    assert ("bigeminy", "end") in kinds(feed(state, "NN", start=8))


def test_updates_while_open_at_most_every_interval() -> None:
    state = DeviceEpisodes()
    events = feed(state, "A" * 200, every=0.5)  # 100 s of anomalous beats
    updates = [e for e in events if e["type"] == "update" and e["kind"] == "run"]
    assert len(updates) == 1  # one after 60 s, none more within 100 s
    assert updates[0]["anomalous"] > 100


def test_signal_lost_after_thirty_seconds_unreadable_until_a_readable_beat() -> None:
    state = DeviceEpisodes()
    assert observe_unreadable(state, RULES, "d1", 100.0, 20.0) == []
    started = observe_unreadable(state, RULES, "d1", 120.0, 20.0)
    assert kinds(started) == [("signal_lost", "start")]
    assert started[0]["started"] == 100.0
    assert kinds(feed(state, "N", start=141)) == [("signal_lost", "end")]


def test_state_survives_serialisation_mid_episode() -> None:
    state = DeviceEpisodes()
    feed(state, "AAA")
    copy = DeviceEpisodes.from_dict(state.to_dict())
    assert kinds(feed(copy, "N", start=3)) == [("run", "end")]
