"""The strip stage: per-device streams between the intake and the scoring queue.

Strips are segmented in one thread, in arrival order, so a device's strips are processed in order and its
beats reach the scoring queue in time order (micro-batches mix devices, never reorder one). What a strip
is, against the device's stream:

- the **next** one (seq + 1, starting where the last ended): segmented with the carried context;
- after a **gap** (a later seq, a ts jump, another rate): the old run is closed and a new one starts; the
  skipped seqs are remembered;
- **late** (one of those skipped seqs, arriving after later strips): segmented on its own, its beats marked
  ``late`` and kept out of episodes (the device's rhythm has moved on);
- **redelivered** while still in flight (after a reconnect): segmented again from the track it was first
  segmented from, so it yields the same beats with the same ids; episodes are not counted twice;
- a **duplicate** of a strip already acknowledged: acknowledged again, nothing published.

The device's state is committed to the store when a strip is acknowledged (see :mod:`ecgwatch.serve.state`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from ecgwatch.detection.segmentation import MAX_TS_JUMP_S, Strip, StripResult, Track, Window, push, warm_up
from ecgwatch.serve.devices import DeviceState
from ecgwatch.serve.messages import StripBeat
from ecgwatch.serve.metrics import Metrics
from ecgwatch.serve.mqtt_session import Delivery, InputHandle
from ecgwatch.serve.state import DeviceStore

log = logging.getLogger(__name__)
MAX_REMEMBERED_GAPS = 256


@dataclass(frozen=True)
class StripJob:
    device: str
    strip: Strip
    delivery: Delivery
    received: float  # time.monotonic()
    received_wall: float


@dataclass
class StripTicket:
    """One strip on its way through scoring and publishing; its beats publish through ``handle``."""

    device: str
    seq: int
    handle: InputHandle
    detached: bool  # late or redelivered: no episodes, no state to commit
    track: Track | None = None  # the device's track after this strip
    missing: list[int] = field(default_factory=list)
    adopt: DeviceState | None = None  # state read from the store: the publishing thread takes it over
    state: bytes | None = None  # set by the publishing thread once the strip's last event is out


@dataclass(frozen=True)
class StripEnd:
    """Follows a strip's beats through the queues: the publishing thread closes the strip on it."""

    ticket: StripTicket
    start: float  # epoch seconds of the strip's first sample
    seconds: float
    readable: bool  # any readable beat in it


@dataclass
class _Stream:
    track: Track | None = None
    missing: list[int] = field(default_factory=list)
    inflight: dict[int, Track | None] = field(default_factory=dict)  # seq -> the track before it


def encode_state(track: Track | None, device: DeviceState, missing: list[int]) -> bytes:
    return orjson.dumps({"track": None if track is None else track.to_dict(), **device.to_dict(), "missing": missing})


def decode_state(blob: bytes) -> tuple[Track | None, DeviceState, list[int]]:
    state: dict[str, Any] = orjson.loads(blob)
    track = None if state["track"] is None else Track.from_dict(state["track"])
    return track, DeviceState.from_dict(state), list(state["missing"])


class Streams:
    """Every device's stream as the segmenting thread sees it; committed state comes from ``store``."""

    def __init__(self, store: DeviceStore, window: Window, metrics: Metrics) -> None:
        warm_up()  # at start-up, not in the first strip: it would count as seconds of segmentation
        self.store = store
        self.window = window  # how the served model wants its beats cut
        self.metrics = metrics
        self._streams: dict[str, _Stream] = {}
        self._lock = threading.Lock()  # commits (paho's thread) clear in-flight entries

    def segment(self, job: StripJob, handle: InputHandle) -> tuple[StripTicket, StripResult | None, str]:
        """Decide what the strip is and segment it; returns its ticket, the result (None: a duplicate) and
        the outcome (one of :data:`ecgwatch.serve.metrics.STRIP_OUTCOMES`)."""
        stream, adopted = self._stream(job.device)
        strip = job.strip
        with self._lock:
            before = stream.inflight.get(strip.seq, ...)
        if before is not ...:
            return self._detached(job, handle, before, "redelivered")
        if stream.track is not None and strip.seq < stream.track.next_seq:
            if strip.seq in stream.missing:
                stream.missing.remove(strip.seq)
                return self._detached(job, handle, None, "late")
            if strip.ts < stream.track.next_ts - MAX_TS_JUMP_S:  # old signal: a strip we already took
                return StripTicket(job.device, strip.seq, handle, detached=True), None, "duplicate"
            # A lower seq with new signal: the watch restarted its numbering (a reboot, a reset). Before, its
            # strips were dropped as duplicates, without a trace, until seq passed the old highest one.
            log.info("device restarted its strip sequence", extra={"device": job.device, "seq": strip.seq})
            stream.missing = []
        if stream.track is not None and strip.seq > stream.track.next_seq:
            # Only the last MAX_REMEMBERED_GAPS seqs are kept, so only those are listed: a jump to 2**53 - 1
            # once built a list of that length (MemoryError, a crash loop on redelivery).
            gap = range(max(stream.track.next_seq, strip.seq - MAX_REMEMBERED_GAPS), strip.seq)
            stream.missing = [*stream.missing, *gap][-MAX_REMEMBERED_GAPS:]
        outcome = "next" if stream.track is not None and strip.seq == stream.track.next_seq else "gap"
        started = time.monotonic()
        result = push(stream.track, strip, self.window)
        self.metrics.segmentation_seconds.observe(time.monotonic() - started)
        with self._lock:
            stream.inflight[strip.seq] = stream.track
        stream.track = result.track
        ticket = StripTicket(job.device, strip.seq, handle, False, result.track, list(stream.missing), adopted)
        return ticket, result, outcome

    def _detached(
        self, job: StripJob, handle: InputHandle, track: Track | None, outcome: str
    ) -> tuple[StripTicket, StripResult, str]:
        result = push(track, job.strip, self.window)
        return StripTicket(job.device, job.strip.seq, handle, detached=True), result, outcome

    def _stream(self, device: str) -> tuple[_Stream, DeviceState | None]:
        """The device's stream; read from the store when unknown here, or when other instances share it
        and nothing of this device is in flight here (another member may have moved it on)."""
        stream = self._streams.get(device)
        with self._lock:
            idle = stream is None or not stream.inflight
        if stream is not None and not (self.store.shared and idle):
            return stream, None
        blob = self.store.load(device)
        if blob is None:
            stream = stream or _Stream()
            self._streams[device] = stream
            return stream, DeviceState() if self.store.shared else None
        track, state, missing = decode_state(blob)
        stream = _Stream(track, missing)
        self._streams[device] = stream
        return stream, state

    def commit(self, ticket: StripTicket) -> bool:
        """The strip's events are all confirmed: write the device's state, then let the strip be acked."""
        if ticket.detached or ticket.state is None:
            return True
        try:
            self.store.save(ticket.device, ticket.state)
        except Exception:  # the strip stays unacknowledged and comes back; its beats keep their ids
            log.error("could not save device state", exc_info=True, extra={"device": ticket.device})
            return False
        self.metrics.device_state_bytes.observe(len(ticket.state))
        with self._lock:
            stream = self._streams.get(ticket.device)
            if stream is not None:
                stream.inflight.pop(ticket.seq, None)
        return True


def strip_beats(device: str, result: StripResult, late: bool) -> list[StripBeat]:
    """The strip's beats as the pipeline carries them: windows of readable beats go to the model."""
    return [StripBeat(device, found, found.window if found.quality == "ok" else None, late) for found in result.beats]
