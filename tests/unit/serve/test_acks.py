from __future__ import annotations

import threading

from ecgwatch.serve.acks import AckTracker


def test_input_is_settled_after_all_its_publications_in_any_order() -> None:
    tracker = AckTracker()
    settled: list[tuple[str, list[tuple[str, str]]]] = []
    a = tracker.begin(lambda refusals: settled.append(("a", refusals)))
    b = tracker.begin(lambda refusals: settled.append(("b", refusals)))
    tracker.expect(a, 2)
    tracker.expect(b, 1)
    tracker.close(a)
    tracker.close(b)
    tracker.published(a, 10, "score")
    tracker.answered(11)  # broker confirms before publish() returned
    tracker.published(a, 11, "anomaly")
    assert settled == []
    tracker.published(b, 12, "score")
    tracker.answered(12)
    assert settled == [("b", [])]
    tracker.answered(10)
    assert settled == [("b", []), ("a", [])]
    assert tracker.outstanding() == 0
    assert tracker.wait_idle(0.01)


def test_a_refused_publication_settles_its_input_with_the_reason() -> None:
    tracker = AckTracker()
    settled: list[list[tuple[str, str]]] = []
    key = tracker.begin(settled.append)
    tracker.expect(key, 2)
    tracker.close(key)
    tracker.published(key, 1, "score")
    tracker.answered(2, "Not authorized")  # early, and refused
    tracker.published(key, 2, "anomaly")
    assert settled == []
    tracker.answered(1)
    assert settled == [[("anomaly", "Not authorized")]]


def test_wait_idle_times_out_while_publications_are_outstanding() -> None:
    tracker = AckTracker()
    key = tracker.begin(lambda _refusals: None)
    tracker.expect(key, 1)
    tracker.close(key)
    tracker.published(key, 1, "score")
    assert not tracker.wait_idle(0.05)
    threading.Timer(0.05, tracker.answered, args=(1,)).start()
    assert tracker.wait_idle(2.0)


def test_settlement_runs_without_the_lock_held() -> None:
    tracker = AckTracker()
    seen: list[int] = []
    key = tracker.begin(lambda _refusals: seen.append(tracker.outstanding()))  # deadlocks if the lock were held
    tracker.expect(key, 1)
    tracker.close(key)
    tracker.published(key, 5, "score")
    tracker.answered(5)
    assert seen == [0]


def test_an_open_input_settles_only_once_closed() -> None:
    tracker = AckTracker()
    settled: list[list[tuple[str, str]]] = []
    key = tracker.begin(settled.append)
    tracker.expect(key, 1)
    tracker.published(key, 1, "score")
    tracker.answered(1)
    assert settled == []  # its first beat is confirmed, but more are coming
    tracker.expect(key, 1)
    tracker.published(key, 2, "score")
    tracker.answered(2)
    assert settled == []
    tracker.close(key)
    assert settled == [[]]


def test_an_input_with_nothing_to_publish_settles_on_close() -> None:
    tracker = AckTracker()
    settled: list[list[tuple[str, str]]] = []
    tracker.close(tracker.begin(settled.append))
    assert settled == [[]]
