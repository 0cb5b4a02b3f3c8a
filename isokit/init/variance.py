"""Fans and variance-scaling initializers: Xavier/Glorot, Kaiming/He and PyTorch's default.

Every function fills its tensor in place and returns it, like ``torch.nn.init``. Layouts follow
PyTorch: Linear ``(out, in)``, ConvNd ``(C_out, C_in/groups, *k)``, ConvTranspose
``(C_in, C_out/groups, *k)``.

Two fan conventions are offered (``convention=``):

- ``"torch"`` (default): exactly ``torch.nn.init._calculate_fan_in_and_fan_out``. With
  r = prod(size[2:]): fan_in = size(1)·r, fan_out = size(0)·r. For a grouped conv this makes
  fan_in per group but fan_out the *full* C_out, and for a ConvTranspose it swaps the two.
- ``"true"``: the fans one output or input unit really sees. Grouped convs use per-group fan_out,
  and ConvTranspose dims are swapped back.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal, get_args

import torch
from torch import Tensor

from isokit.init.checks import (
    OptionValueError,
    check_bool,
    check_choice,
    check_groups,
    check_real,
    check_weight,
)

__all__ = [
    "fans",
    "kaiming_normal_",
    "kaiming_uniform_",
    "torch_default_",
    "xavier_normal_",
    "xavier_uniform_",
]

FanConvention = Literal["torch", "true"]
FanMode = Literal["fan_in", "fan_out"]
NormalVariant = Literal["torch", "tf_truncated"]
Nonlinearity = Literal[
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "selu",
]

# Std of a standard normal truncated to [-2, 2]. Keras/TF divide by it so that the truncated
# draw keeps the variance the scheme asks for (tensorflow/tensorflow#16344).
TRUNCATED_NORMAL_STD = 0.87962566103423978


# ------------------------------------------------------------------------------------------ fans


def fans(
    w: Tensor,
    *,
    convention: FanConvention = "torch",
    groups: int = 1,
    transposed: bool = False,
) -> tuple[int, int]:
    """Return ``(fan_in, fan_out)`` of a Linear or conv weight.

    With r = prod(w.shape[2:]) (1 for Linear):

    - ``convention="torch"``: fan_in = size(1)·r, fan_out = size(0)·r, whatever ``groups`` and
      ``transposed`` say (they are still validated). This is what ``torch.nn.init`` uses.
    - ``convention="true"``, ordinary conv: fan_in = size(1)·r, fan_out = size(0)/groups·r.
    - ``convention="true"``, ``transposed=True`` (layout ``(C_in, C_out/groups, *k)``):
      fan_in = size(0)/groups·r, fan_out = size(1)·r.

    Example:
        >>> w = torch.empty(32, 1, 3, 3)  # depthwise conv, groups=32
        >>> fans(w, groups=32)
        (9, 288)
        >>> fans(w, convention="true", groups=32)
        (9, 9)
    """
    check_weight("w", w, where="fans", floating=False)
    check_choice("convention", convention, get_args(FanConvention), where="fans")
    check_groups("groups", groups, w, where="fans")
    check_bool("transposed", transposed, where="fans")
    if transposed and w.dim() < 3:
        raise ValueError(
            f"fans: transposed=True needs a ConvTranspose weight (3-D to 5-D), got shape "
            f"{tuple(w.shape)}"
        )
    r = math.prod(w.shape[2:])
    if convention == "torch":
        return w.size(1) * r, w.size(0) * r
    if transposed:
        return w.size(0) // groups * r, w.size(1) * r
    return w.size(1) * r, w.size(0) // groups * r


# ------------------------------------------------------------------------------- sampling helpers


def _gain(nonlinearity: str, a: float, fn: str) -> float:
    check_choice("nonlinearity", nonlinearity, get_args(Nonlinearity), where=fn)
    a = check_real("a", a, where=fn)
    try:
        return torch.nn.init.calculate_gain(nonlinearity, a)
    except OverflowError:  # leaky_relu's √(2 / (1 + a²)) squares a
        raise OptionValueError(
            "a", f"{a:g} is too large (1 + a² overflows); pass |a| < 1e150", where=fn, sep="="
        ) from None


#: How far from 0 an N(0, σ²) draw of torch can land, in σ (Box–Muller on 53-bit uniforms stays
#: within √(2·53·ln 2) ≈ 8.6 σ); a std whose draws could overflow the dtype is refused.
_NORMAL_REACH = 9.0


def _check_reach(name: str, value: float, reach: float, w: Tensor, where: str) -> None:
    """Refuse a ``name=value`` whose draws could reach ``±reach``, past what ``w`` can hold."""
    largest = torch.finfo(w.dtype).max
    if not reach <= largest:
        raise OptionValueError(
            name,
            f"{value:g} makes draws of up to {reach:.3g}, more than {w.dtype} holds (largest "
            f"finite value {largest:.2g}); pass a smaller {name} or use a wider dtype",
            where=where,
            sep="=",
        )


def _fill_normal(
    w: Tensor,
    std: float,
    variant: str,
    generator: torch.Generator | None,
    *,
    name: str,
    value: float,
    where: str,
) -> Tensor:
    if variant == "torch":
        _check_reach(name, value, _NORMAL_REACH * std, w, where)
        return torch.nn.init.normal_(w, 0.0, std, generator=generator)
    # Truncating at ±2σ' shrinks the std by TRUNCATED_NORMAL_STD; σ' undoes that.
    sigma = std / TRUNCATED_NORMAL_STD
    _check_reach(name, value, 2.0 * sigma, w, where)  # every draw lies in [-2σ', 2σ']
    return torch.nn.init.trunc_normal_(
        w, 0.0, sigma, -2.0 * sigma, 2.0 * sigma, generator=generator
    )


def _fill_uniform(
    w: Tensor, std: float, generator: torch.Generator | None, *, name: str, value: float, where: str
) -> Tensor:
    bound = math.sqrt(3.0) * std  # U(-b, b) has variance b²/3
    # torch's own error names no option; it also needs the width 2b of the range to fit.
    _check_reach(name, value, 2.0 * bound, w, where)
    return torch.nn.init.uniform_(w, -bound, bound, generator=generator)


# ---------------------------------------------------------------------------------------- Xavier


def _xavier_std(
    tensor: Tensor, gain: float, convention: str, groups: int, transposed: bool, fn: str
) -> float | None:
    """The std of ``fn``'s draw, or None for a zero-element tensor (filled with nothing)."""
    check_weight("tensor", tensor, where=fn, allow_empty=True)
    # A negative gain gives a negative std (or an empty range), which torch refuses anyway.
    gain = check_real("gain", gain, where=fn, minimum=0.0)
    if tensor.numel() == 0:
        return None  # as torch: nothing to fill (its (0, 0) fans would divide by zero)
    fan_in, fan_out = fans(tensor, convention=convention, groups=groups, transposed=transposed)
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def xavier_uniform_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    convention: FanConvention = "torch",
    groups: int = 1,
    transposed: bool = False,
) -> Tensor:
    """Fill ``w`` from U(-a, a) with a = gain·√(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010).

    Fans come from :func:`fans` with ``convention``, ``groups`` and ``transposed``; the default
    reproduces ``torch.nn.init.xavier_uniform_``, with its signature (``tensor, gain, generator``;
    the isokit options are keyword-only) and the same draws for the same generator.

    Example:
        >>> w = xavier_uniform_(torch.empty(256, 128), generator=torch.Generator().manual_seed(0))
    """
    std = _xavier_std(tensor, gain, convention, groups, transposed, "xavier_uniform_")
    if std is None:
        return tensor
    return _fill_uniform(tensor, std, generator, name="gain", value=gain, where="xavier_uniform_")


def xavier_normal_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    variant: NormalVariant = "torch",
    convention: FanConvention = "torch",
    groups: int = 1,
    transposed: bool = False,
) -> Tensor:
    """Fill ``w`` with zero-mean noise of std σ = gain·√(2 / (fan_in + fan_out)).

    ``variant="torch"`` draws N(0, σ²) like ``torch.nn.init.xavier_normal_``.
    ``variant="tf_truncated"`` follows Keras/TF ``glorot_normal``: N(0, σ'²) truncated to ±2σ'
    with σ' = σ / 0.87962566, so the final variance is still σ². The signature starts as
    ``torch.nn.init.xavier_normal_``'s (``tensor, gain, generator``).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> w = xavier_normal_(torch.empty(64, 3, 3, 3), variant="tf_truncated", generator=g)
    """
    check_choice("variant", variant, get_args(NormalVariant), where="xavier_normal_")
    std = _xavier_std(tensor, gain, convention, groups, transposed, "xavier_normal_")
    if std is None:
        return tensor
    return _fill_normal(
        tensor, std, variant, generator, name="gain", value=gain, where="xavier_normal_"
    )


# --------------------------------------------------------------------------------------- Kaiming


def _kaiming_std(
    tensor: Tensor,
    a: float,
    mode: str,
    nonlinearity: str,
    convention: str,
    groups: int,
    transposed: bool,
    fn: str,
) -> float | None:
    """The std of ``fn``'s draw, or None for a zero-element tensor (warned about, as torch)."""
    mode = mode.lower() if isinstance(mode, str) else mode  # torch accepts "FAN_IN" too
    check_choice("mode", mode, get_args(FanMode), where=fn)
    gain = _gain(nonlinearity, a, fn)
    if isinstance(tensor, Tensor) and 0 in tensor.shape:
        # torch.nn.init warns and returns the tensor untouched, whatever its rank.
        warnings.warn("Initializing zero-element tensors is a no-op", UserWarning, stacklevel=3)
        return None
    check_weight("tensor", tensor, where=fn)
    fan_in, fan_out = fans(tensor, convention=convention, groups=groups, transposed=transposed)
    return gain / math.sqrt(fan_in if mode == "fan_in" else fan_out)


def kaiming_normal_(
    tensor: Tensor,
    a: float = 0.0,
    mode: FanMode = "fan_in",
    nonlinearity: Nonlinearity = "leaky_relu",
    generator: torch.Generator | None = None,
    *,
    variant: NormalVariant = "torch",
    convention: FanConvention = "torch",
    groups: int = 1,
    transposed: bool = False,
) -> Tensor:
    """Fill ``w`` with zero-mean noise of std σ = gain / √fan (He et al., 2015).

    gain = ``torch.nn.init.calculate_gain(nonlinearity, a)`` (√2 for the defaults a = 0,
    "leaky_relu"); fan is fan_in or fan_out by ``mode``. ``variant`` works as in
    :func:`xavier_normal_` (``"tf_truncated"`` is Keras ``he_normal``). torchvision's ResNets use
    ``mode="fan_out", nonlinearity="relu"``. The signature starts as
    ``torch.nn.init.kaiming_normal_``'s (``tensor, a, mode, nonlinearity, generator``), the draws
    are torch's for the same generator, and a zero-element tensor is returned untouched with
    torch's warning.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> w = kaiming_normal_(torch.empty(64, 64, 3, 3), mode="fan_out", nonlinearity="relu",
        ...                     generator=g)
    """
    check_choice("variant", variant, get_args(NormalVariant), where="kaiming_normal_")
    std = _kaiming_std(
        tensor, a, mode, nonlinearity, convention, groups, transposed, "kaiming_normal_"
    )
    if std is None:
        return tensor
    return _fill_normal(tensor, std, variant, generator, name="a", value=a, where="kaiming_normal_")


def kaiming_uniform_(
    tensor: Tensor,
    a: float = 0.0,
    mode: FanMode = "fan_in",
    nonlinearity: Nonlinearity = "leaky_relu",
    generator: torch.Generator | None = None,
    *,
    convention: FanConvention = "torch",
    groups: int = 1,
    transposed: bool = False,
) -> Tensor:
    """Fill ``w`` from U(-b, b) with b = √3·gain / √fan, i.e. variance gain²/fan.

    Same gain and fan rules as :func:`kaiming_normal_`; the uniform bound is √3 times the std, not
    the std itself (pytorch/pytorch#30947). Signature, draws and zero-element behaviour are
    ``torch.nn.init.kaiming_uniform_``'s, as for :func:`kaiming_normal_`.

    Example:
        >>> w = kaiming_uniform_(torch.empty(128, 256), generator=torch.Generator().manual_seed(0))
    """
    std = _kaiming_std(
        tensor, a, mode, nonlinearity, convention, groups, transposed, "kaiming_uniform_"
    )
    if std is None:
        return tensor
    return _fill_uniform(tensor, std, generator, name="a", value=a, where="kaiming_uniform_")


# --------------------------------------------------------------------------------- torch default


def torch_default_(
    w: Tensor,
    bias: Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """PyTorch's Linear/ConvNd ``reset_parameters`` rule: w, bias ~ U(-b, b), b = 1/√fan_in.

    fan_in is torch's (:func:`fans` with ``convention="torch"``), so it is per group for grouped
    convs and the swapped one for ConvTranspose, exactly as the modules do. The weight's std is
    1/√(3·fan_in), a sixth of He's variance. The weight is drawn before the bias, so with a
    generator seeded like ``torch.manual_seed`` the result equals a freshly built module's.

    Example:
        >>> lin = torch.nn.Linear(20, 10)
        >>> g = torch.Generator().manual_seed(0)
        >>> _ = torch_default_(lin.weight, lin.bias, generator=g)
    """
    check_weight("w", w, where="torch_default_")
    if bias is not None:
        check_weight(
            "bias",
            bias,
            where="torch_default_",
            min_dim=1,
            max_dim=1,
            hint="pass the weight as the first argument and the bias second",
        )
    fan_in, _ = fans(w)
    bound = 1.0 / math.sqrt(fan_in)
    torch.nn.init.uniform_(w, -bound, bound, generator=generator)
    if bias is not None:
        torch.nn.init.uniform_(bias, -bound, bound, generator=generator)
    return w
