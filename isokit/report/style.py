"""The report's figure style: rcParams, the scheme palette, log axes that show ∞ and 0.

Figures are built on :class:`matplotlib.figure.Figure` with an Agg canvas, never through
``pyplot``, so rendering a report neither needs a display nor changes the caller's backend. The
style (seaborn ``whitegrid``, the colour-blind-safe ``colorblind`` palette) is applied inside an
``rc_context`` for the same reason.

Values a log axis cannot show are drawn at its edge, never dropped silently: ``+inf`` (the
condition number or isometry gap of a rank-deficient tap) as ▲ on the top edge, zero or values
far below everything else as ▼ on the bottom edge.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

__all__ = [
    "DPI",
    "EDGE_HANDLES",
    "THEORY_HANDLE",
    "LogAxis",
    "Palette",
    "depth_axis",
    "encode_figure",
    "grid_shape",
    "legend_below",
    "log_ticks",
    "new_figure",
    "no_finite_values",
    "slug",
    "style",
    "unique_slugs",
]

DPI = 100
DYNAMIC_RANGE = 1e14  # a log axis spans at most this many decades' worth (ratio)


def slug(text: str) -> str:
    """A file-name-safe version of a label (not unique: see :func:`unique_slugs`).

    Example:
        >>> slug("mlp / tanh: w64")
        'mlp-tanh-w64'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


_SLUG_MAX = 80  # file names stay far below the usual 255-byte limit


def unique_slugs(labels: Sequence[str]) -> dict[str, str]:
    """A distinct file-name-safe slug per label, stable for the same labels.

    Labels that differ only in characters a file name cannot hold (``a/b`` and ``a:b``), or only
    in case (on a case-insensitive file system ``A`` and ``a`` are one file), get their slug plus
    a short hash of the label; over-long slugs are cut and get the hash too.

    Example:
        >>> unique_slugs(["a/b", "a:b", "c"])
        {'a/b': 'a-b-c14cddc0', 'a:b': 'a-b-6783a31e', 'c': 'c'}
    """
    base = {label: slug(label) for label in labels}
    counts = Counter(s.casefold() for s in base.values())
    out: dict[str, str] = {}
    taken: set[str] = set()
    for label in labels:
        s = base[label]
        if counts[s.casefold()] > 1 or len(s) > _SLUG_MAX:
            digest = hashlib.sha256(label.encode("utf-8")).hexdigest()[:8]
            s = f"{s[:_SLUG_MAX]}-{digest}"
        # A hashed slug could still equal another label's plain one: number it.
        candidate, n = s, 1
        while candidate.casefold() in taken:
            n += 1
            candidate = f"{s}-{n}"
        taken.add(candidate.casefold())
        out[label] = candidate
    return out


def style() -> dict:
    """rcParams of the report style (seaborn whitegrid/notebook, readable at ~1100 px)."""
    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=0.85)}
    rc.update(
        {
            "axes.prop_cycle": matplotlib.cycler(color=sns.color_palette("colorblind")),
            "svg.fonttype": "none",
            "figure.dpi": DPI,
            "savefig.dpi": DPI,
            "axes.titlesize": 11,
            "axes.titleweight": "bold",
            "legend.frameon": False,
            "svg.hashsalt": "isokit",
        }
    )
    return rc


@dataclass(frozen=True)
class Palette:
    """Scheme label → colour and marker, fixed by config order so figures agree."""

    schemes: tuple[str, ...]

    def color(self, scheme: str):
        colors = sns.color_palette("colorblind", max(10, len(self.schemes)))
        return (
            colors[self.schemes.index(scheme) % len(colors)]
            if scheme in self.schemes
            else (0.4, 0.4, 0.4)
        )

    def marker(self, scheme: str) -> str:
        marks = "osD^vP*Xp<>h"
        return marks[self.schemes.index(scheme) % len(marks)] if scheme in self.schemes else "o"

    def width(self, scheme: str) -> float:
        """Line width, widest for the first scheme: where two schemes give the same numbers
        (IDInit and ZerO on square layers), the earlier one shows around the later."""
        if scheme not in self.schemes:
            return 1.8
        rest = len(self.schemes) - 1 - self.schemes.index(scheme)
        return 1.5 + 1.5 * rest / max(1, len(self.schemes) - 1)

    def handles(self, present: Sequence[str]) -> list[Line2D]:
        return [
            Line2D(
                [], [], color=self.color(s), marker=self.marker(s), markersize=4, lw=1.8, label=s
            )
            for s in self.schemes
            if s in present
        ]


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def encode_figure(fig: Figure, formats: Sequence[str]) -> dict[str, bytes]:
    """The figure's bytes in ``png`` (always) and every requested format."""
    out: dict[str, bytes] = {}
    for fmt in dict.fromkeys(("png", *formats)):
        buf = io.BytesIO()
        # No timestamps in the metadata, so re-rendering the same results gives the same files.
        meta = {
            "png": {"Software": None},
            "svg": {"Date": None},
            "pdf": {"CreationDate": None, "ModDate": None},
        }[fmt]
        fig.savefig(buf, format=fmt, metadata=meta)
        out[fmt] = buf.getvalue()
    return out


# ------------------------------------------------------------------------------ log-axis helper


class LogAxis:
    """Collects the finite positive values of one log axis to choose limits, then draws."""

    def __init__(self, floor: float | None = None) -> None:
        self.floor = floor
        self.values: list[np.ndarray] = []

    def add(self, *arrays: np.ndarray) -> None:
        for a in arrays:
            a = np.asarray(a, dtype=float)
            self.values.append(a[np.isfinite(a) & (a > 0)])

    def limits(self) -> tuple[float, float]:
        vals = np.concatenate(self.values) if self.values else np.array([])
        if vals.size == 0:
            return (0.1, 10.0)
        hi = float(vals.max())
        lo = max(float(vals.min()), hi / DYNAMIC_RANGE, self.floor or 0.0)
        if hi <= lo:
            lo, hi = lo / 10, hi * 10
        # One extra half decade each side leaves room for the edge markers.
        return lo / 10**0.35, hi * 10**0.35

    def draw(self, ax, x, y, lo_band, hi_band, *, color, marker, label=None, lw=1.8, ls="-"):
        """Line (and band) on a log axis; NaN (not measured at that depth) is skipped so the
        line joins the depths that were measured, ±inf and 0 are drawn at the edges."""
        bottom, top = self.limits()
        x = np.asarray(x)
        y = np.asarray(y, dtype=float)
        seen = ~np.isnan(y)
        ax.plot(
            x[seen],
            np.clip(y[seen], bottom, top),
            color=color,
            lw=lw,
            ls=ls,
            label=label,
            marker=marker,
            markersize=3.5,
            markevery=max(1, int(seen.sum()) // 12),
        )
        if lo_band is not None:
            lb = np.clip(np.asarray(lo_band, dtype=float), bottom, top)
            hb = np.clip(np.asarray(hi_band, dtype=float), bottom, top)
            ok = ~(np.isnan(lb) | np.isnan(hb))
            ax.fill_between(x[ok], lb[ok], hb[ok], color=color, alpha=0.15, lw=0)
        up = np.isposinf(y)
        down = np.isneginf(y) | (np.isfinite(y) & (y < bottom * 10**0.3))
        if up.any():
            ax.plot(
                x[up],
                np.full(up.sum(), top),
                ls="none",
                marker="^",
                color=color,
                markersize=7,
                clip_on=False,
                zorder=5,
            )
        if down.any():
            ax.plot(
                x[down],
                np.full(down.sum(), bottom),
                ls="none",
                marker="v",
                color=color,
                markersize=7,
                clip_on=False,
                zorder=5,
            )
        ax.set_yscale("log")
        ax.set_ylim(bottom, top)
        log_ticks(ax, bottom, top)


EDGE_HANDLES = [
    Line2D(
        [],
        [],
        ls="none",
        marker="^",
        color="0.3",
        markersize=7,
        label="∞ (rank-deficient), drawn at the top edge",
    ),
    Line2D(
        [],
        [],
        ls="none",
        marker="v",
        color="0.3",
        markersize=7,
        label="0 or below the axis, drawn at the bottom edge",
    ),
]
THEORY_HANDLE = Line2D([], [], color="0.2", ls="--", lw=1.4, label="theory (same colour)")


def legend_below(fig: Figure, handles: list, *, width_in: float) -> None:
    """A figure legend below the panels, wrapped so it never runs off the figure."""
    per_row = max(1, min(len(handles), int(width_in // 2.6)))
    fig.legend(handles=handles, loc="outside lower center", ncols=per_row)


def log_ticks(ax, bottom: float, top: float, *, axis: str = "y") -> None:
    """Readable log ticks: 1-2-5 steps on short ranges, decades on long ones, no minor labels."""
    decades = math.log10(top / bottom)
    subs = (1.0, 2.0, 5.0) if decades < 2.5 else (1.0,)
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(LogLocator(base=10, subs=subs, numticks=8))
    target.set_minor_formatter(NullFormatter())
    if decades < 4:
        target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def no_finite_values(ax, axis: LogAxis) -> bool:
    """Say so on a panel whose values are all infinite or missing; True if it did."""
    if any(v.size for v in axis.values):
        return False
    ax.text(
        0.5,
        0.5,
        "no finite value at any depth\n(▲ = ∞: every Jacobian rank-deficient)",
        transform=ax.transAxes,
        ha="center",
        va="center",
        color="0.35",
        fontsize=9,
        bbox={"facecolor": "white", "edgecolor": "0.8", "alpha": 0.9},
    )
    ax.yaxis.set_major_formatter(NullFormatter())
    return True


def depth_axis(ax) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))


def grid_shape(n: int, ncols: int) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return math.ceil(n / ncols), ncols
