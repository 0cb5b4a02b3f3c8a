"""Probes: the input–output Jacobian of any PyTorch model at every depth, and its spectrum.

:func:`profile` measures ``J_l = ∂h_l/∂x`` per example at every tap — exactly in one
forward-mode pass (streamed Grams), or matrix-free (random-tangent moments, stochastic Lanczos
quadrature, Ritz bounds) when the exact tier does not fit in memory or in ``max_seconds``;
from the input or, with ``start=``, from any module's output. :func:`block_profile`
gives each block's local Jacobian, :func:`signal` the forward signal and gradient norms, and
:func:`stats` the isometry statistics of a spectrum. All three probes take one
:class:`ProbeOptions` (or its fields as keywords) and share one preparation step
(:mod:`isokit.probe.prepare`). Results are :class:`Profile` objects that round-trip through JSON;
:func:`encode` is that JSON form for any value (non-finite floats as ``"inf"``, ``"-inf"``,
``"nan"``), and :func:`zero_mask` the one rule for which singular values count as zero.

Example:
    >>> import torch, isokit
    >>> from isokit.models import MLP
    >>> model = isokit.init.apply(MLP(32, 32, depth=4, activation="tanh"), "orthogonal", seed=0)
    >>> prof = isokit.probe.profile(model, torch.randn(2, 32))
    >>> prof.stat("m1").shape
    (4,)
    >>> opts = isokit.probe.ProbeOptions(method="lanczos", n_probes=4, lanczos_steps=4)
    >>> isokit.probe.profile(model, torch.randn(1, 32), opts).meta["method"]
    'lanczos'
"""

from isokit.probe.checks import NonFiniteError, ProbeOptionError
from isokit.probe.depth_profile import profile
from isokit.probe.exact import ProbeMemoryError, estimate_exact_memory
from isokit.probe.forward_signal import signal
from isokit.probe.krylov import LanczosResult, lanczos
from isokit.probe.local import block_profile
from isokit.probe.moments import TraceMoments, rademacher, trace_moments
from isokit.probe.options import ProbeOptions
from isokit.probe.quadrature import ritz_bounds, slq_density, slq_moments
from isokit.probe.result import Profile, Signal
from isokit.probe.serialization import ProfileFormatError, encode
from isokit.probe.spectrum import TapSpectrum
from isokit.probe.statistics import dtype_eps, stats, zero_mask
from isokit.probe.taps import TapError, resolve_taps

__all__ = [
    "LanczosResult",
    "NonFiniteError",
    "ProbeMemoryError",
    "ProbeOptionError",
    "ProbeOptions",
    "Profile",
    "ProfileFormatError",
    "Signal",
    "TapError",
    "TapSpectrum",
    "TraceMoments",
    "block_profile",
    "dtype_eps",
    "encode",
    "estimate_exact_memory",
    "lanczos",
    "profile",
    "rademacher",
    "resolve_taps",
    "ritz_bounds",
    "signal",
    "slq_density",
    "slq_moments",
    "stats",
    "trace_moments",
    "zero_mask",
]
