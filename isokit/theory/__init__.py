"""Predictions for Jacobian spectra at initialization: mean field and free probability.

NumPy/SciPy only. Every function takes keyword arguments (variances are ``sw2``, ``sb2``) and
returns a :class:`Prediction` (value, provenance tag, citation) or a small dataclass of them;
:func:`overlay` gives a report the line for one model and scheme, or ``None`` where no theory
applies. Formulas and sources: ``reference/theory.md``.
"""

from isokit.theory.activations import (
    ACTIVATIONS,
    Activation,
    activation_from_callable,
    get_activation,
)
from isokit.theory.meanfield import (
    CriticalPoint,
    DepthScales,
    c_map,
    c_star,
    chi1,
    chi_c,
    chi_q,
    critical_point,
    depth_scales,
    gauss_expect,
    gauss_expect2,
    length_map,
    mu,
    q_profile,
    q_star,
)
from isokit.theory.overlay import Overlay, overlay
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
from isokit.theory.resnet import ResNetMoments, resnet_moments, resnet_q_profile
from isokit.theory.spectra import (
    JacobianMoments,
    MLPPrediction,
    jacobian_m1_v,
    predict_mlp,
    series_moments,
)

__all__ = [
    "ACTIVATIONS",
    "CITATIONS",
    "TAGS",
    "Activation",
    "CriticalPoint",
    "DepthScales",
    "FCDensity",
    "JacobianMoments",
    "MLPPrediction",
    "Overlay",
    "Prediction",
    "ResNetMoments",
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
    "jacobian_m1_v",
    "length_map",
    "linear_gaussian_m2_finite",
    "mu",
    "overlay",
    "pl_edge",
    "pl_moments",
    "predict_mlp",
    "q_profile",
    "q_star",
    "resnet_moments",
    "resnet_q_profile",
    "series_moments",
    "zero_atom",
]
