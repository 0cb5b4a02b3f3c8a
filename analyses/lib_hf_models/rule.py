"""The verdict rules of ``analyses/hf_models.py`` (``docs/analyses/hf_models.md``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

SPECTRA_RULE = (
    "confirmed if on every model, at the last block under IDInit, the scale-free variance of "
    "the non-zero λ = s² (var_nonzero, median over seeds and inputs) is below 0.01, |log "
    "m1_nonzero| below 0.1, and var_nonzero below that of every random-weight baseline "
    "(kaiming-normal, xavier-normal, torch-default); contradicted if on some model IDInit's "
    "var_nonzero is at least a random baseline's; unclear otherwise"
)
TRAIN_RULE = (
    "per IDInit head variant: confirmed if IDInit's final held-out accuracy (median over seeds, "
    "a diverged run counts as 0.1) is at least the best baseline's minus 0.02; contradicted if "
    "it is more than 0.05 below the best baseline's; unclear in between"
)


def spectra_verdict(spec: dict[str, Any], random: Sequence[str]) -> dict[str, Any]:
    """The verdict of :data:`SPECTRA_RULE` and the last-block numbers it read.

    Example:
        >>> one = {"idinit": {"var_nonzero": [0.0, 1e-9], "m1_nonzero": [1.0, 1.0]},
        ...        "kaiming-normal": {"var_nonzero": [0.5, 2.0], "m1_nonzero": [3.0, 9.0]}}
        >>> spectra_verdict({"gpt2": one}, ["kaiming-normal"])["verdict"]
        'confirmed'
    """
    evidence, ok, bad = {}, True, False
    for model, schemes in spec.items():
        mine = schemes.get("idinit", {})
        if "var_nonzero" not in mine:
            return {"verdict": "unclear", "evidence": {model: "IDInit did not probe"}}
        v, m1 = mine["var_nonzero"][-1], mine["m1_nonzero"][-1]
        rand = {
            s: schemes[s]["var_nonzero"][-1] for s in random if "var_nonzero" in schemes.get(s, {})
        }
        lowest = min(rand.values(), default=math.inf)
        evidence[model] = {"idinit_var_nonzero": v, "idinit_m1_nonzero": m1, "random": rand}
        ok &= v < 0.01 and abs(math.log(m1)) < 0.1 and v < lowest
        bad |= v >= lowest
    return {
        "verdict": "contradicted" if bad else "confirmed" if ok else "unclear",
        "evidence": evidence,
    }


def train_verdict(trained: dict[str, Any], label: str) -> dict[str, Any]:
    """The verdict of :data:`TRAIN_RULE` for the IDInit variant ``label``.

    Example:
        >>> t = {"idinit (head=idi)": {"final_accuracy": 0.80}, "kaiming-normal":
        ...      {"final_accuracy": 0.81}, "fixup": {"final_accuracy": 0.7}}
        >>> train_verdict(t, "idinit (head=idi)")["verdict"]
        'confirmed'
    """
    mine = trained.get(label, {}).get("final_accuracy")
    base = {
        k: v["final_accuracy"]
        for k, v in trained.items()
        if not k.startswith("idinit") and "final_accuracy" in v
    }
    if mine is None or not base:
        return {"verdict": "unclear", "evidence": {"idinit": mine, "baselines": base}}
    best_name = max(base, key=base.get)
    best = base[best_name]
    verdict = (
        "confirmed" if mine >= best - 0.02 else "contradicted" if mine < best - 0.05 else "unclear"
    )
    return {
        "verdict": verdict,
        "evidence": {"idinit": mine, "best_baseline": best_name, "best": best},
    }
