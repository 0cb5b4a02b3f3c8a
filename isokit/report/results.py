"""The ``results.json`` schema: every Profile, the resolved config, the environment.

Layout (``schema = "isokit.report.results/3"``)::

    {
      "schema": "isokit.report.results/3",
      "created": "2025-01-01T00:00:00Z",        # UTC timestamp of the run
      "elapsed_s": 61.2,                        # wall time of the probes (and training)
      "command": ["isokit", "report", ...],
      "environment": {"isokit": "0.1.0", "torch": ..., "python": ..., "platform": ..., ...},
      "config": {...},                          # Config.to_dict(): defaults filled in
      "runs": [
        {"model": "mlp-tanh-w64-d16", "scheme": "idinit", "seed": 0,
         "status": "ok" | "not applicable", "message": "...",
         "profile": Profile.to_dict() | null,   # with its "signal" and "blocks" sections
         "train": TrainResult.to_dict() | null} # with a [train] section: the run's training
      ]
    }

``created``, ``elapsed_s`` and ``environment`` describe the run; everything else is a function of
the config and seeds. The file is strict JSON: non-finite numbers (``cond = inf`` of a
rank-deficient tap) are the strings ``"inf"``, ``"-inf"``, ``"nan"``, as in
:meth:`isokit.probe.Profile.to_dict`, which knows which fields to convert back.

A file read back is checked field by field (:mod:`.results_check`), so a damaged or hand-edited
file fails with the field that is wrong rather than half-way through plotting; a file of another
schema is refused with the advice to re-run the report; a file of the schema before training
(``isokit.report.results/2``, runs without ``train``) is still read.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isokit.environment import environment
from isokit.probe import Profile
from isokit.report.config import Config
from isokit.report.io import RESULTS
from isokit.report.results_check import SCHEMA, STATUSES, ResultsError, check_results
from isokit.train.result import TrainResult

__all__ = [
    "SCHEMA",
    "STATUSES",
    "Results",
    "ResultsError",
    "RunRecord",
    "environment",
    "load_results",
]


@dataclass(kw_only=True, eq=False)
class RunRecord:
    """One model × scheme × seed: its Profile, or why the scheme did not apply.

    Everything the probes measured lives on :attr:`profile` (``profile.taps``,
    ``profile.signal``, ``profile.blocks``); the record adds only what the report knows.

    Example:
        >>> RunRecord(model="mlp", scheme="fixup", seed=0, status="not applicable").ok
        False
    """

    model: str
    scheme: str
    seed: int
    status: str  # one of STATUSES
    message: str = ""
    profile: Profile | None = None
    #: The training run after the probes, when the config has a ``[train]`` section.
    train: TrainResult | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "scheme": self.scheme,
            "seed": self.seed,
            "status": self.status,
            "message": self.message,
            "profile": None if self.profile is None else self.profile.to_dict(),
            "train": None if self.train is None else self.train.to_dict(),
        }


@dataclass(kw_only=True, eq=False)
class Results:
    """A finished run: the config, one :class:`RunRecord` per combination, the environment.

    Example:
        >>> from isokit.report.config import parse_config
        >>> from isokit.report.run import run_config
        >>> cfg = parse_config({"schemes": ["orthogonal"], "inputs": {"examples": 1},
        ...     "models": [{"kind": "mlp", "in_features": 4, "width": 4, "depth": 2}]})
        >>> res = run_config(cfg, quiet=True)
        >>> back = Results.from_dict(json.loads(res.to_json()))
        >>> back.config.to_dict() == cfg.to_dict(), len(back.records)
        (True, 1)

    A file must hold a run of every model × scheme × seed of its config (``isokit report``
    writes all of them or no file), so a damaged or hand-edited one is refused, not re-rendered
    with runs missing.
    """

    config: Config
    records: list[RunRecord]
    environment: dict[str, Any]
    command: list[str] = field(default_factory=list)
    created: str = ""
    elapsed_s: float | None = None

    def not_applicable(self) -> list[tuple[str, str, str]]:
        """``(model, scheme, message)`` once per model × scheme that did not apply."""
        seen: dict[tuple[str, str], str] = {}
        for r in self.records:
            if r.status != "ok":
                seen.setdefault((r.model, r.scheme), r.message)
        return [(m, s, msg) for (m, s), msg in seen.items()]

    @property
    def trained(self) -> list[RunRecord]:
        """The records that carry a training result, in run order."""
        return [r for r in self.records if r.train is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "created": self.created,
            "elapsed_s": self.elapsed_s,
            "command": list(self.command),
            "environment": dict(self.environment),
            "config": self.config.to_dict(),
            "runs": [r.to_dict() for r in self.records],
        }

    def to_json(self) -> str:
        from isokit.probe.serialization import encode

        return json.dumps(encode(self.to_dict()), indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>") -> Results:
        """Read :meth:`to_dict`'s output back, checking every field.

        Raises :class:`ResultsError` naming the field (``runs[3].status``) and the fix.
        """
        checked = check_results(data, source=source)
        records = [
            RunRecord(
                model=run["model"],
                scheme=run["scheme"],
                seed=run["seed"],
                status=run["status"],
                message=run["message"],
                profile=run["profile"],
                train=run["train"],
            )
            for run in checked["runs"]
        ]
        return cls(
            config=checked["config"],
            records=records,
            environment=checked["environment"],
            command=checked["command"],
            created=checked["created"],
            elapsed_s=checked["elapsed_s"],
        )


def load_results(path: str | Path) -> Results:
    """Read a ``results.json`` back into :class:`Results` holding real Profile objects.

    ``path`` is the file or the report directory holding it.

    Example:
        >>> try:
        ...     load_results("no/such/results.json")
        ... except ResultsError as exc:
        ...     print(exc.key)
        no/such/results.json
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS
    try:
        text = path.read_text(encoding="utf-8-sig")  # an editor may add a byte-order mark
    except FileNotFoundError:
        raise ResultsError(
            str(path), "results file not found; pass DIR/results.json written by `isokit report`"
        ) from None
    except UnicodeDecodeError as exc:
        raise ResultsError(
            str(path),
            f"is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}), so "
            "not a results.json of `isokit report`; pass DIR/results.json",
        ) from None
    except OSError as exc:  # a directory without results.json is handled above
        raise ResultsError(
            str(path),
            f"cannot read it ({exc.strerror or type(exc).__name__}); pass a readable "
            "DIR/results.json",
        ) from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        where = (
            f" ({exc.msg} at line {exc.lineno}, column {exc.colno})"
            if isinstance(exc, json.JSONDecodeError)
            else " (nested too deeply)"
        )
        raise ResultsError(
            str(path), f"not valid JSON{where}; regenerate it with `isokit report`"
        ) from None
    return Results.from_dict(data, source=str(path))


def now_utc() -> str:
    """The current UTC time as ``YYYY-MM-DDTHH:MM:SSZ``.

    Example:
        >>> now_utc().endswith("Z")
        True
    """
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
