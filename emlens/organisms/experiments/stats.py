"""Statistics over training seeds: a claim about two solutions is judged from the
per-seed differences (mean and a Student t-interval), not from pooled samples."""

from __future__ import annotations

import math
from typing import Any, Sequence

__all__ = ["mean_ci", "verdict"]

# two-sided 95% Student t quantiles for 1..10 degrees of freedom
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def mean_ci(values: Sequence[float]) -> dict[str, Any]:
    """Mean and two-sided 95% t-interval over independent values (e.g. training seeds).

    With one value the interval is undefined (``None``).

    Example:
        >>> mean_ci([1.0, 2.0, 3.0])["ci"]
        [-0.484338, 4.484338]
    """
    xs = [float(v) for v in values]
    if not xs:
        return {"mean": None, "ci": None, "n": 0, "values": []}
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return {"mean": m, "ci": None, "n": 1, "values": xs}
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    df = len(xs) - 1
    t = _T975[df - 1] if df <= len(_T975) else 1.96 + 2.5 / df
    h = t * sd / math.sqrt(len(xs))
    return {"mean": m, "ci": [round(m - h, 6), round(m + h, 6)], "n": len(xs), "values": xs}


def verdict(stat: dict[str, Any], *, expect_positive: bool = True) -> str:
    """``holds`` / ``reversed`` / ``inconclusive`` from a :func:`mean_ci` of a difference
    whose sign the claim predicts; with one seed only the sign is reported."""
    if stat.get("mean") is None:
        return "not measured"
    sign = 1 if expect_positive else -1
    if stat["ci"] is None:
        same = stat["mean"] * sign > 0
        return "consistent (1 seed, no interval)" if same else "not consistent (1 seed, no interval)"
    lo, hi = stat["ci"]
    lo, hi = (lo, hi) if sign > 0 else (-hi, -lo)
    if lo > 0:
        return "holds"
    if hi < 0:
        return "reversed"
    return "inconclusive"
