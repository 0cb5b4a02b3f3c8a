"""Theory lines for a report: the prediction for a given model and scheme, or nothing.

:func:`overlay` maps a reference-model description and an initialization scheme to the
per-depth free-probability prediction of ``m1`` and the scale-free variance ``v`` of ``JJᵀ``
(``predict_mlp``, §3.2–§3.3 of ``reference/theory.md``). It returns ``None`` wherever no theory
in :mod:`isokit.theory` describes the pair exactly — residual networks with convolutions and
pad shortcuts, identity-like schemes, data-dependent schemes, unequal widths — so a report never
draws a curve that does not apply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from isokit.theory.activations import ACTIVATIONS
from isokit.theory.prediction import CITATIONS
from isokit.theory.spectra import predict_mlp


@dataclass(frozen=True, kw_only=True)
class Overlay:
    """A theory line over tap depths ``1..L``.

    Attributes:
        depth: tap depths the prediction covers.
        m1: predicted mean squared singular value per depth.
        var: predicted scale-free variance ``m2/m1² − 1`` per depth.
        label: what the line is (activation, ensemble, σ_w², σ_b²).
        citation: the reference the formula comes from.
        tag: the provenance tag of the weakest part (``"R"`` or ``"D"``, see theory.md).
    """

    depth: np.ndarray
    m1: np.ndarray | None
    var: np.ndarray | None
    label: str
    citation: str
    tag: str


def _gain2(nonlinearity: str, a: float) -> float | None:
    gains = {
        "linear": 1.0,
        "conv2d": 1.0,
        "sigmoid": 1.0,
        "tanh": (5 / 3) ** 2,
        "relu": 2.0,
        "selu": (3 / 4) ** 2,
        "leaky_relu": 2.0 / (1 + a**2),
    }
    return gains.get(nonlinearity)


def _weight_law(scheme: str, options: dict, fan_in: int) -> tuple[float, float, str] | None:
    """(σ_w², σ_b², ensemble) of a scheme on square layers of fan-in ``fan_in``, or None."""
    if options.get("bias", "zero") != "zero":
        return None
    if scheme in ("kaiming-normal", "kaiming-uniform"):
        g2 = _gain2(options.get("nonlinearity", "relu"), float(options.get("a", 0.0)))
        return None if g2 is None else (g2, 0.0, "gaussian")
    if scheme in ("xavier-normal", "xavier-uniform"):
        return (float(options.get("gain", 1.0)) ** 2, 0.0, "gaussian")
    if scheme in ("orthogonal", "delta-orthogonal"):
        gain = options.get("gain", 1.0)
        gain = math.sqrt(2.0) if gain == "relu" else float(gain)
        return (gain**2, 0.0, "orthogonal")
    if scheme == "torch-default":
        # U(±1/√fan_in) weights and biases: variance 1/(3·fan_in) each.
        return (1.0 / 3.0, 1.0 / (3.0 * fan_in), "gaussian")
    return None


def overlay(
    *,
    kind: str,
    model_args: dict,
    scheme: str,
    scheme_options: dict | None = None,
    taps: list[str] | None = None,
    input_second_moment: float = 1.0,
) -> Overlay | None:
    """The theory prediction for ``kind(**model_args)`` under ``scheme``, or ``None``.

    Applies to an ``MLP`` whose input width equals its hidden width (the setting of the theory)
    under Gaussian-law schemes (Kaiming, Xavier, torch default: i.i.d. entries, whose products
    follow the Marchenko–Pastur law at large width whatever the entry distribution) or
    orthogonal ones, and to a linear ``ConvNet`` with ``in_channels == channels`` under
    delta-orthogonal, an exact isometry up to the gain (§5). (With a nonlinearity the §5 law
    holds per position only, not for the pooled spectrum a probe measures.) Taps
    must be the post-activations (the models' default taps, the head excluded).
    ``input_second_moment`` is ``E[x_i²]`` of the probe inputs, which sets ``q¹``.

    Example:
        >>> ov = overlay(kind="mlp", model_args=dict(in_features=64, width=64, depth=8,
        ...              activation="tanh"), scheme="orthogonal")
        >>> ov.m1.shape
        (8,)
    """
    options = dict(scheme_options or {})
    kind = kind.lower()
    args = dict(model_args)
    if kind == "mlp":
        n_in, width, depth = args.get("in_features"), args.get("width"), args.get("depth")
        act = args.get("activation", "relu")
        fan_in = width
        prefix = "acts."
    elif kind == "convnet" and scheme == "delta-orthogonal" and args.get("activation") == "linear":
        # Nonlinear delta-orthogonal CNNs follow the orthogonal FC law per position only; the
        # whole-input Jacobian pools positions whose gains differ, which raises v well above
        # the per-position prediction (tests/theory/test_probe_agreement.py), so no line.
        n_in, width, depth = args.get("in_channels"), args.get("channels"), args.get("depth")
        act = args.get("activation", "relu")
        fan_in = width * args.get("kernel_size", 3) ** 2
        prefix = "acts."
    else:
        return None
    if not (isinstance(width, int) and isinstance(depth, int) and n_in == width and depth > 0):
        return None
    if act not in ACTIVATIONS:
        return None
    law = _weight_law(scheme, options, fan_in)
    if law is None:
        return None
    sw2, sb2, weights = law
    if kind == "convnet" and sb2:
        return None
    if taps is not None:
        wanted = [f"{prefix}{i}" for i in range(depth)]
        if list(taps[:depth]) != wanted:
            return None
    q1 = sw2 * input_second_moment + sb2
    pred = predict_mlp(act=act, sw2=sw2, sb2=sb2, depth=depth, weights=weights, width=width, q1=q1)
    tag = "D" if "D" in (pred.m1.tag, pred.v.tag) else pred.v.tag
    return Overlay(
        depth=np.asarray(pred.depths),
        m1=np.asarray(pred.m1.value, dtype=float),
        var=np.asarray(pred.v.value, dtype=float),
        label=f"theory: {act}, {weights} weights, σ_w²={sw2:.3g}, σ_b²={sb2:.3g}",
        citation=CITATIONS.get(pred.v.cite, pred.v.cite),
        tag=tag,
    )
