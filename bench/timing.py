"""Timing helpers for the bench: variants take turns, figures are medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_seconds(
    variants: dict[str, Callable[[], object]], *, repeats: int, calls: int = 1, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of every variant, once per repeat.

    Within a repeat the variants run one after the other, each ``calls`` times in a row, so
    a change of machine load (another process starting, the CPU clocking down) hits every
    variant alike instead of whichever happened to run then. ``warmup`` untimed rounds come
    first (lazy initialisation, caches, allocator).
    """
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            seconds[name].append((time.perf_counter() - start) / calls)
    return seconds


def median(values: list[float]) -> float:
    return statistics.median(values)


def median_ratio(seconds: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """The median over repeats of ``numerator`` ÷ ``denominator`` within each repeat.

    The two ran back to back, so their ratio cancels what drifts more slowly than a repeat
    (another job, the host's other virtual machines, the clock rate), which the ratio of two
    medians would not.
    """
    return median([a / b for a, b in zip(seconds[numerator], seconds[denominator], strict=True)])
