"""summary.csv: tidy statistics, one row per model × scheme × tap × statistic.

Each row aggregates the per-example values of one statistic over every input and seed of that
model and scheme: the median (robust to the infinite ``cond``/``gap`` of rank-deficient taps),
the mean, the standard deviation, the extremes and the count. ``pandas.read_csv`` reads it
directly; infinities are written as ``inf``.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict

import numpy as np

from isokit.report.results import Results

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


def _fmt(value: float) -> str:
    return (
        repr(float(value))
        if np.isfinite(value)
        else ("nan" if np.isnan(value) else ("inf" if value > 0 else "-inf"))
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
        writer.writerow([_fmt(row[c]) if isinstance(row[c], float) else row[c] for c in COLUMNS])
    return buf.getvalue()
