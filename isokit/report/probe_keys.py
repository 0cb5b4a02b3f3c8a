"""The config keys the probes own: ``method``, ``dtype`` and ``[method_options]``.

Their values, defaults and checks are :class:`isokit.probe.ProbeOptions`'s; this module only
moves a :class:`~isokit.probe.ProbeOptionError` to the config key (``method_options.n_probes``)
and refuses options that the runner sets from another key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from isokit.report.checks import ConfigError

__all__ = ["check_method_options", "probe_option"]


def probe_option(key: str, data: Mapping[str, Any]) -> Any:
    """The top-level ``method`` or ``dtype``: checked by :class:`isokit.probe.ProbeOptions`,
    which owns their values and their defaults, and returned in its JSON form.

    Example:
        >>> probe_option("method", {})
        'auto'
        >>> probe_option("dtype", {"dtype": "float16"})
        Traceback (most recent call last):
        ...
        isokit.report.checks.ConfigError: dtype: float16 is too coarse for Jacobian spectra \
(machine epsilon ~1e-3 swamps small singular values and overflows deep products); use float64 \
(default) or float32
    """
    from isokit.probe import ProbeOptionError, ProbeOptions

    try:
        return ProbeOptions.from_mapping({key: data[key]} if key in data else {}).to_dict()[key]
    except ProbeOptionError as exc:
        raise ConfigError(key, exc.message) from None


def check_method_options(options: dict[str, Any]) -> None:
    """Check ``method_options`` as the probes read them (:class:`isokit.probe.ProbeOptions`).

    Example:
        >>> check_method_options({"n_probe": 8})
        Traceback (most recent call last):
        ...
        isokit.report.checks.ConfigError: method_options.n_probe: unknown probe option; did you \
mean 'n_probes'? (allowed: taps, method, dtype, chunk_size, example_chunk, max_memory, \
max_seconds, start, n_probes, lanczos_steps, slq_taps, seed, band, svd, progress)
    """
    from isokit.probe import ProbeOptionError, ProbeOptions

    # The runner sets these itself, each from one place of the config or the command line.
    owners = {"method": "the top-level `method`", "dtype": "the top-level `dtype`"}
    owners.update(seed="`seeds`", progress="--quiet")
    for name, owner in owners.items():
        if name in options:
            raise ConfigError(
                f"method_options.{name}", f"is set by {owner}; remove it from [method_options]"
            )
    try:
        ProbeOptions.from_mapping(options)
    except ProbeOptionError as exc:
        raise ConfigError(f"method_options.{exc.option}", exc.message) from None
