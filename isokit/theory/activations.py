"""Activation registry: φ, φ', φ'' and their closed-form Gaussian integrals (``docs/theory.md`` §2).

An :class:`Activation` bundles the pointwise functions with optional closed forms for the
Gaussian expectations the mean-field theory needs (``q`` is the pre-activation variance,
``z ~ N(0, 1)``, ``u1 = √q·z1``, ``u2 = √q·(c·z1 + √(1−c²)·z2)``):

- ``mu(q, k)``        ``μ_k(q) = E φ'(√q·z)^{2k}``
- ``e_phi2(q)``       ``E φ(√q·z)²``
- ``dq_e_phi2(q)``    ``d/dq E φ(√q·z)² = E[φ'² + φ·φ''](√q·z)`` (Stein's lemma; ``χ_q/σ_w²``)
- ``e_phi_phi(q, c)`` ``E φ(u1)·φ(u2)``
- ``e_dphi_dphi(q, c)`` ``E φ'(u1)·φ'(u2)`` (``χ_c/σ_w²``)
- ``active_fraction(q)`` ``p(q)`` when ``φ'²`` only takes the values 0 and 1 (piecewise linear),
  so that ``D²`` is Bernoulli(``p``).

A missing closed form means "use quadrature" (``isokit.theory.meanfield``). ``kinks`` lists the
points where φ' jumps; quadrature splits its integrals there. Closed forms are [D] in
``docs/theory.md`` §2 unless noted (ReLU ``μ_k = 1/2`` and hard-tanh ``μ_k = p`` are [S]; the
ReLU C-map is the arc-cosine kernel of Cho & Saul 2009, the erf C-map the kernel of Williams
1997).

Strings name registered activations (:data:`ACTIVATIONS`); any callable acting elementwise on
NumPy arrays is accepted as well (derivatives by central differences unless given).

Example:
    >>> ACTIVATIONS[:4]
    ('linear', 'relu', 'leaky_relu', 'hardtanh')
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

from isokit.theory import _validate as check

__all__ = ["ACTIVATIONS", "Activation", "activation_from_callable", "get_activation"]

Fn = Callable[[np.ndarray], np.ndarray]
_SQRT_PI = math.sqrt(math.pi)


@dataclass(frozen=True, kw_only=True)
class Activation:
    """A pointwise nonlinearity with its derivatives and optional closed forms (module doc).

    Example:
        >>> relu = get_activation("relu")
        >>> relu.phi(np.array([-1.0, 2.0])), relu.mu(1.0, 1), relu.piecewise_linear
        (array([0., 2.]), 0.5, True)
    """

    name: str
    phi: Fn
    dphi: Fn
    d2phi: Fn
    kinks: tuple[float, ...] = ()
    odd: bool = False
    mu: Callable[[float, int], float] | None = None
    e_phi2: Callable[[float], float] | None = None
    dq_e_phi2: Callable[[float], float] | None = None
    e_phi_phi: Callable[[float, float], float] | None = None
    e_dphi_dphi: Callable[[float, float], float] | None = None
    active_fraction: Callable[[float], float] | None = None

    @property
    def piecewise_linear(self) -> bool:
        """True when ``D²`` is Bernoulli(``p``) (linear, ReLU, hard-tanh)."""
        return self.active_fraction is not None

    @property
    def q_free(self) -> bool:
        """True when the ``μ_k`` have a closed form that does not depend on ``q`` (linear, ReLU,
        leaky ReLU): then the Jacobian moments need no fixed point ``q*``."""
        mu = self.mu
        return mu is not None and all(mu(0.5, k) == mu(2.0, k) for k in (1, 2, 3))


# What every theory function accepts as ``act``: a registered name, an Activation or a callable.
ActLike = str | Activation | Fn


# ---------------------------------------------------------------- linear


def _linear_phi(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=float)


def _ones(x: np.ndarray) -> np.ndarray:
    return np.ones_like(np.asarray(x, dtype=float))


def _zeros(x: np.ndarray) -> np.ndarray:
    return np.zeros_like(np.asarray(x, dtype=float))


_LINEAR = Activation(
    name="linear",
    phi=_linear_phi,
    dphi=_ones,
    d2phi=_zeros,
    odd=True,
    mu=lambda q, k: 1.0,
    e_phi2=lambda q: q,
    dq_e_phi2=lambda q: 1.0,
    e_phi_phi=lambda q, c: q * c,
    e_dphi_dphi=lambda q, c: 1.0,
    active_fraction=lambda q: 1.0,
)

# ---------------------------------------------------------------- ReLU


def _relu_kernel(q: float, c: float) -> float:
    # Degree-1 arc-cosine kernel (Cho & Saul 2009): (q/2π)·(√(1−c²) + (π − arccos c)·c).
    c = min(max(c, -1.0), 1.0)
    return q / (2 * math.pi) * (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c)


def _relu_dkernel(c: float) -> float:
    # Degree-0 arc-cosine kernel: P(u1 > 0, u2 > 0) = (π − arccos c)/(2π).
    c = min(max(c, -1.0), 1.0)
    return (math.pi - math.acos(c)) / (2 * math.pi)


_RELU = Activation(
    name="relu",
    phi=lambda x: np.maximum(x, 0.0),
    dphi=lambda x: np.heaviside(x, 0.0),
    d2phi=_zeros,
    kinks=(0.0,),
    mu=lambda q, k: 0.5,
    e_phi2=lambda q: q / 2,
    dq_e_phi2=lambda q: 0.5,
    e_phi_phi=_relu_kernel,
    e_dphi_dphi=lambda q, c: _relu_dkernel(c),
    active_fraction=lambda q: 0.5,
)

# ---------------------------------------------------------------- leaky ReLU (torch's slope 0.01)

_LEAK = 0.01


def _leaky_phi_phi(q: float, c: float) -> float:
    # φ = α·x + (1−α)·relu(x) and E[u1·relu(u2)] = q·c/2 by the symmetry (u1, u2) → (−u1, −u2).
    a = _LEAK
    return a * a * q * c + a * (1 - a) * q * c + (1 - a) ** 2 * _relu_kernel(q, c)


def _leaky_dphi_dphi(q: float, c: float) -> float:
    a = _LEAK
    return a * a + a * (1 - a) + (1 - a) ** 2 * _relu_dkernel(c)


_LEAKY_RELU = Activation(
    name="leaky_relu",
    phi=lambda x: np.where(np.asarray(x) > 0, x, _LEAK * np.asarray(x, dtype=float)),
    dphi=lambda x: np.where(np.asarray(x) > 0, 1.0, _LEAK),
    d2phi=_zeros,
    kinks=(0.0,),
    mu=lambda q, k: (1 + _LEAK ** (2 * k)) / 2,
    e_phi2=lambda q: q * (1 + _LEAK**2) / 2,
    dq_e_phi2=lambda q: (1 + _LEAK**2) / 2,
    e_phi_phi=_leaky_phi_phi,
    e_dphi_dphi=_leaky_dphi_dphi,
)

# ---------------------------------------------------------------- hard-tanh


def _ht_p(q: float) -> float:
    # p(q) = P(|√q·z| < 1) = erf(1/√(2q))  [S]
    return 1.0 if q <= 0 else math.erf(1 / math.sqrt(2 * q))


def _ht_inner(q: float) -> float:
    # E[z²·1{q·z² < 1}] = p − 2a·ϕ(a) with a = 1/√q
    if q <= 0:
        return 1.0
    a = 1 / math.sqrt(q)
    return _ht_p(q) - 2 * a * math.exp(-a * a / 2) / math.sqrt(2 * math.pi)


_HARDTANH = Activation(
    name="hardtanh",
    phi=lambda x: np.clip(x, -1.0, 1.0),
    dphi=lambda x: (np.abs(np.asarray(x)) < 1).astype(float),
    d2phi=_zeros,
    kinks=(-1.0, 1.0),
    odd=True,
    mu=lambda q, k: _ht_p(q),
    e_phi2=lambda q: q * _ht_inner(q) + (1 - _ht_p(q)),
    dq_e_phi2=_ht_inner,
    active_fraction=_ht_p,
)

# ---------------------------------------------------------------- erf


def _erf_dphi(x: np.ndarray) -> np.ndarray:
    return 2 / _SQRT_PI * np.exp(-np.square(x))


_ERF = Activation(
    name="erf",
    phi=special.erf,
    dphi=_erf_dphi,
    d2phi=lambda x: -2 * np.asarray(x) * _erf_dphi(x),
    odd=True,
    # μ_k = (4/π)^k·(1 + 4kq)^{−1/2}
    mu=lambda q, k: (4 / math.pi) ** k / math.sqrt(1 + 4 * k * q),
    # Williams (1997) kernel: E φ(u1)φ(u2) = (2/π)·arcsin(2qc/(1+2q))
    e_phi2=lambda q: 2 / math.pi * math.asin(2 * q / (1 + 2 * q)),
    dq_e_phi2=lambda q: 4 / math.pi / ((1 + 2 * q) * math.sqrt(1 + 4 * q)),
    e_phi_phi=lambda q, c: 2 / math.pi * math.asin(2 * q * c / (1 + 2 * q)),
    e_dphi_dphi=lambda q, c: 4 / math.pi / math.sqrt((1 + 2 * q) ** 2 - 4 * q * q * c * c),
)

# ---------------------------------------------------------------- quadrature-only activations


def _tanh_dphi(x: np.ndarray) -> np.ndarray:
    return 1 - np.tanh(x) ** 2


_TANH = Activation(
    name="tanh",
    phi=np.tanh,
    dphi=_tanh_dphi,
    d2phi=lambda x: -2 * np.tanh(x) * _tanh_dphi(x),
    odd=True,
)


def _npdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.square(x) / 2) / math.sqrt(2 * math.pi)


_GELU = Activation(
    name="gelu",
    phi=lambda x: np.asarray(x) * special.ndtr(x),
    dphi=lambda x: special.ndtr(x) + np.asarray(x) * _npdf(x),
    d2phi=lambda x: _npdf(x) * (2 - np.square(x)),
)


def _sigmoid_dphi(x: np.ndarray) -> np.ndarray:
    s = special.expit(x)
    return s * (1 - s)


_SIGMOID = Activation(
    name="sigmoid",
    phi=special.expit,
    dphi=_sigmoid_dphi,
    d2phi=lambda x: _sigmoid_dphi(x) * (1 - 2 * special.expit(x)),
)

# SELU constants of Klambauer et al. 2017, as in torch.nn.SELU.
_SELU_L = 1.0507009873554804934193349852946
_SELU_A = 1.6732632423543772848170429916717


def _selu_neg(x: np.ndarray) -> np.ndarray:
    return _SELU_L * _SELU_A * np.exp(np.minimum(x, 0.0))


_SELU = Activation(
    name="selu",
    phi=lambda x: np.where(
        np.asarray(x) > 0, _SELU_L * np.asarray(x), _selu_neg(x) - _SELU_L * _SELU_A
    ),
    dphi=lambda x: np.where(np.asarray(x) > 0, _SELU_L, _selu_neg(x)),
    d2phi=lambda x: np.where(np.asarray(x) > 0, 0.0, _selu_neg(x)),
    kinks=(0.0,),
)

_REGISTRY: dict[str, Activation] = {
    a.name: a for a in (_LINEAR, _RELU, _LEAKY_RELU, _HARDTANH, _ERF, _TANH, _GELU, _SIGMOID, _SELU)
}
_ALIASES = {"identity": "linear", "hard_tanh": "hardtanh"}

ACTIVATIONS: tuple[str, ...] = tuple(_REGISTRY)


def activation_from_callable(
    phi: Fn,
    *,
    name: str | None = None,
    dphi: Fn | None = None,
    d2phi: Fn | None = None,
    kinks: tuple[float, ...] = (),
    odd: bool | None = None,
) -> Activation:
    """Wrap an elementwise NumPy callable as an :class:`Activation` (quadrature only).

    Missing derivatives are central differences: ``φ' ≈ (φ(x+h) − φ(x−h))/2h`` with
    ``h = 1e-6·max(1, |x|)`` and ``φ'' ≈ (φ(x+h) − 2φ(x) + φ(x−h))/h²`` with ``h = 1e-4·max(1,
    |x|)`` (step sizes balance truncation against float64 round-off). Pass ``kinks`` where φ'
    jumps, so quadrature splits there; a delta in φ'' at a kink is not captured. ``odd=None``
    tests ``φ(−x) = −φ(x)`` on a grid.

    Example:
        >>> act = activation_from_callable(np.sin)
        >>> act.name, act.odd, round(float(act.dphi(np.array([0.0]))[0]), 8)  # cos 0
        ('sin', True, 1.0)
    """
    if not callable(phi):
        raise ValueError(f"activation must be a name or a callable, got {phi!r}")

    def f(x: np.ndarray) -> np.ndarray:
        return np.asarray(phi(np.asarray(x, dtype=float)), dtype=float)

    try:
        probe = f(np.linspace(-1.0, 1.0, 5))
    except Exception as err:  # a torch function, say, rejects NumPy input
        raise ValueError(
            f"activation callable {phi!r} must act elementwise on NumPy float arrays ({err}); "
            "wrap it, e.g. lambda x: torch.tanh(torch.from_numpy(x)).numpy()"
        ) from err
    if probe.shape != (5,):
        raise ValueError(f"activation callable {phi!r} is not elementwise: shape {probe.shape}")

    def d1(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        h = 1e-6 * np.maximum(1.0, np.abs(x))
        return (f(x + h) - f(x - h)) / (2 * h)

    def d2(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        h = 1e-4 * np.maximum(1.0, np.abs(x))
        return (f(x + h) - 2 * f(x) + f(x - h)) / (h * h)

    if odd is None:
        grid = np.linspace(0.05, 4.0, 41)
        odd = bool(np.allclose(f(-grid), -f(grid), rtol=1e-12, atol=1e-12))
    return Activation(
        name=name or getattr(phi, "__name__", "custom"),
        phi=f,
        dphi=dphi or d1,
        d2phi=d2phi or d2,
        kinks=tuple(check.real(f"kinks[{i}]", k) for i, k in enumerate(kinks)),
        odd=odd,
    )


def get_activation(act: str | Activation | Fn) -> Activation:
    """Resolve ``act`` (a registered name, an :class:`Activation` or a callable).

    Example:
        >>> get_activation("identity").name  # names are case-insensitive; aliases resolve
        'linear'
        >>> get_activation(np.tanh).odd
        True
    """
    if isinstance(act, Activation):
        return act
    if isinstance(act, str):
        key = _ALIASES.get(act.lower(), act.lower())
        if key not in _REGISTRY:
            raise ValueError(
                f"unknown activation {act!r}; use one of {', '.join(ACTIVATIONS)}, an "
                "isokit.theory Activation, or an elementwise NumPy callable"
            )
        return _REGISTRY[key]
    return activation_from_callable(act)
