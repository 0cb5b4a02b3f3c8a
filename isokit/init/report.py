"""The per-parameter init report: which rule each parameter got, with which options."""

from __future__ import annotations

from dataclasses import dataclass, field


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
