"""Summaries of measured samples: medians and percentiles, computed from the samples kept."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def median(samples: Sequence[float]) -> float | None:
    return statistics.median(samples) if samples else None


def percentile(samples: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile (``share`` in 0..1): always one of the samples, so a p90
    of 20 latencies is the 18th smallest, not an interpolation between two."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)
