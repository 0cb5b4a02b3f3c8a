"""Running a config: every model × scheme × seed through init and the probes, into :class:`Results`.

For each combination the model is built under ``torch.manual_seed(seed)`` (inside a forked RNG, so
the caller's global RNG is left alone), initialized with ``isokit.init.apply(..., seed=seed)``, and
probed on inputs drawn from a generator seeded by :func:`input_seed` of ``seed``, a different
stream than the weights' (from the model's ``start`` module, if it names one:
``docs/probes.md §3.6``); a model with an ``inputs`` factory gets the factory's draw from that
generator. A model built by a factory, or fed by an inputs factory, has its inputs passed to
``apply`` as ``example_inputs`` (branch discovery captures the model on them), and a model's own
``taps`` replace ``method_options.taps``. Everything runs on the CPU in a fixed order, so the same
config and seeds give the same numbers. A scheme that does not fit a model
(:class:`isokit.init.SchemeNotApplicable`, e.g. Fixup on an MLP without residual branches) is
recorded as *not applicable* with its message, and the run carries on; any other error from
``apply`` (a bad option) is a config error.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from isokit.report.checks import scheme_option_error
from isokit.report.config import Config, ConfigError, InputSpec, load_config
from isokit.report.results import Results, RunRecord, environment, load_results, now_utc

if TYPE_CHECKING:
    from isokit.models.factory import InputsFactory
    from isokit.probe import ProbeOptions
    from isokit.probe.taps import ModelInputs
    from isokit.train import TrainData, TrainResult

__all__ = ["draw_inputs", "make_report", "run_config", "run_one"]

#: Byte budget of the exact tier unless ``method_options.max_memory`` says otherwise.
DEFAULT_MAX_MEMORY = 2 * 2**30


#: The input stream of a run's seed: inputs are drawn from ``SeedSequence([seed, INPUT_STREAM])``.
INPUT_STREAM = 1


def input_seed(seed: int) -> int:
    """The seed of a run's inputs, derived from the run's ``seed`` so that it differs from the
    seed of the scheme's weights: with one seed for both, a Gaussian scheme's first weight rows
    come out proportional to the first input (the same normal draws).

    Example:
        >>> input_seed(0) != 0, input_seed(0) == input_seed(0)
        (True, True)
    """
    state = np.random.SeedSequence([int(seed), INPUT_STREAM]).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))  # torch seeds are < 2**63


def draw_inputs(
    spec: InputSpec, shape: Sequence[int] | None, seed: int, *, factory: InputsFactory | None = None
) -> ModelInputs:
    """``spec.examples`` unit-variance inputs of ``shape`` from a generator seeded by
    :func:`input_seed` of the run's ``seed``; or, with an inputs ``factory``, its draw from
    that generator (a tensor, a tuple or a dict of inputs)."""
    gen = torch.Generator().manual_seed(input_seed(seed))
    if factory is not None:
        return factory(spec.examples, gen)
    if shape is None:
        raise ValueError("draw_inputs needs a shape or an inputs factory")
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


def run_one(
    config: Config,
    model_spec,
    scheme_spec,
    seed: int,
    *,
    data: TrainData | None = None,
    progress: bool = False,
    device: str | torch.device = "cpu",
) -> RunRecord:
    """Build, initialize and probe one model × scheme × seed of ``config`` (module docstring);
    with a ``[train]`` section, then train it on ``data`` (loaded here when not given).

    The model is built and initialized on the CPU, so its weights do not depend on the device,
    then probed and trained on ``device`` (``"cuda"`` on a GPU).

    Example:
        >>> from isokit.report.config import parse_config
        >>> cfg = parse_config({"schemes": ["orthogonal"], "models": [{"kind": "mlp",
        ...     "in_features": 4, "width": 4, "depth": 2}], "inputs": {"examples": 1}})
        >>> record = run_one(cfg, cfg.models[0], cfg.schemes[0], seed=0)
        >>> record.status, record.profile.names
        ('ok', ['acts.0', 'acts.1'])
    """
    from isokit.init import SchemeNotApplicable, apply, get_scheme
    from isokit.init.branches import BranchDiscoveryError
    from isokit.models import ModelArgError
    from isokit.probe import ProbeMemoryError, ProbeOptionError, TapError, profile

    base = {"model": model_spec.label, "scheme": scheme_spec.label, "seed": seed}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_spec.build()
    try:
        draw = model_spec.inputs_factory()
        inputs = draw_inputs(config.inputs, model_spec.input_shape, seed, factory=draw)
    except ModelArgError as exc:  # the factory changed since the config was read
        raise ConfigError(f"models[{_index(config, model_spec)}].{exc.arg}", exc.message) from None
    data = inputs if get_scheme(scheme_spec.name).needs_data else None
    # Models from outside isokit are captured on their inputs to find their residual branches.
    outside = model_spec.factory is not None or model_spec.inputs is not None
    example = {"example_inputs": inputs} if outside else {}
    try:
        apply(model, scheme_spec.name, seed=seed, data=data, **example, **scheme_spec.options)
    except (SchemeNotApplicable, BranchDiscoveryError) as exc:
        # e.g. Fixup on a model without residual branches: recorded, and the run goes on.
        return RunRecord(**base, status="not applicable", message=str(exc))
    except (TypeError, ValueError) as exc:  # a bad option name, type or value: the config's fault
        index = [s.label for s in config.schemes].index(scheme_spec.label)
        options = get_scheme(scheme_spec.name).options
        raise scheme_option_error(f"schemes[{index}]", options, exc) from None
    device = torch.device(device)
    if device.type != "cpu":
        model, inputs = model.to(device), _to(inputs, device)
    meta = {**base, "model_kind": model_spec.factory or model_spec.kind}
    meta["scheme_name"] = scheme_spec.name
    taps = {} if model_spec.taps is None else {"taps": model_spec.taps}
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
                start=model_spec.start,
                **taps,
            )
    except ProbeMemoryError as exc:  # only `method = "exact"` raises it; "auto" falls back
        raise ConfigError("method", str(exc)) from None  # its message says the fix
    except ProbeOptionError as exc:  # an option the taps contradict (slq_taps the model lacks)
        # start: no tap after it, or a tap listed before it; taps: the model's own
        if exc.option == "start" or (exc.option == "taps" and model_spec.taps is not None):
            where = f"models[{_index(config, model_spec)}].{exc.option}"
            raise ConfigError(where, exc.message) from None
        raise ConfigError(f"method_options.{exc.option}", exc.message) from None
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        raise ConfigError(
            f"models[{_index(config, model_spec)}]",
            f"the probes of {model_spec.label} × {scheme_spec.label} ran out of memory "
            f"({_first_line(exc)}); probe fewer inputs.examples or a smaller model, or lower "
            "method_options.n_probes or lanczos_steps",
        ) from None
    except TapError as exc:
        where = f"models[{_index(config, model_spec)}].taps"
        if model_spec.taps is not None:
            raise ConfigError(where, str(exc)) from None
        if "taps" not in config.method_options and model_spec.factory is not None:
            # taps="auto" on a model from outside isokit: the config can name them
            raise ConfigError(
                where, f"{exc}; set taps = [...] (module names or glob patterns) for this model"
            ) from None
        if "taps" not in config.method_options:  # the model's own taps: not the config's fault
            raise
        raise ConfigError(
            "method_options.taps", f"{exc}; name modules of {model_spec.label}"
        ) from None
    record = RunRecord(**base, status="ok", profile=result)
    if config.train is not None:
        record.train = _train(config, model, model_spec, data, seed, meta, progress, device)
    return record


def _to(inputs: ModelInputs, device: torch.device) -> ModelInputs:
    """``inputs`` (a tensor, a tuple or a dict of tensors) on ``device``."""
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)
    if isinstance(inputs, dict):
        return {k: _to(v, device) for k, v in inputs.items()}
    return tuple(_to(v, device) for v in inputs)


def _train(
    config: Config, model, model_spec, data: TrainData | None, seed, meta, progress, device
) -> TrainResult:
    """Train the probed ``model`` with the config's ``[train]`` options and this run's seed;
    the checkpoints are probed with the run's own probe options and the model's own taps and
    ``start``, as at initialization."""
    from isokit.train import train

    spec = config.train
    data = spec.load() if data is None else data
    options = _probe_options(config, seed)
    if model_spec.taps is not None:
        options = options.replace(taps=model_spec.taps)
    if model_spec.start is not None:
        options = options.replace(start=model_spec.start)
    with np.errstate(divide="ignore", invalid="ignore"):
        return train(
            model,
            data,
            spec.options.replace(seed=seed),
            probe_options=options,
            meta=meta,
            progress=progress,
            device=device,
        )


def _index(config: Config, model_spec) -> int:
    """The position of ``model_spec`` in ``config.models`` (labels are unique)."""
    return [m.label for m in config.models].index(model_spec.label)


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (torch says so in a RuntimeError on the CPU)."""
    oom = getattr(torch, "OutOfMemoryError", MemoryError)  # CUDA's, a RuntimeError
    return isinstance(exc, MemoryError | oom) or "can't allocate memory" in str(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


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
    data = config.train.load() if config.train is not None else None
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
                records.append(
                    run_one(config, model_spec, scheme_spec, seed, data=data, progress=not quiet)
                )
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
    require_train: bool = False,
) -> Path:
    """``isokit report``: validate, run (or load ``from_results``), publish into ``out``;
    ``isokit train`` is the same with ``require_train`` (the config must have ``[train]``).
    ``from_results`` may also be a sweep directory (``isokit sweep --out DIR``): its report
    plots every statistic against the swept axes (:mod:`isokit.report.sweep_page`).

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
    from isokit.report.publish import publish

    target = ReportDir(out)  # checks the path; writes nothing yet
    if from_results is not None:
        if config is not None:
            raise ConfigError("--from", "re-rendering takes no CONFIG; drop one of the two")
        if (Path(from_results) / "sweep.json").is_file():
            from isokit.report.sweep_page import publish_sweep
            from isokit.sweep import load_sweep

            return publish_sweep(target, load_sweep(from_results), quiet=quiet)
        loaded = load_results(from_results)
        return publish(target, lambda: loaded, quiet=quiet)
    cfg = config if isinstance(config, Config) else load_config(config)
    _require_profile(cfg)
    if require_train and cfg.train is None:
        raise ConfigError(
            "train",
            f"{cfg.source} has no [train] section; add one (data, optimizer, lr, steps, ...) or "
            "run `isokit report` to probe without training",
        )
    return publish(target, lambda: run_config(cfg, quiet=quiet, command=command), quiet=quiet)
