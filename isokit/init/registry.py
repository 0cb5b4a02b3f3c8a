"""One registry for every model-level scheme: :func:`apply`, :func:`schemes`, :func:`get_scheme`.

A scheme is registered next to its definition with :func:`register`; its options are the
keyword-only parameters of its function and, where it draws i.i.d. weights, it registers its
weight law too (:meth:`Scheme.weight_law`), so that no other module restates either.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import torch
from torch import nn

from isokit.init.checks import (
    OptionTypeError,
    check_bool,
    check_choice,
    check_finite_options,
    check_int,
)
from isokit.init.context import Context, SchemeNotApplicable
from isokit.init.layers import parameter_roles
from isokit.init.report import (
    InitReport,
    UnsupportedModuleError,
    add_kept_rows,
    initialized_nothing,
    unsupported_rows,
)
from isokit.init.rollback import Checkpoint, changed_non_finite
from isokit.init.signature import keyword_defaults, option_checks
from isokit.theory.law import WeightLaw

SchemeFn = Callable[..., None]
LawFn = Callable[..., WeightLaw | None]
CheckFn = Callable[[Mapping[str, object], str], object]
"""``check(options, where)``: refuse bad values of the scheme's complete options, model-free."""
"""``law(options, *, fan_in, bias)``: the weight law of a scheme given its complete options."""


@dataclass(frozen=True, kw_only=True)
class Scheme:
    """A registered model-level scheme.

    Attributes:
        name: the name :func:`apply` takes.
        description: one line for :func:`schemes`.
        reference: the paper or code it follows.
        fn: ``fn(ctx, **options)``, the scheme itself.
        defaults: each option and its default, read from ``fn``'s keyword-only parameters,
            the one place they are written.
        needs_data: whether the scheme needs a batch of inputs (``data=``).
        law: the scheme's weight law as a function of its options (see :meth:`weight_law`),
            or ``None`` for schemes whose weights are not i.i.d. draws.
        check: ``check(options, where)``, the scheme's own model-free check of its complete
            options (choices, bounds), or ``None``.
        type_checks: the model-free type check of each option whose annotation is ``bool``,
            ``int``, ``float`` or a per-layer ``float | dict[str, float]`` (read from ``fn``),
            so that :meth:`check_options` refuses ``remove_norms="False"`` before any model.

    Example:
        >>> get_scheme("xavier-normal").defaults["gain"]
        1.0
    """

    name: str
    description: str
    reference: str
    fn: SchemeFn
    defaults: Mapping[str, object] = field(default_factory=dict)
    needs_data: bool = False
    law: LawFn | None = field(default=None, repr=False)
    check: CheckFn | None = field(default=None, repr=False)
    type_checks: Mapping[str, Callable] = field(default_factory=dict, repr=False)

    @property
    def options(self) -> tuple[str, ...]:
        """The names of the scheme's options, in the order of its signature."""
        return tuple(self.defaults)

    def check_options(self, options: Mapping[str, object]) -> None:
        """Refuse option names the scheme does not take, non-finite numbers and values of the
        wrong type (where the signature's annotation says), all without a model.

        Example:
            >>> get_scheme("orthogonal").check_options({"gian": 2.0})
            Traceback (most recent call last):
            ...
            isokit.init.checks.OptionTypeError: scheme 'orthogonal' got unknown option(s) gian; \
did you mean 'gain'? its options are: gain, bias
        """
        if not isinstance(options, Mapping):
            raise TypeError(
                f"scheme {self.name!r}: options must be a mapping of option names to values, "
                f"got {type(options).__name__}"
            )
        unknown = sorted(set(options) - set(self.defaults), key=str)
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), self.options, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            allowed = (
                f"{hint}its options are: {', '.join(self.options)}"
                if self.options
                else "it takes no options"
            )
            raise OptionTypeError(
                str(unknown[0]),
                f"is not an option of scheme {self.name!r}; {allowed}",
                message=f"scheme {self.name!r} got unknown option(s) "
                f"{', '.join(map(str, unknown))}; {allowed}",
            )
        check_finite_options(options, where=self.name)
        for option, value in options.items():
            check = self.type_checks.get(option)
            if check is not None:
                check(option, value, where=self.name)
        if self.check is not None:
            self.check({**self.defaults, **options}, self.name)

    def weight_law(
        self, options: Mapping[str, object] | None = None, *, fan_in: int, bias: bool
    ) -> WeightLaw | None:
        """The i.i.d. law this scheme draws a square layer of fan-in ``fan_in`` from, or None.

        ``options`` are the scheme's options as :func:`apply` takes them (missing ones take
        their defaults); ``bias`` says whether the layers have biases. ``None`` means the
        weights are not i.i.d. draws of a known law (identity-like, data-dependent or
        architecture-changing schemes, or biases the scheme keeps).

        Example:
            >>> get_scheme("kaiming-normal").weight_law({}, fan_in=64, bias=True)
            WeightLaw(sigma_w2=2.0, sigma_b2=0.0, ensemble='gaussian')
            >>> get_scheme("idinit").weight_law({}, fan_in=64, bias=True) is None
            True
        """
        options = {} if options is None else options
        self.check_options(options)
        fan_in = check_int("fan_in", fan_in, where=f"{self.name} weight_law", minimum=1)
        bias = check_bool("bias", bias, where=f"{self.name} weight_law")
        if self.law is None:
            return None
        return self.law({**self.defaults, **options}, fan_in=fan_in, bias=bias)

    def __str__(self) -> str:
        return f"{self.name:<17} {self.description} [{self.reference}]"


class SchemeList(tuple):
    """The registered schemes; prints as a table of name, description and reference."""

    def names(self) -> list[str]:
        return [s.name for s in self]

    def __str__(self) -> str:
        return "\n".join(str(s) for s in self)

    __repr__ = __str__


_REGISTRY: dict[str, Scheme] = {}


def register(
    name: str,
    *,
    description: str,
    reference: str,
    needs_data: bool = False,
    weight_law: LawFn | None = None,
    check: CheckFn | None = None,
) -> Callable[[SchemeFn], SchemeFn]:
    """Register ``fn(ctx, *, **options)`` as the model-level scheme ``name``.

    The scheme's options are ``fn``'s keyword-only parameters, with their defaults.
    ``weight_law(options, *, fan_in, bias)`` receives the complete options (defaults filled in)
    and returns the :class:`isokit.theory.WeightLaw` of the weights the scheme draws, or None.
    ``check(options, where)`` receives them too and raises on a bad value it can tell without a
    model (a choice, a bound), so that :meth:`Scheme.check_options` refuses it up front.

    Example:
        >>> @register("halve-demo", description="demo", reference="none")
        ... def halve(ctx, *, factor: float = 0.5) -> None:
        ...     for slot in ctx.slots:
        ...         slot.tensor.mul_(factor)
        >>> get_scheme("halve-demo").options
        ('factor',)
        >>> _ = _REGISTRY.pop("halve-demo")
    """

    def wrap(fn: SchemeFn) -> SchemeFn:
        defaults = keyword_defaults(fn)
        _REGISTRY[name] = Scheme(
            name=name,
            description=description,
            reference=reference,
            fn=fn,
            defaults=MappingProxyType(defaults),
            needs_data=needs_data,
            law=weight_law,
            check=check,
            type_checks=MappingProxyType(option_checks(fn, defaults)),
        )
        return fn

    return wrap


def schemes() -> SchemeList:
    """Every scheme :func:`apply` accepts, with a one-line description and its reference.

    Example:
        >>> "idinit" in schemes().names()
        True
    """
    # IDInit first, then the baselines in registration order.
    return SchemeList(sorted(_REGISTRY.values(), key=lambda s: s.name != "idinit"))


def get_scheme(name: str) -> Scheme:
    """The registered scheme ``name``; an unknown name raises ``ValueError`` with close matches.

    Example:
        >>> get_scheme("idinit").needs_data
        False
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown scheme {name!r}{hint} Known schemes: {', '.join(_REGISTRY)} "
            "(see isokit.init.schemes())"
        )
    return _REGISTRY[name]


# torch.Generator.manual_seed takes any 64-bit value, signed or unsigned.
_SEED_RANGE = (-(2**63), 2**64 - 1)


def _make_generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator | None:
    if generator is not None and seed is not None:
        raise ValueError("pass either generator= or seed=, not both")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if seed is None:
        return generator
    seed = check_int("seed", seed)
    if not _SEED_RANGE[0] <= seed <= _SEED_RANGE[1]:
        raise ValueError(f"seed must fit in 64 bits (-2**63 to 2**64 - 1), got {seed}")
    return torch.Generator().manual_seed(seed)


def _run(spec: Scheme, ctx: Context, options: dict, *, verbose: bool = False) -> None:
    """Run the scheme and complete its report; on any failure or interrupt (until it returns)
    put the model back exactly as it was."""
    checkpoint = Checkpoint.take(ctx.model)
    try:
        with torch.no_grad():
            spec.fn(ctx, **options)
        bad = changed_non_finite(ctx.model, checkpoint)
        if bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise ValueError(
                f"scheme {spec.name!r} wrote NaN or inf into {shown}, so the model was left "
                "unchanged; the options overflow this model's dtype (pass smaller gains or "
                "scales, or convert the model to a wider dtype, e.g. model.double())"
            )
        _report_kept(ctx.model, ctx.report)
        if verbose:
            print(ctx.report)
    except BaseException:  # KeyboardInterrupt too: a half-initialized model is never left behind
        checkpoint.restore()
        raise


def _report_kept(model: nn.Module, report: InitReport) -> None:
    """Give every parameter the scheme did not touch a ``kept`` row (``kept (unsupported:
    ClassName)`` where no scheme knows its module), and every further name of a tied parameter
    a ``tied`` row; refuse a run that initialized no parameter of a model that has some."""
    roles = parameter_roles(model)
    reason = initialized_nothing(model, report, roles)
    if reason:
        raise SchemeNotApplicable(reason)
    add_kept_rows(model, report, roles)


def apply(
    model: nn.Module,
    scheme: str,
    *,
    data: torch.Tensor | None = None,
    example_inputs: object = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    branches: list | None = None,
    branch_last: list[str] | None = None,
    return_report: bool = False,
    verbose: bool = False,
    unsupported: str = "keep",
    **options,
):
    """Initialize ``model`` in place with ``scheme`` and return it.

    Args:
        model: any ``nn.Module``.
        scheme: a name from :func:`schemes` (``"idinit"``, ``"kaiming-normal"``, ...).
        data: a batch of inputs, for data-dependent schemes (``"lsuv"``); it also serves as
            ``example_inputs`` when those are not given.
        example_inputs: what the model's forward takes, for branch discovery by capturing the
            real graph: a tensor, a tuple of positional arguments or a dict of keyword
            arguments (``docs/idinit.md §8``).
        generator: the ``torch.Generator`` every random draw uses; ``seed`` makes one.
        branches: explicit residual branches (:class:`isokit.ResidualBranch` or
            ``(layers, gate)`` tuples); overrides ``model.residual_branches()`` and tracing.
        branch_last: names or globs of the last layer of each residual branch.
        return_report: return ``(model, InitReport)`` instead of the model.
        verbose: print the init report.
        unsupported: what to do with parameters the scheme leaves alone because no scheme
            knows their module (ConvTranspose, RNN, custom layers; ``docs/idinit.md §7``):
            ``"keep"`` keeps them, with ``kept (unsupported: ClassName)`` rows in the report;
            ``"raise"`` raises :class:`isokit.init.report.UnsupportedModuleError` and leaves the
            model as it was.
        **options: the scheme's options (see its docstring; unknown ones raise).

    Schemes that change the architecture (Fixup, SkipInit, ReZero, T-Fixup) do it in place
    too, so the returned model is the same object. A scheme that fails or is interrupted
    (``KeyboardInterrupt`` included) leaves the model exactly as it was: values, parameters,
    buffers, submodules and hooks. No scheme leaves a NaN or inf it wrote: that raises
    ``ValueError`` and restores the model. Non-finite numeric options are refused up front.

    Example:
        >>> from isokit.models import ResNet
        >>> model = apply(ResNet(depth=20), "idinit", seed=0)
    """
    spec = get_scheme(scheme)
    if not isinstance(model, nn.Module):
        raise TypeError(f"apply() needs an nn.Module, got {type(model).__name__}")
    spec.check_options(options)
    if spec.needs_data and data is None:
        raise ValueError(
            f"scheme {scheme!r} needs a batch of inputs: call apply(model, {scheme!r}, data=x) "
            "with x a floating tensor of shape (B, ...)"
        )
    check_bool("return_report", return_report)
    check_bool("verbose", verbose)
    check_choice("unsupported", unsupported, ("keep", "raise"), where="apply")
    report = InitReport(scheme=scheme)
    ctx = Context(
        model=model,
        report=report,
        generator=_make_generator(generator, seed),
        scheme=scheme,
        data=data,
        example_inputs=example_inputs,
        branch_spec=branches,
        branch_last=branch_last,
    )
    # Only a run that may refuse its result afterwards pays for a second checkpoint.
    checkpoint = Checkpoint.take(model) if unsupported == "raise" else None
    _run(spec, ctx, options, verbose=verbose)
    if checkpoint is not None and unsupported_rows(report):
        checkpoint.restore()
        raise UnsupportedModuleError.from_report(report)
    return (model, report) if return_report else model
