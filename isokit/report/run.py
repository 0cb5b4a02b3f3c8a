"""Running a config: every model × scheme × seed through init and the probes, into :class:`Results`.

For each combination the model is built under ``torch.manual_seed(seed)`` (inside a forked RNG, so
the caller's global RNG is left alone), initialized with ``isokit.init.apply(..., seed=seed)``, and
probed on inputs drawn from a generator seeded by ``seed``. Everything runs on the CPU in a fixed
order, so the same config and seeds give the same numbers. A scheme that does not fit a model
(:class:`isokit.init.SchemeNotApplicable`, e.g. Fixup on an MLP without residual branches) is
recorded as *not applicable* with its message, and the run carries on; any other error from
``apply`` (a bad option) is a config error.
"""

from __future__ import annotations

import math
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from isokit.report.config import Config, ConfigError, InputSpec, load_config, parse_config
from isokit.report.results import Results, RunRecord, environment, load_results, now_utc

if TYPE_CHECKING:
    from isokit.probe import ProbeOptions

__all__ = ["draw_inputs", "make_report", "probe_text", "run_config"]

#: Byte budget of the exact tier unless ``method_options.max_memory`` says otherwise.
DEFAULT_MAX_MEMORY = 2 * 2**30


def draw_inputs(spec: InputSpec, shape: Sequence[int], seed: int) -> torch.Tensor:
    """``spec.examples`` unit-variance inputs of ``shape`` from a generator seeded by ``seed``."""
    gen = torch.Generator().manual_seed(int(seed))
    size = (spec.examples, *shape)
    if spec.distribution == "gaussian":
        return torch.randn(size, generator=gen)
    if spec.distribution == "uniform":
        # U(-√3, √3) has unit variance, so the theory's q¹ = σ_w² applies to every distribution.
        return (torch.rand(size, generator=gen) * 2.0 - 1.0) * math.sqrt(3.0)
    return torch.randint(0, 2, size, generator=gen).float() * 2.0 - 1.0


def _probe_options(config: Config, seed: int) -> ProbeOptions:
    """The one :class:`isokit.probe.ProbeOptions` of a run: the config's ``method``, ``dtype`` and
    ``method_options``, the run's ``seed`` and a fixed memory budget.

    Example:
        >>> from isokit.report.config import load_config
        >>> _probe_options(load_config(), seed=3).seed
        3
    """
    from isokit.probe import ProbeOptions

    # A fixed memory budget unless method_options sets one: the probe's default (half the free
    # RAM) changes from run to run, and with it the exact tier's plan, the auto method's choice
    # and the recorded metadata.
    return ProbeOptions.from_mapping(
        {
            "method": config.method,
            "dtype": config.dtype,
            "seed": seed,
            "max_memory": DEFAULT_MAX_MEMORY,
            **config.method_options,
        }
    )


def _run_one(config: Config, model_spec, scheme_spec, seed: int) -> RunRecord:
    from isokit.init import SchemeNotApplicable, apply, get_scheme
    from isokit.init.branches import BranchDiscoveryError
    from isokit.probe import ProbeMemoryError, TapError, profile

    base = {"model": model_spec.label, "scheme": scheme_spec.label, "seed": seed}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_spec.build()
    inputs = draw_inputs(config.inputs, model_spec.input_shape, seed)
    data = inputs if get_scheme(scheme_spec.name).needs_data else None
    try:
        apply(model, scheme_spec.name, seed=seed, data=data, **scheme_spec.options)
    except (SchemeNotApplicable, BranchDiscoveryError) as exc:
        # e.g. Fixup on a model without residual branches: recorded, and the run goes on.
        return RunRecord(**base, status="not applicable", message=str(exc))
    except (TypeError, ValueError) as exc:  # a bad option name, type or value: the config's fault
        index = [s.label for s in config.schemes].index(scheme_spec.label)
        raise ConfigError(f"schemes[{index}].options", f"{exc}; fix the option") from None
    meta = {**base, "model_kind": model_spec.kind, "scheme_name": scheme_spec.name}
    # Dead or zeroed Jacobians (Fixup's zero head, ZerO) are expected here; their statistics
    # are well defined (inf) and numpy's divide-by-zero warnings would only be noise.
    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            result = profile(
                model,
                inputs,
                _probe_options(config, seed),
                meta=meta,
                with_signal=config.probes["signal"],
                with_blocks=config.probes["block"],
            )
    except ProbeMemoryError as exc:  # only `method = "exact"` raises it; "auto" falls back
        raise ConfigError(
            "method",
            f"{exc}; use method = 'auto' or 'lanczos', or raise method_options.max_memory",
        ) from None
    except TapError as exc:
        if "taps" not in config.method_options:  # the model's own taps: not the config's fault
            raise
        raise ConfigError(
            "method_options.taps", f"{exc}; name modules of {model_spec.label}"
        ) from None
    return RunRecord(**base, status="ok", profile=result)


def _require_profile(config: Config) -> None:
    """The report is built on the profile probe: block and signal results are its sections."""
    if not config.probes["profile"]:
        raise ConfigError(
            "probes.profile",
            "is false, but every report is built on the profile probe (the block and signal "
            "results are sections of its Profile); set profile = true",
        )


def run_config(
    config: Config, *, quiet: bool = False, command: Sequence[str] | None = None
) -> Results:
    """Run every model × scheme × seed of ``config``; return the :class:`Results` (no files)."""
    from tqdm.auto import tqdm

    _require_profile(config)
    combos = [(m, s, seed) for m in config.models for s in config.schemes for seed in config.seeds]
    start = time.perf_counter()
    records = []
    # A fixed thread count makes reductions (and so the last bits) the same on every run; one
    # thread is also the fastest for these small kernels on a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        with tqdm(
            total=len(combos), disable=quiet, unit="run", file=sys.stderr, dynamic_ncols=True
        ) as bar:
            for model_spec, scheme_spec, seed in combos:
                bar.set_postfix_str(f"{model_spec.label} · {scheme_spec.label} · seed {seed}")
                records.append(_run_one(config, model_spec, scheme_spec, seed))
                bar.update()
        env = {**environment(), "seeds": list(config.seeds)}
    finally:
        torch.set_num_threads(threads)
    return Results(
        config=config,
        records=records,
        environment=env,
        command=list(command) if command is not None else list(sys.argv),
        created=now_utc(),
        elapsed_s=round(time.perf_counter() - start, 3),
    )


def make_report(
    config: str | Path | Config | None = None,
    *,
    out: str | Path,
    from_results: str | Path | None = None,
    quiet: bool = False,
    command: Sequence[str] | None = None,
) -> Path:
    """``isokit report``: validate, run (or load ``from_results``), publish into ``out``.

    Returns the path of ``report.html``. ``out``, the config (or the results file) are checked
    and ``out`` is locked before any probe runs; the report then replaces ``out`` as a whole
    (:class:`~isokit.report.io.ReportDir`), so after any failure ``out`` holds the complete old
    report or the complete new one.

    Example:
        >>> make_report(out="")
        Traceback (most recent call last):
        ...
        isokit.report.checks.ConfigError: --out: is empty; pass a directory, e.g. --out out/report
    """
    from isokit.report.io import ReportDir
    from isokit.report.publish import write_report

    target = ReportDir(out)  # checks the path; writes nothing yet
    results = cfg = None
    if from_results is not None:
        if config is not None:
            raise ConfigError("--from", "re-rendering takes no CONFIG; drop one of the two")
        results = load_results(from_results)
    else:
        cfg = config if isinstance(config, Config) else load_config(config)
        _require_profile(cfg)
    with target:
        if results is None:
            results = run_config(cfg, quiet=quiet, command=command)
        page = write_report(results, target)
        target.commit()
    if not quiet:
        print(f"isokit: wrote {page}", file=sys.stderr)
    return page


# --------------------------------------------------------------------------------------------
# `isokit probe`: one model × one scheme from flags


def _dest(flag: str) -> str:
    return flag.replace("-", "_")


def _flag_model(model: str, flags: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[[models]]`` table that ``isokit probe`` flags describe, from the kind's spec.

    A given flag sets the argument the kind ties to it (``--width`` is a ConvNet's
    ``channels``); other arguments take the spec's probe default, or the constructor's.

    Example:
        >>> _flag_model("transformer", {"width": 16})
        {'kind': 'transformer', 'depth': 4, 'd_model': 16, 'heads': 4, 'seq_len': 8, 'd_ff': 64}
    """
    from isokit.models import ModelArgError, get_model_kind, model_flags

    try:
        kind = get_model_kind(model)
    except ModelArgError as exc:
        raise ConfigError("--model", exc.message) from None
    given = {name: value for name, value in flags.items() if value is not None}
    table: dict[str, Any] = {"kind": kind.name}
    derived = []
    for arg in kind.args:
        if arg.flag is not None and _dest(arg.flag) in given:
            table[arg.name] = given.pop(_dest(arg.flag))
        elif callable(arg.probe_default):  # computed from the others, so last
            derived.append(arg)
        elif arg.has_probe_default:
            table[arg.name] = arg.probe_default
    for arg in derived:
        table[arg.name] = arg.probe_default(table)
    for name in given:  # flags this kind has no argument for
        flag = name.replace("_", "-")
        users = [k.name for k, _ in model_flags().get(flag, [])]
        where = f"it sets an argument of {', '.join(users)}" if users else "no model takes it"
        raise ConfigError(f"--{flag}", f"a {kind.name} has none; drop it ({where})")
    return table


#: ``isokit probe`` flags behind config keys that are not model arguments.
_KEY_FLAGS = {
    "inputs.examples": "--examples",
    "inputs.image_size": "--image-size",
    "method": "--method",
}


def _model_flag(model: str, keys: Sequence[str]) -> str | None:
    """The flag that sets the first model argument of ``keys`` that has one."""
    from isokit.models import model_kinds

    kind = model_kinds().get(model)
    for key in keys:
        name = key.removeprefix("models[0].")
        arg = next((a for a in kind.args if a.name == name), None) if kind else None
        if arg is not None and arg.flag is not None:
            return f"--{arg.flag}"
    return None


def _flag_for(key: str, related: Sequence[str] = (), *, model: str = "") -> str:
    """The ``isokit probe`` flag behind a config key (``models[0].channels`` → ``--width``).

    ``related`` are the keys a cross-argument rule ties ``key`` to: an argument the probe
    fixes (a Transformer's ``heads``) is named through one the user sets (``--width``).

    Example:
        >>> _flag_for("models[0].heads", ("models[0].d_model",), model="transformer")
        '--width'
    """
    if key.startswith("schemes[0].options."):
        return "--option " + key.split(".", 2)[2]
    if key.startswith("schemes[0].options"):
        return "--option"
    if key.startswith("schemes"):
        return "--scheme"
    if key.startswith("seeds"):
        return "--seed"
    if key in _KEY_FLAGS:
        return _KEY_FLAGS[key]
    if key.startswith("models[0]."):
        flag = _model_flag(model, (key, *related))
        if flag is not None:
            return flag
    if key == "models[0]":  # the model as a whole does not fit: the flags that size it
        from isokit.models import model_kinds

        kind = model_kinds().get(model)
        sizes = [f"--{a.flag}" for a in (kind.args if kind else ()) if a.flag and a.type is int]
        return "/".join(sizes) or "--model"
    return "--model" if key.startswith("models") or key == "inputs.shape" else key


def _parse_options(options: Sequence[str]) -> dict[str, Any]:
    """``--option KEY=VALUE`` pairs; a VALUE is TOML (``1.5``, ``true``, ``nan``) or a bare word.

    Example:
        >>> _parse_options(["gain=2", "mode=fan_in", "tau=nan"])
        {'gain': 2, 'mode': 'fan_in', 'tau': nan}
    """
    parsed: dict[str, Any] = {}
    for item in options:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError("--option", f"expected KEY=VALUE, got {item!r}")
        if key in parsed:
            raise ConfigError(f"--option {key}", "is given twice; give each option once")
        try:
            parsed[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed[key] = value  # a bare word is a string
    return parsed


def _median(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.median(values)) if values.size else math.nan


def probe_text(
    *,
    model: str,
    scheme: str,
    options: Sequence[str] = (),
    image_size: int = 8,
    examples: int = 4,
    seed: int = 0,
    method: str = "auto",
    **flags: Any,
) -> str:
    """``isokit probe``: probe one model with one scheme; return a table of statistics per tap.

    ``flags`` are the common model flags by keyword (``depth=16``, ``width=32``,
    ``in_features=...``; :func:`isokit.models.model_flags` lists them); ``None`` leaves one
    to the model kind's probe default. Errors name the flag, not the config key.
    """
    from isokit.report.formatting import format_number

    table = {
        "models": [_flag_model(model, flags)],
        "schemes": [{"name": scheme, "options": _parse_options(options)}],
        "seeds": [seed],
        "method": method,
        "inputs": {"examples": examples, "image_size": image_size},
        "probes": {"profile": True, "block": False, "signal": False},
    }
    try:
        cfg = parse_config(table, source="command line")
        record = _run_one(cfg, cfg.models[0], cfg.schemes[0], seed)
    except ConfigError as exc:  # name the flag, not the config key
        raise ConfigError(_flag_for(exc.key, exc.related, model=model), exc.message) from None
    head = f"{cfg.models[0].label} · {scheme} · seed {seed} · {examples} examples"
    if record.status != "ok":
        return f"{head}\nnot applicable: {record.message}"
    cols = ("m1", "var", "gap", "cond", "sigma_min", "sigma_max")
    rows = [("tap", "depth", "D", *cols)]
    for tap in record.profile.taps:
        rows.append(
            (
                tap.name,
                str(tap.depth),
                str(tap.D),
                *(format_number(_median(tap.stats[c])) for c in cols),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    return "\n".join(
        [
            head,
            f"method: {record.profile.meta.get('method', method)}"
            f" (medians over examples; var = scale-free variance, gap = isometry gap)",
            *lines,
        ]
    )
