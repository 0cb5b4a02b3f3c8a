"""IDInit beyond its own models: Hugging Face BERT, GPT-2 and ViT under IDInit and the baselines.

Two sweeps through isokit.sweep. *Spectra*: BERT (post-norm), GPT-2 (pre-norm) and ViT
(pre-norm), built from small configs with random weights (never downloaded), each scheme's
input-output Jacobian from the embeddings' output to every block at initialization. *Training*:
a ViT classifier (isokit.models.hf.vit_classifier) on Fashion-MNIST under every scheme, IDInit
with its classifier head as the identity (default) and as zero (an uncertain point of the
method). BERT and GPT-2 are not trained: isokit.train feeds floating-point tensors, and token ids
are integers (no token data set is built here).
"""

from __future__ import annotations

import functools
import statistics
from typing import Any

import numpy as np
from common import main_guarded, start
from lib_hf_models import figures
from lib_hf_models.rule import SPECTRA_RULE, TRAIN_RULE, spectra_verdict, train_verdict

from isokit.sweep import load_sweep, parse_sweep, run_cell, run_sweep

NAME = "hf_models"
SCHEMES = [
    "idinit",
    "kaiming-normal",
    "xavier-normal",
    "torch-default",
    "fixup",
    "skipinit",
    "rezero",
    "t-fixup",
    "zero",
]
#: The random-weight baselines IDInit's spectra are compared with.
RANDOM = ("kaiming-normal", "xavier-normal", "torch-default")
STATS = ("m1_nonzero", "var_nonzero", "rank_fraction", "near")
FULL = {"layers": 8, "examples": 4, "steps": 600, "eval_examples": 2000, "vit_layers": 4}
QUICK = {"layers": 4, "examples": 2, "steps": 60, "eval_examples": 500, "vit_layers": 2}


def add_flags(parser) -> None:
    parser.add_argument("--layers", type=int, help="blocks of the spectra models")
    parser.add_argument("--hidden", type=int, default=32, help="hidden size of every model")
    parser.add_argument("--examples", type=int, help="probe inputs per cell")
    parser.add_argument("--vit-layers", type=int, help="blocks of the trained ViT")
    parser.add_argument("--steps", type=int, help="training steps of the ViT")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster workers (full mode)")


def spectra_config(s: dict[str, Any], seeds) -> dict[str, Any]:
    """BERT, GPT-2 and ViT as in analyses/configs/hf_models.toml, ``layers`` blocks each."""
    h, n = s["hidden"], s["layers"]
    tokens = {"inputs": "isokit.models.hf:token_ids", "input_kwargs": {"seq_len": 8}}
    return {
        "title": "HF models at initialization",
        "method": "exact",
        "dtype": "float64",
        "threads": 1,
        "inputs": {"examples": s["examples"]},
        "probes": {"profile": True, "signal": False},
        "models": [
            {
                "label": "bert",
                "factory": "isokit.models.hf:bert",
                "kwargs": {
                    "hidden_size": h,
                    "num_hidden_layers": n,
                    "num_attention_heads": 2,
                    "intermediate_size": 2 * h,
                },
                **tokens,
                "start": "embeddings",
                "taps": "encoder.layer.*",
            },
            {
                "label": "gpt2",
                "factory": "isokit.models.hf:gpt2",
                "kwargs": {"n_embd": h, "n_layer": n, "n_head": 2},
                **tokens,
                "start": "drop",
                "taps": "h.*",
            },
            {
                "label": "vit",
                "factory": "isokit.models.hf:vit",
                "kwargs": {
                    "image_size": 16,
                    "patch_size": 4,
                    "hidden_size": h,
                    "num_hidden_layers": n,
                    "num_attention_heads": 2,
                    "intermediate_size": 2 * h,
                },
                "input_shape": [3, 16, 16],
                "start": "embeddings",
                "taps": "layers.*",
            },
        ],
        "sweep": {"schemes": SCHEMES, "seeds": list(seeds)},
    }


def train_config(s: dict[str, Any], seeds) -> dict[str, Any]:
    """The ViT classifier on Fashion-MNIST (32×32, one channel, 8×8 patches), IDInit's head
    swept over ``idi`` and ``zero``."""
    steps = s["steps"]
    return {
        "title": "HF ViT on Fashion-MNIST",
        # From 1024 pixels an exact Jacobian costs seconds a cell; a few Lanczos probes suffice
        # here (the spectra of the analysis are the other sweep's).
        "method": "lanczos",
        "method_options": {"n_probes": 4, "lanczos_steps": 16},
        "dtype": "float64",
        "threads": 1,
        "inputs": {"examples": 1},
        "probes": {"profile": True, "signal": False},
        "models": [
            {
                "label": "vit-classifier",
                "factory": "isokit.models.hf:vit_classifier",
                "kwargs": {
                    "image_size": 32,
                    "patch_size": 8,
                    "num_channels": 1,
                    "hidden_size": s["hidden"],
                    "num_hidden_layers": s["vit_layers"],
                    "num_attention_heads": 2,
                    "intermediate_size": 2 * s["hidden"],
                },
                "input_shape": [1, 32, 32],
                "taps": "model.vit.layers.*",
            }
        ],
        "train": {
            "data": "fashion-mnist",
            "data_options": {"pad_to": 32, "test_limit": s["eval_examples"]},
            "optimizer": "adam",
            "lr": s["lr"],
            "batch_size": 128,
            "steps": steps,
            "warmup_steps": max(1, steps // 10),
            "eval_every": max(1, steps // 6),
            "eval_examples": s["eval_examples"],
            "target_accuracy": 0.7,
            "probe_examples": 1,
        },
        "sweep": {"schemes": SCHEMES, "option.head": ["idi", "zero"], "seeds": list(seeds)},
    }


def label_of(axes: dict[str, Any]) -> str:
    """A scheme's label on the figures: IDInit's head variant is part of it."""
    head = axes.get("option.head")
    return axes["scheme"] if head is None else f"{axes['scheme']} (head={head})"


def spectra(sweep) -> dict[str, Any]:
    """Per model and scheme: the status, and per block the median over seeds and inputs of
    each statistic of :data:`STATS`."""
    out: dict[str, dict[str, Any]] = {}
    for c in sweep.results:
        entry = out.setdefault(c.axes["model"], {}).setdefault(
            c.axes["scheme"], {"status": c.status, "runs": []}
        )
        if c.status == "ok":
            entry["runs"].append(c.record.profile)
        else:
            entry["status"] = c.status
            entry["message"] = (c.error or {}).get("message") or (
                c.record.message if c.record else ""
            )
    for schemes in out.values():
        for entry in schemes.values():
            runs = entry.pop("runs")
            if not runs:
                continue
            entry["taps"] = runs[0].names
            for stat in STATS:
                rows = np.concatenate([p.stat(stat, None) for p in runs], axis=1)
                entry[stat] = np.median(rows, axis=1).tolist()
    return out


def training(sweep) -> dict[str, Any]:
    """Per scheme label: the final held-out accuracy (median over seeds; a diverged run counts
    as chance), steps to 70 %, and the held-out accuracy curve of each seed."""
    out: dict[str, dict[str, Any]] = {}
    for c in sweep.results:
        e = out.setdefault(label_of(c.axes), {"status": c.status, "seeds": []})
        if c.status != "ok":
            e["status"] = c.status
            e["message"] = (c.error or {}).get("message") or (c.record.message if c.record else "")
            continue
        t = c.record.train
        e["seeds"].append(
            {
                "seed": c.axes["seed"],
                "final_accuracy": 0.1 if t.diverged else t.final_accuracy,
                "diverged": t.diverged,
                "steps_to_target": t.steps_to_target,
                "eval_step": t.eval_step.tolist(),
                "eval_accuracy": t.eval_accuracy.tolist(),
                "lr": t.options.lr,
                "effective_lr": t.effective_lr,
                "wall_time_s": t.wall_time_s,
            }
        )
    for e in out.values():
        if e["seeds"]:
            e["final_accuracy"] = statistics.median(s["final_accuracy"] for s in e["seeds"])
    return out


def run_both(run, settings) -> tuple[Any, Any, dict[str, float]]:
    """Both sweeps, resumable, serially in --quick and on a LocalCluster otherwise."""
    task = functools.partial(run_cell, device=run.device)
    times = {}
    results = []
    for label, cfg in (
        ("spectra", spectra_config(settings, run.seeds)),
        ("train", train_config(settings, run.seeds)),
    ):
        grid = parse_sweep(cfg, source=f"{NAME}:{label}")
        where = run.sweep_dir(label)
        if run.quick:
            summary = run_sweep(grid, where, serial=True, resume=True, quiet=True, task=task)
        else:
            summary = run_sweep(
                grid, where, workers=run.args.workers, resume=True, quiet=False, task=task
            )
        print(summary.describe())
        times[label] = summary.elapsed_s
        times[f"{label}_cells"] = len(grid.cells)
        results.append(load_sweep(where))
    return results[0], results[1], times


def main() -> None:
    run = start(NAME, __doc__, seeds=(0, 1, 2), quick_seeds=(0,), options=add_flags)
    a = run.args
    base = QUICK if run.quick else FULL
    settings = {
        "layers": a.layers or base["layers"],
        "hidden": a.hidden,
        "examples": a.examples or base["examples"],
        "vit_layers": a.vit_layers or base["vit_layers"],
        "steps": a.steps or base["steps"],
        "eval_examples": base["eval_examples"],
        "lr": a.lr,
        "schemes": SCHEMES,
    }
    spec_sweep, train_sweep, times = run_both(run, settings)
    spec = spectra(spec_sweep)
    trained = training(train_sweep)
    for stat, stem, what in (
        ("var_nonzero", "var", "var of the non-zero λ = s²"),
        ("m1_nonzero", "m1", "mean non-zero λ = s²"),
    ):
        fig = run.new_figure(12, 4.2)
        figures.spectra_figure(fig, spec, stat, RANDOM, what, settings["hidden"])
        run.save_figure(fig, f"spectra_{stem}")
    fig = run.new_figure(7.5, 4.8)
    figures.training_figure(fig, trained, settings)
    run.save_figure(fig, "training")
    sv = spectra_verdict(spec, RANDOM)
    tv = {head: train_verdict(trained, f"idinit (head={head})") for head in ("idi", "zero")}
    numbers = {
        "spectra": spec,
        "training": trained,
        "not_trained": {
            "bert": "isokit.train feeds floating-point inputs; BERT reads integer token ids",
            "gpt2": "isokit.train feeds floating-point inputs; GPT-2 reads integer token ids",
        },
        "sweep_elapsed_s": times,
    }
    run.finish(
        numbers,
        verdict={
            "IDInit keeps HF Transformer blocks near-isometric at init": sv["verdict"],
            "spectra_rule": SPECTRA_RULE,
            "spectra_evidence": sv["evidence"],
            "IDInit trains the HF ViT at least as well as the baselines": {
                f"head={h}": v["verdict"] for h, v in tv.items()
            },
            "train_rule": TRAIN_RULE,
            "train_evidence": {f"head={h}": v["evidence"] for h, v in tv.items()},
        },
        settings=settings,
    )


if __name__ == "__main__":
    main_guarded(main)
