"""The ``isokit`` command: ``report``, ``probe`` and ``schemes``.

This module only parses arguments and calls one function per subcommand; the work lives in
:mod:`isokit.report`. The ``probe`` flags come from the model kinds' specs: ``--model`` lists
:func:`isokit.models.model_kinds`, and each common model flag (``--depth``, ``--width``, ...) is
one that an argument spec names, with its per-kind probe default in the help. User errors (a bad
config, a missing file) print one line on stderr and exit with code 2; ``--debug`` shows the
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
  isokit probe --model mlp --depth 16 --activation tanh --scheme orthogonal
  isokit probe --model resnet --depth 20 --scheme idinit --examples 2
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


def _model_flag_help(entries) -> str:
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


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    from isokit.models import model_flags

    for flag, entries in model_flags().items():
        integer = all(arg.type is int for _, arg in entries)
        parser.add_argument(
            f"--{flag}",
            type=int if integer else str,
            metavar="N" if integer else "NAME",
            help=_model_flag_help(entries),
        )


def build_parser() -> argparse.ArgumentParser:
    """The ``isokit`` argument parser (``probe`` flags from the registered model kinds).

    Example:
        >>> build_parser().parse_args(["probe", "--model", "mlp", "--scheme", "idinit"]).depth
    """
    from isokit.models import model_kinds

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

    probe = sub.add_parser(
        "probe",
        help="probe one model with one scheme and print statistics per tap",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    probe.add_argument("--model", required=True, choices=tuple(model_kinds()))
    probe.add_argument("--scheme", required=True, help="a name from `isokit schemes`")
    probe.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a scheme option (VALUE is a TOML value); repeatable",
    )
    _add_model_flags(probe)
    probe.add_argument("--image-size", type=int, default=8, help="image side (default 8)")
    probe.add_argument("--examples", type=int, default=4, help="inputs to probe (default 4)")
    probe.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    probe.add_argument("--method", default="auto", choices=("auto", "exact", "lanczos"))
    _common(probe, default=argparse.SUPPRESS)

    schemes = sub.add_parser("schemes", help="list the initialization schemes")
    _common(schemes, default=argparse.SUPPRESS)
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    from isokit import report

    if args.command == "report":
        report.make_report(
            args.config,
            out=args.out,
            from_results=args.from_results,
            quiet=args.quiet,
            command=sys.argv if args.argv is None else ["isokit", *args.argv],
        )
    elif args.command == "probe":
        from isokit.models import model_flags

        flags = {dest: getattr(args, dest) for dest in (f.replace("-", "_") for f in model_flags())}
        print(
            report.probe_text(
                model=args.model,
                scheme=args.scheme,
                options=args.option,
                image_size=args.image_size,
                examples=args.examples,
                seed=args.seed,
                method=args.method,
                **flags,
            )
        )
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
