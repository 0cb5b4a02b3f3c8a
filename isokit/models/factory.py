"""Models from outside isokit: a factory named by import path, with the spec of a model kind.

A config (``factory = "package.module:function"``) or ``isokit probe --factory`` names a callable
that builds an ``nn.Module`` from keyword arguments (``kwargs``). :func:`import_object` imports
it with :mod:`importlib` (``module:attribute``, the attribute may be dotted); nothing is ever
evaluated from text. :class:`FactoryKind` gives it what reports and the command line read of
an isokit :class:`~isokit.models.ModelKind`: argument names checked against the signature,
``build``, a stable label (the function's name and its keyword arguments, sorted), and no
theory view or size (``None``). An *inputs factory* (``inputs = "package.module:function"``,
:class:`InputsFactory`) draws the examples of such a model: called as ``fn(n, generator=g,
**input_kwargs)`` it returns a tensor, a tuple of positional or a dict of keyword inputs
(token ids for BERT or GPT-2), each with the ``n`` examples first.

Every failure is a :class:`~isokit.models.ModelArgError` naming the entry's key (``factory``,
``kwargs.<name>``, ``inputs``) and the fix; configs turn it into a ``ConfigError`` at that key.

Example:
    >>> kind = FactoryKind.from_path("torch.nn:Linear")
    >>> args = kind.resolve({"in_features": 3, "out_features": 2})
    >>> kind.label(args), type(kind.build(**args)).__name__
    ('Linear(in_features=3, out_features=2)', 'Linear')
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from isokit.models.args import ModelArgError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["FactoryKind", "InputsFactory", "import_object"]

_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
#: The extra of isokit that installs a missing package, where one does.
_EXTRAS = {"transformers": "pip install 'isokit[hf]'"}


def _missing_package(exc: ModuleNotFoundError) -> str:
    name = (exc.name or "").partition(".")[0]
    fix = _EXTRAS.get(name, f"install {name}")
    return f"needs the package {name!r}, which is not installed; {fix}"


def _import_module(key: str, module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module == missing or module.startswith(missing + "."):
            raise ModelArgError(
                key,
                f"no module named {missing!r}; check the path (the module must be importable: "
                "installed, or on PYTHONPATH)",
            ) from None
        raise ModelArgError(key, f"module {module!r} {_missing_package(exc)}") from None
    except Exception as exc:  # the module's own code failed: say so, with its error
        raise ModelArgError(
            key, f"importing {module!r} failed with {type(exc).__name__}: {exc}"
        ) from None


def import_object(path: object, *, key: str = "factory") -> Callable[..., Any]:
    """The callable at ``"package.module:attribute"`` (imported, never evaluated), or raise.

    Raises:
        ModelArgError: (``key``) a malformed path, a module that is not importable, a missing
            attribute (close matches named) or one that cannot be called.

    Example:
        >>> import_object("torch.nn:Linearr")
        Traceback (most recent call last):
        ...
        isokit.models.args.ModelArgError: factory: module 'torch.nn' has no attribute \
'Linearr'; did you mean 'Linear'?
    """
    if not isinstance(path, str) or not _PATH.match(path):
        raise ModelArgError(
            key,
            f'must be an import path "package.module:function", got {path!r}; the module is '
            "imported and the function looked up in it",
        )
    module_name, _, attr = path.partition(":")
    obj = _import_module(key, module_name)
    where = module_name
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ModelArgError(key, f"module {where!r} has no attribute {part!r}{hint}")
        obj, where = getattr(obj, part), f"{where}.{part}"
    if not callable(obj):
        raise ModelArgError(
            key, f"{path} is {type(obj).__name__}, not a function or class; name a callable"
        )
    return obj


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without one: the call itself checks
        return None


def _shown(value: Any) -> str:
    """A keyword value as the label shows it: TOML-like, short."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ",".join(_shown(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}={_shown(v)}" for k, v in sorted(value.items())) + "}"
    return str(value)


def _call_error(path: str, exc: BaseException) -> ModelArgError:
    if isinstance(exc, ModuleNotFoundError):
        return ModelArgError("factory", f"{path} {_missing_package(exc)}")
    text = str(exc).strip().splitlines()
    first = text[0][:300] if text else ""
    return ModelArgError(
        "factory",
        f"{path}(...) raised {type(exc).__name__}: {first}; check kwargs against what it takes",
    )


@dataclass(frozen=True)
class FactoryKind:
    """A model factory by import path, read as reports read a :class:`~isokit.models.ModelKind`.

    Attributes:
        name: the import path (``"isokit.models.hf:bert"``).
        factory: the imported callable; called with the keyword arguments, it returns the model.
    """

    name: str
    factory: Callable[..., Any]

    @classmethod
    def from_path(cls, path: object) -> FactoryKind:
        """Import the factory at ``path`` (:func:`import_object`)."""
        return cls(name=str(path), factory=import_object(path))

    @property
    def function_name(self) -> str:
        """The callable's own name, the start of every label (``bert``)."""
        return self.name.rpartition(":")[2].rpartition(".")[2]

    def resolve(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments, their names checked against the factory's signature.

        Values are passed as TOML gave them (the factory checks them when it is called).

        Example:
            >>> FactoryKind.from_path("torch.nn:Linear").resolve({"in_feature": 3})
            Traceback (most recent call last):
            ...
            isokit.models.args.ModelArgError: kwargs.in_feature: unknown argument of \
torch.nn:Linear; did you mean 'in_features'? it takes in_features, out_features, bias, device, \
dtype
        """
        if not isinstance(raw, Mapping):
            raise ModelArgError("kwargs", f"must be a table, got {type(raw).__name__}")
        sig = _signature(self.factory)
        if sig is None:
            return dict(raw)
        params = sig.parameters
        named = [
            n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            for name in raw:
                if name not in named:
                    close = difflib.get_close_matches(str(name), named, n=1)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    raise ModelArgError(
                        f"kwargs.{name}",
                        f"unknown argument of {self.name}; {hint}it takes {', '.join(named)}",
                    )
        missing = [n for n in named if params[n].default is params[n].empty and n not in raw]
        if missing:
            raise ModelArgError(
                "kwargs", f"{self.name} needs {', '.join(missing)}; add them to kwargs"
            )
        return dict(raw)

    def build(self, **kwargs: Any) -> nn.Module:
        """A fresh model from the factory (seed ``torch`` first); errors name ``factory``."""
        from torch import nn

        kwargs = self.resolve(kwargs)
        try:
            model = self.factory(**kwargs)
        except Exception as exc:  # the user's code: its error, one line, at the entry's key
            raise _call_error(self.name, exc) from None
        if not isinstance(model, nn.Module):
            raise ModelArgError(
                "factory",
                f"{self.name} returned {type(model).__name__}, not an nn.Module; name a function "
                "that builds the model",
            )
        return model

    def label(self, args: Mapping[str, Any]) -> str:
        """``name(key=value, ...)`` with the keywords sorted, so the label does not depend on
        the order a config lists them in."""
        inner = ", ".join(f"{k}={_shown(v)}" for k, v in sorted(args.items()))
        return f"{self.function_name}({inner})" if inner else self.function_name

    def input_shape(self, args: Mapping[str, Any], image_size: int) -> tuple[int, ...]:
        """No shape can be read off a factory: the config says it."""
        raise ModelArgError(
            "input_shape",
            "a factory's input cannot be inferred; set input_shape = [...] (floating inputs) or "
            'inputs = "package.module:function" (an inputs factory)',
        )

    def check_input_shape(self, args: Mapping[str, Any], shape: tuple[int, ...]) -> None:
        """Any shape: the dry forward pass of the probe checks it against the model."""

    def chain(self, args: Mapping[str, Any]) -> None:
        """No theory describes a model from outside isokit."""
        return None

    def size(self, args: Mapping[str, Any], input_shape: tuple[int, ...]) -> None:
        """Not counted from the arguments (the model is built once when the config is read)."""
        return None

    def to_config(self, args: Mapping[str, Any]) -> dict[str, Any]:
        return dict(args)


def _batch_of(value: Any) -> int | None:
    """The leading size of the first tensor of a tensor, tuple or dict; ``None`` if none."""
    from torch import Tensor

    values = (
        [value]
        if isinstance(value, Tensor)
        else list(value.values() if isinstance(value, Mapping) else value)
    )
    first = next((v for v in values if isinstance(v, Tensor)), None)
    return None if first is None or first.ndim == 0 else int(first.shape[0])


@dataclass(frozen=True)
class InputsFactory:
    """An inputs factory by import path: ``fn(n, generator=g, **kwargs)`` draws ``n`` examples.

    Example:
        >>> import torch
        >>> draw = InputsFactory.from_path("isokit.models.hf:token_ids", {"vocab_size": 5})
        >>> draw(2, torch.Generator().manual_seed(0))["input_ids"].shape
        torch.Size([2, 8])
    """

    name: str
    fn: Callable[..., Any]
    kwargs: Mapping[str, Any]

    @classmethod
    def from_path(cls, path: object, kwargs: Mapping[str, Any] | None = None) -> InputsFactory:
        """Import the inputs factory at ``path``; ``kwargs`` are passed on every call."""
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise ModelArgError("input_kwargs", f"must be a table, got {type(kwargs).__name__}")
        return cls(name=str(path), fn=import_object(path, key="inputs"), kwargs=dict(kwargs or {}))

    def __call__(self, n: int, generator: torch.Generator) -> Any:
        """``n`` examples: a tensor, a tuple or a dict with every tensor's batch axis first."""
        from torch import Tensor

        try:
            value = self.fn(n, generator=generator, **self.kwargs)
        except Exception as exc:  # the user's code: its error, one line, at the entry's key
            text = str(exc).strip().splitlines()
            raise ModelArgError(
                "inputs",
                f"{self.name}({n}, generator=...) raised {type(exc).__name__}: "
                f"{text[0][:300] if text else ''}; an inputs factory takes the number of "
                "examples and a generator= keyword",
            ) from None
        if not isinstance(value, Tensor | tuple | Mapping):
            raise ModelArgError(
                "inputs",
                f"{self.name} returned {type(value).__name__}; return a tensor, a tuple of "
                "positional or a dict of keyword inputs",
            )
        if _batch_of(value) != n:
            raise ModelArgError(
                "inputs",
                f"{self.name} returned {_batch_of(value)} examples for n = {n}; return n "
                "examples, the batch axis first in every tensor",
            )
        return value
