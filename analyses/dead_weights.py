"""The last layer of a residual branch (claim D): IDIZ against exact zero, Fixup, ZerO and more.

IDInit's paper reports that nearly every weight trains under IDInit while Fixup leaves more than
half frozen (docs/idinit.md §10 D, unconfirmed). A ResNet-20 (width 16) trains on Fashion-MNIST
(32×32, the grey image in all 3 channels) from six starts: Fixup; Zero-γ with a zero last conv
(the stationary pair of docs/idinit.md §5); IDInit with ``residual_last="idiz"`` (the default)
and ``"zero"``; ReZero; ZerO. Measured per weight tensor: (i) the fraction of entries whose
gradient at step 1 (the first batch, at initialization) is exactly zero, and (ii) the fraction
whose value never changes over the first ``T`` steps (one epoch in the full mode, a few steps in
``--quick``), from the parameters before and after ``isokit.train.train``.

Run ``python analyses/dead_weights.py [--quick]``; docs/analyses/dead_weights.md explains the
figures and the verdict rules.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import torch
from common import main_guarded, start
from lib_dead_weights import figures

import isokit
from isokit.models import ResNet
from isokit.probe import encode
from isokit.train import TrainData, load_data, train
from isokit.train.loop import stream_seed

NAME = "dead_weights"
SCHEMA = "dead_weights.run/1"
GROUPS = ("stem", "branch first layer", "branch last layer", "classifier")


@dataclass(frozen=True)
class Setting:
    """One start: the model's arguments, the scheme and its options, and whether the last
    conv of every branch is then zeroed (the Zero-γ + zero-conv pair)."""

    key: str
    label: str
    scheme: str
    model: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    zero_last_conv: bool = False


SETTINGS = (
    Setting("fixup", "Fixup", "fixup", {"gate": "scalar"}),
    Setting(
        "zero-gamma-zero-conv",
        "Zero-γ + zero last conv",
        "zero-gamma",
        {"norm": "batch"},
        zero_last_conv=True,
    ),
    Setting("idinit-idiz", "IDInit, residual_last=idiz", "idinit", {}, {"residual_last": "idiz"}),
    Setting(
        "idinit-idiz-tile",
        "IDInit, idiz, contract=tile",
        "idinit",
        {},
        {"residual_last": "idiz", "contract": "tile"},
    ),
    Setting("idinit-zero", "IDInit, residual_last=zero", "idinit", {}, {"residual_last": "zero"}),
    Setting("rezero", "ReZero", "rezero", {"gate": "scalar"}),
    Setting("zero", "ZerO", "zero"),
)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The budgets a GPU user scales up."""
    add = parser.add_argument
    add("--steps", type=int, default=None, help="training steps T (default: one epoch; 5 quick)")
    add("--width", type=int, default=16, help="ResNet-20 first-stage width")
    add("--depth", type=int, default=20, help="ResNet depth (6n+2)")
    add("--batch-size", type=int, default=128)
    add("--lr", type=float, default=0.02, help="peak learning rate η (SGD with momentum 0.9)")
    add("--warmup", type=int, default=20, help="linear warm-up steps (at most T)")
    add("--eval-examples", type=int, default=None, help="held-out examples per evaluation")
    add("--threads", type=int, default=None, help="torch threads (default 1 quick, 2 full)")


def build(setting: Setting, args: argparse.Namespace, seed: int) -> torch.nn.Module:
    """The initialized ResNet of ``setting`` (built under ``seed``, on the CPU)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ResNet(depth=args.depth, width=args.width, **setting.model)
        isokit.init.apply(model, setting.scheme, seed=seed, **setting.options)
    if setting.zero_last_conv:
        modules = dict(model.named_modules())
        with torch.no_grad():
            for branch in model.residual_branches():
                torch.nn.init.zeros_(modules[branch.layers[-1]].weight)
    return model


def groups_of(model: torch.nn.Module) -> dict[str, str]:
    """The group of every weight tensor (a parameter of 2 or more dimensions)."""
    first = {b.layers[0] for b in model.residual_branches()}
    last = {b.layers[-1] for b in model.residual_branches()}
    out = {}
    for name, p in model.named_parameters():
        if p.ndim < 2:
            continue
        module = name.rsplit(".", 1)[0]
        if module in first:
            out[name] = "branch first layer"
        elif module in last:
            out[name] = "branch last layer"
        elif module.startswith("stem"):
            out[name] = "stem"
        elif module == "fc":
            out[name] = "classifier"
        else:
            out[name] = "shortcut"
    return out


def first_batch(data: TrainData, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch ``train`` uses for its first update: the start of the data stream's first
    permutation (docs/training.md §1)."""
    gen = torch.Generator().manual_seed(stream_seed(seed, 0))
    index = torch.randperm(len(data.train), generator=gen)[:batch_size]
    return data.train.inputs[index], data.train.targets[index]


def step_one_gradients(model, batch, names, device: str) -> dict[str, torch.Tensor]:
    """The gradient of every named parameter on the first batch, in train mode (a copy of the
    model, so the model itself is left untouched for training)."""
    import copy

    clone = copy.deepcopy(model).to(device).train()
    params = dict(clone.named_parameters())
    x, y = (t.to(device) for t in batch)
    loss = torch.nn.functional.cross_entropy(clone(x), y)
    grads = torch.autograd.grad(loss, [params[n] for n in names])
    return {n: g.detach().cpu() for n, g in zip(names, grads, strict=True)}


def measure(setting: Setting, args, data: TrainData, seed: int, steps: int, device: str) -> dict:
    """One start: the two fractions for every parameter, and the training run's summary."""
    model = build(setting, args, seed)
    names = [n for n, _ in model.named_parameters()]
    grads = step_one_gradients(model, first_batch(data, args.batch_size, seed), names, device)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = train(
        model,
        data,
        optimizer="sgd-momentum",
        lr=args.lr,
        momentum=0.9,
        batch_size=args.batch_size,
        steps=steps,
        warmup_steps=min(args.warmup, steps),
        seed=seed,
        eval_every=steps,
        eval_examples=args.eval_examples,
        device=device,
    )  # trains `model` in place (docs/training.md §1)
    after = {n: p.detach().cpu() for n, p in model.named_parameters()}
    groups = groups_of(model)
    params = []
    for n in names:
        params.append(
            {
                "name": n,
                "group": groups.get(n, "bias, gain or scalar"),
                "numel": before[n].numel(),
                "zero_grad": float((grads[n] == 0).double().mean()),
                "unmoved": float((after[n] == before[n]).double().mean()),
            }
        )
    return {
        "schema": SCHEMA,
        "setting": setting.key,
        "seed": seed,
        "steps": result.steps,
        "diverged_at": result.diverged_at,
        "final_accuracy": result.final_accuracy,
        "train_loss": [float(v) for v in result.loss],
        "effective_lr": result.effective_lr,
        "params": params,
    }


def summarize(params: list[dict], metric: str) -> dict[str, float]:
    """The fraction over all weight entries and per group, weighted by entries."""
    out = {}
    weights = [p for p in params if p["group"] != "bias, gain or scalar"]
    for name, rows in [("all weights", weights)] + [
        (g, [p for p in weights if p["group"] == g]) for g in GROUPS
    ]:
        total = sum(p["numel"] for p in rows)
        out[name] = sum(p[metric] * p["numel"] for p in rows) / total if total else float("nan")
    return out


def cached(run, setting: Setting, args, data, seed: int, steps: int) -> dict:
    """``measure``, or its stored result from an earlier run with the same settings."""
    spec = {
        "setting": setting.key,
        "seed": seed,
        "steps": steps,
        "n": len(data.train),
        **{k: getattr(args, k) for k in ("width", "depth", "batch_size", "lr", "warmup")},
        "eval_examples": args.eval_examples,
    }
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    path = run.sweep_dir("runs") / f"{setting.key}-s{seed}-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    record = measure(setting, args, data, seed, steps, run.device)
    isokit.write_atomic(path, json.dumps(encode(record), allow_nan=False) + "\n")
    return record


def verdicts(summary: dict[str, dict[str, dict[str, float]]]) -> tuple[dict, dict]:
    """Claim D on each metric, and the stationary pair; rules in the returned ``rules``."""
    out, rules = {}, {}
    for metric, text in (("zero_grad", "zero gradient at step 1"), ("unmoved", "never moved")):
        idiz = summary["idinit-idiz"][metric]["all weights"]
        fixup = summary["fixup"][metric]["all weights"]
        if idiz < 0.1 and fixup > 0.5:
            out[f"claim D ({text})"] = "confirmed"
        elif idiz >= 0.25 or fixup <= 0.5:
            out[f"claim D ({text})"] = "contradicted"
        else:
            out[f"claim D ({text})"] = "unclear"
        rules[f"claim D ({text})"] = (
            f"fraction of all weight entries with {text}, mean over seeds: confirmed if IDInit "
            "(idiz) < 0.1 and Fixup > 0.5; contradicted if IDInit >= 0.25 or Fixup <= 0.5; "
            f"unclear otherwise (measured IDInit {idiz:.3f}, Fixup {fixup:.3f})"
        )
    pair = summary["zero-gamma-zero-conv"]["unmoved"]
    frozen = min(pair["branch first layer"], pair["branch last layer"])
    out["the Zero-γ + zero-conv pair stays dead"] = "confirmed" if frozen == 1.0 else "contradicted"
    rules["the Zero-γ + zero-conv pair stays dead"] = (
        "confirmed if every entry of every branch's first and last conv never moved over the "
        f"T steps (fraction exactly 1), contradicted otherwise (measured {frozen:.4f})"
    )
    return out, rules


def main() -> None:
    run = start(NAME, __doc__, seeds=(0, 1), quick_seeds=(0,), options=add_flags)
    args = run.args
    torch.set_num_threads(args.threads or (1 if run.quick else 2))
    args.eval_examples = args.eval_examples or (200 if run.quick else 1000)
    if run.quick:
        steps = args.steps or 5
        data = load_data(
            "fashion-mnist",
            channels=3,
            limit=steps * args.batch_size,
            test_limit=args.eval_examples,
        )
    else:
        data = load_data("fashion-mnist", channels=3)
        steps = args.steps or -(-len(data.train) // args.batch_size)  # one epoch
    records = {
        s.key: [cached(run, s, args, data, seed, steps) for seed in run.seeds] for s in SETTINGS
    }
    summary = {}
    for key, recs in records.items():
        summary[key] = {
            metric: {
                g: sum(summarize(r["params"], metric)[g] for r in recs) / len(recs)
                for g in ("all weights", *GROUPS)
            }
            for metric in ("zero_grad", "unmoved")
        }
    labels = {s.key: s.label for s in SETTINGS}
    train_info = {
        "lr": args.lr,
        "momentum": 0.9,
        "effective_lr": args.lr / (1 - 0.9),
        "steps": steps,
        "batch_size": args.batch_size,
    }
    for metric, stem in (("zero_grad", "step1"), ("unmoved", "unmoved")):
        run.save_figure(figures.group_bars(run, summary, labels, metric, GROUPS, train_info), stem)
    verdict, rules = verdicts(summary)
    run.finish(
        {"summary": summary, "runs": records},
        verdict=verdict,
        verdict_rules=rules,
        settings={
            **train_info,
            "depth": args.depth,
            "width": args.width,
            "warmup_steps": min(args.warmup, steps),
            "n_train": len(data.train),
            "data": "fashion-mnist, 32x32, 3 equal channels",
            "device": run.device,
            "settings": {s.key: s.label for s in SETTINGS},
        },
    )


if __name__ == "__main__":
    main_guarded(main)
