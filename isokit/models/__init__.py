"""Reference models with declared taps and residual branches, and the kinds that describe them.

Every model exposes ``taps`` (ordered module names marking depth, input excluded) and
``residual_branches()`` (a list of :class:`isokit.ResidualBranch`). Every model module also
declares its :class:`ModelKind` (typed constructor arguments, input shape, label, theory view);
configs and the command line read :func:`model_kinds`. Every module of the package is imported
here (:func:`import_kind_modules`), so a new model module registers its kind with no edit
elsewhere; the imports below only name the classes.

Example:
    >>> kind = get_model_kind("resnet")
    >>> kind.label({"depth": 20}), kind.input_shape({}, image_size=8)
    ('resnet20-w16-none', (3, 8, 8))
"""

from isokit.models.activations import ACTIVATION_ARG, ACTIVATIONS, Erf, make_activation
from isokit.models.args import Arg, Derived, ModelArgError, Rule
from isokit.models.convnet import ConvNet
from isokit.models.inputs import FixedInput, FlatInput, ImageInput
from isokit.models.mlp import MLP
from isokit.models.residual_mlp import ResidualBlock, ResidualMLP
from isokit.models.resnet import BasicBlock, PadShortcut, ResNet
from isokit.models.spec import (
    ModelKind,
    ModelSize,
    ResolvedArgs,
    get_model_kind,
    import_kind_modules,
    kind_checked,
    model_flags,
    model_kinds,
    register_model_kind,
)
from isokit.models.transformer import EncoderBlock, FeedForward, SelfAttention, Transformer

import_kind_modules(__name__)

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_ARG",
    "MLP",
    "Arg",
    "BasicBlock",
    "ConvNet",
    "Derived",
    "EncoderBlock",
    "Erf",
    "FeedForward",
    "FixedInput",
    "FlatInput",
    "ImageInput",
    "ModelArgError",
    "ModelKind",
    "ModelSize",
    "PadShortcut",
    "ResidualBlock",
    "ResidualMLP",
    "ResNet",
    "ResolvedArgs",
    "Rule",
    "SelfAttention",
    "Transformer",
    "get_model_kind",
    "import_kind_modules",
    "kind_checked",
    "make_activation",
    "model_flags",
    "model_kinds",
    "register_model_kind",
]
