"""Where a tanh MLP stops training on a σ_w² × depth grid, against the theory's ξ_c.

Pure functions of the measured map (no torch, no sweep): the boundary of each row, the
agreement of the prediction "depth ≤ k·ξ_c trains" with the measurement for any multiple k, and
the verdict rule of ``docs/analyses/theory_map.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: The multiple of ξ_c beyond which Schoenholz et al. (2017) found that networks do not train.
CLAIMED_MULTIPLE = 6.0
#: Multiples scanned for the one that best separates trained from failed cells.
MULTIPLES = np.geomspace(0.25, 200.0, 233)


@dataclass(frozen=True)
class Boundary:
    """A row's measured boundary: the deepest trained depth, the next failed one beyond it
    (``None`` when every deeper depth trained or none did) and their geometric mean."""

    last_ok: int | None
    first_fail: int | None

    @property
    def depth(self) -> float | None:
        if self.last_ok is None or self.first_fail is None:
            return None
        return math.sqrt(self.last_ok * self.first_fail)


def boundary(depths: Sequence[int], trained: Sequence[bool]) -> Boundary:
    """The deepest trained depth and the first failed depth after it.

    Example:
        >>> boundary([2, 4, 8, 16], [True, True, False, False])
        Boundary(last_ok=4, first_fail=8)
        >>> boundary([2, 4], [False, False]).depth is None
        True
    """
    ok = [d for d, t in zip(depths, trained, strict=True) if t]
    if not ok:
        return Boundary(None, min(depths) if depths else None)
    last = max(ok)
    deeper = [d for d, t in zip(depths, trained, strict=True) if d > last and not t]
    return Boundary(last, min(deeper) if deeper else None)


def agreement(depth: np.ndarray, xi: np.ndarray, trained: np.ndarray, k: float) -> float:
    """The fraction of cells where "depth ≤ k·ξ_c" says what the training did (trained or not);
    ``depth``, ``xi`` and ``trained`` are flat arrays over the cells (ξ_c may be ``inf``)."""
    predicted = depth <= k * xi
    return float(np.mean(predicted == trained))


def best_multiples(
    depth: np.ndarray, xi: np.ndarray, trained: np.ndarray, ks: np.ndarray = MULTIPLES
) -> tuple[float, float, float]:
    """``(k_lo, k_hi, agreement)``: the range of scanned multiples whose agreement is the
    highest, and that agreement.

    Example:
        >>> d = np.array([2, 8, 32]); xi = np.array([4.0, 4.0, 4.0]); t = np.array([1, 0, 0], bool)
        >>> lo, hi, a = best_multiples(d, xi, t)
        >>> a, bool(0.5 <= lo and hi < 2.0)
        (1.0, True)
    """
    scores = np.array([agreement(depth, xi, trained, k) for k in ks])
    best = scores.max()
    where = np.flatnonzero(scores >= best - 1e-12)
    return float(ks[where[0]]), float(ks[where[-1]]), float(best)


def sides(
    depth: np.ndarray, xi: np.ndarray, trained: np.ndarray, k: float = CLAIMED_MULTIPLE
) -> dict[str, float | int | None]:
    """The two sides of the claim at multiple ``k``: of the cells deeper than ``k·ξ_c`` the
    fraction that failed (``beyond``), of the others the fraction that trained (``within``)."""
    past = depth > k * xi
    n_past, n_in = int(past.sum()), int((~past).sum())
    return {
        "cells_beyond": n_past,
        "cells_within": n_in,
        "beyond_failed": float(np.mean(~trained[past])) if n_past else None,
        "within_trained": float(np.mean(trained[~past])) if n_in else None,
    }


#: The verdict rule, recorded in the JSON next to the verdict.
RULE = (
    "confirmed if at least 3 cells lie deeper than 6·ξ_c, at least 85 % of them failed, at least "
    "70 % of the cells within 6·ξ_c trained, and the multiples k whose 'depth ≤ k·ξ_c' best "
    "separates trained from failed cells overlap [3, 12]; contradicted if at least 3 cells lie "
    "deeper than 6·ξ_c and fewer than half of them failed, or the best multiples lie entirely "
    "outside [1.5, 24]; unclear otherwise. A cell failed when its median final held-out "
    "accuracy over seeds (a diverged seed counts as chance, 0.1) is below the threshold."
)


def verdict(side: dict, band: tuple[float, float]) -> str:
    """The verdict of :data:`RULE` from :func:`sides` at 6·ξ_c and the best band of k.

    Example:
        >>> s = {"cells_beyond": 4, "beyond_failed": 1.0, "within_trained": 0.9}
        >>> few = {**s, "cells_beyond": 1}
        >>> verdict(s, (4.0, 8.0)), verdict(s, (30.0, 60.0)), verdict(few, (4.0, 8.0))
        ('confirmed', 'contradicted', 'unclear')
    """
    lo, hi = band
    if side["cells_beyond"] < 3:
        return "unclear"
    if side["beyond_failed"] < 0.5 or hi < 1.5 or lo > 24:
        return "contradicted"
    within = side["within_trained"] or 0.0
    if side["beyond_failed"] >= 0.85 and within >= 0.7 and lo <= 12 and hi >= 3:
        return "confirmed"
    return "unclear"
