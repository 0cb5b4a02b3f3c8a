"""The value type of every theory function: a number with its provenance.

Each public function of ``isokit.theory`` returns a :class:`Prediction`, or a small frozen
dataclass whose fields are predictions. A prediction carries a provenance tag (``"S"``, ``"R"``,
``"A"``, ``"D"``: :data:`TAGS`, defined in the introduction of ``docs/theory.md``), a citation key
from :data:`CITATIONS` and a one-line description, so a report can say where every theory line
comes from.

Example:
    >>> TAGS["D"]
    "derived for isokit, not read in any source (cite as 'derived')"
    >>> CITATIONS["derived"]
    'Derived for isokit (docs/theory.md); not a published result.'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

__all__ = ["CITATIONS", "TAGS", "Prediction", "Tag", "weakest_tag"]

Tag = Literal["S", "R", "A", "D"]

TAGS: dict[str, str] = {
    "S": "read in a secondary source that writes out the paper's equations",
    "R": "attributed to the cited paper, equation not re-read in its full text",
    "A": "a qualitative claim stated in the paper's abstract",
    "D": "derived for isokit, not read in any source (cite as 'derived')",
}

CITATIONS: dict[str, str] = {
    "derived": "Derived for isokit (docs/theory.md); not a published result.",
    "pennington2017": (
        "J. Pennington, S. S. Schoenholz, S. Ganguli. Resurrecting the sigmoid in deep learning "
        "through dynamical isometry: theory and practice. NeurIPS 2017. arXiv:1711.04735."
    ),
    "pennington2018": (
        "J. Pennington, S. S. Schoenholz, S. Ganguli. The emergence of spectral universality in "
        "deep networks. AISTATS 2018. arXiv:1802.09979."
    ),
    "poole2016": (
        "B. Poole, S. Lahiri, M. Raghu, J. Sohl-Dickstein, S. Ganguli. Exponential expressivity "
        "in deep neural networks through transient chaos. NeurIPS 2016. arXiv:1606.05340."
    ),
    "schoenholz2017": (
        "S. S. Schoenholz, J. Gilmer, S. Ganguli, J. Sohl-Dickstein. Deep information "
        "propagation. ICLR 2017. arXiv:1611.01232."
    ),
    "saxe2014": (
        "A. M. Saxe, J. L. McClelland, S. Ganguli. Exact solutions to the nonlinear dynamics of "
        "learning in deep linear neural networks. ICLR 2014. arXiv:1312.6120."
    ),
    "xiao2018": (
        "L. Xiao, Y. Bahri, J. Sohl-Dickstein, S. S. Schoenholz, J. Pennington. Dynamical "
        "isometry and a mean field theory of CNNs. ICML 2018. arXiv:1806.05393."
    ),
    "penson2011": (
        "K. A. Penson, K. Zyczkowski. Product of Ginibre matrices: Fuss-Catalan and Raney "
        "distributions. Phys. Rev. E 83, 061118 (2011). arXiv:1103.3453."
    ),
    "haagerup-neuschel": (
        "U. Haagerup, S. Moller; W. Neuschel. The parametrization of the Fuss-Catalan density."
    ),
    "yang2017": (
        "G. Yang, S. S. Schoenholz. Mean field residual networks: on the edge of chaos. "
        "NeurIPS 2017."
    ),
    "tarnowski2019": (
        "W. Tarnowski, P. Warchol, S. Jastrzebski, J. Tabor, M. A. Nowak. Dynamical isometry is "
        "achieved in residual networks in a universal way for any activation function. "
        "AISTATS 2019. arXiv:1809.08848."
    ),
    "hanin2018": (
        "B. Hanin, M. Nica. Products of many large random matrices and gradients in deep neural "
        "networks. Comm. Math. Phys. (2020). arXiv:1812.05994."
    ),
    "martens2021": (
        "J. Martens et al. Rapid training of deep neural networks without skip connections or "
        "normalization layers using Deep Kernel Shaping. arXiv:2110.01765."
    ),
    "cho2009": "Y. Cho, L. K. Saul. Kernel methods for deep learning. NeurIPS 2009.",
    "williams1997": "C. K. I. Williams. Computing with infinite networks. NeurIPS 1997.",
    "mingo2017": (
        "D. Voiculescu (1987); J. A. Mingo, R. Speicher. Free Probability and Random Matrices "
        "(2017)."
    ),
}


def weakest_tag(*tags: Tag) -> Tag:
    """The weakest provenance among ``tags``: a value built from parts is no better sourced.

    ``D`` (derived) is weaker than ``A`` (a qualitative claim), which is weaker than ``R``
    (attributed), which is weaker than ``S`` (read in a secondary source).

    Example:
        >>> weakest_tag("S", "R"), weakest_tag("R", "D", "S")
        ('R', 'D')
    """
    order = "DARS"
    return min(tags, key=order.index)


@dataclass(frozen=True, kw_only=True)
class Prediction:
    """A predicted value with its provenance.

    Attributes:
        value: the number (a float, an int for exact combinatorial values, or a NumPy array for
            per-layer profiles and moment sequences).
        tag: provenance tag, one of :data:`TAGS`.
        cite: citation key, one of :data:`CITATIONS`.
        what: a short description of the quantity and the formula used.
        section: the section of ``docs/theory.md`` that gives the formula.
        statistic: the probe statistic (``docs/probes.md §5``) that measures this value, e.g.
            ``"m1"``, or ``"m1_bulk"`` where the formula describes the spectrum without its
            largest eigenvalue; ``None`` where no probe statistic does (``q*``, ``χ1``, …).

    Example:
        >>> pred = Prediction(value=0.5, tag="S", cite="pennington2017", what="μ1 of ReLU")
        >>> float(pred), pred.reference.startswith("J. Pennington"), pred.statistic
        (0.5, True, None)
    """

    value: Any
    tag: Tag
    cite: str
    what: str
    section: str = ""
    statistic: str | None = None

    def __post_init__(self) -> None:
        if self.tag not in get_args(Tag):
            raise ValueError(f"unknown provenance tag {self.tag!r}; use one of S, R, A, D")
        if self.cite not in CITATIONS:
            raise ValueError(
                f"unknown citation key {self.cite!r}; add it to isokit.theory.prediction.CITATIONS"
            )
        if self.statistic is not None and not isinstance(self.statistic, str):
            raise ValueError(
                f"statistic must be a probe statistic's name or None, got {self.statistic!r}"
            )

    def __float__(self) -> float:
        return float(self.value)

    @property
    def reference(self) -> str:
        """The full citation for :attr:`cite`."""
        return CITATIONS[self.cite]
