"""Model kinds: a constructor with its typed arguments, its input, its label and its theory view.

A :class:`ModelKind` is everything the rest of isokit knows about a model family: configs read
its :class:`~isokit.models.args.Arg` specs (types, defaults, choices, bounds), its cross-argument
:class:`~isokit.models.args.Rule`\\ s and its input rule (:mod:`isokit.models.inputs`); the
``isokit probe`` flags come from the args' ``flag`` and ``probe_default``; reports take the label
and input shape from it; and theory overlays its :meth:`ModelKind.chain`. Each module of
:mod:`isokit.models` declares the kind of its class beside the class and registers it with
:func:`register_model_kind`; nothing here assumes a kind is isokit's own, so a factory from
elsewhere wraps into the same type.

Defaults come from the factory's signature (an ``Arg`` restates one only where a config
needs a different one, e.g. because TOML has no null), so a constructor and its spec cannot
drift apart.

Example:
    >>> kind = get_model_kind("mlp")
    >>> args = kind.resolve({"in_features": 8, "width": 8, "depth": 2})
    >>> args["activation"], kind.label(args), kind.input_shape(args, image_size=16)
    ('relu', 'mlp-relu-w8-d2', (8,))
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from isokit.models.args import FROM_FACTORY, REQUIRED, Arg, ModelArgError, Rule
from isokit.models.inputs import InputRule

if TYPE_CHECKING:
    from torch import nn

    from isokit.theory.law import Chain

__all__ = [
    "MODULE_BYTES",
    "ModelKind",
    "ModelSize",
    "Rule",
    "get_model_kind",
    "model_flags",
    "model_kinds",
    "register_model_kind",
]

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


# --------------------------------------------------------------------------------------------
# the kind


def _factory_defaults(factory: Callable[..., Any]) -> tuple[dict[str, Any], bool]:
    """The factory's keyword defaults (``REQUIRED`` where none) and whether it takes ``**kw``."""
    params = inspect.signature(factory).parameters
    defaults = {
        n: REQUIRED if p.default is p.empty else p.default
        for n, p in params.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    return defaults, any(p.kind is p.VAR_KEYWORD for p in params.values())


@dataclass(frozen=True, kw_only=True)
class ModelKind:
    """A model family: a factory, its typed arguments and what configs, CLI and theory read.

    Attributes:
        name: the config's ``kind`` and the CLI's ``--model`` value.
        factory: called with every resolved argument by keyword; returns the ``nn.Module``.
        args: the factory's arguments (defaults filled from its signature on construction).
        inputs: the input rule (:class:`FlatInput`, :class:`ImageInput`, :class:`FixedInput`).
        label_format: a :meth:`str.format` template over the resolved arguments.
        tap_prefix: the prefix of the depth taps (``"acts."`` → ``acts.0, acts.1, …``), or
            ``None`` where the taps have no common prefix.
        rules: cross-argument rules, checked after every argument is valid.
        chain_of: the model as the theory sees it (:class:`isokit.theory.Chain`), or ``None``.
        size_of: parameter, activation and module counts from ``(args, input_shape)``; checked
            against the machine's memory before anything is built.
        description: one line for listings.
    """

    name: str
    factory: Callable[..., nn.Module]
    args: tuple[Arg, ...]
    inputs: InputRule
    label_format: str
    tap_prefix: str | None = None
    rules: tuple[Rule, ...] = ()
    chain_of: Callable[[Mapping[str, Any]], Chain | None] | None = None
    size_of: Callable[[Mapping[str, Any], tuple[int, ...]], ModelSize] | None = None
    description: str = ""
    _by_name: dict[str, Arg] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        defaults, takes_kwargs = _factory_defaults(self.factory)
        args = []
        for arg in self.args:
            if arg.name not in defaults and not takes_kwargs:
                raise TypeError(f"model kind {self.name!r}: the factory takes no {arg.name!r}")
            if arg.default is FROM_FACTORY:
                arg = replace(arg, default=defaults.get(arg.name, REQUIRED))
            args.append(arg)
        missing = [
            n for n, d in defaults.items() if d is REQUIRED and n not in {a.name for a in args}
        ]
        if missing:
            raise TypeError(f"model kind {self.name!r}: no Arg for required {', '.join(missing)}")
        object.__setattr__(self, "args", tuple(args))
        object.__setattr__(self, "_by_name", {a.name: a for a in args})

    def arg(self, name: str) -> Arg:
        """The spec of argument ``name``."""
        return self._by_name[name]

    def resolve(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Every argument, checked and with defaults filled in, in the spec's order; or raise.

        Example:
            >>> get_model_kind("resnet").resolve({"depth": 21})
            Traceback (most recent call last):
            ...
            isokit.models.args.ModelArgError: depth: must be 6n+2 (8, 14, 20, ...), got 21
        """
        for name in raw:
            if name not in self._by_name:
                close = difflib.get_close_matches(str(name), list(self._by_name), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ModelArgError(
                    str(name),
                    f"unknown argument; {hint}a {self.name} takes {', '.join(self._by_name)}",
                )
        out: dict[str, Any] = {}
        for arg in self.args:
            if arg.name in raw:
                out[arg.name] = arg.check(raw[arg.name])
            elif arg.required:
                raise ModelArgError(arg.name, f"missing; a {self.name} needs {arg.describe()}")
            else:
                out[arg.name] = arg.default
        for rule in self.rules:
            message = rule.check(out)
            if message is not None:
                raise ModelArgError(rule.args[0], message, related=rule.args[1:])
        return out

    def build(self, **args: Any) -> nn.Module:
        """A fresh model (seed ``torch`` first: constructors draw from the global RNG)."""
        return self.factory(**self.resolve(args))

    def input_shape(self, args: Mapping[str, Any], image_size: int) -> tuple[int, ...]:
        """The shape of one input the model takes (``image_size`` sets image sides)."""
        return self.inputs.natural(self.resolve(args), image_size)

    def check_input_shape(self, args: Mapping[str, Any], shape: tuple[int, ...]) -> None:
        """Raise :class:`ModelArgError` (``"input_shape"``) unless the model takes ``shape``."""
        self.inputs.check(self.name, self.resolve(args), tuple(shape))

    def label(self, args: Mapping[str, Any]) -> str:
        """The default display label (``mlp-tanh-w64-d32``)."""
        return self.label_format.format(**self.resolve(args))

    def chain(self, args: Mapping[str, Any]) -> Chain | None:
        """The model as the theory sees it, or ``None`` where no theory describes the kind."""
        return None if self.chain_of is None else self.chain_of(self.resolve(args))

    def size(self, args: Mapping[str, Any], input_shape: tuple[int, ...]) -> ModelSize | None:
        """The model's :class:`ModelSize` for ``input_shape``, or ``None`` if it cannot say."""
        if self.size_of is None:
            return None
        return self.size_of(self.resolve(args), tuple(input_shape))

    def to_config(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """``args`` as a config spells them: ``None`` as the ``none`` word, or left out."""
        out = {}
        for name, value in args.items():
            arg = self._by_name[name]
            if value is None and arg.none is None:
                continue  # the default None: TOML cannot say it and need not
            out[name] = arg.to_config(value)
        return out


# --------------------------------------------------------------------------------------------
# the registry

_KINDS: dict[str, ModelKind] = {}


def register_model_kind(kind: ModelKind) -> ModelKind:
    """Make ``kind`` known to configs and the CLI under ``kind.name``; return it."""
    if not isinstance(kind, ModelKind):
        raise TypeError(f"register_model_kind takes a ModelKind, got {type(kind).__name__}")
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"model kind {kind.name!r} is registered already")
    _KINDS[kind.name] = kind
    return kind


def model_kinds() -> dict[str, ModelKind]:
    """Every registered model kind by name.

    Example:
        >>> {"mlp", "convnet", "resnet", "transformer"} <= set(model_kinds())
        True
    """
    return dict(_KINDS)


def get_model_kind(name: str) -> ModelKind:
    """The kind called ``name``; a :class:`ModelArgError` (``"kind"``) naming close matches if none.

    Example:
        >>> get_model_kind("mpl")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        isokit.models.args.ModelArgError: kind: unknown model kind 'mpl'; did you mean 'mlp'? ...
    """
    if isinstance(name, str) and name in _KINDS:
        return _KINDS[name]
    close = difflib.get_close_matches(str(name), list(_KINDS), n=2)
    hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    raise ModelArgError(
        "kind", f"unknown model kind {name!r}; {hint}choose one of {', '.join(_KINDS)}"
    )


def model_flags() -> dict[str, list[tuple[ModelKind, Arg]]]:
    """Each common ``isokit probe`` flag (``"depth"``, ...) → the (kind, argument) pairs it sets.

    Example:
        >>> sorted((k.name, a.name) for k, a in model_flags()["width"])[:2]
        [('convnet', 'channels'), ('mlp', 'width')]
    """
    flags: dict[str, list[tuple[ModelKind, Arg]]] = {}
    for kind in _KINDS.values():
        for arg in kind.args:
            if arg.flag is not None:
                flags.setdefault(arg.flag, []).append((kind, arg))
    return flags
