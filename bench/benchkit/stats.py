"""Pure figures: percentiles, rates, per-second series."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default).

    None when there are no values.
    """
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_summary(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """Count, p50, p95, p99 and max of latencies, in milliseconds (rounded to 0.1 ms)."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    return {
        "count": len(seconds),
        "p50_ms": ms(percentile(seconds, 50)),
        "p95_ms": ms(percentile(seconds, 95)),
        "p99_ms": ms(percentile(seconds, 99)),
        "max_ms": ms(max(seconds) if seconds else None),
    }


def rate(count: int, seconds: float | None) -> float | None:
    """count / seconds, None when there is no time span."""
    if seconds is None or seconds <= 0 or count <= 0:
        return None
    return count / seconds


def flow(times: Sequence[float], start: float) -> dict[str, float | int | None]:
    """What arrived at `times` (absolute seconds) after `start`.

    `overall_per_s` counts from `start` to the last arrival (start-up included); `flowing_per_s`
    from the first arrival to the last (the rate once messages come out).
    """
    if not times:
        return {
            "count": 0,
            "first_s": None,
            "last_s": None,
            "overall_per_s": None,
            "flowing_per_s": None,
        }
    first, last = min(times), max(times)
    flowing = rate(len(times) - 1, last - first) if len(times) > 1 else None
    return {
        "count": len(times),
        "first_s": round(first - start, 3),
        "last_s": round(last - start, 3),
        "overall_per_s": _round(rate(len(times), last - start)),
        "flowing_per_s": _round(flowing),
    }


def per_second(times: Sequence[float], start: float) -> list[int]:
    """How many of `times` fell in each whole second after `start` (second 0 first)."""
    if not times:
        return []
    buckets = [0] * (int(max(times) - start) + 1)
    for moment in times:
        index = int(moment - start)
        if index >= 0:
            buckets[index] += 1
    return buckets


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, None when either is missing."""
    if value is None or not reference:
        return None
    return round(value / reference, 4)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
