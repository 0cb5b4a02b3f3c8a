"""Model kinds: a constructor with its typed arguments, its input, its label and its theory view.

A :class:`ModelKind` is everything the rest of isokit knows about a model family: configs read
its :class:`~isokit.models.args.Arg` specs (types, defaults, choices, bounds), its cross-argument
:class:`~isokit.models.args.Rule`\\ s and its input rule (:mod:`isokit.models.inputs`); the
``isokit probe`` flags come from the args' ``flag`` and ``probe_default``; reports take the label
and input shape from it; and theory overlays its :meth:`ModelKind.chain`. Each module of
:mod:`isokit.models` declares the kind of its class beside the class and registers it with
:func:`register_model_kind`; :func:`import_kind_modules` imports every module of the package, so
a new module is found without an edit elsewhere. Nothing here assumes a kind is isokit's own: a
package of models from outside isokit registers its kinds the same way, and a lone factory named
by import path (a config's ``factory = "package.module:function"``) is read through
:class:`isokit.models.factory.FactoryKind`, which answers what reports and the command line ask
of a kind (``resolve``, ``build``, ``label``, ``chain``, ``size``, ``to_config``) from the
factory's signature alone.

A model class decorates its ``__init__`` with :func:`kind_checked`, so that a direct call is
checked by its kind's specs too, and :meth:`ModelKind.resolve` returns :class:`ResolvedArgs`,
which the kind's other methods (and :meth:`ModelKind.build`'s factory) take as they are.

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
import functools
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from isokit.models.args import FROM_FACTORY, REQUIRED, Arg, ModelArgError, Rule
from isokit.models.cost import MODULE_BYTES, ModelSize
from isokit.models.inputs import InputRule

if TYPE_CHECKING:
    from torch import nn

    from isokit.theory.law import Chain

__all__ = [
    "MODULE_BYTES",
    "ModelKind",
    "ModelSize",
    "ResolvedArgs",
    "Rule",
    "get_model_kind",
    "import_kind_modules",
    "kind_checked",
    "model_flags",
    "model_kinds",
    "register_model_kind",
]

# --------------------------------------------------------------------------------------------
# the kind


class ResolvedArgs(dict):
    """Every argument of a model, as :meth:`ModelKind.resolve` returned them; read-only.

    The kind that resolved them (``kind``) takes them back as they are; a copy (``dict(args)``,
    ``{**args, "depth": 3}``) is an ordinary dict and is resolved again.

    Example:
        >>> args = get_model_kind("mlp").resolve({"in_features": 4, "width": 4, "depth": 2})
        >>> args["depth"] = 0
        Traceback (most recent call last):
        ...
        TypeError: resolved model arguments are read-only; resolve a changed copy instead
    """

    __slots__ = ("kind",)

    def __init__(self, kind: ModelKind, values: Mapping[str, Any]) -> None:
        super().__init__(values)
        self.kind = kind

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("resolved model arguments are read-only; resolve a changed copy instead")

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self) -> tuple:
        return (dict, (dict(self),))  # a copy or an unpickled one is a plain, unchecked dict


#: The kind whose :meth:`ModelKind.build` is calling its factory with resolved arguments.
_RESOLVED_BY: ContextVar[ModelKind | None] = ContextVar("isokit_resolved_by", default=None)


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
        example: the smallest valid arguments (what tests and listings build), or ``None``;
            checked when the kind is made, and kept read-only.
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
    example: Mapping[str, Any] | None = field(default=None, compare=False)
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
        if self.example is not None:
            try:
                self.resolve(self.example)
            except ModelArgError as exc:
                raise TypeError(
                    f"model kind {self.name!r}: the example is invalid: {exc}"
                ) from None
            object.__setattr__(self, "example", MappingProxyType(dict(self.example)))

    def arg(self, name: str) -> Arg:
        """The spec of argument ``name``."""
        return self._by_name[name]

    def resolve(self, raw: Mapping[str, Any]) -> ResolvedArgs:
        """Every argument, checked and with defaults filled in, in the spec's order; or raise.

        The other methods take ``raw`` (what a config gave) or, as they are, the
        :class:`ResolvedArgs` this returned.

        Example:
            >>> get_model_kind("resnet").resolve({"depth": 21})
            Traceback (most recent call last):
            ...
            isokit.models.args.ModelArgError: depth: must be 6n+2 (8, 14, 20, ...), got 21
        """
        if isinstance(raw, ResolvedArgs) and raw.kind is self:
            return raw
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
            rule.require(out)
        return ResolvedArgs(self, out)

    def build(self, **args: Any) -> nn.Module:
        """A fresh model (seed ``torch`` first: constructors draw from the global RNG).

        Example:
            >>> get_model_kind("mlp").build(in_features=3, width=2, depth=1).taps
            ['acts.0']
        """
        resolved = self.resolve(args)
        token = _RESOLVED_BY.set(self)  # a kind_checked factory need not resolve them again
        try:
            return self.factory(**resolved)
        finally:
            _RESOLVED_BY.reset(token)

    def input_shape(self, args: Mapping[str, Any], image_size: int) -> tuple[int, ...]:
        """The shape of one input the model takes (``image_size`` sets image sides)."""
        return self.inputs.natural(self.resolve(args), image_size)

    def check_input_shape(self, args: Mapping[str, Any], shape: tuple[int, ...]) -> None:
        """Raise :class:`ModelArgError` (``"input_shape"``) unless the model takes ``shape``."""
        self.inputs.check(self.name, self.resolve(args), tuple(shape))

    def label(self, args: Mapping[str, Any]) -> str:
        """The default display label (``mlp-tanh-w64-d32``)."""
        return self.label_format.format(**self.resolve(args))

    def depth_taps(self, depth: int) -> list[str]:
        """The depth taps of a model with ``depth`` of them: ``tap_prefix`` and an index.

        Example:
            >>> get_model_kind("residual-mlp").depth_taps(2)
            ['blocks.0', 'blocks.1']
        """
        if self.tap_prefix is None:
            raise ValueError(f"model kind {self.name!r} has no tap_prefix: its taps are its own")
        return [f"{self.tap_prefix}{i}" for i in range(depth)]

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
#: Each model class → the first registered kind whose factory it is (what ``kind_checked`` reads).
_CLASS_KINDS: dict[type, ModelKind] = {}


def register_model_kind(kind: ModelKind) -> ModelKind:
    """Make ``kind`` known to configs and the CLI under ``kind.name``; return it."""
    if not isinstance(kind, ModelKind):
        raise TypeError(f"register_model_kind takes a ModelKind, got {type(kind).__name__}")
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"model kind {kind.name!r} is registered already")
    _KINDS[kind.name] = kind
    if isinstance(kind.factory, type):
        _CLASS_KINDS.setdefault(kind.factory, kind)
    return kind


def import_kind_modules(package: str) -> list[str]:
    """Import every module of ``package`` so that each registers the kinds it declares.

    :mod:`isokit.models` calls it on itself: a new model module needs no import elsewhere. A
    package of models from outside isokit registers its kinds the same way. Returns the names.

    Example:
        >>> "isokit.models.mlp" in import_kind_modules("isokit.models")
        True
    """
    path = importlib.import_module(package).__path__
    names = [info.name for info in pkgutil.iter_modules(path, prefix=f"{package}.")]
    for name in names:
        importlib.import_module(name)
    return names


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


def _class_kind(cls: type, init: Callable[..., None]) -> ModelKind:
    """The registered kind of the class among ``cls``'s bases whose ``__init__`` is ``init``."""
    owner = next((c for c in cls.__mro__ if c.__dict__.get("__init__") is init), cls)
    kind = _CLASS_KINDS.get(owner)
    if kind is None:
        raise TypeError(
            f"{owner.__name__}.__init__ is kind_checked but no registered model kind has "
            f"{owner.__name__} as its factory; register one with register_model_kind"
        )
    return kind


def kind_checked(init: Callable[..., None]) -> Callable[..., None]:
    """Decorate a model class's ``__init__`` so that its kind checks every call's arguments.

    The call binds to ``init``'s signature (a wrong number of arguments is Python's own
    ``TypeError``); the registered kind of the class resolves the arguments (types, bounds,
    cross-argument rules, ``none`` words: a :class:`ModelArgError`, a ``ValueError``, naming the
    argument) and ``init`` gets them resolved. Under :meth:`ModelKind.build` the kind has resolved
    them already, so they are not checked twice.

    Example:
        >>> from isokit.models import MLP
        >>> MLP(4, 4, depth=0)
        Traceback (most recent call last):
        ...
        isokit.models.args.ModelArgError: depth: must be a positive integer, got 0
    """
    signature = inspect.signature(init)
    self_name = next(iter(signature.parameters))
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in signature.parameters.values()):
        raise TypeError(f"kind_checked: {init.__qualname__} must name every argument")

    @functools.wraps(init)
    def checked(self: Any, *args: Any, **kwargs: Any) -> None:
        kind = _class_kind(type(self), checked)
        try:
            raw = signature.bind(self, *args, **kwargs).arguments
        except TypeError as exc:  # as Python words it, with the class Python would name
            raise TypeError(f"{init.__qualname__}(): {exc}") from None
        del raw[self_name]
        if _RESOLVED_BY.get() is not kind:
            raw = kind.resolve(raw)
        token = _RESOLVED_BY.set(None)  # a model built inside this one checks its own arguments
        try:
            init(self, **raw)
        finally:
            _RESOLVED_BY.reset(token)

    return checked


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
