"""The momentum toy (claim C): identity initialization fails on the target −I under full-batch
gradient descent, and momentum or minibatch noise repairs it.

A three-layer linear network with 10×10 weights, started at the identity by IDInit, learns
``y = −x`` on 2000 Gaussian inputs (``linear-negative-identity``). Runs: full-batch GD (with and
without IDInit's loosening noise), GD with momentum 0.9, SGD with batches of 200 (every seed),
and the learning-rate controls: GD at lr 0.5 and at lr 1.0 = 0.1/(1−0.9), the effective step of
the momentum run, and the loss averaged over the outputs too (the trainer's loss sums them, so
this is lr ÷ 10). Every curve carries η and η/(1−β). Measured per run: the loss curve, whether
it diverged, and the product ``W₃W₂W₁`` in each eigendirection of the sample covariance.

Run ``python analyses/momentum_toy.py [--quick]``; docs/analyses/momentum_toy.md explains it.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

import numpy as np
import torch
from common import main_guarded, start
from lib_momentum_toy import figures

import isokit
from isokit.models import MLP
from isokit.train import TrainData, load_data, train

NAME = "momentum_toy"
DEPTH = 3
BETA = 0.9
CONVERGED = 1e-8  # a final training loss below this has converged
LOG_EVERY = 5  # the loss every 5th step (and the last) keeps the JSON small
CROSSED = -0.5  # an eigendirection whose product value fell below this has turned around


@dataclass(frozen=True)
class Case:
    """One training run of the toy."""

    name: str
    label: str
    optimizer: str  # "sgd" or "sgd-momentum"
    lr: float
    batch: int | None  # None: full batch
    loose: str | None = "tau"  # IDInit's loosening (the recipe's default)
    n_train: int | None = None  # None: the default data set
    seeded: bool = False  # minibatches: one run per seed

    @property
    def effective_lr(self) -> float:
        return self.lr / (1 - BETA) if self.optimizer == "sgd-momentum" else self.lr


def cases(lr: float, batch: int, full: bool, n_train: int) -> list[Case]:
    """The runs of the docstring; the full mode adds full-batch GD on twice the data."""
    out = [
        Case("gd", "GD", "sgd", lr, None),
        Case("gd_strict", "GD, strict IDInit (no loosening)", "sgd", lr, None, loose=None),
        Case("gd_momentum", f"GD + momentum {BETA:g}", "sgd-momentum", lr, None),
        Case("sgd", f"SGD, batch {batch}", "sgd", lr, batch, seeded=True),
        Case("gd_lr_half", "control: GD", "sgd", 5 * lr, None),
        Case("gd_lr_effective", "control: GD at η/(1−β)", "sgd", lr / (1 - BETA), None),
        Case(
            "sgd_mean",
            f"SGD, batch {batch}, loss mean over outputs",
            "sgd",
            lr / 10,
            batch,
            seeded=True,
        ),
        Case(
            "gd_momentum_mean",
            "GD + momentum, loss mean over outputs",
            "sgd-momentum",
            lr / 10,
            None,
        ),
    ]
    if full:
        out.append(Case("gd_n2x", f"GD, N = {2 * n_train}", "sgd", lr, None, n_train=2 * n_train))
    return out


def product(model: MLP) -> torch.Tensor:
    """``W₃W₂W₁`` in float64 on the CPU."""
    p = torch.eye(model.fcs[0].weight.shape[1], dtype=torch.float64)
    for fc in model.fcs:
        p = fc.weight.detach().to("cpu", torch.float64) @ p
    return p


def directions(data: TrainData) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors of the sample covariance ``Σ = XᵀX/N``."""
    x = data.train.inputs.to(torch.float64)
    lam, vec = torch.linalg.eigh(x.T @ x / len(x))
    return lam.numpy(), vec.numpy()


def direction_values(p: np.ndarray, vec: np.ndarray) -> np.ndarray:
    """``v_kᵀ P v_k`` per eigendirection: ``w³`` of the scalar dynamics (1 at the start, −1 at
    the solution, 0 at the saddle)."""
    return np.einsum("ik,ij,jk->k", vec, p, vec)


def scalar_losses(lam: np.ndarray, lr: float, steps: int) -> np.ndarray:
    """Full-batch GD as the scalar recursion ``w ← w − ηλw²(w³ + 1)`` of each direction, with
    loss ``½ Σ_k λ_k (w_k³ + 1)²`` (docs/training.md §5)."""
    w, out = np.ones_like(lam), np.empty(steps)
    for t in range(steps):
        out[t] = 0.5 * np.sum(lam * (w**3 + 1) ** 2)
        w = w - lr * lam * w**2 * (w**3 + 1)
    return out


def run_case(case: Case, seed: int, data: TrainData, steps: int, device: str) -> dict:
    """Train one run and measure it."""
    model = MLP(
        data.train.inputs.shape[1],
        data.train.inputs.shape[1],
        depth=DEPTH,
        activation="linear",
        bias=False,
    )
    isokit.init.apply(model, "idinit", seed=0, loose=case.loose)
    result = train(
        model,
        data,
        optimizer=case.optimizer,
        lr=case.lr,
        momentum=BETA,
        batch_size=case.batch or data.train.inputs.shape[0],
        steps=steps,
        seed=seed,
        dtype="float64",
        log_every=LOG_EVERY,
        device=device,
    )
    lam, vec = directions(data)
    values = direction_values(product(model).numpy(), vec)
    finite = bool(np.isfinite(values).all())
    loss = np.asarray(result.loss, dtype=float)
    return {
        "case": case.name,
        "seed": seed,
        "lr": case.lr,
        "effective_lr": result.effective_lr,
        "n_train": int(data.train.inputs.shape[0]),
        "diverged_at": result.diverged_at,
        "final_train_loss": float(loss[-1]),
        "final_test_loss": result.final_loss,
        "half_trace": 0.5 * float(lam.sum()),
        "eigenvalues": lam.tolist(),
        "direction_values": values.tolist() if finite else None,
        "crossed": int(np.sum(values < CROSSED)) if finite else None,
        "at_saddle": int(np.sum(np.abs(values) < 0.1)) if finite else None,
        "step": np.asarray(result.step).tolist(),
        "loss": loss.tolist(),
        "wall_time_s": result.wall_time_s,
    }


def verdicts(runs: dict[str, list[dict]], d: int) -> dict:
    """The rules of docs/analyses/momentum_toy.md."""

    def final(name: str) -> list[float]:
        return [r["final_train_loss"] for r in runs[name]]

    gd = [r for name in ("gd", "gd_strict") for r in runs[name]]
    stalls = all(abs(r["final_train_loss"] - r["half_trace"]) < 0.1 * r["half_trace"] for r in gd)
    momentum = all(v < CONVERGED for v in final("gd_momentum"))
    sgd = all(v < CONVERGED for v in final("sgd"))
    if stalls and momentum and sgd:
        claim = "confirmed"
    elif any(r["final_train_loss"] < 1e-3 for r in gd) or not (
        momentum or any(v < CONVERGED for v in final("sgd"))
    ):
        claim = "contradicted"
    else:
        claim = "unclear"
    effective = runs["gd_lr_effective"][0]
    if effective["diverged_at"] is not None or effective["final_train_loss"] > 1e-3:
        not_step = "confirmed"
    else:
        not_step = "contradicted" if effective["final_train_loss"] < CONVERGED else "unclear"
    crossed = runs["gd_lr_half"][0]["crossed"]
    some = "unclear" if crossed is None else ("confirmed" if 0 < crossed < d else "contradicted")
    mean = final("sgd_mean")
    if all(v > 1e-3 for v in mean):
        scale = "confirmed"
    else:
        scale = "contradicted" if all(v < CONVERGED for v in mean) else "unclear"
    matched = final("gd_momentum_mean")[0]
    if matched < CONVERGED:
        same_step = "confirmed"
    else:
        same_step = "contradicted" if matched > 1e-3 else "unclear"
    return {
        "claim C": claim,
        "momentum is more than its effective step": not_step,
        "momentum converges at GD's effective step": same_step,
        "GD at lr 0.5 turns only some directions": some,
        "SGD's repair needs the summed loss's step size": scale,
        "rule": (
            "claim C: confirmed if full-batch GD (loose and strict IDInit) ends within 10% of "
            "half the trace of the sample covariance (the loss at output 0), GD + momentum 0.9 "
            f"ends below {CONVERGED:g} and every SGD seed (batch 200) ends below {CONVERGED:g}; "
            "contradicted if GD ends below 1e-3, or neither momentum nor any SGD seed converges; "
            "unclear otherwise. 'more than its effective step': confirmed if GD at lr/(1-beta) "
            "diverges or ends above 1e-3, contradicted if it converges. 'only some directions': "
            f"confirmed if at lr 0.5 between 1 and d-1 eigendirections end below {CROSSED:g}. "
            "'at GD's effective step': confirmed if GD + momentum at lr/10 (effective step "
            f"equal to GD's lr) ends below {CONVERGED:g}, contradicted if above 1e-3. "
            "'needs the summed loss's step size': confirmed if every SGD seed at lr/10 ends "
            "above 1e-3, contradicted if every one converges."
        ),
    }


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=3000, help="updates per run (3000)")
    parser.add_argument("--lr", type=float, default=0.1, help="base learning rate η (0.1)")
    parser.add_argument("--batch-size", type=int, default=200, help="SGD batch (200)")
    parser.add_argument("--dim", type=int, default=10, help="d, the width (10)")
    parser.add_argument("--n-train", type=int, default=2000, help="training examples (2000)")


def main() -> None:
    run = start(NAME, __doc__, seeds=(0, 1, 2), quick_seeds=(0,), options=add_flags)
    if run.device == "cpu":
        torch.set_num_threads(1)  # 10×10 layers: one thread is ~20× faster on 2 busy cores
    args = run.args
    sets: dict[int, TrainData] = {}
    runs: dict[str, list[dict]] = {}
    all_cases = cases(args.lr, args.batch_size, not run.quick, args.n_train)
    for case in all_cases:
        n = case.n_train or args.n_train
        if n not in sets:
            sets[n] = load_data("linear-negative-identity", seed=0, n_train=n, dim=args.dim)
        for seed in run.seeds if case.seeded else run.seeds[:1]:
            runs.setdefault(case.name, []).append(
                run_case(case, seed, sets[n], args.steps, run.device)
            )
        print(f"{NAME}: {case.name} done", flush=True)
    lam, _ = directions(sets[args.n_train])
    theory = scalar_losses(lam, args.lr, args.steps)
    labels = {c.name: asdict(c) | {"effective_lr": c.effective_lr} for c in all_cases}
    figures.loss_curves(run, all_cases, runs, theory, BETA)
    figures.direction_plot(run, all_cases, runs, CROSSED)
    gd_step, gd_loss = np.asarray(runs["gd"][0]["step"]), np.asarray(runs["gd"][0]["loss"])
    early = gd_step < 1000
    numbers = {
        "cases": labels,
        "runs": runs,
        "theory_gd_step": gd_step.tolist(),
        "theory_gd_loss": theory[gd_step].tolist(),
        "gd_vs_scalar_recursion_max_rel_dev_first_1000": float(
            np.max(np.abs(gd_loss[early] - theory[gd_step[early]]) / theory[gd_step[early]])
        ),
    }
    run.finish(
        numbers,
        verdict=verdicts(runs, args.dim),
        settings={
            "steps": args.steps,
            "lr": args.lr,
            "momentum": BETA,
            "batch_size": args.batch_size,
            "dim": args.dim,
            "depth": DEPTH,
            "n_train": args.n_train,
            "data": "linear-negative-identity, data seed 0",
            "init": "idinit (seed 0), loose='tau' unless the case says strict",
            "dtype": "float64",
            "loss": "1/2 mean over examples of the squared error summed over outputs",
        },
    )


if __name__ == "__main__":
    main_guarded(main)
