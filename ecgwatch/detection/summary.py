"""A device's summary: what a late subscriber needs to see of it at once, as Holter reports give it.

Heart rate over the last minute, PVC burden (the share of judged beats that were ventricular over the last
hour), the share of beats that could be read, and the episodes open now. The daemon publishes it retained on
``ecg/<device>/summary`` every :attr:`interval_s` of the device's signal and whenever an episode starts or
ends, so a dashboard that connects later sees each device's state as Frigate's retained topics show a camera's.
Kept as one bucket a minute, sixty buckets: a few hundred bytes a device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ecgwatch.detection.episodes import DeviceEpisodes

MINUTES = 60


@dataclass
class Minute:
    start: float  # device time of the minute's first beat, floored to the minute
    beats: int = 0
    judged: int = 0
    ventricular: int = 0
    readable: int = 0


@dataclass
class DeviceSummary:
    minutes: list[Minute] = field(default_factory=list)
    last_published: float | None = None
    recent_beats: list[float] = field(default_factory=list)  # readable beat times within the last 60 s

    def observe(self, t: float, beat_class: str | None, readable: bool) -> None:
        start = 60.0 * (t // 60.0)
        if not self.minutes or self.minutes[-1].start != start:
            self.minutes = [*self.minutes, Minute(start)][-MINUTES:]
        minute = self.minutes[-1]
        minute.beats += 1
        minute.readable += readable
        minute.judged += beat_class is not None
        minute.ventricular += beat_class == "V"
        if readable:
            self.recent_beats = [x for x in self.recent_beats if x > t - 60.0] + [t]

    def due(self, t: float, interval_s: float, changed: bool) -> bool:
        """Whether to publish now (and, if so, mark it published)."""
        if changed or self.last_published is None or t - self.last_published >= interval_s:
            self.last_published = t
            return True
        return False

    def snapshot(self, device: str, t: float, episodes: DeviceEpisodes, enrolled: bool) -> dict[str, Any]:
        judged = sum(m.judged for m in self.minutes)
        beats = sum(m.beats for m in self.minutes)
        times = self.recent_beats
        rate = 60.0 * (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None
        return {
            "device_id": device,
            "t": round(t, 3),
            "enrolled": enrolled,
            "heart_rate_bpm": None if rate is None else round(rate, 1),
            "pvc_burden": None if not judged else round(sum(m.ventricular for m in self.minutes) / judged, 4),
            "readable_share": None if not beats else round(sum(m.readable for m in self.minutes) / beats, 4),
            "window_s": round(t - self.minutes[0].start, 1) if self.minutes else 0.0,
            "open_episodes": [
                {"id": e.id, "kind": e.kind, "severity": e.severity, "started": round(e.started, 3)}
                for e in episodes.open.values()
                if e.published
            ],
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> DeviceSummary:
        return cls([Minute(**m) for m in state["minutes"]], state["last_published"], list(state["recent_beats"]))
