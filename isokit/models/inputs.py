"""Input rules of a model kind: what one input looks like, and which shapes the model takes.

Example:
    >>> ImageInput("in_channels").check("convnet", {"in_channels": 3}, (1, 8, 8))
    Traceback (most recent call last):
    ...
    isokit.models.args.ModelArgError: input_shape: a convnet needs [3, height, width], got [1, 8, 8]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from isokit.models.args import ModelArgError

__all__ = ["FixedInput", "FlatInput", "ImageInput", "InputRule"]


def _value(args: Mapping[str, Any], dim: str | int) -> int:
    return dim if isinstance(dim, int) else args[dim]


@dataclass(frozen=True)
class FlatInput:
    """A vector input of ``args[features]`` entries (``args[fallback]`` when that is None).

    Any shape with that many entries is accepted (the model flattens it).

    Example:
        >>> FlatInput("in_features").natural({"in_features": 12}, image_size=8)
        (12,)
    """

    features: str
    fallback: str | None = None

    def _count(self, args: Mapping[str, Any]) -> tuple[int, str]:
        n = args[self.features]
        if n is None and self.fallback is not None:
            return args[self.fallback], f"{self.fallback} = {args[self.fallback]}"
        return n, f"{self.features} = {n}"

    def natural(self, args: Mapping[str, Any], image_size: int) -> tuple[int, ...]:
        return (self._count(args)[0],)

    def check(self, kind: str, args: Mapping[str, Any], shape: tuple[int, ...]) -> None:
        n, what = self._count(args)
        if math.prod(shape) != n:
            raise ModelArgError(
                "input_shape",
                f"{list(shape)} has {math.prod(shape)} entries but the {kind} takes {what} "
                "features; make them agree",
            )


@dataclass(frozen=True)
class ImageInput:
    """An image ``[channels, height, width]``; the natural one is square, ``image_size`` a side.

    Example:
        >>> ImageInput("in_channels").natural({"in_channels": 3}, image_size=8)
        (3, 8, 8)
    """

    channels: str | int = 3

    def natural(self, args: Mapping[str, Any], image_size: int) -> tuple[int, ...]:
        return (_value(args, self.channels), image_size, image_size)

    def check(self, kind: str, args: Mapping[str, Any], shape: tuple[int, ...]) -> None:
        c = _value(args, self.channels)
        if len(shape) != 3 or shape[0] != c:
            raise ModelArgError(
                "input_shape", f"a {kind} needs [{c}, height, width], got {list(shape)}"
            )


@dataclass(frozen=True)
class FixedInput:
    """A fixed shape, each entry an integer or the name of the argument giving it.

    Example:
        >>> FixedInput(("seq_len", "d_model")).natural({"seq_len": 5, "d_model": 8}, 16)
        (5, 8)
    """

    dims: tuple[str | int, ...]

    def natural(self, args: Mapping[str, Any], image_size: int) -> tuple[int, ...]:
        return tuple(_value(args, d) for d in self.dims)

    def check(self, kind: str, args: Mapping[str, Any], shape: tuple[int, ...]) -> None:
        want = self.natural(args, 0)
        if tuple(shape) != want:
            names = ", ".join(str(d) for d in self.dims)
            raise ModelArgError(
                "input_shape", f"a {kind} needs [{names}] = {list(want)}, got {list(shape)}"
            )


InputRule = FlatInput | ImageInput | FixedInput
