"""Predictions for Jacobian spectra at initialization: mean field and free probability.

NumPy/SciPy only. Every function takes keyword arguments (variances are ``sw2``, ``sb2``) and
returns a :class:`Prediction` (value, provenance tag, citation, the probe statistic it predicts)
or a small dataclass of them; :func:`overlay` gives a report the line for one model's
:class:`Chain` under one scheme's :class:`WeightLaw`, or ``None`` where no theory applies, and
:func:`overlay_reason` says why. The scale-free variance ``m2/m1² − 1`` is ``var`` everywhere,
the raw variance ``m2 − m1²`` ``var_raw``, as in the probes. Formulas, sources and validity
range: ``docs/theory.md``.

Example:
    >>> from isokit import theory
    >>> theory.chi1(act="relu", sw2=2.0).value  # He init is ReLU's critical point
    1.0
    >>> "tanh" in theory.ACTIVATIONS, sorted(theory.TAGS)
    (True, ['A', 'D', 'R', 'S'])
    >>> theory.CITATIONS["poole2016"].startswith("B. Poole")
    True
"""

from isokit.theory.activations import (
    ACTIVATIONS,
    Activation,
    activation_from_callable,
    get_activation,
)
from isokit.theory.correlation import (
    CRITICAL_RTOL,
    DepthScales,
    c_map,
    c_star,
    chi_c,
    depth_scales,
)
from isokit.theory.criticality import CriticalPoint, critical_point
from isokit.theory.gaussian import gauss_expect, gauss_expect2
from isokit.theory.law import Chain, WeightLaw
from isokit.theory.meanfield import chi1, chi_q, length_map, mu, q_profile, q_star
from isokit.theory.overlays import MAX_DEPTH_OVER_WIDTH, Overlay, overlay, overlay_reason
from isokit.theory.piecewise_linear import (
    FCDensity,
    fc_density,
    fuss_catalan,
    linear_gaussian_m2_finite,
    pl_edge,
    pl_moments,
    zero_atom,
)
from isokit.theory.prediction import CITATIONS, TAGS, Prediction
from isokit.theory.resnet import (
    ResNetMoments,
    ResNetPrediction,
    predict_resnet,
    resnet_moments,
    resnet_q_profile,
)
from isokit.theory.series import series_moments
from isokit.theory.spectra import JacobianMoments, MLPPrediction, jacobian_moments, predict_mlp
from isokit.theory.zero_atoms import ZeroAtomLine, zero_atom_line

__all__ = [
    "ACTIVATIONS",
    "CITATIONS",
    "CRITICAL_RTOL",
    "MAX_DEPTH_OVER_WIDTH",
    "TAGS",
    "Activation",
    "Chain",
    "CriticalPoint",
    "DepthScales",
    "FCDensity",
    "JacobianMoments",
    "MLPPrediction",
    "Overlay",
    "Prediction",
    "ResNetMoments",
    "ResNetPrediction",
    "WeightLaw",
    "ZeroAtomLine",
    "activation_from_callable",
    "c_map",
    "c_star",
    "chi1",
    "chi_c",
    "chi_q",
    "critical_point",
    "depth_scales",
    "fc_density",
    "fuss_catalan",
    "gauss_expect",
    "gauss_expect2",
    "get_activation",
    "jacobian_moments",
    "length_map",
    "linear_gaussian_m2_finite",
    "mu",
    "overlay",
    "overlay_reason",
    "pl_edge",
    "pl_moments",
    "predict_mlp",
    "predict_resnet",
    "q_profile",
    "q_star",
    "resnet_moments",
    "resnet_q_profile",
    "series_moments",
    "zero_atom",
    "zero_atom_line",
]
