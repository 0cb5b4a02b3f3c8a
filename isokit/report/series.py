"""What the figures and tables plot, read out of Profiles and aggregated over seeds and examples.

The report draws one line per model × scheme; its value at a depth is the median over every seed
and example, and its band spans the 10th to 90th percentiles. Infinite values (the condition
number or isometry gap of a rank-deficient tap) stay infinite here; the figures decide how to
draw them. Nothing in this module calls autograd: it reads numbers that the probes computed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from isokit.probe import Profile, TapSpectrum, dtype_eps, zero_mask
from isokit.report.results import Results, RunRecord

__all__ = [
    "Curve",
    "RankRow",
    "SignalCurve",
    "collect_curves",
    "collect_signals",
    "group_records",
    "ranking",
    "sigma_samples",
]

BAND = (10.0, 90.0)  # percentiles of the shaded band


def sigma_samples(tap, dtype: str = "float64") -> tuple[np.ndarray, np.ndarray] | None:
    """Singular values of one tap over all examples with their weights (summing to 1).

    Exact taps give every value with equal weight; SLQ taps give the Ritz nodes ``√θ`` with
    their quadrature weights; taps with only moments give ``None``. Values at or below the zero
    rule of :func:`isokit.probe.zero_mask` (the one ``cond`` and ``gap`` use)
    are round-off, not tiny singular values, and are shown as the zeros they are.

    Example:
        >>> from types import SimpleNamespace
        >>> tap = SimpleNamespace(singular_values=np.array([[2.0, 1e-300]]), r=2, D=2, n_in=2)
        >>> sigma_samples(tap)
        (array([2., 0.]), array([0.5, 0.5]))
    """
    eps = dtype_eps(dtype)
    if tap.singular_values is not None:
        s = np.asarray(tap.singular_values, dtype=float)
        s = np.where(zero_mask(s, n_rows=tap.D, n_cols=tap.n_in, eps=eps), 0.0, s).ravel()
        return s, np.full(s.size, 1.0 / max(s.size, 1))
    if tap.density is not None and "nodes" in tap.density:
        theta = np.clip(np.asarray(tap.density["nodes"], dtype=float), 0.0, None)
        w = np.asarray(tap.density["weights"], dtype=float)
        keep = w > 0
        if not keep.any():
            return None
        # Ritz values are eigenvalues θ = σ² of the Gram: the rule applies to θ, per example.
        spectrum = tuple(range(1, theta.ndim))
        zero = zero_mask(theta, n_rows=tap.D, n_cols=tap.n_in, eps=eps, axis=spectrum, where=keep)
        sigma = np.sqrt(np.where(zero, 0.0, theta))
        return sigma[keep], w[keep] / w[keep].sum()
    return None


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Quantiles ``qs`` (in [0, 1]) of a weighted sample (step CDF, no interpolation)."""
    order = np.argsort(values)
    v, w = values[order], weights[order]
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    idx = np.searchsorted(cdf, np.asarray(qs), side="left").clip(0, v.size - 1)
    return v[idx]


def group_records(results: Results) -> dict[tuple[str, str], list[RunRecord]]:
    """Records by ``(model, scheme)`` in config order (seeds grouped together)."""
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for r in results.records:
        groups.setdefault((r.model, r.scheme), []).append(r)
    return groups


@dataclass(kw_only=True, eq=False)
class Curve:
    """A statistic of one model × scheme against depth: median and band over seeds × examples.

    ``values[name]`` is ``[L, n]`` (every seed and example per depth); ``median``, ``lo``, ``hi``
    are ``[L]``. ``sigma`` holds per depth the pooled singular values and weights (or ``None``).
    """

    model: str
    scheme: str
    depth: np.ndarray
    names: list[str]
    values: dict[str, np.ndarray]
    sigma: list[tuple[np.ndarray, np.ndarray] | None]
    seeds: int

    def median(self, name: str) -> np.ndarray:
        return _nan_quantile(self.values.get(name), 50.0, len(self.depth))

    def band(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.depth)
        return (
            _nan_quantile(self.values.get(name), BAND[0], n),
            _nan_quantile(self.values.get(name), BAND[1], n),
        )


def _nan_quantile(values: np.ndarray | None, q: float, n: int) -> np.ndarray:
    if values is None or values.size == 0:
        return np.full(n, np.nan)
    out = np.full(values.shape[0], np.nan)
    for i, row in enumerate(values):
        row = row[~np.isnan(row)]
        if row.size:
            # "inverted_cdf" keeps infinities infinite instead of producing nan from inf - inf.
            out[i] = np.percentile(row, q, method="inverted_cdf")
    return out


#: The statistics a curve carries (``Profile.stat`` names, ``docs/probes.md §5``).
STATS = (
    "m1",
    "var",
    "gap",
    "cond",
    "sigma_max",
    "sigma_min",
    "rank_fraction",
    "zero_fraction",
    "m1_nonzero",
    "var_nonzero",
    "gap_nonzero",
    "cond_nonzero",
    "m1_bulk",
    "var_bulk",
)


def _stat(profile: Profile, stat: str, section: str) -> np.ndarray:
    """``profile.stat(stat, None)``, NaN where no tap measured it (a profile written before the
    statistic existed, or a Lanczos profile without SLQ taps)."""
    try:
        return profile.stat(stat, None, section=section)
    except KeyError:
        taps = _spectra(profile, section)
        return np.full((len(taps), taps[0].n_examples if taps else 0), np.nan)


def _probe_dtype(profile) -> str:
    return str(profile.meta.get("dtype", "float64"))


def _curve(model: str, scheme: str, profiles: list[Profile], section: str) -> Curve:
    """The curve of one model × scheme: its Profiles (one per seed) at ``section``.

    Values are ``Profile.stat`` per example; names and depths are the profile's taps, which its
    blocks describe too (one block per tap, in order: the probe's reader checks it).
    """
    first = profiles[0]
    values = {
        stat: np.concatenate([_stat(p, stat, section) for p in profiles], axis=1) for stat in STATS
    }
    sigma: list[tuple[np.ndarray, np.ndarray] | None] = []
    for i in range(len(first)):
        parts = [sigma_samples(_spectra(p, section)[i], _probe_dtype(p)) for p in profiles]
        parts = [x for x in parts if x is not None]
        if parts:
            s = np.concatenate([x[0] for x in parts])
            w = np.concatenate([x[1] for x in parts]) / len(parts)
            sigma.append((s, w))
        else:
            sigma.append(None)
    return Curve(
        model=model,
        scheme=scheme,
        depth=first.depths,
        names=first.names,
        values=values,
        sigma=sigma,
        seeds=len(profiles),
    )


def _spectra(profile: Profile, section: str) -> list[TapSpectrum]:
    # The spectra themselves, for the singular values that Profile.stat does not pool.
    return profile.blocks if section == "blocks" else profile.taps


def collect_curves(results: Results, *, section: str = "taps") -> list[Curve]:
    """One :class:`Curve` per model × scheme that ran: the end-to-end Jacobians
    (``Profile.taps``, ``section="taps"``) or each block's own (``Profile.blocks``,
    ``section="blocks"``), where the profiles have that section.

    Example:
        >>> from isokit.report.config import load_config
        >>> collect_curves(Results(config=load_config(), records=[], environment={}))
        []
    """
    if section not in ("taps", "blocks"):
        raise ValueError(f"section must be 'taps' or 'blocks', got {section!r}")
    out = []
    for (model, scheme), records in group_records(results).items():
        profiles = [r.profile for r in records if r.ok and r.profile is not None]
        if section == "blocks":
            profiles = [p for p in profiles if p.blocks is not None]
        if profiles and len(profiles[0]):
            out.append(_curve(model, scheme, profiles, section))
    return out


@dataclass(kw_only=True, eq=False)
class SignalCurve:
    """Forward signal of one model × scheme: ``q``, ``cos`` and ``grad`` ``[L, seeds]``."""

    model: str
    scheme: str
    depth: np.ndarray
    q: np.ndarray
    cos: np.ndarray
    grad: np.ndarray

    def median(self, name: str) -> np.ndarray:
        return _nan_quantile(getattr(self, name), 50.0, len(self.depth))

    def band(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        v = getattr(self, name)
        return _nan_quantile(v, 0.0, len(self.depth)), _nan_quantile(v, 100.0, len(self.depth))


def collect_signals(results: Results) -> list[SignalCurve]:
    """One :class:`SignalCurve` per model × scheme with a forward signal (spread over seeds)."""
    out = []
    for (model, scheme), records in group_records(results).items():
        signals = [
            r.profile.signal
            for r in records
            if r.ok and r.profile is not None and r.profile.signal is not None
        ]
        if not signals:
            continue
        stack = {
            k: np.stack([np.asarray(getattr(s, k), dtype=float) for s in signals], axis=1)
            for k in ("q", "cos", "grad")
        }
        out.append(
            SignalCurve(
                model=model, scheme=scheme, depth=np.arange(1, len(signals[0].taps) + 1), **stack
            )
        )
    return out


@dataclass(frozen=True, kw_only=True)
class RankRow:
    """One line of the ranking table: a scheme on a model, ranked at the last tap.

    ``place`` is the position in the ranking (``None`` for schemes that did not apply);
    ``status`` is ``"ok"`` or ``"not applicable"``; statistics are medians over seeds (and
    examples) at the last tap, ``None`` where not measured.

    Example:
        >>> row = RankRow(model="mlp", scheme="orthogonal", place=1, status="ok", rank_fraction=1.0)
        >>> row.place, row.rank_fraction
        (1, 1.0)
    """

    model: str
    scheme: str
    place: int | None
    status: str
    rank_fraction: float | None = None
    gap_nonzero: float | None = None
    var_nonzero: float | None = None
    cond_nonzero: float | None = None
    gap: float | None = None
    var: float | None = None
    m1: float | None = None
    seeds: int = 0
    note: str = ""


#: The statistics of a :class:`RankRow`, in table order.
RANK_STATS = ("rank_fraction", "gap_nonzero", "var_nonzero", "cond_nonzero", "gap", "var", "m1")


def _last(curve: Curve, stat: str) -> float:
    return float(curve.median(stat)[-1])


def _worst_if_nan(value: float) -> float:
    return math.inf if math.isnan(value) else value


def _sort_key(c: Curve) -> tuple[float, float, float, float, str]:
    # The matrix-free tier measures the node statistics (rank, gap) only at its SLQ taps; where
    # the last tap has none, the scale-free variance of the trace moments decides.
    return (
        _worst_if_nan(-_last(c, "rank_fraction")),
        _worst_if_nan(_last(c, "gap_nonzero")),
        _worst_if_nan(_last(c, "var_nonzero")),
        _worst_if_nan(_last(c, "var")),
        c.scheme,
    )


def _note(c: Curve) -> str:
    note = f"last tap: {c.names[-1]}"
    if math.isnan(_last(c, "rank_fraction")):
        note += " (rank and gap not measured there: ranked by var)"
    return note


def ranking(results: Results, curves: Iterable[Curve] | None = None) -> list[RankRow]:
    """Schemes ranked per model at the last tap: by rank fraction (higher is better), then by
    the isometry gap of the non-zero part (lower is better); where the last tap has no node
    statistics (a matrix-free profile without SLQ there), by the scale-free variance.

    Rank-deficient Jacobians (ReLU masks, a stem that reads part of its input) have an infinite
    gap, which would tie every such scheme; the rank fraction says how much of the spectrum a
    scheme keeps and ``gap_nonzero`` how isometric that part is. Ties are broken by the
    non-zero part's scale-free variance, then by the label; schemes that did not apply come
    last without a place.
    """
    curves = list(collect_curves(results) if curves is None else curves)
    by_key = {(c.model, c.scheme): c for c in curves}
    rows: list[RankRow] = []
    for model in (m.label for m in results.config.models):
        measured = [
            by_key[(model, s.label)] for s in results.config.schemes if (model, s.label) in by_key
        ]
        for place, c in enumerate(sorted(measured, key=_sort_key), start=1):
            rows.append(
                RankRow(
                    model=model,
                    scheme=c.scheme,
                    place=place,
                    status="ok",
                    **{stat: _last(c, stat) for stat in RANK_STATS},
                    seeds=c.seeds,
                    note=_note(c),
                )
            )
        for m, s, msg in results.not_applicable():
            if m == model and (m, s) not in by_key:
                rows.append(
                    RankRow(
                        model=model,
                        scheme=s,
                        place=None,
                        status="not applicable",
                        note="not applicable: " + msg.split(";")[0][:120],
                    )
                )
    return rows
