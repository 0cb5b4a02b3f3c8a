"""Jacobian moments of residual networks (``docs/theory.md`` §4).

For ``x^l = x^{l−1} + a·φ(W^l x^{l−1} + b^l)``, ``J = Π_l (I + a·D^l W^l)``. With
``s_l = a²·σ_w²·μ1(q^l)`` and ``Y_l = (I + aDW)ᵀ(I + aDW)``, to leading order in ``N``:
``τ(Y) = 1 + s`` and ``τ(Y²) = 1 + 4s + a⁴σ_w⁴·(μ2 − s1·μ1²)`` (odd terms in ``W`` and
``τ(DWDW)`` vanish). Treating the ``Y_l`` as free and using the additivity of ``ρ − 1`` with
``ρ(x) = τ(x²)/τ(x)²`` (§3.2) gives [D]

- ``m1 = Π_l (1 + s_l)`` (exact in expectation at any ``N`` for linear Gaussian layers),
- ``v = Σ_l [2s_l + a⁴σ_w⁴·(μ2(q^l) − (1 + s1)·μ1(q^l)²)]/(1 + s_l)²``,

with ``s1 = −1`` (Gaussian) or ``0`` (orthogonal). When ``a² = O(1/L)`` both depend on
``t = Σ_l s_l`` alone: ``m1 → e^t``, ``v → 2t`` (consistent with Tarnowski et al. 2019 [A]).

For bias-free ReLU ResNets the positive mean of the branch outputs builds an outlier direction
(§4): compare these formulas with the bulk after removing the top one or two eigenvalues.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isokit.theory import _validate as check
from isokit.theory._layers import S1
from isokit.theory.activations import Activation, ActLike, get_activation
from isokit.theory.gaussian import _e_phi2, _mu
from isokit.theory.prediction import Prediction

__all__ = ["ResNetMoments", "resnet_moments", "resnet_q_profile"]


@dataclass(frozen=True, kw_only=True)
class ResNetMoments:
    """``m1``, ``v`` and the single parameter ``t = Σ_l s_l`` of a residual net's ``JJᵀ``.

    Example:
        >>> moments = resnet_moments(act="linear", a=0.0, sw2=1.0, sb2=0.0, depth=4)
        >>> isinstance(moments, ResNetMoments), moments.m1.value  # a = 0: the identity
        (True, 1.0)
    """

    m1: Prediction
    v: Prediction
    t: Prediction


def _profile(a: Activation, alpha: np.ndarray, sw2: np.ndarray, sb2: np.ndarray, x0_sq: float):
    # q^l = σ_w²·P^{l−1} + σ_b², P^l = P^{l−1} + a²·E φ(√q^l z)²: the cross term E[x·φ(Wx + b)]
    # vanishes only for odd φ, so only odd φ may use this recursion.
    qs, P = np.empty(len(alpha)), x0_sq
    for layer in range(len(alpha)):
        qs[layer] = check.result("q^l", sw2[layer] * P + sb2[layer])
        P += alpha[layer] ** 2 * _e_phi2(a, qs[layer])
    return qs


def resnet_q_profile(
    *,
    act: ActLike,
    a: float | np.ndarray,
    sw2: float | np.ndarray,
    sb2: float | np.ndarray,
    depth: int,
    x0_sq: float = 1.0,
) -> Prediction:
    """Branch pre-activation variances ``q^1..q^L`` of a residual net with odd φ (§4) [D].

    ``q^l = σ_w²·P^{l−1} + σ_b²`` and ``P^l = P^{l−1} + a²·E φ(√q^l·z)²``, ``P^0 = ‖x^0‖²/N``
    (``x0_sq``). Non-odd φ (ReLU, GELU) has a non-vanishing cross term: measure ``q^l`` instead.

    Example:
        >>> resnet_q_profile(act="linear", a=1.0, sw2=1.0, sb2=0.0, depth=3).value  # P doubles
        array([1., 2., 4.])
    """
    act_, alpha, sw2s, sb2s = _setup(act, a, sw2, sb2, depth)
    if not act_.odd:
        raise ValueError(
            f"the residual variance recursion needs an odd activation; {act_.name} is not odd "
            "(the skip/branch cross term does not vanish): pass a measured q_profile instead"
        )
    qs = _profile(act_, alpha, sw2s, sb2s, check.variance("x0_sq", x0_sq))
    return Prediction(
        value=qs,
        tag="D",
        cite="derived",
        section="§4",
        what=f"branch q^l of a residual {act_.name} net",
    )


def _setup(act, a, sw2, sb2, depth):
    act_ = get_activation(act)
    depth = check.integer("depth", depth, minimum=0)
    if np.ndim(a) == 0:
        alpha = np.full(depth, check.real("a (the branch multiplier)", a))
    else:
        alpha = check.reals("a (the branch multiplier)", a)
        if alpha.shape != (depth,):
            raise ValueError(f"a has {alpha.size} entries but depth={depth}; give one per block")
    sw2s = check.variances("sw2", sw2, depth, positive=True)
    sb2s = check.variances("sb2", sb2, depth)
    return act_, alpha, sw2s, sb2s


def resnet_moments(
    *,
    act: ActLike,
    a: float | np.ndarray,
    sw2: float | np.ndarray,
    sb2: float | np.ndarray,
    depth: int,
    weights: str = "gaussian",
    q_profile: np.ndarray | None = None,
    x0_sq: float = 1.0,
) -> ResNetMoments:
    """``m1``, ``v`` of ``JJᵀ`` for ``J = Π_l (I + a·D^l W^l)`` (module docstring, §4) [D].

    ``q^l`` comes from ``q_profile`` if given; it is not needed when ``μ_k`` does not depend
    on ``q`` (linear, ReLU); otherwise, for odd φ, from :func:`resnet_q_profile` with
    ``P^0 = x0_sq``. ``a``, ``sw2``, ``sb2`` may be per block.

    Example:
        >>> moments = resnet_moments(act="relu", a=0.1, sw2=2.0, sb2=0.0, depth=10)
        >>> round(moments.t.value, 6), round(moments.m1.value, 4)  # t = L·a²·σ_w²·μ1
        (0.1, 1.1046)
    """
    act_, alpha, sw2s, sb2s = _setup(act, a, sw2, sb2, depth)
    s1 = S1[check.weights("weights", weights)]
    L = len(alpha)
    if q_profile is not None:
        qs = np.array([check.variance(f"q_profile[{i}]", q) for i, q in enumerate(q_profile)])
        if len(qs) != L:
            raise ValueError(f"q_profile has {len(qs)} entries but depth={L}; give q^1..q^L")
    elif act_.q_free:
        qs = np.ones(L)  # μ_k does not depend on q
    else:
        qs = np.asarray(
            resnet_q_profile(act=act_, a=alpha, sw2=sw2s, sb2=sb2s, depth=L, x0_sq=x0_sq).value
        )
    mu1 = np.array([_mu(act_, float(q), 1) for q in qs])
    mu2 = np.array([_mu(act_, float(q), 2) for q in qs])
    s = alpha**2 * sw2s * mu1
    a4w4 = alpha**4 * sw2s**2
    terms = (2 * s + a4w4 * (mu2 - (1 + s1) * mu1**2)) / (1 + s) ** 2
    name = f"residual {act_.name}, {weights}, L={L}"
    return ResNetMoments(
        m1=Prediction(
            value=check.result("m1", float(np.prod(1 + s))),
            tag="D",
            cite="derived",
            section="§4",
            what=f"m1 = Π (1 + s_l) ({name})",
        ),
        v=Prediction(
            value=check.result("v", float(np.sum(terms))),
            tag="D",
            cite="derived",
            section="§4",
            what=f"v = Σ [2s + a⁴σ_w⁴(μ2 − (1+s1)μ1²)]/(1+s)² ({name})",
        ),
        t=Prediction(
            value=float(np.sum(s)),
            tag="D",
            cite="derived",
            section="§4",
            what=f"t = Σ a²σ_w²μ1(q^l); m1 → e^t, v → 2t as a² → 0 ({name})",
        ),
    )
