"""Episodes: what a person on call needs, from a device's classified beats in time order.

A fleet cannot page on single beats. Episodes are the rhythms cardiologists annotate (the MIT-BIH rhythm
labels in brackets), each with an onset rule, an offset rule, and hysteresis:

| kind | onset | continues while | label |
|---|---|---|---|
| ``ventricular_tachycardia`` | >= 3 V beats in a row at >= 100/min | V beats follow | ``(VT`` |
| ``svt`` | >= 3 S beats in a row at >= 100/min | S beats follow | ``(SVTA`` |
| ``bigeminy`` | >= 3 N-V pairs in a row | the last 4 beats alternate | ``(B`` |
| ``trigeminy`` | >= 3 N-N-V triples in a row | the last 6 beats repeat it | ``(T`` |
| ``atrial_fibrillation`` | irregularly irregular (:mod:`ecgwatch.detection.rhythm`) | it lasts | ``(AFIB``, ``(AFL`` |
| ``bradycardia``, ``tachycardia`` | the last 30 s below / above the limit | within 10% / 8% of it | ``(SBR`` |
| ``pause`` | no beat for >= 2.5 s in readable signal | another pause follows | |
| ``frequent_ectopy`` | >= 6 ectopic beats within a minute | an ectopic beat with >= 3 in its minute | |
| ``signal_lost`` | >= 30 s of signal with no readable beat | more unreadable signal | |

**No flapping.** When a kind's condition lapses, its episode waits for the kind's *gap* (2-15 minutes) before it
ends: if the condition comes back meanwhile, the same episode goes on. Its ``ended`` is when the condition last
held, and its ``beats`` and ``anomalous`` count every beat from its first to then. An episode is only published
once it has lasted its kind's minimum duration; one that ends sooner is dropped without a word.

**Severity.** ``critical`` for ventricular tachycardia and pauses of >= 3 s, ``warning`` for svt, other pauses
and atrial fibrillation once it has lasted :attr:`Rules.fibrillation_warning_s`; ``info`` for the rest. Alert
rules page on ``warning`` and up (deploy/prometheus). Each episode emits ``start``, ``update`` (at most every
``update_interval_s``, and when its severity rises) and ``end`` events, with a stable id.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = (
    "ventricular_tachycardia", "svt", "bigeminy", "trigeminy", "atrial_fibrillation", "bradycardia", "tachycardia",
    "pause", "frequent_ectopy", "signal_lost",
)  # fmt: skip
SEVERITIES = ("info", "warning", "critical")
ECTOPY_WINDOW_S = 60.0
RATE_WINDOW_S = 30.0
AF_BACKDATE = 20  # beats: the irregularity statistic turns about half its window after the rhythm does


@dataclass(frozen=True)
class KindRules:
    """How one kind is published: it waits ``gap_s`` before ending, and is only published at ``min_s``."""

    gap_s: float
    min_s: float
    severity: str


# Gaps and minimum durations: long enough that a device with frequent ectopy opens an episode of a kind once in a
# stretch, not at every broken pattern (measured on the shared records: docs/episodes.md).
DEFAULT_KINDS = {
    "ventricular_tachycardia": KindRules(300.0, 0.0, "critical"),
    "svt": KindRules(300.0, 0.0, "warning"),
    "bigeminy": KindRules(300.0, 30.0, "info"),
    "trigeminy": KindRules(300.0, 30.0, "info"),
    "atrial_fibrillation": KindRules(180.0, 60.0, "info"),
    "bradycardia": KindRules(300.0, 60.0, "info"),
    "tachycardia": KindRules(300.0, 60.0, "info"),
    "pause": KindRules(600.0, 0.0, "warning"),
    "frequent_ectopy": KindRules(900.0, 300.0, "info"),
    "signal_lost": KindRules(120.0, 0.0, "info"),
}


@dataclass(frozen=True)
class Rules:
    ectopy_per_minute: int = 6
    run_beats: int = 3
    run_rate_bpm: float = 100.0
    bigeminy_cycles: int = 3
    trigeminy_cycles: int = 3
    bradycardia_bpm: float = 40.0
    tachycardia_bpm: float = 130.0
    pause_s: float = 2.5
    pause_critical_s: float = 3.0
    fibrillation_warning_s: float = 300.0
    signal_lost_s: float = 30.0
    update_interval_s: float = 60.0
    kinds: dict[str, KindRules] = field(default_factory=lambda: dict(DEFAULT_KINDS))


@dataclass
class Episode:
    id: str
    kind: str
    started: float
    held: float  # when its condition last held
    beats: int = 0  # from the first beat to ``held``
    anomalous: int = 0
    pending_beats: int = 0  # counted since ``held``: they join only if the condition comes back
    pending_anomalous: int = 0
    published: bool = False
    severity: str = "info"
    longest_s: float = 0.0  # pause: the longest silence in it
    last_update: float = 0.0


@dataclass
class DeviceEpisodes:
    """One device's rolling evidence and open episodes (persisted with its state)."""

    recent: list[tuple[float, str]] = field(default_factory=list)  # last readable beats: (t, class)
    ectopic_times: list[float] = field(default_factory=list)  # within the last ECTOPY_WINDOW_S
    beat_times: list[float] = field(default_factory=list)  # readable beats within RATE_WINDOW_S
    unreadable_s: float = 0.0  # received signal since the last readable beat
    unreadable_since: float | None = None
    open: dict[str, Episode] = field(default_factory=dict)
    closed: dict[str, float] = field(default_factory=dict)  # per kind: when its last published episode ended
    readable_times: list[float] = field(default_factory=list)  # of the beats in the rate window, the readable

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "open": {k: asdict(e) for k, e in self.open.items()}}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> DeviceEpisodes:
        return cls(
            recent=[(float(t), str(c)) for t, c in state["recent"]],
            ectopic_times=list(state["ectopic_times"]),
            beat_times=list(state["beat_times"]),
            unreadable_s=float(state["unreadable_s"]),
            unreadable_since=state["unreadable_since"],
            open={k: Episode(**e) for k, e in state["open"].items()},
            closed=dict(state["closed"]),
            readable_times=list(state["readable_times"]),
        )


Event = dict[str, Any]
HISTORY = 24  # readable beats kept: the patterns' and the AF onset's


def observe_beat(
    state: DeviceEpisodes,
    rules: Rules,
    device: str,
    t: float,
    beat_class: str | None,
    rr_s: float | None = None,
    fibrillation: bool = False,
) -> list[Event]:
    """Fold one beat (in time order) into the device's episodes; returns the events it causes.

    ``beat_class``: N, S or V, or None for a beat that was not judged (unreadable, enrolling), which is counted
    but neither opens nor closes anything; ``rr_s``: the interval before it within one run of signal.
    """
    for episode in state.open.values():
        episode.pending_beats += 1
        episode.pending_anomalous += beat_class in ("S", "V")
    state.beat_times = [x for x in state.beat_times if x > t - RATE_WINDOW_S] + [t]
    state.readable_times = [x for x in state.readable_times if x > t - RATE_WINDOW_S]
    if beat_class is None:
        return _expire(state, rules, device, t)
    events: list[Event] = []
    state.unreadable_s, state.unreadable_since = 0.0, None
    state.readable_times.append(t)
    state.recent = [*state.recent, (t, beat_class)][-HISTORY:]
    ectopic = beat_class in ("S", "V")
    state.ectopic_times = [x for x in state.ectopic_times if x > t - ECTOPY_WINDOW_S] + ([t] if ectopic else [])
    for kind, opened_at in _onsets(state, rules, t, rr_s, fibrillation).items():
        events += _hold(state, rules, device, kind, opened_at, t, rr_s)
    return events + _expire(state, rules, device, t)


def observe_unreadable(state: DeviceEpisodes, rules: Rules, device: str, start: float, seconds: float) -> list[Event]:
    """A stretch of received signal (a strip) in which nothing was readable."""
    state.unreadable_since = state.unreadable_since if state.unreadable_since is not None else start
    state.unreadable_s += seconds
    events = []
    if state.unreadable_s >= rules.signal_lost_s:
        events += _hold(state, rules, device, "signal_lost", state.unreadable_since, start + seconds, None)
    return events + _expire(state, rules, device, start + seconds)


def close_all(state: DeviceEpisodes, rules: Rules, device: str, t: float) -> list[Event]:
    """The device went quiet: every open episode ends now (at when it last held)."""
    return [e for kind in list(state.open) for e in _end(state, device, kind)]


def _onsets(state: DeviceEpisodes, rules: Rules, t: float, rr_s: float | None, fibrillation: bool) -> dict[str, float]:
    """Every kind whose condition holds at this beat, with when its episode would have started."""
    held: dict[str, float] = {}
    classes = [c for _, c in state.recent]
    times = [x for x, _ in state.recent]
    for kind, letter in (("ventricular_tachycardia", "V"), ("svt", "S")):
        run = _run_length(classes, letter)
        if run >= rules.run_beats and _rate(times[-run:]) >= rules.run_rate_bpm:
            held[kind] = times[-run]
    for kind, unit, cycles in (("bigeminy", "NV", rules.bigeminy_cycles), ("trigeminy", "NNV", rules.trigeminy_cycles)):
        opening = len(unit) * cycles
        if "".join(classes[-opening:]) == unit * cycles:
            held[kind] = times[-opening]
        elif kind in state.open and "".join(classes[-2 * len(unit) :]) in _rotations(unit * 2):
            held[kind] = t
    if fibrillation:
        backdated = times[-min(AF_BACKDATE, len(times))]
        held["atrial_fibrillation"] = backdated if "atrial_fibrillation" not in state.open else t
    # The rate counts every beat found, readable or not (missing the unreadable ones read as bradycardia), and
    # only where most of them could be read (else the beats found in noise are not a rate).
    steady = len(state.readable_times) >= 0.8 * len(state.beat_times)
    spanned = state.beat_times[-1] - state.beat_times[0] >= RATE_WINDOW_S / 2
    rate = _rate(state.beat_times) if steady and spanned else None
    if rate is not None:
        low, high = rules.bradycardia_bpm, rules.tachycardia_bpm
        if rate < low or ("bradycardia" in state.open and rate < low * 1.1):
            held["bradycardia"] = state.beat_times[0] if "bradycardia" not in state.open else t
        if rate > high or ("tachycardia" in state.open and rate > high * 0.92):
            held["tachycardia"] = state.beat_times[0] if "tachycardia" not in state.open else t
    if rr_s is not None and rr_s >= rules.pause_s:
        held["pause"] = t - rr_s
    ectopic = len(state.ectopic_times)
    if state.ectopic_times and state.ectopic_times[-1] == t:  # it lasts from its first ectopic beat to its last
        open_ = state.open.get("frequent_ectopy")
        if ectopic >= rules.ectopy_per_minute:
            held["frequent_ectopy"] = state.ectopic_times[0] if open_ is None else t
        elif open_ is not None and open_.published and ectopic >= (rules.ectopy_per_minute + 1) // 2:
            held["frequent_ectopy"] = t
    return held


def _hold(
    state: DeviceEpisodes, rules: Rules, device: str, kind: str, started: float, t: float, rr_s: float | None
) -> list[Event]:
    """The kind's condition holds at ``t``: open its episode (from ``started``) or carry it on."""
    episode = state.open.get(kind)
    if episode is None:
        # Dated back to its first beat, but never into the previous episode's gap: that would read as flapping.
        started = max(started, state.closed.get(kind, -float("inf")) + rules.kinds[kind].gap_s)
        opening = _beats_since(state, started)
        episode = Episode(f"{device}/{kind}/{started:.3f}", kind, started, t, opening[0], opening[1])
        episode.last_update = t
        state.open[kind] = episode
    else:
        episode.held = t
        episode.beats += episode.pending_beats
        episode.anomalous += episode.pending_anomalous
    episode.pending_beats = episode.pending_anomalous = 0
    if kind == "pause" and rr_s is not None:
        episode.longest_s = max(episode.longest_s, rr_s)
    severity = _severity(rules, episode)
    if not episode.published:
        if episode.held - episode.started < rules.kinds[kind].min_s:
            return []
        episode.published, episode.severity, episode.last_update = True, severity, t
        return [_event("start", device, episode, None)]
    if (
        SEVERITIES.index(severity) > SEVERITIES.index(episode.severity)
        or t - episode.last_update >= rules.update_interval_s
    ):
        episode.severity, episode.last_update = max(severity, episode.severity, key=SEVERITIES.index), t
        return [_event("update", device, episode, None)]
    return []


def _expire(state: DeviceEpisodes, rules: Rules, device: str, t: float) -> list[Event]:
    """End every episode whose condition has not held for its kind's gap."""
    return [e for kind, episode in list(state.open.items()) if t - episode.held > rules.kinds[kind].gap_s
            for e in _end(state, device, kind)]  # fmt: skip


def _end(state: DeviceEpisodes, device: str, kind: str) -> list[Event]:
    episode = state.open.pop(kind)
    if not episode.published:
        return []
    state.closed[kind] = episode.held
    return [_event("end", device, episode, episode.held)]


def _severity(rules: Rules, episode: Episode) -> str:
    if episode.kind == "pause" and episode.longest_s >= rules.pause_critical_s:
        return "critical"
    if episode.kind == "atrial_fibrillation" and episode.held - episode.started >= rules.fibrillation_warning_s:
        return "warning"
    return rules.kinds[episode.kind].severity


def _beats_since(state: DeviceEpisodes, started: float) -> tuple[int, int]:
    """The readable beats from ``started`` on that the device still remembers (the ones that opened it)."""
    opening = [c for x, c in state.recent if x >= started]
    return len(opening), sum(c in ("S", "V") for c in opening)


def _run_length(classes: list[str], letter: str) -> int:
    n = 0
    for c in reversed(classes):
        if c != letter:
            break
        n += 1
    return n


def _rate(times: list[float]) -> float:
    """Beats per minute over ``times`` (0 for fewer than two beats)."""
    return 60.0 * (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


def _rotations(pattern: str) -> set[str]:
    return {pattern[k:] + pattern[:k] for k in range(len(pattern))}


def _event(kind: str, device: str, episode: Episode, ended: float | None) -> Event:
    return {
        "type": kind,
        "id": episode.id,
        "kind": episode.kind,
        "device_id": device,
        "severity": episode.severity,
        "started": round(episode.started, 3),
        "ended": None if ended is None else round(ended, 3),
        "duration_s": round(episode.held - episode.started, 3),
        "beats": episode.beats,
        "anomalous": episode.anomalous,
    }
