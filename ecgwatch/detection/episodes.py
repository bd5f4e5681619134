"""Episodes: what a person on call needs, from a device's beats in time order.

A fleet cannot page on single beats: at a 1% per-beat false-alarm rate, 100,000 watches would raise about
1,000 anomaly events a second. Episodes open on persistent patterns, with defaults from clinical usage:

- ``frequent_ectopy``: >= 6 anomalous beats within a minute (ends when fewer than half that remain);
- ``run``: >= 3 anomalous beats in a row (ends at the next normal beat);
- ``bigeminy``: >= 4 normal-anomalous pairs in a row (ends when the alternation breaks);
- ``signal_lost``: >= 30 s of received signal with no readable beat (ends at the next readable one);
- ``atrial_fibrillation``: while the device's rhythm is irregularly irregular (:mod:`ecgwatch.detection.rhythm`).

Each episode emits ``start``, ``update`` (at most every ``update_interval_s`` while it grows) and ``end``
events, with a stable id, as Frigate does for its events. Unreadable beats neither open nor close the
ectopy kinds: they are counted, not judged.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("frequent_ectopy", "run", "bigeminy", "signal_lost", "atrial_fibrillation")
WINDOW_S = 60.0


@dataclass(frozen=True)
class Rules:
    ectopy_per_minute: int = 6
    run_beats: int = 3
    bigeminy_cycles: int = 4
    signal_lost_s: float = 30.0
    update_interval_s: float = 60.0


@dataclass
class Episode:
    id: str
    kind: str
    started: float
    beats: int = 0
    anomalous: int = 0
    last_update: float = 0.0


@dataclass
class DeviceEpisodes:
    """One device's rolling evidence and open episodes (persisted with its track)."""

    anomalous_times: list[float] = field(default_factory=list)  # within the last WINDOW_S
    consecutive: int = 0
    pattern: list[bool] = field(default_factory=list)  # recent readable beats: anomalous or not
    unreadable_s: float = 0.0  # received signal since the last readable beat
    unreadable_since: float | None = None
    open: dict[str, Episode] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "open": {k: asdict(e) for k, e in self.open.items()}}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> DeviceEpisodes:
        return cls(**{**state, "open": {k: Episode(**e) for k, e in state["open"].items()}})


Event = dict[str, Any]


def observe_beat(
    state: DeviceEpisodes,
    rules: Rules,
    device: str,
    t: float,
    readable: bool,
    anomalous: bool,
    fibrillation: bool = False,
) -> list[Event]:
    """Fold one beat (in time order) into the device's episodes; returns the events it causes."""
    events: list[Event] = []
    for episode in state.open.values():
        episode.beats += 1
        episode.anomalous += anomalous
    if not readable:
        return events
    events += _close(state, device, "signal_lost", t)
    state.unreadable_s, state.unreadable_since = 0.0, None
    state.anomalous_times = [x for x in state.anomalous_times if x > t - WINDOW_S] + ([t] if anomalous else [])
    state.consecutive = state.consecutive + 1 if anomalous else 0
    state.pattern = ([*state.pattern, anomalous])[-2 * rules.bigeminy_cycles :]
    per_minute = len(state.anomalous_times)
    events += _condition(state, rules, device, "frequent_ectopy", t, per_minute >= rules.ectopy_per_minute,
                         per_minute < (rules.ectopy_per_minute + 1) // 2)  # fmt: skip
    events += _condition(state, rules, device, "run", t, state.consecutive >= rules.run_beats, not anomalous)
    alternating = _alternating(state.pattern)
    bigeminy = len(state.pattern) == 2 * rules.bigeminy_cycles and alternating
    events += _condition(state, rules, device, "bigeminy", t, bigeminy, not _alternating(state.pattern[-3:]))
    events += _condition(state, rules, device, "atrial_fibrillation", t, fibrillation, not fibrillation)
    return events


def observe_unreadable(state: DeviceEpisodes, rules: Rules, device: str, start: float, seconds: float) -> list[Event]:
    """A stretch of received signal (a strip) in which nothing was readable."""
    state.unreadable_since = state.unreadable_since if state.unreadable_since is not None else start
    state.unreadable_s += seconds
    lost = state.unreadable_s >= rules.signal_lost_s
    return _condition(state, rules, device, "signal_lost", start + seconds, lost, False, state.unreadable_since)


def _alternating(flags: list[bool]) -> bool:
    return len(flags) >= 2 and all(a != b for a, b in itertools.pairwise(flags))


def _condition(
    state: DeviceEpisodes,
    rules: Rules,
    device: str,
    kind: str,
    t: float,
    holds: bool,
    over: bool,
    since: float | None = None,
) -> list[Event]:
    episode = state.open.get(kind)
    if episode is None:
        if not holds:
            return []
        started = t if since is None else since
        episode = Episode(f"{device}/{kind}/{started:.3f}", kind, started, last_update=t)
        state.open[kind] = episode
        return [_event("start", device, episode, None)]
    if over:
        return _close(state, device, kind, t)
    if t - episode.last_update >= rules.update_interval_s:
        episode.last_update = t
        return [_event("update", device, episode, None)]
    return []


def _close(state: DeviceEpisodes, device: str, kind: str, t: float) -> list[Event]:
    episode = state.open.pop(kind, None)
    return [] if episode is None else [_event("end", device, episode, t)]


def _event(kind: str, device: str, episode: Episode, ended: float | None) -> Event:
    return {
        "type": kind,
        "id": episode.id,
        "kind": episode.kind,
        "device_id": device,
        "started": round(episode.started, 3),
        "ended": None if ended is None else round(ended, 3),
        "beats": episode.beats,
        "anomalous": episode.anomalous,
    }
