"""Activation modules by name, shared by the reference models."""

from __future__ import annotations

import torch
from torch import nn


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


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module for ``name`` (one of :data:`ACTIVATIONS`).

    Example:
        >>> make_activation("tanh")
        Tanh()
    """
    try:
        return _ACTIVATIONS[name]()
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}"
        ) from None


def check_positive_int(name: str, value: object, *, minimum: int = 1) -> int:
    """Validate a size argument ``name`` of a model constructor and return it.

    Example:
        >>> check_positive_int("depth", 4)
        4
        >>> check_positive_int("depth", True)
        Traceback (most recent call last):
        ...
        TypeError: depth must be an integer, got bool True
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def check_choice(name: str, value: object, choices: tuple) -> object:
    """Validate the option ``name`` against its allowed ``choices`` and return it.

    Example:
        >>> check_choice("norm", "batch", ("none", "batch"))
        'batch'
    """
    if value not in choices or isinstance(value, bool) != any(isinstance(c, bool) for c in choices):
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value
