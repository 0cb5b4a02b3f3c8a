"""The per-parameter init report: which rule each parameter got, with which options.

Besides the report itself: the rows of the parameters a scheme left alone (``kept``, with their
role; ``kept (unsupported: ClassName)`` where no scheme knows the module; ``tied`` for further
names of one tensor), the error ``apply(..., unsupported="raise")`` raises on the unsupported
ones, and the test of a run that initialized nothing (``docs/idinit.md`` §7).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from isokit.init.layers import tied_aliases, weight_slots


@dataclass(frozen=True, kw_only=True)
class InitRow:
    """One parameter (or weight slot) and what a scheme did to it.

    ``rule`` is a short tag (``idi``, ``idic-patch``, ``idiz``, ``kaiming-normal``, ``zero``,
    ``kept``, ...); ``options`` the settings that mattered; ``flags`` warnings such as unused
    input channels or a dtype too coarse for loosening.
    """

    name: str
    shape: tuple[int, ...]
    rule: str
    options: str = ""
    flags: tuple[str, ...] = ()


@dataclass(kw_only=True)
class InitReport:
    """What :func:`isokit.init.apply` did, one row per parameter."""

    scheme: str
    rows: list[InitRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, shape, rule: str, options: str = "", flags=()) -> None:
        self.rows.append(
            InitRow(name=name, shape=tuple(shape), rule=rule, options=options, flags=tuple(flags))
        )

    def rule_of(self, name: str) -> str:
        """The rule applied to parameter (or slot) ``name``."""
        for row in self.rows:
            if row.name == name:
                return row.rule
        raise KeyError(f"no row for {name!r} in the init report")

    @property
    def flagged(self) -> list[InitRow]:
        return [r for r in self.rows if r.flags]

    def to_rows(self) -> list[dict]:
        """Tidy rows (``pandas.DataFrame(report.to_rows())`` reads them directly)."""
        return [
            {
                "scheme": self.scheme,
                "name": r.name,
                "shape": "×".join(map(str, r.shape)),
                "rule": r.rule,
                "options": r.options,
                "flags": "; ".join(r.flags),
            }
            for r in self.rows
        ]

    def __str__(self) -> str:
        rows = self.to_rows()
        cols = ("name", "shape", "rule", "options", "flags")
        widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in cols}
        lines = [f"init report: {self.scheme}"]
        lines.append("  ".join(c.ljust(widths[c]) for c in cols).rstrip())
        lines.extend("  ".join(r[c].ljust(widths[c]) for c in cols).rstrip() for r in rows)
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


_UNSUPPORTED = "kept (unsupported: "


def unsupported_rule(owner: str) -> str:
    """The rule of a parameter kept because no scheme knows its module, class ``owner``.

    Example:
        >>> unsupported_rule("LSTM")
        'kept (unsupported: LSTM)'
    """
    return f"{_UNSUPPORTED}{owner})"


def unsupported_rows(report: InitReport) -> list[InitRow]:
    """The rows of parameters kept because no scheme knows their module."""
    return [r for r in report.rows if r.rule.startswith(_UNSUPPORTED)]


class UnsupportedModuleError(ValueError):
    """``apply(..., unsupported="raise")`` met modules owning parameters no scheme knows.

    Example:
        >>> report = InitReport(scheme="idinit")
        >>> report.add("rnn.weight_ih_l0", (8, 2), unsupported_rule("LSTM"))
        >>> print(UnsupportedModuleError.from_report(report))  # doctest: +ELLIPSIS
        idinit does not initialize 1 module that owns parameters: rnn (LSTM); ...
    """

    @classmethod
    def from_report(cls, report: InitReport) -> UnsupportedModuleError:
        owners: dict[str, str] = {}
        for row in unsupported_rows(report):
            module = row.name.rpartition(".")[0] or "(the model itself)"
            owners.setdefault(module, row.rule[len(_UNSUPPORTED) : -1])
        shown = ", ".join(f"{n} ({c})" for n, c in list(owners.items())[:8])
        if len(owners) > 8:
            shown += f" and {len(owners) - 8} more"
        many = len(owners) != 1
        return cls(
            f"{report.scheme} does not initialize {len(owners)} module{'s' * many} that "
            f"own{'s' * (not many)} parameters: {shown}; the model was left unchanged. Pass "
            "unsupported='keep' (the default) to keep their initialization (the init report "
            "lists them as 'kept (unsupported: ...)'), and initialize them yourself if they need "
            "it; a normalization layer can be declared with isokit.init.norms.register_norm"
        )


def initialized_nothing(
    model: nn.Module, report: InitReport, roles: dict[str, tuple[str, str]]
) -> str | None:
    """Why the run in ``report`` initialized nothing of ``model``, or None if it did.

    A run initialized nothing when the model has parameters besides norms, no weight slot, and
    no row of the scheme's sets a parameter other than a norm's: an LSTM, an embedding table,
    or a GPT-2 before its ``Conv1D`` layers were slots. ``roles`` is
    :func:`isokit.init.layers.parameter_roles` of the model.
    """
    if all(role == "norm" for role, _ in roles.values()) or weight_slots(model):
        return None
    for row in report.rows:
        role = roles.get(row.name.partition("[")[0], ("", ""))[0]
        if not row.rule.startswith("kept") and role not in ("", "norm"):
            return None
    kinds: dict[str, int] = {}
    for role, owner in roles.values():
        key = f"unsupported {owner}" if role == "unsupported" else role
        kinds[key] = kinds.get(key, 0) + 1
    shown = ", ".join(f"{n} {k}" for k, n in kinds.items())
    return (
        f"{report.scheme} initialized no parameter of {type(model).__name__}: it has no weight "
        "layer a scheme initializes (nn.Linear, HF Conv1D, nn.Conv1d/2d/3d, "
        f"nn.MultiheadAttention) and keeps its other parameters (by role: {shown}); the model "
        "was left unchanged. Initialize such modules yourself, or declare a normalization "
        "class with isokit.init.norms.register_norm"
    )


def add_kept_rows(model: nn.Module, report: InitReport, roles: dict[str, tuple[str, str]]) -> None:
    """A ``kept`` row for every parameter without a row (``kept (unsupported: ClassName)``
    where no scheme knows its module, with the parameter's role as options otherwise), and a
    ``tied`` row for every further name of a tied parameter that has none (a scheme's row under
    any of a tensor's names counts for the tensor)."""
    seen = {row.name.partition("[")[0] for row in report.rows}
    aliases = tied_aliases(model)
    seen |= {name for alias, name in aliases if alias in seen}
    params = dict(model.named_parameters())
    for name, p in params.items():
        if name in seen:
            continue
        role, owner = roles.get(name, ("weight layer", ""))
        if role == "unsupported":
            report.add(name, p.shape, unsupported_rule(owner), flags=["unsupported layer"])
        else:
            report.add(name, p.shape, "kept", "" if role == "weight layer" else role)
    for alias, name in aliases:
        if alias not in seen:
            report.add(alias, params[name].shape, "tied", f"same tensor as {name}")
