"""What the publishing thread keeps per device: its episodes and its adaptation (see ecgwatch.detection.adaptation).

Beats reach the publishing thread in time order per device, so this is where a device enrols (its first
``enrolment_s`` of readable beats, no labels), where its rhythm history grows, and where its episodes open and
close. The scoring thread only reads a device's fitted :class:`~ecgwatch.detection.adaptation.DeviceModel` to align and
scale the device's beats before the model sees them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecgwatch.detection.adaptation import MIN_ENROLMENT_BEATS, DeviceModel, Model, Rhythm, fit
from ecgwatch.detection.episodes import DeviceEpisodes


@dataclass
class Adapter:
    """One device's adaptation: enrolling until its model is fitted, then judged against it."""

    model_version: str
    device: DeviceModel | None = None  # the scoring thread reads it: replaced whole, never changed in place
    rhythm: Rhythm = field(default_factory=Rhythm)
    # Persisted with the device's state (float32, base64) while enrolling: a shared group's members read the
    # state before each strip, and without it the redis backend started every device's enrolment over.
    enrolment: list[np.ndarray] = field(default_factory=list)
    enrolment_started: float | None = None

    def enrol(self, window: np.ndarray, t: float, enrolment_s: float, margin: int, model: Model) -> bool:
        """Add a readable beat; once ``enrolment_s`` is covered, fit the device. True when it was fitted."""
        if self.enrolment_started is None:
            self.enrolment_started = t
        self.enrolment.append(window)
        if t - self.enrolment_started < enrolment_s or len(self.enrolment) < MIN_ENROLMENT_BEATS:
            return False
        self.device = fit(np.stack(self.enrolment), margin, model)
        self.enrolment, self.enrolment_started = [], None
        return True

    def to_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "model_version": self.model_version,
            "device": None if self.device is None else self.device.to_dict(),
            "rhythm": self.rhythm.intervals,
        }
        if self.enrolment:
            windows = np.stack(self.enrolment).astype("<f4")
            state["enrolment"] = {
                "started": self.enrolment_started,
                "shape": list(windows.shape),
                "float32": base64.b64encode(windows.tobytes()).decode("ascii"),
            }
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Adapter:
        device = None if state["device"] is None else DeviceModel.from_dict(state["device"])
        adapter = cls(state["model_version"], device, Rhythm(list(state["rhythm"])))
        if "enrolment" in state:
            saved = state["enrolment"]
            windows = np.frombuffer(base64.b64decode(saved["float32"]), dtype="<f4").reshape(saved["shape"])
            adapter.enrolment = list(windows.astype(np.float64))
            adapter.enrolment_started = saved["started"]
        return adapter


@dataclass
class DeviceState:
    episodes: DeviceEpisodes = field(default_factory=DeviceEpisodes)
    adapter: Adapter | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "episodes": self.episodes.to_dict(),
            "adapter": None if self.adapter is None else self.adapter.to_dict(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> DeviceState:
        adapter = state.get("adapter")
        return cls(DeviceEpisodes.from_dict(state["episodes"]), None if adapter is None else Adapter.from_dict(adapter))

    def adapter_for(self, model_version: str) -> Adapter:
        """The device's adapter for this model; fitted for another model (its embedding space), it starts over."""
        if self.adapter is None or self.adapter.model_version != model_version:
            self.adapter = Adapter(model_version)
        return self.adapter
