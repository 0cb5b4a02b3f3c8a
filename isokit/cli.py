"""The ``isokit`` command: ``report``, ``train``, ``probe`` and ``schemes``.

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
        metavar="RESULTS.json",
        help="re-render an earlier results.json instead of recomputing",
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
        print(
            "isokit: interrupted; nothing partial was left under the output directory",
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
