from __future__ import annotations

import threading

from ecgwatch.acks import AckTracker


def test_input_is_released_after_all_its_publications_in_any_order() -> None:
    tracker = AckTracker()
    released: list[str] = []
    a = tracker.begin(2, lambda: released.append("a"))
    b = tracker.begin(1, lambda: released.append("b"))
    tracker.published(a, 10)
    tracker.confirmed(11)  # broker confirms before publish() returned
    tracker.published(a, 11)
    assert released == []
    tracker.published(b, 12)
    tracker.confirmed(12)
    assert released == ["b"]
    tracker.confirmed(10)
    assert released == ["b", "a"]
    assert tracker.outstanding() == 0
    assert tracker.wait_idle(0.01)


def test_wait_idle_times_out_while_publications_are_outstanding() -> None:
    tracker = AckTracker()
    key = tracker.begin(1, lambda: None)
    tracker.published(key, 1)
    assert not tracker.wait_idle(0.05)
    threading.Timer(0.05, tracker.confirmed, args=(1,)).start()
    assert tracker.wait_idle(2.0)


def test_callback_runs_without_the_lock_held() -> None:
    tracker = AckTracker()
    seen: list[int] = []
    key = tracker.begin(1, lambda: seen.append(tracker.outstanding()))  # would deadlock if the lock were held
    tracker.published(key, 5)
    tracker.confirmed(5)
    assert seen == [0]
