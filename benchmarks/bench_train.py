"""Benchmark of ``isokit.train.train`` against a hand-written PyTorch loop doing the same work.

Run ``python benchmarks/bench_train.py [--quick] [--threads 2] [--repeats 5] [--mlp-repeats 15]
[--resnet-steps 30] [--mlp-steps 300] [--json out.json]``.

Cases (each skipped with a message when its data is not available):

- ``resnet``: ``ResNet(depth=20, width=16, norm="none", in_channels=1)`` initialized with
  ``idinit`` on Fashion-MNIST padded to 32×32 (``load_data("fashion-mnist", limit=...)``), batch
  128, ``--resnet-steps`` steps (30), ``sgd-momentum``.
- ``mlp``: ``MLP(16, 64, depth=4, out_features=10, activation="tanh")`` on the teacher–student
  regression, batch 128, ``--mlp-steps`` steps (300), ``sgd-momentum``: a small model, where the
  per-step Python overhead of the loop matters most.

Variants, run interleaved (``A B C D A B C D ...`` after one warm-up round) so that a change of
load on a shared machine hits all of them; each time is the wall clock of the whole call:

- **hand**: a plain loop. Same model (a fresh copy of the same initial weights for every run),
  the same data tensors in memory, the same optimizer and lr, the same number of steps, batches
  indexed out of the tensors by a seeded ``randperm`` per epoch (the same seed as isokit's data
  stream, so both see the same batches), ``loss.item()`` and the batch accuracy every step, and
  the two held-out evaluations isokit makes (step 0 and the end, ``--eval-examples`` examples);
  subnormal floats flushed to zero, as isokit's trainer does on the CPU.
- **isokit**: ``train(model, data, ...)`` with checkpoints off, ``grad_norms=False`` and
  ``eval_every=steps`` (evaluations at step 0 and the end only), in float32.
- **grad-norms**: the same with ``grad_norms=True`` (a tensor hook per tap, every step logged).
- **evals**: the same with the default evaluation schedule (about ten held-out evaluations per
  run on ``--eval-examples`` examples); the difference to **isokit** divided by the extra
  evaluations is the cost of one evaluation, which is also timed alone in every round.

Every round also times one training-mode forward pass of a batch, under the same load.

It prints the medians, the ratio isokit/hand (target < 1.10), the largest difference between
the two loss curves (0 when both did the same arithmetic), the extra time per step of the
gradient-norm hooks against one training forward pass of a batch (target: at most one extra
hook pass, i.e. extra ≤ one forward), and the cost of an evaluation. This is a benchmark, not a
timed test; ``--quick`` is a smoke run of well under a minute.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import isokit  # noqa: E402
from isokit.models import MLP, ResNet  # noqa: E402
from isokit.train import DatasetUnavailableError, Split, TrainData, load_data, train  # noqa: E402
from isokit.train.loop import DATA_STREAM, stream_seed  # noqa: E402

SEED = 0
BATCH = 128
VARIANTS = ("hand", "isokit", "grad-norms", "evals")


@dataclass
class Case:
    name: str
    make_model: Callable[[], nn.Module]
    data: TrainData
    steps: int
    lr: float
    momentum: float = 0.9


def _float32(data: TrainData) -> TrainData:
    """The same data with float32 inputs (and real targets), so neither loop converts them."""

    def cast(split: Split) -> Split:
        y = split.targets
        return Split(
            inputs=split.inputs.to(torch.float32).contiguous(),
            targets=y.to(torch.float32) if y.is_floating_point() else y,
        )

    return TrainData(
        name=data.name,
        task=data.task,
        train=cast(data.train),
        test=cast(data.test),
        num_classes=data.num_classes,
        info=dict(data.info),
    )


def _initialized(model: nn.Module, scheme: str) -> Callable[[], nn.Module]:
    """A factory of fresh float32 copies of one initialized model (same weights every run)."""
    initial = isokit.init.apply(model, scheme, seed=SEED).to(torch.float32)
    return lambda: copy.deepcopy(initial)


def resnet_case(steps: int, eval_examples: int) -> Case | str:
    try:
        data = load_data("fashion-mnist", seed=SEED, limit=steps * BATCH, test_limit=eval_examples)
    except DatasetUnavailableError as exc:
        return f"resnet: skipped, Fashion-MNIST is not available ({exc})"
    model = ResNet(depth=20, width=16, norm="none", in_channels=1)
    return Case("resnet", _initialized(model, "idinit"), _float32(data), steps, lr=0.01)


def mlp_case(steps: int, eval_examples: int) -> Case:
    data = load_data("teacher-student", seed=SEED, n_train=2048, n_test=eval_examples)
    model = MLP(16, 64, depth=4, out_features=10, activation="tanh")
    return Case("mlp", _initialized(model, "idinit"), _float32(data), steps, lr=0.05)


def _half_squared_error(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    diff = output.reshape(output.shape[0], -1) - target.reshape(target.shape[0], -1)
    return 0.5 * diff.square().sum(dim=1).mean()


@torch.no_grad()
def _hand_evaluate(model: nn.Module, split: Split, loss_fn, classification: bool) -> tuple:
    model.eval()
    total, correct, chunk = 0.0, 0.0, max(BATCH, 256)
    for start in range(0, len(split), chunk):
        x, y = split.inputs[start : start + chunk], split.targets[start : start + chunk]
        out = model(x)
        total += float(loss_fn(out, y)) * x.shape[0]
        if classification:
            correct += float((out.argmax(dim=-1) == y).sum())
    model.train()
    return total / len(split), correct / len(split)


def hand_loop(case: Case, model: nn.Module) -> list[float]:
    """The plain loop (module docstring); returns the loss per step.

    Subnormal floats are flushed to zero during the run, as isokit's trainer does on the CPU:
    without it the two loops differ in the last bits and, where activations collapse, in speed.
    """
    flushing = torch.set_flush_denormal(True)
    try:
        return _hand_steps(case, model)
    finally:
        if flushing:
            torch.set_flush_denormal(False)


def _hand_steps(case: Case, model: nn.Module) -> list[float]:
    data = case.data
    classification = data.task == "classification"
    loss_fn = functional.cross_entropy if classification else _half_squared_error
    x_all, y_all = data.train.inputs, data.train.targets
    n = x_all.shape[0]
    per_epoch = math.ceil(n / BATCH)
    gen = torch.Generator().manual_seed(stream_seed(SEED, DATA_STREAM))
    optimizer = torch.optim.SGD(model.parameters(), lr=case.lr, momentum=case.momentum)
    losses, accuracies = [], []
    model.train()
    _hand_evaluate(model, data.test, loss_fn, classification)
    order = None
    for step in range(case.steps):
        within = step % per_epoch
        if within == 0 or order is None:
            order = torch.randperm(n, generator=gen)
        index = order[within * BATCH : (within + 1) * BATCH]
        x, y = x_all[index], y_all[index]
        output = model(x)
        loss = loss_fn(output, y)
        losses.append(loss.item())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if classification:
            accuracies.append(float((output.detach().argmax(dim=-1) == y).double().mean()))
        optimizer.step()
    _hand_evaluate(model, data.test, loss_fn, classification)
    return losses


def isokit_loop(case: Case, model: nn.Module, variant: str) -> list[float]:
    options = {
        "optimizer": "sgd-momentum",
        "lr": case.lr,
        "momentum": case.momentum,
        "batch_size": BATCH,
        "steps": case.steps,
        "seed": SEED,
        "grad_norms": variant == "grad-norms",
        "eval_every": None if variant == "evals" else case.steps,
    }
    result = train(model, case.data, **options)
    if result.diverged:
        raise RuntimeError(f"{case.name}: diverged at step {result.diverged_at}; lower the lr")
    return result.loss.tolist()


def run_variant(case: Case, variant: str) -> tuple[float, float, list[float]]:
    """Wall-clock and process CPU seconds of one run, and its loss curve."""
    model = case.make_model()
    wall, cpu = time.perf_counter(), time.process_time()
    losses = hand_loop(case, model) if variant == "hand" else isokit_loop(case, model, variant)
    return time.perf_counter() - wall, time.process_time() - cpu, losses


def forward_time(case: Case, repeats: int = 5) -> float:
    """Median time of one training-mode forward pass of a batch, with autograd recording."""
    model = case.make_model().train()
    x = case.data.train.inputs[:BATCH]
    times = []
    for _ in range(repeats + 2):
        t0 = time.perf_counter()
        out = model(x)
        out.sum().item()  # the same sync a loss.item() gives
        times.append(time.perf_counter() - t0)
        del out
    return statistics.median(times[2:])


def evaluation_time(case: Case, repeats: int = 3) -> float:
    """Median time of one held-out evaluation, done as isokit does it (eval mode, no grad)."""
    model = case.make_model()
    classification = case.data.task == "classification"
    loss_fn = functional.cross_entropy if classification else _half_squared_error
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _hand_evaluate(model, case.data.test, loss_fn, classification)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _derived(times: dict[str, list[float]], steps: int, forward_s: float) -> dict:
    """Medians and the ratios of the module docstring, from one clock's times per variant."""
    med = {v: statistics.median(t) for v, t in times.items()}
    paired = [a / b for a, b in zip(times["isokit"], times["hand"], strict=True)]
    extra_step = (med["grad-norms"] - med["isokit"]) / steps
    extra_evals = len(_eval_steps(steps)) - 2
    per_eval = (med["evals"] - med["isokit"]) / extra_evals
    return {
        "times_s": times,
        "median_s": med,
        "ratio_isokit_hand": med["isokit"] / med["hand"],
        "ratio_paired_median": statistics.median(paired),
        "ratio_of_minima": min(times["isokit"]) / min(times["hand"]),
        "hand_step_s": med["hand"] / steps,
        "grad_norms_ratio": med["grad-norms"] / med["isokit"],
        "grad_norms_extra_step_s": extra_step,
        "grad_norms_extra_over_forward": extra_step / forward_s,
        "eval_s": per_eval,
        "eval_over_step": per_eval / (med["hand"] / steps),
        "evals_share": (med["evals"] - med["isokit"]) / med["evals"],
    }


def bench_case(case: Case, repeats: int) -> dict:
    wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    curves: dict[str, list[float]] = {}
    forwards: list[float] = []
    evaluations: list[float] = []
    for r in range(repeats + 1):  # round 0 is the warm-up
        this_round = {}
        for variant in VARIANTS:
            this_round[variant], cpu_s, losses = run_variant(case, variant)
            curves.setdefault(variant, losses)
            if r:
                wall[variant].append(this_round[variant])
                cpu[variant].append(cpu_s)
        if r:  # in every round, so that it sees the same load as the runs
            forwards.append(forward_time(case))
            evaluations.append(evaluation_time(case))
        print(
            f"  {case.name} round {r}{' (warm-up)' if r == 0 else ''}: "
            + ", ".join(f"{v} {t:.3f} s" for v, t in this_round.items()),
            flush=True,
        )
    forward_s = statistics.median(forwards)
    return {
        "case": case.name,
        "steps": case.steps,
        "batch_size": BATCH,
        "eval_examples": len(case.data.test),
        "evals_default": len(_eval_steps(case.steps)),
        "forward_s": forward_s,
        "evaluation_s": statistics.median(evaluations),
        "max_loss_diff": max(
            abs(a - b) for a, b in zip(curves["hand"], curves["isokit"], strict=True)
        ),
        "wall": _derived(wall, case.steps, forward_s),
        "cpu": _derived(cpu, case.steps, forward_s),
    }


def _eval_steps(steps: int) -> list[int]:
    from isokit.train import TrainOptions

    return TrainOptions(steps=steps).eval_steps(steps)


def print_summary(row: dict) -> None:
    ms, w, c = 1e3, row["wall"], row["cpu"]
    med = w["median_s"]
    print(
        f"{row['case']}: {row['steps']} steps, batch {row['batch_size']}\n"
        f"  medians (wall): hand {med['hand']:.3f} s, isokit {med['isokit']:.3f} s, "
        f"grad-norms {med['grad-norms']:.3f} s, evals {med['evals']:.3f} s\n"
        f"  isokit/hand {w['ratio_isokit_hand']:.3f} (target < 1.10; median of the per-round "
        f"ratios {w['ratio_paired_median']:.3f}, ratio of the minima {w['ratio_of_minima']:.3f}, "
        f"of the CPU-time medians {c['ratio_isokit_hand']:.3f}); per step: hand "
        f"{w['hand_step_s'] * ms:.2f} ms, isokit {med['isokit'] / row['steps'] * ms:.2f} ms; "
        f"largest loss difference {row['max_loss_diff']:.3g}\n"
        f"  grad norms on/off {w['grad_norms_ratio']:.3f} (CPU time {c['grad_norms_ratio']:.3f}): "
        f"{w['grad_norms_extra_step_s'] * ms:.3f} ms extra per step (CPU "
        f"{c['grad_norms_extra_step_s'] * ms:.3f} ms) against a forward pass of "
        f"{row['forward_s'] * ms:.3f} ms ({w['grad_norms_extra_over_forward']:.2f} forwards, "
        f"CPU {c['grad_norms_extra_over_forward']:.2f})\n"
        f"  evaluation of {row['eval_examples']} held-out examples: "
        f"{row['evaluation_s'] * ms:.2f} ms timed alone "
        f"({row['evaluation_s'] / w['hand_step_s']:.2f} hand steps), {w['eval_s'] * ms:.1f} ms "
        f"from the runs' difference; the default {row['evals_default']} evaluations are "
        f"{100 * w['evals_share']:.1f} % of that run",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (< 60 s)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--repeats", type=int, default=None, help="ResNet rounds (default 5)")
    parser.add_argument("--mlp-repeats", type=int, default=None, help="MLP rounds (default 15)")
    parser.add_argument("--resnet-steps", type=int, default=None, help="default 30")
    parser.add_argument("--mlp-steps", type=int, default=None, help="default 300")
    parser.add_argument("--eval-examples", type=int, default=None, help="default 512")
    parser.add_argument("--cases", nargs="+", default=["resnet", "mlp"], choices=["resnet", "mlp"])
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 5)
    mlp_repeats = args.mlp_repeats or (3 if args.quick else 15)
    resnet_steps = args.resnet_steps or (3 if args.quick else 30)
    mlp_steps = args.mlp_steps or (100 if args.quick else 300)
    eval_examples = args.eval_examples or (128 if args.quick else 512)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    print(
        f"isokit training-loop benchmark — {datetime.date.today()}, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, threads "
        f"{torch.get_num_threads()}, {repeats} (ResNet) and {mlp_repeats} (MLP) timed rounds, "
        "load average " + " ".join(f"{v:.2f}" for v in load_start),
        flush=True,
    )
    rows, skipped = [], []
    for name in args.cases:
        if name == "resnet":
            case = resnet_case(resnet_steps, eval_examples)
        else:
            case = mlp_case(mlp_steps, eval_examples)
        if isinstance(case, str):
            print(case, flush=True)
            skipped.append(case)
            continue
        row = bench_case(case, repeats if name == "resnet" else mlp_repeats)
        print_summary(row)
        rows.append(row)
    load_end = os.getloadavg()
    print("load average at the end " + " ".join(f"{v:.2f}" for v in load_end))
    if args.json:
        out = {
            "date": str(datetime.date.today()),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "repeats": {"resnet": repeats, "mlp": mlp_repeats},
            "load_average": {"start": load_start, "end": load_end},
            "cases": rows,
            "skipped": skipped,
        }
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
