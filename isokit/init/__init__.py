"""Initializers: the IDInit family and the baselines it is compared with.

Tensor-level functions follow ``torch.nn.init`` (in place, trailing underscore, ``generator=``);
:func:`apply` initializes a whole model with a named scheme, :func:`schemes` lists them and
:func:`get_scheme` returns one, with its options, their defaults and its weight law
(:meth:`Scheme.weight_law`). Input checks shared by the layer live in :mod:`isokit.init.checks`.

Example:
    >>> import isokit
    >>> from isokit.models import ResNet
    >>> model = isokit.init.apply(ResNet(depth=20), "idinit", seed=0)
    >>> print(isokit.init.schemes())  # doctest: +SKIP
"""

# Importing the scheme modules registers them, in this order (schemes() lists IDInit first).
from isokit.init import standard, isometric, control, zero_gamma, tfixup, zero_scheme  # noqa: F401, I001
from isokit.init import idinit, lsuv  # noqa: F401, I001
from isokit.init.branches import BranchDiscoveryError, find_branches
from isokit.init.identity import idi_, idiz_, loosening_representable, unused_input_channels
from isokit.init.orthogonal import delta_orthogonal_, dirac_, eye_, orthogonal_
from isokit.init.layers import parameter_roles
from isokit.init.norms import register_norm
from isokit.init.registry import Scheme, SchemeNotApplicable, apply, get_scheme, schemes
from isokit.init.report import InitReport, InitRow, UnsupportedModuleError
from isokit.init.variance import (
    fans,
    kaiming_normal_,
    kaiming_uniform_,
    torch_default_,
    xavier_normal_,
    xavier_uniform_,
)
from isokit.init.zero import hadamard, zero_, zero_matrix

__all__ = [
    "BranchDiscoveryError",
    "InitReport",
    "InitRow",
    "Scheme",
    "SchemeNotApplicable",
    "UnsupportedModuleError",
    "apply",
    "delta_orthogonal_",
    "dirac_",
    "eye_",
    "fans",
    "find_branches",
    "get_scheme",
    "hadamard",
    "idi_",
    "idiz_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "loosening_representable",
    "orthogonal_",
    "parameter_roles",
    "register_norm",
    "schemes",
    "torch_default_",
    "unused_input_channels",
    "xavier_normal_",
    "xavier_uniform_",
    "zero_",
    "zero_matrix",
]
