"""The ``results.json`` schema: every Profile, the resolved config, the environment.

Layout (``schema = "isokit.report.results/1"``)::

    {
      "schema": "isokit.report.results/1",
      "created": "2025-01-01T00:00:00Z",        # UTC timestamp of the run
      "elapsed_s": 61.2,                        # wall time of the probes
      "command": ["isokit", "report", ...],
      "environment": {"isokit": "0.1.0", "torch": ..., "python": ..., "platform": ..., ...},
      "config": {...},                          # Config.to_dict(): defaults filled in
      "runs": [
        {"model": "mlp-tanh-w64-d16", "scheme": "idinit", "seed": 0,
         "status": "ok" | "not applicable", "message": "...",
         "profile": Profile.to_dict() | null, "block": Profile.to_dict() | null,
         "signal": Signal.to_dict() | null}
      ],
      "training": {...}                         # optional; loss curves when present
    }

``created``, ``elapsed_s`` and ``environment`` describe the run; everything else is a function of
the config and seeds. The file is strict JSON: non-finite numbers (``cond = inf`` of a
rank-deficient tap) are the strings ``"inf"``, ``"-inf"``, ``"nan"``, as in
:meth:`isokit.probe.Profile.to_dict`, which knows which fields to convert back.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isokit.report.config import Config, ConfigError, parse_config

__all__ = ["SCHEMA", "Results", "ResultsError", "RunRecord", "environment", "load_results"]

SCHEMA = "isokit.report.results/1"
_PROBE_KEYS = ("profile", "block", "signal")


class ResultsError(ConfigError):
    """A results file that cannot be read back (missing, not JSON, wrong schema)."""


@dataclass(kw_only=True, eq=False)
class RunRecord:
    """One model × scheme × seed: its probe results, or why the scheme did not apply."""

    model: str
    scheme: str
    seed: int
    status: str  # "ok" | "not applicable"
    message: str = ""
    profile: Any = None  # isokit.probe.Profile
    block: Any = None  # isokit.probe.Profile of per-block (local) Jacobians
    signal: Any = None  # isokit.probe.Signal

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "scheme": self.scheme,
            "seed": self.seed,
            "status": self.status,
            "message": self.message,
        }
        for key in _PROBE_KEYS:
            value = getattr(self, key)
            out[key] = None if value is None else value.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        from isokit.probe.result import Profile, Signal

        loaders = {
            "profile": Profile.from_dict,
            "block": Profile.from_dict,
            "signal": Signal.from_dict,
        }
        probes = {k: None if data.get(k) is None else loaders[k](data[k]) for k in _PROBE_KEYS}
        return cls(
            model=data["model"],
            scheme=data["scheme"],
            seed=int(data["seed"]),
            status=data["status"],
            message=data.get("message", ""),
            **probes,
        )


@dataclass(kw_only=True, eq=False)
class Results:
    """A finished run: the config, one :class:`RunRecord` per combination, the environment."""

    config: Config
    records: list[RunRecord]
    environment: dict[str, Any]
    command: list[str] = field(default_factory=list)
    created: str = ""
    elapsed_s: float | None = None
    training: dict[str, Any] | None = None

    def profiles(self) -> list[Any]:
        """Every end-to-end Profile, in run order."""
        return [r.profile for r in self.records if r.profile is not None]

    def not_applicable(self) -> list[tuple[str, str, str]]:
        """``(model, scheme, message)`` once per model × scheme that did not apply."""
        seen: dict[tuple[str, str], str] = {}
        for r in self.records:
            if r.status != "ok":
                seen.setdefault((r.model, r.scheme), r.message)
        return [(m, s, msg) for (m, s), msg in seen.items()]

    def to_dict(self) -> dict[str, Any]:
        out = {
            "schema": SCHEMA,
            "created": self.created,
            "elapsed_s": self.elapsed_s,
            "command": list(self.command),
            "environment": dict(self.environment),
            "config": self.config.to_dict(),
            "runs": [r.to_dict() for r in self.records],
        }
        if self.training is not None:
            out["training"] = self.training
        return out

    def to_json(self) -> str:
        from isokit.probe.result import encode

        return json.dumps(encode(self.to_dict()), indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<dict>") -> Results:
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise ResultsError(
                source,
                f"not an isokit results file (schema {found!r}, "
                f"expected {SCHEMA!r}); pass the results.json of `isokit report`",
            )
        try:
            config = parse_config(data["config"], source=f"{source}:config")
        except ConfigError as exc:
            raise ResultsError(f"{source}: config.{exc.key}", exc.message) from None
        records = []
        for i, run in enumerate(data.get("runs", [])):
            try:
                records.append(RunRecord.from_dict(run))
            except (KeyError, TypeError, ValueError) as exc:
                raise ResultsError(
                    f"{source}: runs[{i}]",
                    f"cannot be read back "
                    f"({type(exc).__name__}: {exc}); the file is damaged or "
                    "from another isokit version",
                ) from None
        return cls(
            config=config,
            records=records,
            environment=data.get("environment", {}),
            command=list(data.get("command", [])),
            created=data.get("created", ""),
            elapsed_s=data.get("elapsed_s"),
            training=data.get("training"),
        )


def load_results(path: str | Path) -> Results:
    """Read a ``results.json`` back into :class:`Results` holding real Profile objects."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(
            str(path), "results file not found; pass DIR/results.json written by `isokit report`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(str(path), f"cannot read it ({type(exc).__name__})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(
            str(path),
            f"not valid JSON ({exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}); regenerate it with `isokit report`",
        ) from None
    return Results.from_dict(data, source=str(path))


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        module = sys.modules.get(dist)
        return str(getattr(module, "__version__", "not installed"))


def environment(
    packages: Sequence[str] = ("torch", "numpy", "scipy", "matplotlib", "seaborn"),
) -> dict[str, Any]:
    """Versions, platform and device: enough to tell whether two results are comparable."""
    import torch

    import isokit

    env: dict[str, Any] = {"isokit": isokit.__version__}
    for name in packages:
        env[name] = _version(name)
    env.update(
        python=platform.python_version(),
        platform=platform.platform(),
        machine=platform.machine(),
        device="cpu",
        torch_threads=torch.get_num_threads(),
    )
    return env


def now_utc() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
