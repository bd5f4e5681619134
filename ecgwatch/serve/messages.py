"""The MQTT message contract: parse beat and strip payloads strictly, build score events.

Anything that is not a well-formed beat is rejected with a short machine-readable reason (used as the
dead-letter reason and the ``reason`` label of the invalid-beats counter), never with an exception that
could take the daemon down.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np
import orjson

from ecgwatch.detection.segmentation import FoundBeat, Strip
from ecgwatch.preprocess import resample_linear


class InvalidBeat(ValueError):
    """A payload that cannot be scored; ``reason`` is one of a small fixed set, ``detail`` is for people."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


REASONS = (
    "too_large",
    "not_json",
    "not_an_object",
    "bad_seq",
    "bad_ts",
    "bad_samples",
    "non_finite",
    "out_of_range",
    "length_out_of_bounds",
    "bad_fs",
    "bad_topic",
    "unparseable",  # a parser defect, not the sender's: logged with a traceback, and still dead-lettered
)
Payload = bytes | bytearray  # what paho hands us
# Every event carries it; ecgwatch/serve/schemas/ holds the JSON Schemas of this version (docs/asyncapi.yaml).
SCHEMA_VERSION = 1
# JSON consumers in JavaScript read integers exactly only up to 2**53; orjson refuses beyond 64 bits.
MAX_SEQ = 2**53 - 1
# Far beyond any ECG unit (ADC counts, microvolts); larger values overflow the z-normalisation's squares.
MAX_ABS_SAMPLE = 1e9
MAX_DEVICE_ID_BYTES = 256
# MQTT caps a topic name at 65,535 bytes; output topics are built from the device id.
MAX_TOPIC_BYTES = 65535
# Characters that cannot stand in a topic level we publish to: wildcards, the level separator, NUL.
FORBIDDEN_IN_DEVICE_ID = frozenset("+#/\x00")


@dataclass(frozen=True)
class BeatLimits:
    """What a beat may look like before we refuse it rather than resample it."""

    seq_len: int = 140
    min_samples: int = 35
    max_samples: int = 1000
    max_payload_bytes: int = 65536
    max_device_id_bytes: int = MAX_DEVICE_ID_BYTES


@dataclass(frozen=True)
class StripLimits:
    """What a strip may be: 2-60 s at 100-2000 Hz by default."""

    min_fs: float = 100.0
    max_fs: float = 2000.0
    min_seconds: float = 2.0
    max_seconds: float = 60.0
    max_payload_bytes: int = 4 * 1024 * 1024
    max_device_id_bytes: int = MAX_DEVICE_ID_BYTES


@dataclass(frozen=True)
class Beat:
    """A pre-cut beat from the beat topic."""

    device_id: str
    seq: int
    ts: float | None
    samples: np.ndarray  # resampled to the model's length
    original_length: int
    quality: str = "ok"  # "leads_off" for a flat window: nothing to score

    @property
    def id(self) -> str:
        return f"{self.device_id}/beat/{self.seq}"

    def fields(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts}


@dataclass(frozen=True)
class StripBeat:
    """A beat the daemon found in a device's strips; ``samples`` is None when it is not scored."""

    device_id: str
    found: FoundBeat
    samples: np.ndarray | None
    late: bool = False  # from a strip that arrived after later ones: scored alone, not part of episodes

    @property
    def quality(self) -> str:
        return self.found.quality

    @property
    def id(self) -> str:
        """Stable across redeliveries: a redelivered strip yields the same beats with the same ids."""
        return f"{self.device_id}/strip/{self.found.strip_seq}/{self.found.sample}"

    def fields(self) -> dict[str, Any]:
        found = self.found
        rr = None if found.rr_s is None else round(found.rr_s, 4)
        extra = {"late": True} if self.late else {}
        return {"t": round(found.t, 4), "strip_seq": found.strip_seq, "sample": found.sample, "rr_s": rr, **extra}


def device_from_topic(topic: str, pattern: str, max_bytes: int = MAX_DEVICE_ID_BYTES) -> str:
    """The segment of ``topic`` matched by the single ``+`` in ``pattern`` (e.g. ``ecg/+/beat``), checked
    by :func:`check_device_id`."""
    parts, expected = topic.split("/"), pattern.split("/")
    if len(parts) != len(expected) or "+" not in expected:
        raise InvalidBeat("bad_topic", f"topic {topic!r} does not match {pattern!r}")
    for got, want in zip(parts, expected, strict=True):
        if want not in ("+", got):
            raise InvalidBeat("bad_topic", f"topic {topic!r} does not match {pattern!r}")
    return check_device_id(parts[expected.index("+")], max_bytes)


def check_device_id(device: str, max_bytes: int) -> str:
    """A device id we can build output topics from: 1..``max_bytes`` UTF-8 bytes, no wildcard, no control
    character. Without the check, a 65,526-byte id made a score topic over MQTT's limit and paho's
    ``publish`` raised in the publishing thread."""
    size = len(device.encode("utf-8", "surrogatepass"))
    if not 1 <= size <= max_bytes:
        raise InvalidBeat("bad_topic", f"device id must be 1..{max_bytes} bytes, got {size}")
    if any(c in FORBIDDEN_IN_DEVICE_ID or not c.isprintable() for c in device):
        raise InvalidBeat("bad_topic", "device id holds a wildcard, separator or control character")
    return device


NUMBER_TYPES = frozenset((int, float))  # exact types: JSON true/false parse to bool, which is not a sample


def _number(value: Any) -> bool:
    return type(value) in NUMBER_TYPES


def _decode(payload: Payload, max_bytes: int) -> dict[str, Any]:
    if len(payload) > max_bytes:
        raise InvalidBeat("too_large", f"{len(payload)} bytes > limit {max_bytes}")
    try:
        document = orjson.loads(payload)  # the hot path: several times faster than the stdlib
    except orjson.JSONDecodeError:
        document = _decode_lenient(payload)
    if not isinstance(document, dict):
        raise InvalidBeat("not_an_object", f"expected a JSON object, got {type(document).__name__}")
    return document


def _decode_lenient(payload: Payload) -> Any:
    """Second opinion from the stdlib, which also reads NaN, Infinity and huge numbers.

    A watch that sends ``NaN`` should hear "non_finite", not "not_json": the value checks reject it next.
    The stdlib parser recurses per nesting level: ``[[[...]]]`` 1,100 deep raised RecursionError, which
    escaped paho's callback and killed its network thread.
    """
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidBeat("not_json", str(exc)) from None
    except RecursionError:
        raise InvalidBeat("not_json", "nested too deeply") from None


def _finite(value: Any) -> TypeGuard[float]:
    """A JSON number that is a finite float; a 401-digit integer made ``math.isfinite`` raise OverflowError."""
    if not _number(value):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _samples(document: dict[str, Any], least: int, most: int) -> np.ndarray:
    samples = document.get("samples")
    if not isinstance(samples, list) or not set(map(type, samples)) <= NUMBER_TYPES:
        raise InvalidBeat("bad_samples", "'samples' must be a list of numbers")
    if not least <= len(samples) <= most:
        raise InvalidBeat("length_out_of_bounds", f"{len(samples)} samples, accepted {least}..{most}")
    try:
        values = np.asarray(samples, dtype=np.float64)
    except OverflowError:  # an integer beyond float range
        raise InvalidBeat("non_finite", "samples contain a number too large for a float") from None
    if not np.isfinite(values).all():
        raise InvalidBeat("non_finite", "samples contain NaN or infinity")
    if np.abs(values).max() > MAX_ABS_SAMPLE:
        raise InvalidBeat("out_of_range", f"samples beyond +-{MAX_ABS_SAMPLE:g}; send ADC counts or physical units")
    return values


def _seq(document: dict[str, Any]) -> int:
    seq = document.get("seq")
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise InvalidBeat("bad_seq", f"'seq' must be an integer in 0..{MAX_SEQ}")
    return seq


def parse_beat(topic: str, payload: Payload, pattern: str, limits: BeatLimits) -> Beat:
    """Validate a beat message and resample it to the model's length (linear, as ECG5000 was built)."""
    device_id = device_from_topic(topic, pattern, limits.max_device_id_bytes)
    document = _decode(payload, limits.max_payload_bytes)
    seq = _seq(document)
    ts = document.get("ts")
    if ts is not None and not _finite(ts):
        raise InvalidBeat("bad_ts", "'ts' must be epoch seconds (a finite number) when present")
    values = _samples(document, limits.min_samples, limits.max_samples)
    return Beat(
        device_id=device_id,
        seq=seq,
        ts=None if ts is None else float(ts),
        samples=resample_linear(values, limits.seq_len),
        original_length=len(values),
        quality="ok" if np.ptp(values) > 0 else "leads_off",
    )


def parse_strip(topic: str, payload: Payload, pattern: str, limits: StripLimits) -> tuple[str, Strip]:
    """Validate a strip message: ``{"seq", "ts" (epoch s of the first sample), "fs" (Hz), "samples"}``."""
    device_id = device_from_topic(topic, pattern, limits.max_device_id_bytes)
    document = _decode(payload, limits.max_payload_bytes)
    seq = _seq(document)
    ts = document.get("ts")
    if not _finite(ts):
        raise InvalidBeat("bad_ts", "'ts' (epoch seconds of the first sample) is required and must be finite")
    fs = document.get("fs")
    if not _finite(fs) or not limits.min_fs <= fs <= limits.max_fs:
        raise InvalidBeat("bad_fs", f"'fs' must be the sampling rate in Hz, {limits.min_fs:g}..{limits.max_fs:g}")
    least, most = math.ceil(limits.min_seconds * fs), math.floor(limits.max_seconds * fs)
    values = _samples(document, least, most)
    return device_id, Strip(seq, float(ts), float(fs), values)


def dead_letter(topic: str, payload: Payload, error: InvalidBeat, received_at: float, max_echo_bytes: int) -> bytes:
    """What the sender needs to find and fix a message: original topic, reason, the payload's size and sha256
    (to match it against what the sender sent), and its first ``max_echo_bytes`` only: a payload is a
    person's ECG, and a 5 MB message must not become a 5 MB dead letter."""
    truncated = len(payload) > max_echo_bytes
    echoed = bytes(payload[:max_echo_bytes])
    try:
        original: Any = echoed.decode("utf-8")
    except UnicodeDecodeError:
        original = {"base64": base64.b64encode(echoed).decode("ascii")}
    letter = {"schema_version": SCHEMA_VERSION, "topic": topic, "reason": error.reason, "detail": error.detail}
    letter["received_at"] = received_at
    letter |= {"payload_bytes": len(payload), "payload_sha256": hashlib.sha256(payload).hexdigest()}
    if truncated:
        letter["payload_truncated"] = True
    return orjson.dumps({**letter, "payload": original})


def score_event(
    beat: Beat | StripBeat,
    score: float | None,
    threshold: float,
    model_version: str,
    peak: tuple[int, int] | None,
    timing: dict[str, float],
    extra: dict[str, Any] | None = None,
    anomaly: bool | None = None,
) -> dict[str, Any]:
    """One score message. ``score`` is None for a beat that was not scored (its ``quality`` says why, or
    ``extra`` says the device is enrolling): such a beat is never an anomaly. ``peak`` is the sample range, in
    the model's frame, the score comes from; ``extra`` adds what the score is made of. ``anomaly``: the
    verdict when it is not ``score > threshold`` (a strip beat's class decides it)."""
    event: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "id": beat.id, "device_id": beat.device_id}
    event |= {**beat.fields(), "quality": beat.quality}
    event |= extra or {}
    if score is None or peak is None or beat.samples is None:
        event |= {"score": None, "threshold": round(float(threshold), 6), "anomaly": False, "model": model_version}
        return event | {k: round(float(v), 6) for k, v in timing.items()}
    length = len(beat.samples)
    start, end = int(peak[0]), int(peak[1])  # plain Python numbers throughout: orjson refuses numpy scalars
    return event | {
        "score": round(float(score), 6),
        "threshold": round(float(threshold), 6),
        "anomaly": bool(score > threshold) if anomaly is None else anomaly,
        "model": model_version,
        "peak_error_samples": [start, end],
        "peak_error_fraction": [round(start / length, 3), round(end / length, 3)],
        **{k: round(float(v), 6) for k, v in timing.items()},
    }
