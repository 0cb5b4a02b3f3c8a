"""Non-square layers (claim B): IDInit's padded identity against the zero-padded identity.

A ``D_0 → D_h`` first layer (``D_h > D_0``) starts either as ``eye_`` (the zero-padded identity:
hidden units ``D_0 … D_h−1`` start at zero) or as IDInit's padded identity (the identity repeated
down the rows). Three square hidden layers start at ``I`` and an IDI head contracts to 10 outputs
(truncated ``[I | 0]`` or tiled, the ``contract`` option). The network learns a random tanh
teacher with SGD and momentum. Measured: the Jacobian spectrum at initialization, and the rank of
each hidden layer's ``θ̂ = θ − I`` during training at tolerances 1e-3 and 1e-6 relative to
``σ_max`` plus its effective rank. The claim: with the padded identity ``θ̂`` reaches a rank
above ``D_0``, a bound that zero padding keeps; loosening raises it further.

Run ``python analyses/nonsquare.py [--quick]``; docs/analyses/nonsquare.md explains the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from common import main_guarded, start
from lib_nonsquare import figures

import isokit
from isokit.models import MLP
from isokit.probe import encode, profile, stats
from isokit.train import TrainData, load_data, train

NAME = "nonsquare"
ACTIVATIONS = ("linear", "relu")
FIRSTS = ("eye", "idi")  # the first layer: zero-padded identity, or IDInit's padded identity
LOOSES = ("strict", "tau", "all")  # IDInit's `loose` option (strict = None)
CONTRACTS = ("truncate", "tile")  # IDInit's `contract` option, for the 48 → 10 head
TOLERANCES = (1e-3, 1e-6)
OUT_FEATURES = 10
MOMENTUM = 0.9
SCHEMA = "nonsquare.run/1"


@dataclass(frozen=True)
class Variant:
    """One initialization of the network: activation, first layer, loosening, head rule."""

    activation: str
    first: str
    loose: str
    contract: str

    @property
    def key(self) -> str:
        return f"{self.activation}/{self.first}/{self.loose}/{self.contract}"

    @property
    def label(self) -> str:
        first = "zero-padded eye_" if self.first == "eye" else "padded IDI"
        return f"{first}, {'strict' if self.loose == 'strict' else 'loose ' + self.loose}"


@dataclass(frozen=True)
class Settings:
    """The budgets; every one is a flag, so an accelerator can scale them up."""

    in_features: int
    width: int
    hidden_layers: int
    steps: int
    checkpoints: tuple[int, ...]
    lr: float
    batch_size: int
    n_train: int
    probe_examples: int


def variants() -> list[Variant]:
    return [
        Variant(a, f, lo, c)
        for a in ACTIVATIONS
        for c in CONTRACTS
        for f in FIRSTS
        for lo in LOOSES
    ]


def build(variant: Variant, settings: Settings, seed: int) -> MLP:
    """The network under ``variant``: IDInit everywhere, then ``eye_`` on the first layer."""
    model = MLP(
        settings.in_features,
        settings.width,
        depth=settings.hidden_layers + 1,
        out_features=OUT_FEATURES,
        activation=variant.activation,
        bias=False,  # the claim is about weight matrices; a bias would add a rank-one path
    )
    loose = None if variant.loose == "strict" else variant.loose
    isokit.init.apply(model, "idinit", seed=seed, loose=loose, contract=variant.contract)
    if variant.first == "eye":
        isokit.init.eye_(model.fcs[0].weight)  # the first layer only: zero padding
    return model


def hidden_weights(model: MLP) -> list[torch.Tensor]:
    """The square hidden layers' weights (every layer after the first), float64 on the CPU."""
    return [fc.weight.detach().to("cpu", torch.float64).clone() for fc in model.fcs[1:]]


def residual_ranks(singular_values: Sequence[float]) -> dict[str, float]:
    """Rank of a matrix from its singular values at each tolerance relative to ``σ_max``, and
    its effective rank ``exp(−Σ p log p)``, ``p = s/Σs`` (0 for the zero matrix)."""
    s = np.sort(np.asarray(singular_values, dtype=np.float64))[::-1]
    if s.size == 0 or not s[0] > 0:
        return {**{f"rank@{t:g}": 0 for t in TOLERANCES}, "erank": 0.0}
    out: dict[str, float] = {f"rank@{t:g}": int(np.sum(s > t * s[0])) for t in TOLERANCES}
    out["erank"] = float(stats(s)["erank"])
    return out


def measure(weights: list[torch.Tensor], reference: list[torch.Tensor]) -> dict:
    """Singular values and ranks of ``weights − reference`` layer by layer."""
    svals = [torch.linalg.svdvals(w - r).tolist() for w, r in zip(weights, reference, strict=True)]
    ranks = [residual_ranks(s) for s in svals]
    return {"singular_values": svals, **{k: [r[k] for r in ranks] for k in ranks[0]}}


def run_variant(
    variant: Variant, seed: int, settings: Settings, data: TrainData, device: str
) -> dict:
    """Train ``variant`` to every checkpoint (a fresh run of that many steps: the trainer is
    deterministic, so it is the longer run's state at that step) and measure ``θ − I`` and
    ``θ − θ(0)`` there."""
    eye = [torch.eye(settings.width, dtype=torch.float64)] * settings.hidden_layers
    init = hidden_weights(build(variant, settings, seed))
    record: dict = {"schema": SCHEMA, "variant": asdict(variant), "seed": seed, "steps": []}
    record |= {"minus_identity": [], "minus_init": [], "train_loss": [], "test_loss": []}
    for steps in settings.checkpoints:
        model = build(variant, settings, seed)
        if steps > 0:
            result = train(
                model,
                data,
                optimizer="sgd-momentum",
                lr=settings.lr,
                momentum=MOMENTUM,
                batch_size=settings.batch_size,
                steps=steps,
                seed=seed,
                dtype="float64",
                log_every=max(1, steps // 20),
                eval_every=steps,
                device=device,
            )
            train_loss, test_loss = float(result.loss[-1]), result.final_loss
        else:
            train_loss = test_loss = math.nan
        weights = hidden_weights(model)
        record["steps"].append(steps)
        record["minus_identity"].append(measure(weights, eye))
        record["minus_init"].append(measure(weights, init))
        record["train_loss"].append(train_loss)
        record["test_loss"].append(test_loss)
    return record


def cached_run(variant: Variant, seed: int, settings: Settings, data, device: str, work) -> dict:
    """``run_variant`` through a file per run under ``--work``, so a stopped run resumes."""
    tag = json.dumps([asdict(settings), asdict(variant), seed, device], sort_keys=True)
    path = work / f"{variant.key.replace('/', '-')}-seed{seed}-{_digest(tag)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    record = run_variant(variant, seed, settings, data, device)
    isokit.write_atomic(path, json.dumps(encode(record)) + "\n")
    return record


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def init_spectrum(settings: Settings, data: TrainData, device: str) -> dict:
    """Singular values of the prefix Jacobians at initialization (linear, strict: the spectrum
    of the weight products), for each first layer and head rule, at the first and last taps."""
    x = data.test.inputs[: settings.probe_examples]
    out = {}
    for contract in CONTRACTS:
        for first in FIRSTS:
            model = build(Variant("linear", first, "strict", contract), settings, 0).to(device)
            prof = profile(model, x.to(device), method="exact")
            taps = {t.name: np.asarray(t.singular_values).mean(axis=0).tolist() for t in prof.taps}
            out[f"{first}/{contract}"] = {"acts.0": taps["acts.0"], "head": taps["head"]}
    return out


def headline(record: dict, which: str = "minus_identity", key: str = "rank@0.001") -> list:
    """The largest over the hidden layers of ``key``, at every checkpoint."""
    return [max(m[key]) for m in record[which]]


def summarize(records: list[dict]) -> dict:
    """Per variant: the final headline statistics per seed, and their curves over the steps."""
    out: dict = {}
    for rec in records:
        key = Variant(**rec["variant"]).key
        entry = out.setdefault(key, {"seeds": [], "steps": rec["steps"]})
        entry["seeds"].append(rec["seed"])
        for which in ("minus_identity", "minus_init"):
            for stat in [f"rank@{t:g}" for t in TOLERANCES] + ["erank"]:
                curve = headline(rec, which, stat)
                entry.setdefault(f"{which}/{stat}", []).append(curve[-1])
                entry.setdefault(f"{which}/{stat}/curve", []).append(curve)
        entry.setdefault("final_test_loss", []).append(rec["test_loss"][-1])
    return out


def verdicts(summary: dict, d0: int) -> dict:
    """The rules of docs/analyses/nonsquare.md, on the final rank at 1e-3 of ``θ − I``."""

    def ranks(act: str, first: str, loose: str, contract: str) -> list[int]:
        return summary[Variant(act, first, loose, contract).key]["minus_identity/rank@0.001"]

    out: dict = {}
    for c in CONTRACTS:
        zero = [r for a in ACTIVATIONS for r in ranks(a, "eye", "strict", c)]
        idi = {a: ranks(a, "idi", "strict", c) for a in ACTIVATIONS}
        if max(zero) <= d0 and all(min(v) > d0 for v in idi.values()):
            out[f"claim B, contract={c}"] = "confirmed"
        elif any(max(v) <= min(zero) for v in idi.values()):
            out[f"claim B, contract={c}"] = "contradicted"
        else:
            out[f"claim B, contract={c}"] = "unclear"
    for a in ACTIVATIONS:
        strict, loose = ranks(a, "idi", "strict", "truncate"), ranks(a, "idi", "tau", "truncate")
        verdict = "confirmed" if min(loose) > max(strict) else "unclear"
        out[f"loose (tau) above strict, {a}"] = (
            "contradicted" if max(loose) <= min(strict) else verdict
        )
    out["rule"] = (
        "claim B (per contract value), on the final rank at tolerance 1e-3 relative to "
        "sigma_max of theta - I, the largest over the hidden layers: confirmed if zero "
        "padding stays <= D_0 in every activation and seed and strict padded IDI exceeds "
        "D_0 in every activation and seed; contradicted if for some activation no seed of "
        "strict IDI exceeds the lowest zero-padding rank; unclear otherwise. 'loose above "
        "strict' (contract=truncate): confirmed if every seed of loose-tau exceeds every "
        "seed of strict, contradicted if none exceeds any, unclear otherwise."
    )
    return out


def reference_comparison(summary: dict) -> dict:
    """The float64 simulation's expected ranks at 1e-3 against what was measured (truncate)."""
    rows = {
        "zero padding, linear": ("linear/eye/strict/truncate", 16),
        "zero padding, relu": ("relu/eye/strict/truncate", 16),
        "strict IDI, linear": ("linear/idi/strict/truncate", 26),
        "strict IDI, relu": ("relu/idi/strict/truncate", 26),
        "loose (tau) IDI, relu": ("relu/idi/tau/truncate", 48),
    }
    return {
        name: {"expected": exp, "measured": summary[key]["minus_identity/rank@0.001"]}
        for name, (key, exp) in rows.items()
    }


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--in-features", type=int, default=16, help="D_0 (default 16)")
    parser.add_argument("--width", type=int, default=48, help="D_h (default 48)")
    parser.add_argument("--hidden-layers", type=int, default=3, help="square layers (3)")
    parser.add_argument("--steps", type=int, default=None, help="3000 (quick: 1000)")
    parser.add_argument("--lr", type=float, default=0.02, help="SGD learning rate (0.02)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (64)")
    parser.add_argument("--n-train", type=int, default=2048, help="training examples (2048)")


def settings_from(args: argparse.Namespace, quick: bool) -> Settings:
    steps = args.steps or (1000 if quick else 3000)
    marks = (0, 100, 300, 1000) if quick else (0, 30, 100, 300, 1000, 3000)
    return Settings(
        in_features=args.in_features,
        width=args.width,
        hidden_layers=args.hidden_layers,
        steps=steps,
        checkpoints=tuple(sorted({s for s in marks if s < steps} | {steps})),
        lr=args.lr,
        batch_size=args.batch_size,
        n_train=args.n_train,
        probe_examples=4,
    )


def main() -> None:
    run = start(NAME, __doc__, seeds=(0, 1, 2), quick_seeds=(0,), options=add_flags)
    if run.device == "cpu":
        torch.set_num_threads(1)  # 48-wide layers: one thread is fastest on a shared machine
    settings = settings_from(run.args, run.quick)
    data = load_data(
        "teacher-student",
        seed=0,
        n_train=settings.n_train,
        in_features=settings.in_features,
        out_features=OUT_FEATURES,
    )
    spectrum = init_spectrum(settings, data, run.device)
    records = []
    for i, variant in enumerate(variants()):
        for seed in run.seeds:
            records.append(cached_run(variant, seed, settings, data, run.device, run.work))
        print(f"{NAME}: {i + 1}/{len(variants())} {variant.key}", flush=True)
    summary = summarize(records)
    effective = settings.lr / (1 - MOMENTUM)
    figures.init_spectrum(run, spectrum, settings)
    figures.rank_curves(run, summary, settings, effective)
    figures.residual_spectra(run, records, settings)
    final_svals = {
        Variant(**r["variant"]).key: {
            "minus_identity": r["minus_identity"][-1]["singular_values"],
            "minus_init": r["minus_init"][-1]["singular_values"],
        }
        for r in records
        if r["seed"] == run.seeds[0]
    }
    numbers = {
        "init_spectrum": spectrum,
        "summary": summary,
        "reference": reference_comparison(summary),
        "final_singular_values": final_svals,
        "final_singular_values_seed": run.seeds[0],
    }
    run.finish(
        numbers,
        verdict=verdicts(summary, settings.in_features),
        settings={
            **asdict(settings),
            "optimizer": "sgd-momentum",
            "momentum": MOMENTUM,
            "effective_lr": effective,
            "data": "teacher-student (seed 0, hidden 64, out 10)",
            "dtype": "float64",
            "rank_statistic": "largest over the hidden layers",
        },
    )


if __name__ == "__main__":
    main_guarded(main)
