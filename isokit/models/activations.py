"""Activation modules by name, shared by the reference models."""

from __future__ import annotations

import torch
from torch import nn


class Erf(nn.Module):
    """The error function as a layer, φ(x) = erf(x) (not the rescaled erf(√π·x/2))."""

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
    """Return a fresh activation module for ``name`` (one of :data:`ACTIVATIONS`)."""
    try:
        return _ACTIVATIONS[name]()
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}"
        ) from None


def check_positive_int(value: object, what: str, *, minimum: int = 1) -> int:
    """Validate a size argument of a model constructor and return it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, got {value}")
    return value


def check_choice(value: object, what: str, choices: tuple) -> object:
    """Validate an option against its allowed values and return it."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
    return value
