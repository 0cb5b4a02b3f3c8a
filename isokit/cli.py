"""The ``isokit`` command: ``report``, ``train``, ``sweep``, ``probe`` and ``schemes``.

This module only parses arguments and calls one function per subcommand; the work lives in
:mod:`isokit.report`. The ``probe`` flags, their defaults and the config keys they set are
declared once in :mod:`isokit.cli_probe` (model flags from the model kinds' specs). User errors (a
bad config, a missing file) print one line on stderr and exit with code 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]

_EPILOG = """\
examples:
  isokit report --out out/report                  # the default comparison (~1 min, 2 cores)
  isokit report analyses/configs/resnet_schemes.toml --out out/resnet
  isokit report --from out/report/results.json --out out/rerender   # re-plot, no recompute
  isokit train analyses/configs/train_fmnist_quick.toml --out out/train   # probe, train, report
  isokit sweep analyses/configs/depth_sweep.toml --out out/depth   # a grid on a LocalCluster
  isokit report --from out/depth --out out/depth-report            # depth plots of the sweep
  isokit probe --model mlp --depth 16 --activation tanh --scheme orthogonal
  isokit probe --model resnet --depth 20 --scheme idinit --examples 2
  isokit probe --factory isokit.models.hf:bert --inputs isokit.models.hf:token_ids \\
      --start embeddings --taps 'encoder.layer.*' --scheme idinit   # needs isokit[hf]
  isokit schemes
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line (exit code 2), like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _common(parser: argparse.ArgumentParser, *, default: object) -> None:
    # On the subcommands the default is SUPPRESS, so `isokit --quiet report` keeps its value.
    parser.add_argument("--quiet", action="store_true", default=default, help="no progress bars")
    parser.add_argument(
        "--debug", action="store_true", default=default, help="show tracebacks on errors"
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``isokit`` argument parser (``probe`` flags from the registered model kinds).

    Example:
        >>> build_parser().parse_args(["probe", "--model", "mlp", "--scheme", "idinit"]).depth
    """
    from isokit.cli_probe import add_probe_flags

    parser = _Parser(
        prog="isokit",
        description="Initialization schemes, Jacobian-spectrum probes and reports for "
        "research on dynamical isometry.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(parser, default=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    rep = sub.add_parser(
        "report",
        help="run a config and write results.json, figures and report.html",
        description="Run CONFIG (default: the packaged default config) and write "
        "DIR/results.json, DIR/figures/ and DIR/report.html.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rep.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG.toml",
        help="a report config (default: isokit/report/default.toml)",
    )
    rep.add_argument("--out", required=True, metavar="DIR", help="output directory")
    rep.add_argument(
        "--from",
        dest="from_results",
        metavar="RESULTS.json|SWEEP_DIR",
        help="re-render an earlier results.json, or render a sweep directory, instead of "
        "recomputing",
    )
    _common(rep, default=argparse.SUPPRESS)

    trn = sub.add_parser(
        "train",
        help="run a config with a [train] section: probe, train and report",
        description="Run CONFIG, whose [train] section says how to train: every model × scheme "
        "× seed is initialized, probed and trained; DIR/results.json holds every Profile and "
        "TrainResult, and DIR/report.html the loss curves and the isometry-vs-training figures.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    trn.add_argument("config", metavar="CONFIG.toml", help="a config with a [train] section")
    trn.add_argument("--out", required=True, metavar="DIR", help="output directory")
    _common(trn, default=argparse.SUPPRESS)

    swp = sub.add_parser(
        "sweep",
        help="run a grid ([sweep] table) cell by cell on dask.distributed",
        description="Expand CONFIG's [sweep] table into its grid and run every missing cell "
        "(probe, then train with [train]) on a Dask LocalCluster, an existing cluster "
        "(--scheduler) or in this process (--serial); each finished cell is written to "
        "DIR/cells/KEY.json, so a rerun computes only the missing ones. Render it with "
        "`isokit report --from DIR --out REPORT`.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    swp.add_argument("config", metavar="CONFIG.toml", help="a config with a [sweep] table")
    swp.add_argument("--out", required=True, metavar="DIR", help="the sweep directory")
    swp.add_argument(
        "--scheduler", metavar="ADDRESS", help="an existing Dask scheduler, tcp://host:8786"
    )
    swp.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="worker processes of the local cluster (default: one per CPU)",
    )
    swp.add_argument(
        "--serial", action="store_true", help="run the cells one by one here, without Dask"
    )
    swp.add_argument(
        "--resume",
        action="store_true",
        help="let this grid take over a DIR that holds another grid (shared cells are kept)",
    )
    _common(swp, default=argparse.SUPPRESS)

    probe = sub.add_parser(
        "probe",
        help="probe one model with one scheme and print statistics per tap",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_probe_flags(probe)
    _common(probe, default=argparse.SUPPRESS)

    schemes = sub.add_parser("schemes", help="list the initialization schemes")
    _common(schemes, default=argparse.SUPPRESS)
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    from isokit import report

    command = sys.argv if args.argv is None else ["isokit", *args.argv]
    if args.command in ("report", "train"):
        report.make_report(
            args.config,
            out=args.out,
            from_results=getattr(args, "from_results", None),
            quiet=args.quiet,
            command=command,
            require_train=args.command == "train",
        )
    elif args.command == "sweep":
        from isokit.sweep import load_sweep_config, run_sweep

        summary = run_sweep(
            load_sweep_config(args.config),
            args.out,
            scheduler=args.scheduler,
            workers=args.workers,
            serial=args.serial,
            resume=args.resume,
            quiet=args.quiet,
        )
        print(summary.describe(), file=sys.stderr)
        return 1 if summary.failed else 0
    elif args.command == "probe":
        from isokit.cli_probe import probe_from_args

        print(probe_from_args(args))
    else:
        from isokit.init import schemes

        print(schemes())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``isokit`` command line; return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed in one line
        return int(exc.code or 0)
    args.argv = None if argv is None else list(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _dispatch(args)
    except BrokenPipeError:  # `isokit probe ... | head`: the reader left, which is fine
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # keep Python's exit-time flush quiet
        return 141
    except KeyboardInterrupt:
        kept = "; finished cells are kept" if args.command == "sweep" else ""
        print(
            f"isokit: interrupted; nothing partial was left under the output directory{kept}",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:
        if args.debug:
            raise
        from isokit.report import UserError

        if isinstance(exc, UserError):
            print(f"isokit: error: {exc}", file=sys.stderr)
            return 2
        print(
            f"isokit: internal error: {type(exc).__name__}: {exc} "
            "(rerun with --debug for the traceback and report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
