"""One registry for every model-level scheme: :func:`apply` and :func:`schemes`."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from isokit.init.layers import WeightSlot, weight_slots
from isokit.init.report import InitReport
from isokit.structure import ResidualBranch


class SchemeNotApplicable(ValueError):
    """The scheme cannot act on this model (e.g. Fixup on a model without residual branches).

    Distinct from a bad option value, so that a report can record "not applicable" for the one
    and reject the config for the other.
    """


@dataclass(kw_only=True)
class Context:
    """What a scheme needs besides its options: the model, its branches, randomness, a report."""

    model: nn.Module
    report: InitReport
    generator: torch.Generator | None
    data: torch.Tensor | None = None
    branch_spec: object = None
    branch_last: object = None
    _branches: list[ResidualBranch] | None = field(default=None, repr=False)

    @property
    def slots(self) -> list[WeightSlot]:
        return weight_slots(self.model)

    @property
    def branches(self) -> list[ResidualBranch]:
        """Residual branches: explicit ``branches=``, else declared, else found with torch.fx."""
        if self._branches is None:
            from isokit.init.branches import find_branches

            self._branches = list(
                find_branches(self.model, self.branch_spec, branch_last=self.branch_last)
            )
        return self._branches

    def roles(self) -> dict[str, str]:
        """Module name → ``"branch"`` (a non-last branch layer) or ``"last"``."""
        roles: dict[str, str] = {}
        for branch in self.branches:
            for name in branch.layers[:-1]:
                if roles.get(name) == "last":
                    raise ValueError(
                        f"layer {name!r} is the last layer of one residual branch and a "
                        "non-last layer of another; pass branches= to say which it is"
                    )
                roles[name] = "branch"
            if roles.get(branch.last) == "branch":
                raise ValueError(
                    f"layer {branch.last!r} is the last layer of one residual branch and a "
                    "non-last layer of another; pass branches= to say which it is"
                )
            roles[branch.last] = "last"
        return roles

    def seed(self) -> int:
        """A seed for code that takes no generator (module ``reset_parameters``)."""
        return int(torch.randint(0, 2**62, (1,), generator=self.generator).item())


SchemeFn = Callable[..., None]


@dataclass(frozen=True, kw_only=True)
class Scheme:
    """A registered model-level scheme."""

    name: str
    description: str
    reference: str
    fn: SchemeFn
    options: tuple[str, ...] = ()
    needs_data: bool = False

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
    options: Iterable[str] = (),
    needs_data: bool = False,
) -> Callable[[SchemeFn], SchemeFn]:
    """Register ``fn(ctx, **options)`` as the model-level scheme ``name``."""

    def wrap(fn: SchemeFn) -> SchemeFn:
        _REGISTRY[name] = Scheme(
            name=name,
            description=description,
            reference=reference,
            fn=fn,
            options=tuple(options),
            needs_data=needs_data,
        )
        return fn

    return wrap


def schemes() -> SchemeList:
    """Every scheme :func:`apply` accepts, with a one-line description and its reference."""
    # IDInit first, then the baselines in registration order.
    return SchemeList(sorted(_REGISTRY.values(), key=lambda s: s.name != "idinit"))


def get_scheme(name: str) -> Scheme:
    if not isinstance(name, str) or name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown scheme {name!r}{hint} Known schemes: {', '.join(_REGISTRY)} "
            "(see isokit.init.schemes())"
        )
    return _REGISTRY[name]


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    state = {f"p:{n}": p.detach().clone() for n, p in model.named_parameters()}
    state.update({f"b:{n}": b.detach().clone() for n, b in model.named_buffers()})
    return state


def _restore(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for n, p in model.named_parameters():
            if f"p:{n}" in state:
                p.copy_(state[f"p:{n}"])
        for n, b in model.named_buffers():
            if f"b:{n}" in state:
                b.copy_(state[f"b:{n}"])


def _report_kept(model: nn.Module, report: InitReport) -> None:
    """Give every parameter the scheme did not touch a ``kept`` row."""
    seen = {row.name.partition("[")[0] for row in report.rows}
    for name, p in model.named_parameters():
        if name not in seen:
            report.add(name, p.shape, "kept")


def apply(
    model: nn.Module,
    scheme: str,
    *,
    data: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    branches: list | None = None,
    branch_last: list[str] | None = None,
    return_report: bool = False,
    verbose: bool = False,
    **options,
):
    """Initialize ``model`` in place with ``scheme`` and return it.

    Args:
        model: any ``nn.Module``.
        scheme: a name from :func:`schemes` (``"idinit"``, ``"kaiming-normal"``, ...).
        data: a batch of inputs, for data-dependent schemes (``"lsuv"``).
        generator: the ``torch.Generator`` every random draw uses; ``seed`` makes one.
        branches: explicit residual branches (:class:`isokit.ResidualBranch` or
            ``(layers, gate)`` tuples); overrides ``model.residual_branches()`` and tracing.
        branch_last: names or globs of the last layer of each residual branch.
        return_report: return ``(model, InitReport)`` instead of the model.
        verbose: print the init report.
        **options: the scheme's options (see its docstring; unknown ones raise).

    Schemes that change the architecture (Fixup, SkipInit, ReZero, T-Fixup) do it in place
    too, so the returned model is the same object. A scheme that raises leaves every parameter
    and buffer unchanged.

    Example:
        >>> from isokit.models import ResNet
        >>> model = apply(ResNet(depth=20), "idinit", seed=0)
    """
    spec = get_scheme(scheme)
    if not isinstance(model, nn.Module):
        raise TypeError(f"apply() needs an nn.Module, got {type(model).__name__}")
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        allowed = ", ".join(spec.options) or "none"
        raise TypeError(
            f"scheme {scheme!r} got unknown option(s) {', '.join(unknown)}; "
            f"its options are: {allowed}"
        )
    if spec.needs_data and data is None:
        raise ValueError(
            f"scheme {scheme!r} needs a batch of inputs: call apply(model, {scheme!r}, data=x) "
            "with x a floating tensor of shape (B, ...)"
        )
    if generator is not None and seed is not None:
        raise ValueError("pass either generator= or seed=, not both")
    if seed is not None:
        generator = torch.Generator().manual_seed(int(seed))
    report = InitReport(scheme=scheme)
    ctx = Context(
        model=model,
        report=report,
        generator=generator,
        data=data,
        branch_spec=branches,
        branch_last=branch_last,
    )
    state = _snapshot(model)
    try:
        with torch.no_grad():
            spec.fn(ctx, **options)
    except BaseException:
        _restore(model, state)
        raise
    _report_kept(model, report)
    if verbose:
        print(report)
    return (model, report) if return_report else model
