"""Gaussian expectations for the mean-field theory (``docs/theory.md`` §1.1).

- ``E f(z)``: probabilists' Gauss–Hermite quadrature (``hermegauss``, 200 nodes, weights
  normalized to sum to 1).
- ``E f(u1, u2)`` with ``u1 = √q·z1``, ``u2 = √q·(c·z1 + √(1−c²)·z2)``: a 96×96 tensor grid.
- The activation integrals themselves (``μ_k``, ``E φ²``, C-map) use Gauss–Legendre on pieces
  of the truncated interval ``[−12, 12]`` (in standard deviations), split at the kinks (ReLU,
  hard-tanh, SELU), where Hermite quadrature converges slowly, and at feature points on both
  the ``z`` and the ``u`` scale, so that large ``q`` (narrow features in ``z``) stays accurate.

The ``_``-prefixed evaluators dispatch to an activation's closed form when it has one and fall
back to quadrature otherwise; the theory modules share them. They raise ``ValueError`` instead of
returning NaN or inf (an activation undefined or overflowing on part of the Gaussian's range).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
from numpy.polynomial import hermite_e, legendre

from isokit.theory import _validate as check
from isokit.theory.activations import Activation

__all__ = ["gauss_expect", "gauss_expect2"]

_Z_MAX = 12.0  # Gaussian mass beyond 12 sd is ~1e-33: truncating there is exact in float64
# Breakpoints: the Gaussian weight bends at |z| ~ 1..3, a typical activation at |u| ~ 0..3
# (u = √q·z). Splitting at both keeps every piece smooth on its own scale, so large q (narrow
# features in z) and kinks are both resolved.
_Z_BREAKS = (-3.0, -1.0, 1.0, 3.0)
_U_FEATURES = (0.0, -1.0, 1.0, -3.0, 3.0)
_NODES_1D = 48  # Gauss–Legendre nodes per piece
_NODES_2D = 24
_F_HINT = "f returns NaN or inf on part of the Gaussian's range; make it finite on all reals"


@functools.cache
def _hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = hermite_e.hermegauss(n)
    return x, w / w.sum()


@functools.cache
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return legendre.leggauss(n)


def _pieces(breaks: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and N(0,1)-weights on [−Z, Z] split at ``breaks`` (shape ``(m, K)``, row-wise)."""
    m = breaks.shape[0]
    edges = np.concatenate(
        [
            np.full((m, 1), -_Z_MAX),
            np.clip(np.sort(breaks, axis=1), -_Z_MAX, _Z_MAX),
            np.full((m, 1), _Z_MAX),
        ],
        axis=1,
    )
    x, w = _legendre(n)
    lo, hi = edges[:, :-1, None], edges[:, 1:, None]
    nodes = (lo + hi) / 2 + (hi - lo) / 2 * x
    weights = (hi - lo) / 2 * w * np.exp(-(nodes**2) / 2) / math.sqrt(2 * math.pi)
    return nodes.reshape(m, -1), weights.reshape(m, -1)


def _u_points(kinks: tuple[float, ...]) -> np.ndarray:
    return np.array(sorted(set(kinks) | set(_U_FEATURES)), dtype=float)


def gauss_expect(f: Callable[[np.ndarray], np.ndarray], *, n: int = 200) -> float:
    """``E f(z)`` for ``z ~ N(0, 1)`` by ``n``-node probabilists' Gauss–Hermite quadrature (§1.1).

    A numerical primitive, so it returns a float rather than a :class:`Prediction`. For
    integrands with kinks prefer :func:`isokit.theory.meanfield.mu` and friends, which split
    the integral there.

    Example:
        >>> round(gauss_expect(lambda z: z**4), 10)  # the fourth moment of N(0, 1)
        3.0
    """
    x, w = _hermite(check.integer("n", n, minimum=1))
    return check.result("E f(z)", float(w @ np.asarray(f(x), dtype=float)), hint=_F_HINT)


def _nested2(f, q: float, c: float, kinks: tuple[float, ...]) -> float:
    """Nested split Gauss–Legendre for ``E f(u1, u2)``: the ``z1`` integral is split where ``u1``
    crosses a kink or feature point, and for each ``z1`` the ``z2`` integral where ``u2`` does."""
    s, r = math.sqrt(q), math.sqrt(max(1.0 - c * c, 0.0))
    u = _u_points(kinks)
    z1, w1 = _pieces(np.concatenate([u / s, _Z_BREAKS])[None, :], _NODES_2D)
    z1, w1 = z1[0], w1[0]
    if r < 1e-12:  # c = ±1: u2 = c·u1
        return float(w1 @ np.asarray(f(s * z1, c * s * z1), dtype=float))
    inner = (u[None, :] / s - c * z1[:, None]) / r
    zb = np.broadcast_to(np.asarray(_Z_BREAKS), (len(z1), len(_Z_BREAKS)))
    z2, w2 = _pieces(np.concatenate([inner, zb], axis=1), _NODES_2D)
    vals = np.asarray(f(s * z1[:, None], s * (c * z1[:, None] + r * z2)), dtype=float)
    return float(w1 @ (vals * w2).sum(axis=1))


def gauss_expect2(
    f: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    q: float,
    c: float,
    n: int = 96,
    kinks: tuple[float, ...] | None = None,
) -> float:
    """``E f(u1, u2)`` with ``u1 = √q·z1``, ``u2 = √q·(c·z1 + √(1−c²)·z2)`` (§1.1).

    With ``kinks=None``: an ``n × n`` Gauss–Hermite tensor grid. With ``kinks`` (a tuple,
    possibly empty, of points in ``u`` where ``f`` is not smooth): nested Gauss–Legendre split
    at the kinks, which stays accurate for large ``q`` and near ``c = 1``.

    Example:
        >>> round(gauss_expect2(lambda u1, u2: u1 * u2, q=2.0, c=0.5), 10)  # E u1·u2 = q·c
        1.0
    """
    q = check.variance("q", q)
    c = check.correlation("c", c)
    n = check.integer("n", n, minimum=1)
    return check.result("E f(u1, u2)", _expect2(f, q, c, n, kinks), hint=_F_HINT)


def _expect2(f, q: float, c: float, n: int, kinks: tuple[float, ...] | None) -> float:
    if kinks is not None and q > 0:
        return _nested2(f, q, c, tuple(kinks))
    s, r = math.sqrt(q), math.sqrt(max(1.0 - c * c, 0.0))
    x, w = _hermite(n)
    z1, z2 = x[:, None], x[None, :]
    return float(w @ np.asarray(f(s * z1, s * (c * z1 + r * z2)), dtype=float) @ w)


def _expect1(a: Activation, f: Callable[[np.ndarray], np.ndarray], q: float) -> float:
    """``E f(√q·z)`` by split Gauss–Legendre (kinks and feature points of the activation)."""
    if q == 0:
        return float(np.asarray(f(np.zeros(1)))[0])
    breaks = np.concatenate([_u_points(a.kinks) / math.sqrt(q), _Z_BREAKS])
    z, w = _pieces(breaks[None, :], _NODES_1D)
    return float(w[0] @ np.asarray(f(math.sqrt(q) * z[0]), dtype=float))


# ---------------------------------------------------------------- private evaluators (floats)


def _finite(a: Activation, what: str, q: float, value: float) -> float:
    # One clear error where a custom activation is undefined (log) or overflows (exp at large q),
    # instead of a NaN that would travel through every later formula.
    if not math.isfinite(value):
        raise ValueError(
            f"{what} of {a.name} at q={q:g} is {value}: the activation is undefined or overflows "
            "on part of the Gaussian's range; use a smaller q or an activation finite on all reals"
        )
    return value


def _mu(a: Activation, q: float, k: int) -> float:
    if a.mu is not None:
        return _finite(a, f"μ_{k}", q, float(a.mu(q, k)))
    return _finite(a, f"μ_{k}", q, _expect1(a, lambda x: a.dphi(x) ** (2 * k), q))


def _e_phi2(a: Activation, q: float) -> float:
    if a.e_phi2 is not None:
        return _finite(a, "E φ²", q, float(a.e_phi2(q)))
    return _finite(a, "E φ²", q, _expect1(a, lambda x: a.phi(x) ** 2, q))


def _dq_e_phi2(a: Activation, q: float) -> float:
    if a.dq_e_phi2 is not None:
        return _finite(a, "d/dq E φ²", q, float(a.dq_e_phi2(q)))
    smooth = _expect1(a, lambda x: a.dphi(x) ** 2 + a.phi(x) * a.d2phi(x), q)
    if q == 0:
        return _finite(a, "d/dq E φ²", q, smooth)
    # A jump Δ in φ' at a kink κ puts Δ·δ(x−κ) into φ''; it adds Δ·φ(κ)·density(κ).
    delta = 0.0
    for kink in a.kinks:
        eps = 1e-9 * max(1.0, abs(kink))
        jump = float(a.dphi(np.array([kink + eps]))[0] - a.dphi(np.array([kink - eps]))[0])
        dens = math.exp(-kink * kink / (2 * q)) / math.sqrt(2 * math.pi * q)
        delta += jump * float(a.phi(np.array([kink]))[0]) * dens
    return _finite(a, "d/dq E φ²", q, smooth + delta)


def _e_phi_phi(a: Activation, q: float, c: float) -> float:
    if a.e_phi_phi is not None:
        return _finite(a, "E φ(u1)φ(u2)", q, float(a.e_phi_phi(q, c)))
    value = _expect2(lambda u, v: a.phi(u) * a.phi(v), q, c, 96, a.kinks)
    return _finite(a, "E φ(u1)φ(u2)", q, value)


def _e_dphi_dphi(a: Activation, q: float, c: float) -> float:
    if a.e_dphi_dphi is not None:
        return _finite(a, "E φ'(u1)φ'(u2)", q, float(a.e_dphi_dphi(q, c)))
    value = _expect2(lambda u, v: a.dphi(u) * a.dphi(v), q, c, 96, a.kinks)
    return _finite(a, "E φ'(u1)φ'(u2)", q, value)
