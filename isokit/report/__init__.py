"""Reports: run a TOML config of models × schemes × seeds, then plot and publish the Profiles.

Data flows one way: a :class:`Config` is validated, :func:`run_config` initializes and probes
every combination into :class:`Results` (one :class:`isokit.probe.Profile` per run), and
:func:`render` writes ``results.json``, the figures and one self-contained ``report.html`` as one
directory that replaces an earlier report as a whole. :func:`load_results` reads a
``results.json`` back, checking every field, so a report can be re-rendered without recomputing.

Example:
    >>> from isokit.report import load_config, run_config, render
    >>> results = run_config(load_config(), quiet=True)  # doctest: +SKIP
    >>> render(results, "out/report")  # doctest: +SKIP
"""

from isokit.report.config import (
    DEFAULT_CONFIG,
    Config,
    ConfigError,
    InputSpec,
    ModelSpec,
    SchemeSpec,
    load_config,
    parse_config,
)
from isokit.report.io import ReportDir
from isokit.report.publish import build_figures, render, write_report
from isokit.report.results import Results, ResultsError, RunRecord, load_results
from isokit.report.run import draw_inputs, make_report, run_config

#: Errors the command line reports in one line with exit code 2 (a bad config or results file).
UserError = ConfigError

__all__ = [
    "DEFAULT_CONFIG",
    "Config",
    "ConfigError",
    "InputSpec",
    "ModelSpec",
    "Results",
    "ResultsError",
    "ReportDir",
    "RunRecord",
    "SchemeSpec",
    "UserError",
    "build_figures",
    "draw_inputs",
    "load_config",
    "load_results",
    "make_report",
    "parse_config",
    "render",
    "run_config",
    "write_report",
]
