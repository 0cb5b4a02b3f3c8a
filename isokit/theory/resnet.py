"""Jacobian moments of residual networks (``docs/theory.md`` §4).

For ``x^l = x^{l−1} + a·φ(W^l x^{l−1} + b^l)``, ``J = Π_l (I + a·D^l W^l)``. With
``s_l = a²·σ_w²·μ1(q^l)`` and ``Y_l = (I + aDW)ᵀ(I + aDW)``, to leading order in ``N``:
``τ(Y) = 1 + s`` and ``τ(Y²) = 1 + 4s + a⁴σ_w⁴·(μ2 − s1·μ1²)`` (odd terms in ``W`` and
``τ(DWDW)`` vanish). Treating the ``Y_l`` as free and using the additivity of ``ρ − 1`` with
``ρ(x) = τ(x²)/τ(x)²`` (§3.2) gives [D]

- ``m1 = Π_l (1 + s_l)`` (exact in expectation at any ``N`` for linear Gaussian layers),
- ``var = Σ_l [2s_l + a⁴σ_w⁴·(μ2(q^l) − (1 + s1)·μ1(q^l)²)]/(1 + s_l)²`` and
  ``var_raw = m2 − m1² = m1²·var``,

with ``s1 = −1`` (Gaussian) or ``0`` (orthogonal). When ``a² = O(1/L)`` both depend on
``t = Σ_l s_l`` alone: ``m1 → e^t``, ``var → 2t`` (consistent with Tarnowski et al. 2019 [A]).

**Bulk.** For φ that is not odd (ReLU, leaky ReLU) the non-zero mean of the branch outputs
builds one outlier eigenvalue outside these formulas (§4); they then describe the bulk, the
spectrum without its largest eigenvalue, and the predictions say so by naming the probe
statistics ``m1_bulk`` and ``var_bulk`` (:attr:`~isokit.theory.Prediction.statistic`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isokit.theory import _validate as check
from isokit.theory._layers import S1
from isokit.theory.activations import Activation, ActLike, get_activation
from isokit.theory.gaussian import _e_phi2, _mu
from isokit.theory.prediction import Prediction

__all__ = [
    "ResNetMoments",
    "ResNetPrediction",
    "predict_resnet",
    "resnet_moments",
    "resnet_q_profile",
]


@dataclass(frozen=True, kw_only=True)
class ResNetMoments:
    """``m1``, ``var``, ``var_raw`` and the single parameter ``t = Σ_l s_l`` of a residual
    net's ``JJᵀ``.

    Where φ is not odd they describe the bulk (module docstring): ``m1.statistic`` is
    ``"m1_bulk"``, ``var.statistic`` is ``"var_bulk"`` and ``var_raw.statistic`` is ``None`` (no
    probe statistic measures the bulk's raw variance).

    Example:
        >>> moments = resnet_moments(act="linear", a=0.0, sw2=1.0, sb2=0.0, depth=4)
        >>> isinstance(moments, ResNetMoments), moments.m1.value  # a = 0: the identity
        (True, 1.0)
        >>> resnet_moments(act="relu", a=0.5, sw2=2.0, sb2=0.0, depth=4).m1.statistic
        'm1_bulk'
    """

    m1: Prediction
    var: Prediction
    var_raw: Prediction
    t: Prediction


@dataclass(frozen=True, kw_only=True)
class ResNetPrediction:
    """The predictions of :class:`ResNetMoments` at every depth ``l = 1..L`` (``∂x^l/∂x^0``).

    Every array is indexed by ``l − 1``.

    Example:
        >>> pred = predict_resnet(act="linear", a=1.0, sw2=1.0, sb2=0.0, depth=3)
        >>> pred.depths, pred.m1.value  # m1 = (1 + a²σ_w²)^l
        (array([1, 2, 3]), array([2., 4., 8.]))
    """

    depths: np.ndarray
    m1: Prediction
    var: Prediction
    var_raw: Prediction
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


def _blocks(act, a, sw2, sb2, depth, weights, q_profile, x0_sq):
    """The activation, and per block ``s_l`` and its term of ``var`` (module docstring)."""
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
    return act_, s, terms


def _predictions(act_: Activation, m1, var, t, name: str) -> dict[str, Prediction]:
    """The four predictions, each naming the probe statistic that measures it."""
    bulk = not act_.odd  # the branch outputs' non-zero mean makes one outlier eigenvalue (§4)
    part = "the bulk without the largest eigenvalue; " if bulk else ""
    m1 = check.result("m1", m1)
    var = check.result("var", var)
    var_raw = check.result("var_raw", np.asarray(m1) ** 2 * np.asarray(var))

    def pred(value, what: str, statistic: str | None) -> Prediction:
        value = float(value) if np.ndim(value) == 0 else value
        what = f"{what} ({part}{name})"
        return Prediction(
            value=value, tag="D", cite="derived", section="§4", what=what, statistic=statistic
        )

    return {
        "m1": pred(m1, "m1 = Π (1 + s_l)", "m1_bulk" if bulk else "m1"),
        "var": pred(
            var, "var = Σ [2s + a⁴σ_w⁴(μ2 − (1+s1)μ1²)]/(1+s)²", "var_bulk" if bulk else "var"
        ),
        "var_raw": pred(var_raw, "var_raw = m1²·var", None if bulk else "var_raw"),
        "t": pred(t, "t = Σ a²σ_w²μ1(q^l); m1 → e^t, var → 2t as a² → 0", None),
    }


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
    """``m1``, ``var``, ``var_raw`` of ``JJᵀ`` for ``J = Π_l (I + a·D^l W^l)`` (§4) [D].

    ``q^l`` comes from ``q_profile`` if given; it is not needed when ``μ_k`` does not depend
    on ``q`` (linear, ReLU); otherwise, for odd φ, from :func:`resnet_q_profile` with
    ``P^0 = x0_sq``. ``a``, ``sw2``, ``sb2`` may be per block. For φ that is not odd the
    moments are those of the bulk (:class:`ResNetMoments`).

    Example:
        >>> moments = resnet_moments(act="relu", a=0.1, sw2=2.0, sb2=0.0, depth=10)
        >>> round(moments.t.value, 6), round(moments.m1.value, 4)  # t = L·a²·σ_w²·μ1
        (0.1, 1.1046)
    """
    act_, s, terms = _blocks(act, a, sw2, sb2, depth, weights, q_profile, x0_sq)
    name = f"residual {act_.name}, {weights}, L={len(s)}"
    total = _predictions(act_, np.prod(1 + s), np.sum(terms), np.sum(s), name)
    return ResNetMoments(**total)


def predict_resnet(
    *,
    act: ActLike,
    a: float | np.ndarray,
    sw2: float | np.ndarray,
    sb2: float | np.ndarray,
    depth: int,
    weights: str = "gaussian",
    q_profile: np.ndarray | None = None,
    x0_sq: float = 1.0,
) -> ResNetPrediction:
    """:func:`resnet_moments` at every depth ``l = 1..L``: the prefixes of its product and sums.

    Example:
        >>> pred = predict_resnet(act="tanh", a=0.5, sw2=1.0, sb2=0.0, depth=4)
        >>> whole = resnet_moments(act="tanh", a=0.5, sw2=1.0, sb2=0.0, depth=4)
        >>> bool(pred.m1.value[-1] == whole.m1.value), pred.var.statistic
        (True, 'var')
    """
    act_, s, terms = _blocks(act, a, sw2, sb2, depth, weights, q_profile, x0_sq)
    name = f"residual {act_.name}, {weights}, per depth"
    per_depth = _predictions(act_, np.cumprod(1 + s), np.cumsum(terms), np.cumsum(s), name)
    return ResNetPrediction(depths=np.arange(1, len(s) + 1), **per_depth)
