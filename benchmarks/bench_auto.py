"""Benchmark of ``method="auto"`` against ``method="exact"`` on CIFAR ResNets, side by side.

Run ``python benchmarks/bench_auto.py [--depths 20 56] [--threads 2] [--json out.json]``.

For each depth, ``ResNet(depth, width=16, norm="none")`` initialized with a scheme of the default
report (``kaiming-normal`` unless ``--scheme``) is probed on one 3×32×32 example, in one process:
``auto``, then ``exact``, then ``auto`` again (so that a change of load on a shared machine hits
both), with the default options (``max_seconds`` 20 s, 16 probes, 64 Lanczos steps, the default
SLQ taps). It prints the times, the ratio exact/auto (median of the ``auto`` runs), which tier
``auto`` chose and why, the agreement of ``m1`` at every tap as
``|m1_auto − m1_exact| / SE_auto`` (the jackknife standard error of the trace estimator), and the
time estimate of the exact tier (``isokit.probe.timing``) against the measured exact run.

Targets: ``auto`` at least 5× faster than ``exact`` and ``m1`` within 3 standard errors at every
tap. This is a benchmark, not a timed test; exact on ResNet-56 takes minutes
(``--image-size 8 --depths 8`` is a smoke run of seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import isokit  # noqa: E402
from isokit.models import MLP, ResNet  # noqa: E402
from isokit.probe import ProbeOptions, profile  # noqa: E402
from isokit.probe.prepare import prepare  # noqa: E402
from isokit.probe.timing import estimate_exact_cost, linalg_rates  # noqa: E402


def make_case(depth: int, scheme: str, device: str, size: int = 32) -> tuple[ResNet, torch.Tensor]:
    torch.manual_seed(0)
    model = isokit.init.apply(ResNet(depth=depth, width=16, norm="none"), scheme, seed=0)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, size, size, generator=gen)
    return model.to(device), x.to(device)


def timed_profile(model, x, method: str, device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    prof = profile(model, x, method=method)
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    return prof, time.perf_counter() - t0


def m1_agreement(auto, exact) -> list[float]:
    """``|m1_auto − m1_exact| / SE_auto`` per tap (one example); exact taps give 0."""
    out = []
    for ta, te in zip(auto.taps, exact.taps, strict=True):
        se = ta.se.get("m1") if ta.se else None
        diff = float(np.abs(ta.stats["m1"][0] - te.stats["m1"][0]))
        if se is None:
            out.append(0.0 if diff == 0 else float("inf"))
        else:
            s = float(se[0])
            out.append(diff / s if s > 0 else (0.0 if diff == 0 else float("inf")))
    return out


def run_depth(depth: int, scheme: str, device: str, auto_runs: int, size: int = 32) -> dict:
    model, x = make_case(depth, scheme, device, size)
    with prepare(model, x, ProbeOptions()) as prep:
        t0 = time.perf_counter()
        cost = estimate_exact_cost(prep)
        estimate_s = time.perf_counter() - t0
    autos, auto_times = [], []
    for k in range(auto_runs):
        if k == auto_runs // 2 or auto_runs == 1:
            exact, exact_time = timed_profile(model, x, "exact", device)
            print(f"  ResNet-{depth}: exact {exact_time:.1f} s", flush=True)
        prof, t = timed_profile(model, x, "auto", device)
        autos.append(prof)
        auto_times.append(t)
        slq = prof.meta.get("lanczos", {}).get("slq_taps")
        print(f"  ResNet-{depth}: auto ({prof.meta['method']}, SLQ at {slq}) {t:.1f} s", flush=True)
    runs = [
        {
            "seconds": t,
            "method": a.meta["method"],
            "reason": a.meta["method_reason"],
            "exact_estimate_s": a.meta.get("exact_estimate_s"),
            "slq_taps": a.meta.get("lanczos", {}).get("slq_taps"),
            "m1_z": m1_agreement(a, exact),
        }
        for a, t in zip(autos, auto_times, strict=True)
    ]
    z = [max(zs) for zs in zip(*(r["m1_z"] for r in runs), strict=True)]  # worst run per tap
    fallbacks = [t.name for t in exact.taps if bool(np.any(t.gram_unreliable))]
    auto_s = statistics.median(auto_times)
    rel = [
        float(abs(a.stats["m1"][0] - e.stats["m1"][0]) / e.stats["m1"][0])
        for auto in autos
        for a, e in zip(auto.taps, exact.taps, strict=True)
        if e.stats["m1"][0] > 0
    ]
    return {
        "depth": depth,
        "scheme": scheme,
        "taps": len(exact.taps),
        "exact_s": exact_time,
        "auto_runs": runs,
        "auto_median_s": auto_s,
        "ratio": exact_time / auto_s,
        "auto_method": "/".join(sorted({r["method"] for r in runs})),
        "m1_z": z,
        "m1_z_max": max(z),
        "m1_z_argmax": exact.taps[int(np.argmax(z))].name,
        "m1_rel_err_max": max(rel, default=0.0),
        "estimate": {
            "seconds": cost.seconds,
            "tangents_s": cost.tangents_s,
            "grams_s": cost.grams_s,
            "eigvalsh_s": cost.eigvalsh_s,
            "calibration_s": estimate_s,
            "over_measured": cost.seconds / exact_time,
        },
        "svdvals_fallback_taps": fallbacks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 56])
    parser.add_argument("--scheme", default="kaiming-normal")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--auto-runs", type=int, default=2, help="auto runs around the exact one")
    parser.add_argument("--image-size", type=int, default=32, help="smoke runs: e.g. 8")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"isokit auto-vs-exact benchmark — torch {torch.__version__}, "
        f"{platform.processor() or 'cpu'}, {os.cpu_count()} CPU cores, threads "
        f"{torch.get_num_threads()}, device {args.device}, scheme {args.scheme}",
        flush=True,
    )
    # Process-wide one-time costs (torch.func's first forward-mode call, the linear-algebra
    # calibration) are paid here, outside every timed run.
    small = MLP(8, 8, depth=2).to(args.device)
    profile(small, torch.randn(1, 8, device=args.device), method="exact")
    rates = linalg_rates(args.device)
    print(
        f"calibration: {rates.macs_per_s / 1e9:.2f} GMAC/s (float64 Gram), eigvalsh "
        f"{rates.eigvalsh_s_per_r3 * 1e9:.3f} ns·r³",
        flush=True,
    )
    rows = [
        run_depth(d, args.scheme, args.device, args.auto_runs, args.image_size) for d in args.depths
    ]
    print()
    print(
        "| model | taps | exact s | auto s (median) | exact/auto | auto tier | max z of m1 (tap) "
        "| max rel. err m1 | exact estimate s (est/measured) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        est = r["estimate"]
        print(
            f"| ResNet-{r['depth']} | {r['taps']} | {r['exact_s']:.1f} | {r['auto_median_s']:.1f} "
            f"| {r['ratio']:.1f}× | {r['auto_method']} | {r['m1_z_max']:.2f} ({r['m1_z_argmax']}) "
            f"| {100 * r['m1_rel_err_max']:.2f} % | {est['seconds']:.3g} "
            f"({est['over_measured']:.2f}×) |"
        )
    for r in rows:
        print(f"\nResNet-{r['depth']}:")
        for k, run in enumerate(r["auto_runs"]):
            print(f"  auto run {k + 1} ({run['seconds']:.1f} s): {run['reason']}")
        est = r["estimate"]
        print(
            f"  exact estimate: tangent pass {est['tangents_s']:.3g} s, Grams {est['grams_s']:.3g}"
            f" s, eigvalsh {est['eigvalsh_s']:.3g} s (calibration {est['calibration_s']:.2f} s)"
        )
        print("  z of m1 per tap (worst auto run): " + ", ".join(f"{v:.2f}" for v in r["m1_z"]))
        print(f"  exact tier's svdvals fallback at: {r['svdvals_fallback_taps'] or 'none'}")
        ok_ratio, ok_z = r["ratio"] >= 5, r["m1_z_max"] <= 3
        print(
            f"  targets: ≥ 5× faster: {'met' if ok_ratio else 'MISSED'}; m1 within 3 SE at "
            f"every tap: {'met' if ok_z else 'MISSED'}"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows},
                fh,
                indent=2,
            )


if __name__ == "__main__":
    main()
