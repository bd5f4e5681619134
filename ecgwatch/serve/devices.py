"""What the publishing thread keeps per device: its detector, its enrolment and its episodes.

Beats reach the publishing thread in time order per device, so this is where a device enrols (its first
``enrolment_s`` of readable signal, no labels), where its template bank and rhythm history grow
(:class:`~ecgwatch.detection.device.DeviceDetector`) and where its episodes open and close. The scoring thread
only reads a device's fitted :class:`~ecgwatch.detection.adaptation.DeviceModel` to align and scale the
device's beats before the autoencoder sees them.
"""

from __future__ import annotations

import base64
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecgwatch.detection.adaptation import MIN_ENROLMENT_BEATS, DeviceModel, Model, fit
from ecgwatch.detection.device import DeviceDetector
from ecgwatch.detection.episodes import DeviceEpisodes
from ecgwatch.detection.rhythm import Rhythm
from ecgwatch.detection.segmentation import Window
from ecgwatch.detection.summary import DeviceSummary
from ecgwatch.detection.templates import TemplateBank


@dataclass
class Enrolment:
    """One device's enrolment for one model: readable beats until ``enrolment_s`` of them, then its fit."""

    model_version: str
    device: DeviceModel | None = None  # the scoring thread reads it: replaced whole, never changed in place
    # Persisted with the device's state (float32, base64) while enrolling: a shared group's members read the
    # state before each strip, and without it the redis backend started every device's enrolment over.
    windows: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0  # readable signal enrolled so far (the beats' R-R intervals)

    def add(self, window: np.ndarray, rr_s: float | None, enrolment_s: float, margin: int, model: Model) -> bool:
        """Add a readable beat; once ``enrolment_s`` of signal is covered, fit the device. True when fitted."""
        self.windows.append(window)
        self.seconds += rr_s or 0.0
        if self.seconds < enrolment_s or len(self.windows) < MIN_ENROLMENT_BEATS:
            return False
        self.device = fit(np.stack(self.windows), margin, model)
        self.windows, self.seconds = [], 0.0
        return True

    def to_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "model_version": self.model_version,
            "device": None if self.device is None else self.device.to_dict(),
        }
        if self.windows:
            state["windows"] = {"seconds": self.seconds, **_pack(np.stack(self.windows))}
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Enrolment:
        device = None if state["device"] is None else DeviceModel.from_dict(state["device"])
        enrolment = cls(state["model_version"], device)
        if "windows" in state:
            enrolment.windows = list(_unpack(state["windows"]))
            enrolment.seconds = float(state["windows"]["seconds"])
        return enrolment


@dataclass
class DeviceState:
    episodes: DeviceEpisodes = field(default_factory=DeviceEpisodes)
    enrolment: Enrolment | None = None
    detector: DeviceDetector | None = None
    summary: DeviceSummary = field(default_factory=DeviceSummary)

    def for_model(self, model_version: str, window: Window) -> tuple[Enrolment, DeviceDetector]:
        """The device's enrolment and detector for this model; for another model (another embedding space and
        beat window) both start over."""
        if self.enrolment is None or self.enrolment.model_version != model_version or self.detector is None:
            self.enrolment, self.detector = Enrolment(model_version), DeviceDetector(window)
        return self.enrolment, self.detector

    def to_dict(self) -> dict[str, Any]:
        return {
            "episodes": self.episodes.to_dict(),
            "enrolment": None if self.enrolment is None else self.enrolment.to_dict(),
            "detector": None if self.detector is None else _detector_dict(self.detector),
            "summary": self.summary.to_dict(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> DeviceState:
        enrolment, detector = state.get("enrolment"), state.get("detector")
        return cls(
            DeviceEpisodes.from_dict(state["episodes"]),
            None if enrolment is None else Enrolment.from_dict(enrolment),
            None if detector is None else _detector_of(detector),
            DeviceSummary.from_dict(state["summary"]) if "summary" in state else DeviceSummary(),
        )


def _pack(x: np.ndarray) -> dict[str, Any]:
    array = np.ascontiguousarray(x, dtype="<f4")
    return {"shape": list(array.shape), "float32": base64.b64encode(array.tobytes()).decode("ascii")}


def _unpack(state: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(state["float32"]), dtype="<f4").reshape(state["shape"]).astype(np.float64)


def _detector_dict(detector: DeviceDetector) -> dict[str, Any]:
    bank, rhythm = detector.bank, detector.rhythm
    return {
        "window": [getattr(detector.window, f) for f in ("kind", "seq_len", "before_s", "after_s", "margin")],
        "templates": _pack(np.stack(bank.templates)) if bank.templates else None,
        "uses": bank.uses,
        "members": bank.members,
        "premature": bank.premature,
        "pause": bank.pause,
        "spread": bank.spread,
        "votes": bank.votes,
        "normal": list(rhythm.normal),
        "recent": list(rhythm.recent),
        "regular": list(rhythm.regular),
        "fibrillation": rhythm.fibrillation,
        "last_dominant": rhythm.last_dominant,
        "run": detector.run,
    }


def _detector_of(state: dict[str, Any]) -> DeviceDetector:
    kind, seq_len, before, after, margin = state["window"]
    templates = [] if state["templates"] is None else list(_unpack(state["templates"]))
    bank = TemplateBank(
        templates, state["uses"], state["members"], state["premature"], state["pause"], state["spread"], state["votes"]
    )
    rhythm = Rhythm()
    rhythm.normal.extend(state["normal"])
    rhythm.recent.extend(state["recent"])
    rhythm.regular = deque(state["regular"], maxlen=rhythm.regular.maxlen)
    rhythm.fibrillation, rhythm.last_dominant = bool(state["fibrillation"]), bool(state["last_dominant"])
    return DeviceDetector(Window(kind, seq_len, before, after, margin), bank, rhythm, int(state["run"]))
