"""What building and running one model costs, counted from its arguments alone.

A kind's ``size_of`` returns a :class:`ModelSize`; configs compare its :meth:`ModelSize.bytes`
with the machine's memory before anything is built, so an absurd size fails from arithmetic.

Example:
    >>> ModelSize(parameters=1, activations=0, modules=1).bytes()  # 12 per parameter, 1 KiB each
    1036
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MODULE_BYTES", "ModelSize"]

#: Bytes a constructed ``nn.Module`` costs beyond its tensors (measured: about 1.2 KiB for an
#: ``nn.Linear``); a lower bound, so that deep stacks of tiny layers are estimated too.
MODULE_BYTES = 1024


@dataclass(frozen=True)
class ModelSize:
    """What building and running one model costs, counted from its arguments alone.

    Attributes:
        parameters: scalar parameters.
        activations: floats one forward pass of one example produces (every layer output).
        modules: ``nn.Module`` objects the constructor creates.

    Example:
        >>> ModelSize(parameters=10, activations=4, modules=2).bytes()
        2200
    """

    parameters: int
    activations: int
    modules: int

    def bytes(self) -> int:
        """A lower bound on the memory a probe needs for the model and one example.

        The model as built (float32) plus its float64 probe copy is 12 bytes per parameter;
        one float64 forward pass keeps every layer output.
        """
        return 12 * self.parameters + MODULE_BYTES * self.modules + 8 * self.activations
