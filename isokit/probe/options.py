"""The options of every probe: :class:`ProbeOptions`, validated once, shared by all probes.

:func:`~isokit.probe.profile`, :func:`~isokit.probe.block_profile` and
:func:`~isokit.probe.signal` take one ``ProbeOptions`` (or its fields as keyword overrides). Each
field is checked on construction with strict types (``True`` is not an integer, ``"no"`` is not a
boolean), so a bad value fails before any model is copied. :meth:`ProbeOptions.from_mapping`
reads the JSON/TOML form (``dtype = "float64"``) and refuses unknown keys, naming close matches.
Each field carries its checker in its ``metadata`` (:func:`_option`), so a field cannot exist
without one.

Example:
    >>> import torch
    >>> opts = ProbeOptions(method="exact", dtype=torch.float32)
    >>> opts.replace(n_probes=8).n_probes
    8
    >>> ProbeOptions.from_mapping({"method": "lanczos", "dtype": "float64"}).to_dict()["dtype"]
    'float64'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from isokit.probe.checks import (
    ProbeOptionError,
    SlqTapsOption,
    TapsOption,
    boolean,
    check_dtype,
    check_slq_taps,
    check_start,
    check_taps,
    choice,
    close_matches,
    describe,
    finite_positive,
    positive_int,
)

__all__ = ["METHODS", "ProbeOptionError", "ProbeOptions"]

#: The probe methods (``docs/probes.md §3`` exact, ``§4`` matrix-free).
METHODS: tuple[str, ...] = ("auto", "exact", "lanczos")


def _option(default: Any, check: Callable[[str, Any], Any]) -> Any:
    """A field with its ``default`` and the ``check(name, value)`` that returns the value."""
    return field(default=default, metadata={"check": check})


def _automatic_size(name: str, value: Any) -> int | None:
    return positive_int(name, value, optional=True)


def _time_budget(name: str, value: Any) -> float | None:
    return None if value is None else finite_positive(name, value)


@dataclass(frozen=True, kw_only=True)
class ProbeOptions:
    """How the probes run; every field is validated on construction (module docstring).

    Attributes:
        taps: ``"auto"``, a list of module names, or a predicate ``(name, module) -> bool``.
        method: ``"auto"``, ``"exact"`` or ``"lanczos"`` (``docs/probes.md §3``, ``§4``).
        dtype: probe dtype, ``torch.float64`` (default) or ``torch.float32``.
        chunk_size: input basis vectors per exact ``jvp`` batch (``None``: from memory).
        example_chunk: examples per exact sweep (``None``: automatic).
        max_memory: byte budget of the exact tier (``None``: half the free RAM, 80 % of the
            free GPU memory).
        max_seconds: time budget of ``method="auto"`` for the whole profile: when the exact
            tier's estimated time exceeds it, every tap uses the matrix-free tier, with SLQ at
            those default SLQ taps that fit the budget (``None``: nothing is timed and auto
            chooses by memory alone).
        start: a module name: measure ``∂h_l/∂h_start`` for the taps after it, at the
            activations the batch produces (``None``: the input, ``∂h_l/∂x``).
        n_probes: Rademacher probes per example for the moments and SLQ (``≥ 4``).
        lanczos_steps: Lanczos steps per SLQ probe.
        slq_taps: taps with SLQ densities and Ritz bounds: names or 1-based depths, ``"all"``,
            ``"none"``, or ``None`` (log-spaced depths plus the last).
        seed: seed of the probe generator (``≥ 0``).
        band: half-width of the ``near`` band ``[1/(1+band), 1+band]``.
        svd: exact tier: ``svdvals`` of ``J`` at every tap instead of the Gram.
        progress: tqdm progress bars.

    Example:
        >>> ProbeOptions(chunk_size=0)
        Traceback (most recent call last):
        ...
        isokit.probe.checks.ProbeOptionError: chunk_size: must be a positive integer or None \
(automatic), got 0
    """

    taps: TapsOption = _option("auto", check_taps)
    method: str = _option("auto", lambda n, v: choice(n, v, METHODS))
    dtype: torch.dtype = _option(torch.float64, check_dtype)
    chunk_size: int | None = _option(None, _automatic_size)
    example_chunk: int | None = _option(None, _automatic_size)
    max_memory: int | None = _option(None, _automatic_size)
    max_seconds: float | None = _option(20.0, _time_budget)
    start: str | None = _option(None, check_start)
    n_probes: int = _option(
        16, lambda n, v: positive_int(n, v, minimum=4, why=" (the third moment needs 4)")
    )
    lanczos_steps: int = _option(64, positive_int)
    slq_taps: SlqTapsOption = _option(None, check_slq_taps)
    seed: int = _option(0, lambda n, v: positive_int(n, v, minimum=0))
    band: float = _option(0.1, finite_positive)
    svd: bool = _option(False, boolean)
    progress: bool = _option(False, boolean)

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, f.metadata["check"](f.name, getattr(self, f.name)))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in field order.

        Example:
            >>> ProbeOptions.names()[:3]
            ('taps', 'method', 'dtype')
        """
        return tuple(f.name for f in fields(cls))

    @classmethod
    def _check_names(cls, keys: Sequence[Any]) -> None:
        allowed = cls.names()
        for key in keys:
            if key not in allowed:
                raise ProbeOptionError(
                    str(key),
                    f"unknown probe option{close_matches(str(key), allowed)} "
                    f"(allowed: {', '.join(allowed)})",
                )

    def replace(self, **changes: Any) -> ProbeOptions:
        """A copy with ``changes`` applied and validated; unknown names are refused.

        Example:
            >>> ProbeOptions().replace(method="exact").method
            'exact'
        """
        self._check_names(list(changes))
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any], base: ProbeOptions | None = None
    ) -> ProbeOptions:
        """Options from JSON/TOML values (``dtype`` as ``"float64"``) on top of ``base``.

        Example:
            >>> ProbeOptions.from_mapping({"n_probe": 8})
            Traceback (most recent call last):
            ...
            isokit.probe.checks.ProbeOptionError: n_probe: unknown probe option; did you mean \
'n_probes'? (allowed: taps, method, dtype, chunk_size, example_chunk, max_memory, \
max_seconds, start, n_probes, lanczos_steps, slq_taps, seed, band, svd, progress)
        """
        if not isinstance(mapping, Mapping):
            raise ProbeOptionError(
                "options", f"must be a mapping of option names to values, got {describe(mapping)}"
            )
        if base is not None and not isinstance(base, ProbeOptions):
            raise ProbeOptionError("base", f"must be ProbeOptions or None, got {describe(base)}")
        return (base or cls()).replace(**dict(mapping))

    def to_dict(self) -> dict[str, Any]:
        """The JSON/TOML form, read back by :meth:`from_mapping`.

        A predicate ``taps`` has no such form and raises :class:`ProbeOptionError`.

        Example:
            >>> ProbeOptions(taps=["a", "b"]).to_dict()["taps"]
            ['a', 'b']
        """
        if callable(self.taps):
            raise ProbeOptionError(
                "taps", "a tap predicate has no JSON form; pass the module names instead"
            )
        out: dict[str, Any] = {}
        for name in self.names():
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, torch.dtype):
                value = str(value).replace("torch.", "")
            out[name] = value
        return out


def resolve_options(options: ProbeOptions | None, overrides: Mapping[str, Any]) -> ProbeOptions:
    """``options`` (default ``ProbeOptions()``) with keyword ``overrides`` applied.

    Example:
        >>> resolve_options(None, {"method": "exact"}).method
        'exact'
    """
    if options is not None and not isinstance(options, ProbeOptions):
        raise ProbeOptionError(
            "options",
            f"must be ProbeOptions or None, got {describe(options)}; pass single options as "
            "keywords (method='exact') or build ProbeOptions.from_mapping({...})",
        )
    base = options or ProbeOptions()
    return base.replace(**overrides) if overrides else base
