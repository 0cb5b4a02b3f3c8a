"""The CSV files: summary.csv (tidy statistics) and ranking.csv (the ranking table).

summary.csv has one row per model × scheme × tap × statistic.

Each row aggregates the per-example values of one statistic over every input and seed of that
model and scheme: the median (robust to the infinite ``cond``/``gap`` of rank-deficient taps),
the mean, the standard deviation, the extremes and the count. ``pandas.read_csv`` reads it
directly; infinities are written as ``inf``.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from isokit.report.formatting import format_number
from isokit.report.results import Results
from isokit.report.series import RANK_STATS

if TYPE_CHECKING:
    from isokit.report.series import RankRow

__all__ = ["COLUMNS", "RANKING_COLUMNS", "ranking_csv", "summary_csv", "summary_rows"]

COLUMNS = (
    "model",
    "scheme",
    "tap",
    "depth",
    "statistic",
    "median",
    "mean",
    "std",
    "min",
    "max",
    "n",
)


def summary_rows(results: Results) -> list[dict]:
    """The rows of summary.csv, in model, scheme, depth, statistic order."""
    pooled: dict[tuple, list[np.ndarray]] = defaultdict(list)
    order: list[tuple] = []
    for record in results.records:
        if not record.ok or record.profile is None:
            continue
        for tap in record.profile.taps:
            for stat, values in tap.stats.items():
                key = (record.model, record.scheme, tap.name, tap.depth, stat)
                if key not in pooled:
                    order.append(key)
                pooled[key].append(np.asarray(values, dtype=np.float64).ravel())
    rows = []
    for key in order:
        v = np.concatenate(pooled[key])
        finite = v[np.isfinite(v)]
        with np.errstate(invalid="ignore", over="ignore"):
            rows.append(
                dict(
                    zip(
                        COLUMNS,
                        (
                            *key,
                            np.median(v),
                            v.mean(),
                            v.std() if finite.size == v.size else np.nan,
                            v.min(),
                            v.max(),
                            v.size,
                        ),
                        strict=True,
                    )
                )
            )
    return rows


def summary_csv(results: Results) -> str:
    """summary.csv as text."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in summary_rows(results):
        writer.writerow(
            [
                format_number(row[c], exact=True) if isinstance(row[c], float) else row[c]
                for c in COLUMNS
            ]
        )
    return buf.getvalue()


RANKING_COLUMNS = ("model", "place", "scheme", "status", *RANK_STATS, "seeds", "note")


def ranking_csv(rows: Sequence[RankRow]) -> str:
    """ranking.csv as text: the ranking table, statistics with four significant digits.

    Example:
        >>> from isokit.report.series import RankRow
        >>> row = RankRow(model="m", scheme="s", place=1, status="ok", rank_fraction=0.5)
        >>> print(ranking_csv([row]))
        model,place,scheme,status,rank_fraction,gap_nonzero,var_nonzero,cond_nonzero,gap,var,m1,seeds,note
        m,1,s,ok,0.5,,,,,,,0,
        <BLANKLINE>
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(RANKING_COLUMNS)
    for r in rows:
        writer.writerow(
            [
                r.model,
                "" if r.place is None else r.place,
                r.scheme,
                r.status,
                *(format_number(getattr(r, stat)) for stat in RANK_STATS),
                r.seeds,
                r.note,
            ]
        )
    return buf.getvalue()
