"""Summaries of the depth sweeps and the verdict rule of claim A.

Every statistic is read at the **last tap** of each Profile (the input-output Jacobian: the last
hidden layer of the head-less MLPs and Transformers at initialization, the logits of the ResNets
and of every trained model), averaged over the probe's examples, then over seeds.

The verdict rule (stated in docs/analyses/depth.md and written into the JSON):

- ``growth(scheme) = (1 + v(L_max)) / (1 + v(L_min))`` with ``v`` the scale-free variance of the
  non-zero part of the spectrum, ``var_nonzero``, at the last tap, at the deepest and the
  shallowest depth of the family. ``1 + v = m2'/m1'²`` is the spectrum's second normalized
  moment: 1 for an exact isometry (up to scale), so the ratio is defined when ``v`` is tiny.
- A residual family *confirms* claim A when ``growth(IDInit) ≤ FLAT`` and
  ``growth(kaiming-normal) ≥ GROWS``; it *contradicts* it when ``growth(IDInit) ≥ GROWS``;
  otherwise it is *unclear*. The claim is confirmed when every residual family confirms it,
  contradicted when any contradicts it, unclear otherwise; the rule is applied to each IDInit
  variant on the families where it ran.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = [
    "FLAT",
    "GROWS",
    "RULE",
    "STATS",
    "claim_verdict",
    "collect",
    "failures",
    "family_verdict",
    "growth",
    "last_tap",
    "mean_over_seeds",
    "train_curves",
]

#: The statistics the analysis reports at the last tap.
STATS: tuple[str, ...] = (
    "m1",
    "var",
    "var_nonzero",
    "gap_nonzero",
    "rank_fraction",
    "sigma_max",
    "sigma_min",
    "cond_nonzero",
)
#: growth ≤ FLAT: independent of depth; growth ≥ GROWS: spreads with depth.
FLAT = 1.5
GROWS = 2.0
RULE = (
    "growth = (1 + var_nonzero at the deepest depth) / (1 + var_nonzero at the shallowest), "
    "var_nonzero at the last tap, mean over examples and seeds. A residual family confirms "
    f"claim A if growth(IDInit) <= {FLAT} and growth(kaiming-normal) >= {GROWS}, contradicts it "
    f"if growth(IDInit) >= {GROWS}, else unclear. Claim A: confirmed if every residual family "
    "(residual MLP, ResNet, Transformer) confirms, contradicted if any contradicts, else unclear; "
    "applied to each IDInit variant where it ran."
)


def last_tap(profile: Any, stats: Iterable[str] = STATS) -> dict[str, float]:
    """The mean over examples of each statistic at ``profile``'s last tap (NaN if absent)."""
    tap = profile.taps[-1]
    out = {}
    for name in stats:
        values = np.asarray(tap.stats.get(name, [math.nan]), dtype=float)
        out[name] = float(np.mean(values)) if values.size else math.nan
    return out


def collect(results: Any, step: int | None = None) -> list[dict[str, Any]]:
    """One row per finished ``ok`` cell of a sweep (``isokit.sweep.load_sweep``): its depth,
    scheme, seed and the last-tap statistics, at initialization (``step=None``: the cell's
    own probe) or at training checkpoint ``step`` (skipped where the run has none, e.g. after
    it diverged)."""
    rows = []
    for cell in results.results:
        if cell.status != "ok" or cell.record is None:
            continue
        if step is None:
            profile = cell.record.profile
        else:
            train = cell.record.train
            profile = None if train is None else train.checkpoints.get(step)
        if profile is None:
            continue
        rows.append(
            {
                "depth": int(cell.axes["depth"]),
                "scheme": str(cell.axes["scheme"]),
                "seed": int(cell.axes["seed"]),
                **last_tap(profile),
            }
        )
    return rows


def failures(results: Any) -> list[dict[str, Any]]:
    """The cells that raised, and the training checkpoints whose probe found NaN or inf (weights
    that training blew up to overflow): their axes, the step, and the first line of the error;
    they contribute no row."""
    out = []
    for cell in results.results:
        if cell.status == "error":
            out.append({**cell.axes, "error": _first_line((cell.error or {}).get("message", ""))})
            continue
        train = None if cell.record is None else cell.record.train
        if train is not None:
            for step, error in sorted(train.checkpoint_errors.items()):
                out.append({**cell.axes, "step": step, "error": _first_line(error)})
    return out


def _first_line(text: str) -> str:
    return (text.splitlines() or [""])[0][:300]


def _mean(values: list[float]) -> float:
    a = np.asarray(values, dtype=float)
    if a.size == 0 or np.isnan(a).all():
        return math.nan
    with np.errstate(invalid="ignore"):
        return float(np.nanmean(a))


def mean_over_seeds(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, list]]]:
    """``{scheme: {"depth": [...], stat: [mean over seeds at each depth], stat + "_min": ...,
    stat + "_max": ...}}``, depths ascending; ``n_seeds`` counts the seeds at each depth."""
    grouped: dict[str, dict[int, list[Mapping[str, Any]]]] = {}
    for row in rows:
        grouped.setdefault(row["scheme"], {}).setdefault(row["depth"], []).append(row)
    out: dict[str, dict[str, list]] = {}
    for scheme, by_depth in grouped.items():
        depths = sorted(by_depth)
        series: dict[str, list] = {"depth": depths, "n_seeds": [len(by_depth[d]) for d in depths]}
        for stat in STATS:
            per = [[r[stat] for r in by_depth[d]] for d in depths]
            series[stat] = [_mean(v) for v in per]
            series[stat + "_min"] = [float(np.min(v)) for v in per]
            series[stat + "_max"] = [float(np.max(v)) for v in per]
        out[scheme] = series
    return out


def growth(series: Mapping[str, list], stat: str = "var_nonzero") -> float:
    """``(1 + v(L_max)) / (1 + v(L_min))`` of one scheme's series; NaN with fewer than two
    depths or where either end is not finite (a degenerate, all-zero Jacobian)."""
    depths, values = series["depth"], series[stat]
    if len(depths) < 2:
        return math.nan
    lo, hi = values[int(np.argmin(depths))], values[int(np.argmax(depths))]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return math.nan
    return (1.0 + hi) / (1.0 + lo)


def family_verdict(g_idinit: float, g_kaiming: float) -> str:
    """The rule for one family and one IDInit variant (module docstring)."""
    if math.isnan(g_idinit):
        return "unclear"
    if g_idinit >= GROWS:
        return "contradicted"
    if g_idinit <= FLAT and not math.isnan(g_kaiming) and g_kaiming >= GROWS:
        return "confirmed"
    return "unclear"


def claim_verdict(verdicts: Iterable[str]) -> str:
    """Confirmed if every family confirms, contradicted if any contradicts, else unclear."""
    v = list(verdicts)
    if not v:
        return "unclear"
    if "contradicted" in v:
        return "contradicted"
    return "confirmed" if all(x == "confirmed" for x in v) else "unclear"


def train_curves(results: Any) -> dict[str, dict[str, Any]]:
    """``{scheme: {"step", "loss" (training loss, first seed), "eval_step", "eval_accuracy",
    "diverged_at", "lr", "effective_lr"}}`` of one training grid (its single depth)."""
    out: dict[str, dict[str, Any]] = {}
    for cell in results.results:
        if cell.status != "ok" or cell.record is None or cell.record.train is None:
            continue
        scheme = str(cell.axes["scheme"])
        if scheme in out:
            continue
        t = cell.record.train
        out[scheme] = {
            "depth": int(cell.axes["depth"]),
            "step": t.step.tolist(),
            "loss": t.loss.tolist(),
            "eval_step": t.eval_step.tolist(),
            "eval_accuracy": None if t.eval_accuracy is None else t.eval_accuracy.tolist(),
            "final_accuracy": t.final_accuracy,
            "diverged_at": t.diverged_at,
            "lr": float(t.options.lr),
            "effective_lr": float(t.effective_lr),
        }
    return out
