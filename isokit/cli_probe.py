"""``isokit probe``: its flags, their defaults and the config keys they set, declared once.

The command probes one model with one scheme. Its flags describe a one-model, one-scheme,
one-seed report config, which is then validated and run like any other
(:func:`isokit.report.parse_config`), so a flag's value meets exactly the checks its config key
meets. Each flag is declared here once, with its default and the config key it sets; the same
declarations add the flags to the parser, build the config and, when the config is refused, name
the flag behind the refused key (``models[0].channels`` → ``--width``). Model flags come from
the model kinds' specs (:func:`isokit.models.model_flags`): ``--model`` lists the kinds, and each
common model flag (``--depth``, ``--width``, ...) is one that an argument spec names, with its
per-kind probe default. ``--factory package.module:function`` instead names a model from
outside isokit (``--kwargs`` its keyword arguments as a TOML inline table, ``--input-shape`` or
``--inputs`` its inputs), as a config's ``factory`` does; ``--taps`` (names or glob patterns)
and ``--start`` set the model's entry keys of the same names.

Example:
    >>> print(probe_text(model="mlp", scheme="orthogonal", depth=2, width=4,
    ...                  examples=1).splitlines()[0])
    mlp-relu-w4-d2 · orthogonal · seed 0 · 1 examples
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from isokit.cli_entry import ENTRY_FLAGS, entry_keys, factory_model
from isokit.probe.options import METHODS

__all__ = ["add_probe_flags", "probe_from_args", "probe_text"]

# The flags that pick the model, the scheme and the scheme's options.
MODEL = "--model"
FACTORY = "--factory"
SCHEME = "--scheme"
OPTION = "--option"


@dataclass(frozen=True)
class _Flag:
    """A flag that sets one config key that is not a model argument."""

    flag: str
    key: str  # the dotted config key, as a ConfigError names it ("seeds[0]" is a one-item list)
    default: Any
    help: str
    choices: tuple[str, ...] | None = None

    @property
    def dest(self) -> str:
        return _dest(self.flag.removeprefix("--"))

    def sets(self, key: str) -> bool:
        """Whether a problem at config ``key`` is one with this flag's value."""
        return key == self.key or key.startswith(self.key + ".")


_RUN_FLAGS = (
    _Flag("--image-size", "inputs.image_size", 8, "image side"),
    _Flag("--examples", "inputs.examples", 4, "inputs to probe"),
    _Flag("--seed", "seeds[0]", 0, "random seed"),
    _Flag("--method", "method", "auto", "probe method", choices=METHODS),
)


def _dest(flag: str) -> str:
    return flag.replace("-", "_")


def _model_flag_help(entries: Iterable) -> str:
    """``mlp, residual-mlp: width (default 64); convnet: channels (default 16); ...``."""
    groups: dict[tuple[str, str], list[str]] = {}
    for kind, arg in entries:
        what = arg.name
        if arg.choices is not None:
            what += " (" + ", ".join(arg.none if c is None else str(c) for c in arg.choices) + ")"
        if arg.has_probe_default:
            what += f" (default {arg.probe_default})"
        groups.setdefault((what, arg.name), []).append(kind.name)
    return "; ".join(f"{', '.join(kinds)}: {what}" for (what, _), kinds in groups.items())


def add_probe_flags(parser: argparse.ArgumentParser) -> None:
    """Add every ``isokit probe`` flag to ``parser`` (model flags from the registered kinds).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_probe_flags(parser)
        >>> args = parser.parse_args(["--model", "mlp", "--scheme", "idinit"])
        >>> args.examples, args.depth
        (4, None)
    """
    from isokit.models import model_flags, model_kinds

    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(MODEL, choices=tuple(model_kinds()))
    which.add_argument(
        FACTORY,
        metavar="PATH",
        help="a model from outside isokit: package.module:function (imported, never evaluated), "
        "e.g. isokit.models.hf:bert",
    )
    parser.add_argument(SCHEME, required=True, help="a name from `isokit schemes`")
    parser.add_argument(
        OPTION,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a scheme option (VALUE is a TOML value); repeatable",
    )
    for flag, entries in model_flags().items():
        integer = all(arg.type is int for _, arg in entries)
        parser.add_argument(
            f"--{flag}",
            type=int if integer else str,
            metavar="N" if integer else "NAME",
            help=_model_flag_help(entries),
        )
    for f in _RUN_FLAGS:
        parser.add_argument(
            f.flag,
            type=type(f.default),
            default=f.default,
            choices=f.choices,
            help=f"{f.help} (default {f.default})",
        )
    for e in ENTRY_FLAGS:
        parser.add_argument(e.flag, metavar=e.metavar, help=e.help)


def probe_from_args(args: argparse.Namespace) -> str:
    """:func:`probe_text` for the flags :func:`add_probe_flags` parsed into ``args``."""
    from isokit.models import model_flags

    dests = [f.dest for f in (*_RUN_FLAGS, *ENTRY_FLAGS)] + [_dest(flag) for flag in model_flags()]
    return probe_text(
        model=args.model,
        factory=args.factory,
        scheme=args.scheme,
        options=args.option,
        **{dest: getattr(args, dest) for dest in dests},
    )


# --------------------------------------------------------------------------------------------
# flags → config, and config keys → flags


def _flag_model(model: str, flags: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[[models]]`` table that ``isokit probe`` flags describe, from the kind's spec.

    A given flag sets the argument the kind ties to it (``--width`` is a ConvNet's
    ``channels``); other arguments take the spec's probe default, or the constructor's.

    Example:
        >>> _flag_model("transformer", {"width": 16})
        {'kind': 'transformer', 'depth': 4, 'd_model': 16, 'heads': 4, 'seq_len': 8, 'd_ff': 64}
    """
    from isokit.models import ModelArgError, get_model_kind, model_flags
    from isokit.report import ConfigError

    try:
        kind = get_model_kind(model)
    except ModelArgError as exc:
        raise ConfigError(MODEL, exc.message) from None
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


def _parse_options(options: Sequence[str]) -> dict[str, Any]:
    """``--option KEY=VALUE`` pairs; a VALUE is TOML (``1.5``, ``true``, ``nan``) or a bare word.

    Example:
        >>> _parse_options(["gain=2", "mode=fan_in", "tau=nan"])
        {'gain': 2, 'mode': 'fan_in', 'tau': nan}
    """
    from isokit.report import ConfigError

    parsed: dict[str, Any] = {}
    for item in options:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(OPTION, f"expected KEY=VALUE, got {item!r}")
        if key in parsed:
            raise ConfigError(f"{OPTION} {key}", "is given twice; give each option once")
        try:
            parsed[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            if value.strip().lower() in ("true", "false"):  # Python's True/False, not TOML's
                raise ConfigError(
                    f"{OPTION} {key}",
                    f"{value.strip()!r} is not a TOML boolean; write {key}={value.strip().lower()}",
                ) from None
            parsed[key] = value  # a bare word is a string
    return parsed


def _put(table: dict[str, Any], key: str, value: Any) -> None:
    """Set the dotted config ``key`` of ``table``; a last part ``name[0]`` is a one-item list."""
    *parents, last = key.split(".")
    for part in parents:
        table = table.setdefault(part, {})
    if last.endswith("[0]"):
        table[last.removesuffix("[0]")] = [value]
    else:
        table[last] = value


def _config_table(
    model: str | None,
    scheme: str,
    options: Sequence[str],
    flags: dict[str, Any],
    *,
    factory: str | None = None,
) -> dict[str, Any]:
    """The report config the flags describe; ``flags`` loses the run flags, keeping the model's.

    Example:
        >>> _config_table("mlp", "idinit", [], {"seed": 3})["seeds"]
        [3]
        >>> _config_table(None, "idinit", [], {"kwargs": "{in_features = 4, out_features = 4}",
        ...               "input_shape": "4"}, factory="torch.nn:Linear")["models"]
        [{'factory': 'torch.nn:Linear', 'kwargs': {'in_features': 4, 'out_features': 4}, \
'input_shape': [4]}]
    """
    from isokit.report import ConfigError

    table: dict[str, Any] = {
        "models": [],
        "schemes": [{"name": scheme, "options": _parse_options(options)}],
        "probes": {"profile": True, "block": False, "signal": False},
    }
    for f in _RUN_FLAGS:
        _put(table, f.key, flags.pop(f.dest, f.default))
    entry = entry_keys(flags)
    if factory is not None:
        table["models"].append(factory_model(factory, entry, flags))
        return table
    if model is None:
        raise ConfigError(MODEL, f"name a model kind, or a factory with {FACTORY}")
    for key in ("kwargs", "input_kwargs"):
        if key in entry and not (key == "input_kwargs" and "inputs" in entry):
            raise ConfigError(
                "--" + key.replace("_", "-"), f"is for {FACTORY} (or --inputs); drop it"
            )
    table["models"].append({**_flag_model(model, flags), **entry})
    return table


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
        return f"{OPTION} " + key.split(".", 2)[2]
    if key.startswith("schemes[0].options"):
        return OPTION
    if key.startswith("schemes"):
        return SCHEME
    entry = key.removeprefix("models[0].").partition(".")[0].partition("[")[0]
    if key.startswith("models[0].") and entry in {e.key for e in ENTRY_FLAGS} | {"factory"}:
        return FACTORY if entry == "factory" else "--" + entry.replace("_", "-")
    flag = next((f.flag for f in _RUN_FLAGS if f.sets(key)), None)
    if flag is None and key.startswith("models[0]."):
        flag = _model_flag(model, (key, *related))
    if flag is not None:
        return flag
    if key == "models[0]":  # the model as a whole does not fit: the flags that size it
        from isokit.models import model_kinds

        kind = model_kinds().get(model)
        sizes = [f"--{a.flag}" for a in (kind.args if kind else ()) if a.flag and a.type is int]
        return "/".join(sizes) or MODEL
    return MODEL if key.startswith("models") or key == "inputs.shape" else key


# --------------------------------------------------------------------------------------------
# the command


def probe_text(
    *,
    model: str | None = None,
    scheme: str,
    options: Sequence[str] = (),
    factory: str | None = None,
    **flags: Any,
) -> str:
    """``isokit probe``: probe one model with one scheme; return a table of statistics per tap.

    ``model`` names a model kind, or ``factory`` a model from outside isokit
    (``"package.module:function"``). ``flags`` are the other flags by keyword: ``image_size``,
    ``examples``, ``seed`` and ``method`` (each defaulting as its flag does), the common model
    flags (``depth=16``, ``width=32``, ...; :func:`isokit.models.model_flags` lists them), where
    ``None`` leaves one to the model kind's probe default, and the entry flags as text as on
    the command line (``kwargs="{hidden_size = 32}"``, ``input_shape="3,16,16"``, ``inputs``,
    ``input_kwargs``, ``taps="encoder.layer.*"``, ``start``). Errors name the flag, not the
    config key.
    """
    from isokit.report import ConfigError, parse_config
    from isokit.report.formatting import format_number
    from isokit.report.run import run_one

    try:
        table = _config_table(model, scheme, options, dict(flags), factory=factory)
        cfg = parse_config(table, source="command line")
        record = run_one(cfg, cfg.models[0], cfg.schemes[0], cfg.seeds[0])
    except ConfigError as exc:  # name the flag, not the config key
        flag = _flag_for(exc.key, exc.related, model=model or "")
        if factory is not None and flag == MODEL:  # the model as a whole is the factory's
            flag = FACTORY
        raise ConfigError(flag, exc.message) from None
    head = (
        f"{cfg.models[0].label} · {scheme} · seed {cfg.seeds[0]} · {cfg.inputs.examples} examples"
    )
    if record.status != "ok":
        return f"{head}\nnot applicable: {record.message}"
    prof = record.profile
    cols = ("m1", "var", "gap", "cond", "sigma_min", "sigma_max")
    medians = {c: prof.stat(c, "median") for c in cols}
    rows = [("tap", "depth", "D", *cols)]
    for i, tap in enumerate(prof.taps):
        rows.append(
            (tap.name, str(tap.depth), str(tap.D), *(format_number(medians[c][i]) for c in cols))
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
            f"method: {prof.meta.get('method', cfg.method)}"
            f" (medians over examples; var = scale-free variance, gap = isometry gap)",
            *lines,
        ]
    )
