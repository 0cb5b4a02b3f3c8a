"""Reading a ``results.json`` back: every field checked before anything is plotted.

A results file may be damaged, hand-edited or written by another isokit version. Each problem is a
:class:`ResultsError` naming the field (``runs[3].status``) and the fix, so ``isokit report --from``
fails in one line instead of deep inside a figure. Nothing is coerced: a string where a list is
expected is an error, never iterated letter by letter, and ``true`` is not a seed. Each run's
profile is read by :meth:`isokit.probe.Profile.from_dict`, which checks its fields (and that its
blocks and signal describe its own taps); its :class:`~isokit.probe.ProfileFormatError` becomes
an error at ``runs[i].profile.<field>``; its training result (``runs[i].train``, a
:meth:`isokit.train.TrainResult.to_dict` or ``null``) is read by
:meth:`~isokit.train.TrainResult.from_dict` the same way (``runs[i].train.<field>``).

A file of schema ``isokit.report.results/2`` (written before training was part of a report) is
read too: its runs have no ``train`` field. Its placeholder top-level ``training`` section, which
no isokit ever filled, is refused with the advice to re-run. A file of any other schema, such as
one written by an earlier isokit, is refused with the advice to re-run the report.
"""

from __future__ import annotations

from typing import Any

from isokit.report.checks import ConfigError, type_name
from isokit.report.config import parse_config

__all__ = ["READABLE", "SCHEMA", "STATUSES", "ResultsError", "check_results"]

SCHEMA = "isokit.report.results/3"
#: The schemas read: this one, and the one before training results (runs without ``train``).
READABLE = (SCHEMA, "isokit.report.results/2")
#: What a run can end as: probed, or the scheme did not fit the model (with a message).
STATUSES = ("ok", "not applicable")
_RUN_KEYS = ("model", "scheme", "seed", "status", "message", "profile", "train")


class ResultsError(ConfigError):
    """A results file that cannot be read back (missing, not JSON, wrong schema, a bad field)."""


def _field(key: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    """``value`` if it is a ``kind`` (never a bool standing in for a number), else an error."""
    wrong_bool = isinstance(value, bool) and bool not in (
        kind if isinstance(kind, tuple) else (kind,)
    )
    if wrong_bool or not isinstance(value, kind):
        raise ConfigError(key, f"must be {what}, got {type_name(value)} {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _strings(key: str, value: Any) -> list[str]:
    _field(key, value, list, "an array of strings")
    return [_field(f"{key}[{i}]", v, str, "a string") for i, v in enumerate(value)]


def _read_profile(key: str, table: Any):
    """The run's Profile, read and checked by :meth:`isokit.probe.Profile.from_dict`."""
    from isokit.probe import Profile, ProfileFormatError

    try:
        return Profile.from_dict(table)
    except ProfileFormatError as exc:  # it names the field inside the profile
        field = f"{key}.profile.{exc.field}" if exc.field else f"{key}.profile"
        raise ConfigError(field, exc.message) from None


def _read_train(key: str, table: Any, status: str):
    """The run's TrainResult (or ``None``), read and checked by ``TrainResult.from_dict``."""
    from isokit.train import TrainResult, TrainResultFormatError

    if table is None:
        return None
    if status != "ok":
        raise ConfigError(f"{key}.train", f"a run with status {status!r} was not trained")
    _field(f"{key}.train", table, dict, "a table (a training result) or null")
    try:
        return TrainResult.from_dict(table)
    except TrainResultFormatError as exc:
        field = f"{key}.train.{exc.field}" if exc.field else f"{key}.train"
        raise ConfigError(field, exc.message) from None


def _run(i: int, run: Any, config, schema: str) -> dict[str, Any]:
    key = f"runs[{i}]"
    _field(key, run, dict, "a table")
    # Schema /2 runs predate training results: ``train`` is not one of their fields.
    keys = _RUN_KEYS if schema == SCHEMA else _RUN_KEYS[:-1]
    for name in run:
        if name not in keys:
            raise ConfigError(f"{key}.{name}", f"unknown field; a run has {', '.join(keys)}")
    for name, labels in (
        ("model", [m.label for m in config.models]),
        ("scheme", [s.label for s in config.schemes]),
    ):
        value = _field(f"{key}.{name}", run.get(name), str, "a label")
        if value not in labels:
            raise ConfigError(
                f"{key}.{name}",
                f"{value!r} is not a {name} of the file's config ({', '.join(labels)}); "
                "the file is inconsistent: regenerate it with isokit report",
            )
    seed = _field(f"{key}.seed", run.get("seed"), int, "an integer")
    if seed not in config.seeds:
        raise ConfigError(f"{key}.seed", f"{seed} is not one of the config's seeds {config.seeds}")
    status = run.get("status")
    if not isinstance(status, str) or status not in STATUSES:
        raise ConfigError(
            f"{key}.status",
            f"must be one of {', '.join(map(repr, STATUSES))}, got {_short(status)}",
        )
    message = _field(f"{key}.message", run.get("message", ""), str, "a string")
    table = run.get("profile")
    if (table is None) == (status == "ok"):
        need = "needs a profile" if status == "ok" else "that did not apply has no profile"
        raise ConfigError(f"{key}.profile", f"a run with status {status!r} {need}")
    profile = None if table is None else _read_profile(key, table)
    return {
        "model": run["model"],
        "scheme": run["scheme"],
        "seed": seed,
        "status": status,
        "message": message,
        "profile": profile,
        "train": _read_train(key, run.get("train"), status),
    }


def _check_runs(runs: list[dict[str, Any]], config: Any) -> None:
    """No run twice, none missing, and one set of taps per model × scheme (seeds are pooled
    tap by tap)."""
    seen: dict[tuple, int] = {}
    taps: dict[tuple, tuple[int, list[str]]] = {}
    for i, run in enumerate(runs):
        combo = (run["model"], run["scheme"], run["seed"])
        if combo in seen:
            raise ConfigError(
                f"runs[{i}]", f"repeats runs[{seen[combo]}] ({' × '.join(map(str, combo))})"
            )
        seen[combo] = i
        if run["profile"] is None:
            continue
        names = [t.name for t in run["profile"].taps]
        first = taps.setdefault(combo[:2], (i, names))
        if first[1] != names:
            raise ConfigError(
                f"runs[{i}].profile.taps",
                f"tap names differ from runs[{first[0]}] of the same model and scheme",
            )
    # `isokit report` writes every model × scheme × seed of its config or no file at all, so a
    # missing run means an edited or damaged file; re-rendering it would silently drop that run.
    for m in config.models:
        for sc in config.schemes:
            for seed in config.seeds:
                if (m.label, sc.label, seed) not in seen:
                    raise ConfigError(
                        "runs",
                        f"has no run of {m.label} × {sc.label} × seed {seed}, which the file's "
                        f"config lists ({len(runs)} runs for {len(config.models)} models × "
                        f"{len(config.schemes)} schemes × {len(config.seeds)} seeds); the file "
                        "is inconsistent: regenerate it with isokit report",
                    )


def _check_schema(data: Any, source: str) -> str:
    """The file's schema, one of :data:`READABLE`; anything else is refused, saying what to do
    instead."""
    found = data.get("schema") if isinstance(data, dict) else None
    if found in READABLE:
        return found
    family = SCHEMA.rsplit("/", 1)[0] + "/"
    if isinstance(found, str) and found.startswith(family):
        raise ResultsError(
            source,
            f"has schema {found!r}, another isokit version's, and this one reads "
            f"{' and '.join(map(repr, READABLE))}; "
            "re-run the report (`isokit report CONFIG --out DIR`) to write it anew",
        )
    what = repr(found) if isinstance(data, dict) else type_name(data)
    raise ResultsError(
        source,
        f"not an isokit results file (schema {what}, expected {SCHEMA!r}); "
        "pass the results.json of `isokit report`",
    )


def check_results(data: Any, *, source: str) -> dict[str, Any]:
    """The fields of a results table, checked and read into objects (``config`` a
    :class:`~isokit.report.config.Config`, every run's ``profile`` a Profile).

    Example:
        >>> try:
        ...     check_results({"schema": "x"}, source="r.json")
        ... except ResultsError as exc:
        ...     print(exc.key)
        r.json
    """
    schema = _check_schema(data, source)
    try:
        if "training" in data:
            raise ConfigError(
                "training",
                "is the placeholder section of isokit.report.results/2, which is not read any "
                "more: training results are per run (runs[i].train); re-run the report with a "
                "[train] section to write them",
            )
        if "config" not in data:
            raise ConfigError("config", "missing; the file holds no config to re-render")
        _field("config", data["config"], dict, "a table")
        try:
            # Re-rendering computes nothing, so the machine that re-renders need not fit the
            # models; the config's own checks all still apply.
            config = parse_config(data["config"], source=f"{source}:config", check_resources=False)
        except ConfigError as exc:
            raise ConfigError(f"config.{exc.key}", exc.message) from None
        runs = _field("runs", data.get("runs"), list, "an array of runs")
        checked = [_run(i, run, config, schema) for i, run in enumerate(runs)]
        _check_runs(checked, config)
        elapsed = data.get("elapsed_s")
        return {
            "config": config,
            "runs": checked,
            "environment": dict(
                _field("environment", data.get("environment", {}), dict, "a table")
            ),
            "command": _strings("command", data.get("command", [])),
            "created": _field("created", data.get("created", ""), str, "a timestamp string"),
            "elapsed_s": None
            if elapsed is None
            else _field("elapsed_s", elapsed, int | float, "a number of seconds"),
        }
    except ResultsError:
        raise
    except ConfigError as exc:
        raise ResultsError(f"{source}: {exc.key}", exc.message) from None
