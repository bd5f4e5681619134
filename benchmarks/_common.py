"""Helpers shared by the benchmarks: median timing and one-line result printing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn``: this machine is shared and noisy, so single timings mislead."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def report(name: str, value: float, unit: str) -> None:
    shown = f"{value:12.2f}" if abs(value) >= 10 else f"{value:12.4g}"
    print(f"{name:52s} {shown} {unit}")
