"""At-least-once bookkeeping: acknowledge an input message only after everything it caused is published.

paho keeps its outgoing session in memory only, so if we acked a beat as soon as we *sent* its score, a
crash before the broker confirmed that score would lose it. Each input gets a count of outstanding
publications; the broker's PUBACK for the last one releases the input's acknowledgement.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Pending:
    remaining: int
    on_done: Callable[[], None]


@dataclass
class AckTracker:
    _by_out_mid: dict[int, int] = field(default_factory=dict)
    _inputs: dict[int, _Pending] = field(default_factory=dict)
    _early: set[int] = field(default_factory=set)
    _next_key: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _idle: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self._idle = threading.Condition(self._lock)

    def begin(self, expected: int, on_done: Callable[[], None]) -> int:
        """Register an input that will cause ``expected`` publications; returns its key."""
        with self._lock:
            key = self._next_key
            self._next_key += 1
            self._inputs[key] = _Pending(expected, on_done)
            return key

    def published(self, key: int, out_mid: int) -> None:
        """Tie an outgoing message id to its input, after ``publish`` returned.

        Never hold this lock across a paho call: paho runs on_publish under its own mutex, so holding
        ours while publishing deadlocks against the network thread. The broker may therefore confirm a
        message before we register it; such early confirmations wait in ``_early``. Every publish must
        go through here, or a stray confirmation could complete a later message that reuses the mid.
        """
        with self._lock:
            if out_mid in self._early:  # the broker confirmed before we got here
                self._early.discard(out_mid)
                done = self._complete_one(key)
            else:
                self._by_out_mid[out_mid] = key
                done = None
        if done:
            done()

    def confirmed(self, out_mid: int) -> None:
        """paho's on_publish: the broker has the message."""
        with self._lock:
            key = self._by_out_mid.pop(out_mid, None)
            if key is None:
                self._early.add(out_mid)
                return
            done = self._complete_one(key)
        if done:
            done()

    def _complete_one(self, key: int) -> Callable[[], None] | None:
        """Count one confirmation; returns the input's callback once all are in (run it outside the lock)."""
        pending = self._inputs[key]
        pending.remaining -= 1
        if pending.remaining > 0:
            return None
        del self._inputs[key]
        if not self._inputs:
            self._idle.notify_all()
        return pending.on_done

    def outstanding(self) -> int:
        with self._lock:
            return len(self._inputs)

    def wait_idle(self, timeout: float) -> bool:
        """Block until no input awaits publication, or ``timeout`` passes; True when idle."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._inputs, timeout)
