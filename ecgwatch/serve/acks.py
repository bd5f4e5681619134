"""At-least-once bookkeeping: acknowledge an input message only after everything it caused is published.

paho keeps its outgoing session in memory only, so if we acked a beat as soon as we *sent* its score, a
crash before the broker confirmed that score would lose it. Each input gets a count of outstanding
publications; the broker's answer to the last one settles the input: every publication accepted, or at
least one refused (an MQTT 5 PUBACK reason code >= 0x80, e.g. "Not authorized"), in which case the input
must not be acknowledged. An input may also stay *open* while its parts are produced (a strip's beats are
scored over several micro-batches): it settles only once closed and answered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Pending:
    remaining: int
    settle: Callable[[list[tuple[str, str]]], None]
    open: bool = False
    refusals: list[tuple[str, str]] = field(default_factory=list)  # (kind, reason) of refused publications


@dataclass
class AckTracker:
    _by_out_mid: dict[int, tuple[int, str]] = field(default_factory=dict)  # out mid -> (input key, kind)
    _inputs: dict[int, _Pending] = field(default_factory=dict)
    _early: dict[int, str | None] = field(default_factory=dict)  # out mid -> refusal reason, None if accepted
    _next_key: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _idle: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self._idle = threading.Condition(self._lock)

    def begin(self, settle: Callable[[list[tuple[str, str]]], None]) -> int:
        """Register an open input; returns its key. Announce its publications with :meth:`expect`.

        ``settle(refusals)`` runs once the input is closed and the broker has answered every publication,
        with the ``(kind, reason)`` of each refused one (an empty list: all accepted).
        """
        with self._lock:
            key = self._next_key
            self._next_key += 1
            self._inputs[key] = _Pending(0, settle, open=True)
            return key

    def expect(self, key: int, count: int) -> None:
        """``count`` more publications of this input are about to be published (before they are)."""
        with self._lock:
            self._inputs[key].remaining += count

    def close(self, key: int) -> None:
        """No more publications will come for this input."""
        with self._lock:
            pending = self._inputs[key]
            pending.open = False
            settle = self._settle_if_done(key, pending)
        if settle:
            settle()

    def published(self, key: int, out_mid: int, kind: str) -> None:
        """Tie an outgoing message id to its input, after ``publish`` returned.

        Never hold this lock across a paho call: paho runs on_publish under its own mutex, so holding
        ours while publishing deadlocks against the network thread. The broker may therefore answer a
        message before we register it; such early answers wait in ``_early``. Every tracked publish must
        go through here, or a stray answer could settle a later message that reuses the mid.
        """
        with self._lock:
            if out_mid in self._early:  # the broker answered before we got here
                settle = self._answer_one(key, kind, self._early.pop(out_mid))
            else:
                self._by_out_mid[out_mid] = (key, kind)
                settle = None
        if settle:
            settle()

    def answered(self, out_mid: int, refusal: str | None = None) -> None:
        """paho's on_publish: the broker accepted the message (``refusal`` None) or refused it (its reason)."""
        with self._lock:
            entry = self._by_out_mid.pop(out_mid, None)
            if entry is None:
                self._early[out_mid] = refusal
                return
            settle = self._answer_one(entry[0], entry[1], refusal)
        if settle:
            settle()

    def _answer_one(self, key: int, kind: str, refusal: str | None) -> Callable[[], None] | None:
        """Count one answer; returns the input's settlement once all are in (run it outside the lock)."""
        pending = self._inputs[key]
        pending.remaining -= 1
        if refusal is not None:
            pending.refusals.append((kind, refusal))
        return self._settle_if_done(key, pending)

    def _settle_if_done(self, key: int, pending: _Pending) -> Callable[[], None] | None:
        if pending.open or pending.remaining > 0:
            return None
        del self._inputs[key]
        if not self._inputs:
            self._idle.notify_all()
        return lambda: pending.settle(pending.refusals)

    def outstanding(self) -> int:
        with self._lock:
            return len(self._inputs)

    def wait_idle(self, timeout: float) -> bool:
        """Block until no input awaits publication, or ``timeout`` passes; True when idle."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._inputs, timeout)
