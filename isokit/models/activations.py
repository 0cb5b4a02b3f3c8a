"""Activation modules by name, shared by the reference models, and their argument spec."""

from __future__ import annotations

import torch
from torch import nn

from isokit.models.args import Arg


class Erf(nn.Module):
    """The error function as a layer, φ(x) = erf(x) (not the rescaled erf(√π·x/2)).

    Example:
        >>> Erf()(torch.zeros(2))
        tensor([0., 0.])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erf(x)


_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "hardtanh": nn.Hardtanh,
    "erf": Erf,
    "linear": nn.Identity,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "selu": nn.SELU,
    "leaky_relu": nn.LeakyReLU,
}

ACTIVATIONS: tuple[str, ...] = tuple(_ACTIVATIONS)


#: The ``activation`` argument of every reference model (the kinds read its default from the
#: constructor); :func:`make_activation` checks a name by it too.
ACTIVATION_ARG = Arg(name="activation", type=str, choices=ACTIVATIONS, flag="activation")


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module for ``name`` (one of :data:`ACTIVATIONS`).

    Example:
        >>> make_activation("tanh")
        Tanh()
        >>> make_activation("tanhh")
        Traceback (most recent call last):
        ...
        isokit.models.args.ModelArgError: activation: must be one of 'relu', 'tanh', 'hardtanh', \
'erf', 'linear', 'gelu', 'sigmoid', 'selu', 'leaky_relu', got 'tanhh'; did you mean 'tanh'?
    """
    if not isinstance(name, str) or name not in _ACTIVATIONS:
        ACTIVATION_ARG.check(name)  # raises, naming the argument and a close match
    return _ACTIVATIONS[name]()
