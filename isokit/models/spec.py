"""Model kinds: a constructor with its typed arguments, its input, its label and its theory view.

A :class:`ModelKind` is everything the rest of isokit knows about a model family: configs read
its :class:`Arg` specs (types, defaults, choices, bounds) and its cross-argument :class:`Rule`\\ s,
the ``isokit probe`` flags come from the args' ``flag`` and ``probe_default``, reports take the
label and input shape from it, and theory overlays its :meth:`ModelKind.chain`. Each module of
:mod:`isokit.models` declares the kind of its class beside the class and registers it with
:func:`register_model_kind`; nothing here assumes a kind is isokit's own, so a factory from
elsewhere wraps into the same type.

Defaults come from the factory's signature (an :class:`Arg` restates one only where a config
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
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from isokit.theory.law import Chain

__all__ = [
    "REQUIRED",
    "SIZE_MAX",
    "Arg",
    "Derived",
    "FixedInput",
    "FlatInput",
    "ImageInput",
    "ModelArgError",
    "ModelKind",
    "ModelSize",
    "Rule",
    "get_model_kind",
    "model_flags",
    "model_kinds",
    "register_model_kind",
]

#: The largest size argument (width, depth, channels, ...) any spec accepts. A layer or stack
#: beyond 2³¹ − 1 units cannot be held in the memory of any machine isokit runs on, and the
#: bound keeps every size estimate a plain, instant integer product.
SIZE_MAX = 2**31 - 1

#: Bytes a constructed ``nn.Module`` costs beyond its tensors (measured: about 1.2 KiB for an
#: ``nn.Linear``); a lower bound, so that deep stacks of tiny layers are estimated too.
MODULE_BYTES = 1024


@dataclass(frozen=True)
class Derived:
    """A default computed from another argument: ``factor · args[arg]``.

    Example:
        >>> d_ff = Derived("d_model", 4)
        >>> d_ff({"d_model": 32}), str(d_ff)
        (128, '4·d_model')
    """

    arg: str
    factor: int = 1

    def __call__(self, args: Mapping[str, Any]) -> int:
        return self.factor * args[self.arg]

    def __str__(self) -> str:
        return self.arg if self.factor == 1 else f"{self.factor}·{self.arg}"


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: ``Arg.default`` of an argument a config must give.
REQUIRED: Any = _Sentinel("REQUIRED")
#: ``Arg.default`` to take from the factory's signature (the usual case).
FROM_FACTORY: Any = _Sentinel("FROM_FACTORY")
#: ``Arg.probe_default`` when ``isokit probe`` leaves the argument to the factory.
NO_PROBE_DEFAULT: Any = _Sentinel("NO_PROBE_DEFAULT")


class ModelArgError(ValueError):
    """A bad model argument ``arg`` (or ``"input_shape"``, ``"kind"``) and a message saying the fix.

    ``related`` names the other arguments a cross-argument rule ties ``arg`` to, so that a
    caller whose user cannot set ``arg`` (a flag the CLI fixes) can name one they can.

    Example:
        >>> err = ModelArgError("depth", "must be a positive integer, got -3")
        >>> err.arg, str(err)
        ('depth', 'depth: must be a positive integer, got -3')
    """

    def __init__(self, arg: str, message: str, *, related: tuple[str, ...] = ()) -> None:
        super().__init__(f"{arg}: {message}")
        self.arg = arg
        self.message = message
        self.related = tuple(related)


def _shown(value: object) -> str:
    """How a value reads in a message: ``-3``, ``'4'``, ``a float 1000.0``, ``a list``."""
    if isinstance(value, bool):
        return f"a boolean {str(value).lower()}"
    if isinstance(value, float):
        return f"a float {value!r}"
    if isinstance(value, int | str):
        return repr(value)
    return f"a {type(value).__name__}"


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


@dataclass(frozen=True, kw_only=True)
class Arg:
    """One constructor argument: its type, default, allowed values and the CLI flag that sets it.

    Attributes:
        name: the keyword the factory takes.
        type: ``int``, ``float``, ``bool`` or ``str``. Strict: a boolean is not an integer,
            ``1e3`` is not an integer, ``"False"`` is not a boolean.
        default: :data:`REQUIRED`, a value, or (the default) :data:`FROM_FACTORY`, which reads it
            from the factory's signature when the kind is made.
        choices: the allowed values, or ``None`` for any value of the type.
        minimum, maximum: inclusive bounds of a number (sizes: 1 and :data:`SIZE_MAX`).
        none: the word that spells ``None`` in a config (TOML has no null), e.g. ``"none"``.
        flag: the common ``isokit probe`` flag (without ``--``) that sets the argument.
        probe_default: what ``isokit probe`` passes when the flag is not given: a value, or a
            :class:`Derived` one (``Derived("d_model", 4)``: four times ``d_model``).

    Example:
        >>> Arg(name="depth", type=int, minimum=1).check(1e3)
        Traceback (most recent call last):
        ...
        isokit.models.spec.ModelArgError: depth: must be a positive integer, got a float 1000.0
    """

    name: str
    type: type
    default: Any = FROM_FACTORY
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    none: str | None = None
    flag: str | None = None
    probe_default: Any = NO_PROBE_DEFAULT

    def __post_init__(self) -> None:
        if self.type not in _TYPE_WORDS:
            raise TypeError(f"Arg {self.name!r}: type must be int, float, bool or str")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def has_probe_default(self) -> bool:
        """Whether ``isokit probe`` sets the argument when its flag is not given."""
        return self.probe_default is not NO_PROBE_DEFAULT

    @property
    def nullable(self) -> bool:
        """Whether ``None`` is a valid value (a ``None`` default or a ``none`` word)."""
        return self.none is not None or (self.default is None) or None in (self.choices or ())

    def describe(self) -> str:
        """What a valid value is, as a message fragment (``a positive integer``, ``one of ...``)."""
        if self.choices is not None:
            words = [self.none if c is None and self.none else c for c in self.choices]
            return "one of " + ", ".join(map(repr, words))
        if self.type is int and self.minimum == 1:
            what = "a positive integer"
        elif self.type in (int, float) and self.minimum is not None:
            what = f"{_TYPE_WORDS[self.type]} >= {self.minimum:g}"
        else:
            what = _TYPE_WORDS[self.type]
        return what  # the maximum has its own message: values beyond it are not typos

    def _fail(self, value: object, hint: str = "") -> ModelArgError:
        return ModelArgError(self.name, f"must be {self.describe()}, got {_shown(value)}{hint}")

    def check(self, value: object) -> Any:
        """Return ``value`` as the factory takes it (``none`` word → ``None``), or raise."""
        if value is None or (self.none is not None and value == self.none):
            if self.nullable:
                return None
            raise self._fail(value)
        if self.choices is not None:
            return self._check_choice(value)
        if self.type is bool:
            if not isinstance(value, bool):
                raise self._fail(value)
            return value
        if self.type is str:
            if not isinstance(value, str):
                raise self._fail(value)
            return value
        return self._check_number(value)

    def _check_choice(self, value: object) -> Any:
        typed = isinstance(value, self.type) and isinstance(value, bool) == (self.type is bool)
        if typed and value in self.choices:
            return value
        words = [self.none if c is None and self.none else str(c) for c in self.choices]
        close = difflib.get_close_matches(str(value), words, n=1)
        raise self._fail(value, f"; did you mean {close[0]!r}?" if close else "")

    def _check_number(self, value: object) -> int | float:
        if self.type is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            ok = ok and math.isfinite(value)
        if not ok:
            raise self._fail(value)
        if self.minimum is not None and value < self.minimum:
            raise self._fail(value)
        if self.maximum is not None and value > self.maximum:
            raise ModelArgError(
                self.name, f"must be at most {self.maximum!r}, got {value!r}; no machine fits more"
            )
        return value if self.type is int else float(value)

    def to_config(self, value: Any) -> Any:
        """``value`` as a config spells it (``None`` → the ``none`` word)."""
        return self.none if value is None and self.none is not None else value


def size(name: str, **kw: Any) -> Arg:
    """A size argument: a positive integer up to :data:`SIZE_MAX`.

    Example:
        >>> size("width", flag="width").check(0)
        Traceback (most recent call last):
        ...
        isokit.models.spec.ModelArgError: width: must be a positive integer, got 0
    """
    return Arg(name=name, type=int, minimum=1, maximum=SIZE_MAX, **kw)


@dataclass(frozen=True)
class Rule:
    """A rule tying arguments together: ``check(args)`` returns a message saying the fix, or None.

    The error names ``args[0]``; the others are its ``related`` arguments.

    Example:
        >>> rule = Rule(("kernel_size",), lambda a: None if a["kernel_size"] % 2 else "must be odd")
        >>> rule.check({"kernel_size": 3}) is None
        True
    """

    args: tuple[str, ...]
    check: Callable[[Mapping[str, Any]], str | None]


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
# input shapes


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
            isokit.models.spec.ModelArgError: depth: must be 6n+2 (8, 14, 20, ...), got 21
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
        isokit.models.spec.ModelArgError: kind: unknown model kind 'mpl'; did you mean 'mlp'? ...
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
