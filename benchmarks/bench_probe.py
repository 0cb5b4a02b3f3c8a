"""Benchmark of the exact probe against hand-written alternatives, its floor, and SLQ.

Run ``python benchmarks/bench_probe.py [--device cpu|cuda] [--quick]``. Parts:

(a) ``profile(method="exact")`` (all depths in one pass) against per-depth ``torch.func.jacrev``
    plus ``svdvals`` written by hand; tanh MLP of width 256, 4 examples, depths 32, 64, 128.
(b) against the best hand-written alternative, ``vmap(jacfwd(all taps))`` then ``svdvals`` per
    tap: time, and peak memory of each variant measured in a fresh subprocess (on CPU the peak
    RSS above the RSS at the start, via ``/proc/self/clear_refs`` and ``VmHWM``; on CUDA
    ``torch.cuda.max_memory_allocated``).
(c) against its own floor: the bare ``vmap``-``jvp`` pass over all tangents returning every tap,
    plus one ``eigvalsh`` per tap and example (same eigensolver as isokit), timed separately.
(d) SLQ (``method="lanczos"``) against exact at ``n_in = 12288``: time ratio, relative error of
    ``m1`` and the Wasserstein-1 distance between the ``log σ`` distributions.

The MLPs use orthogonal weights and zero biases (tanh at its critical point), so every tap is
well conditioned and the exact probe never needs its ``svdvals`` fallback. Timings are medians
over ``--repeats`` runs after one warm-up; the hand-written code calls the layers directly (no
hooks, no model copy, no statistics), which favours it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from functools import partial

import numpy as np
import torch
from torch import nn
from torch.func import jacfwd, jacrev, jvp, vmap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from isokit.models import MLP  # noqa: E402
from isokit.probe import profile  # noqa: E402
from isokit.probe.exact import _eigvalsh  # noqa: E402

WIDTH = 256
N_EXAMPLES = 4


def make_mlp(depth: int, n_in: int = WIDTH, width: int = WIDTH, device: str = "cpu") -> MLP:
    torch.manual_seed(0)
    model = MLP(n_in, width, depth, activation="tanh")
    for fc in model.fcs:
        nn.init.orthogonal_(fc.weight)
        nn.init.zeros_(fc.bias)
    return model.double().to(device).eval().requires_grad_(False)


def make_inputs(n_in: int, device: str, n: int = N_EXAMPLES) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, n_in, generator=gen, dtype=torch.float64).to(device)


# ----------------------------------------------------------------------------- hand-written


def prefix(model: MLP, depth: int, x: torch.Tensor) -> torch.Tensor:
    h = x
    for fc, act in zip(model.fcs[: depth + 1], model.acts[: depth + 1], strict=True):
        h = act(fc(h))
    return h


def all_taps(model: MLP, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    hs, h = [], x
    for fc, act in zip(model.fcs, model.acts, strict=True):
        h = act(fc(h))
        hs.append(h)
    return tuple(hs)


def _svdvals(J: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(J, driver="gesvd") if J.is_cuda else torch.linalg.svdvals(J)


def run_jacrev(model: MLP, X: torch.Tensor) -> list[torch.Tensor]:
    """Per depth: vmap(jacrev(prefix_l)) over the examples, then svdvals."""
    out = []
    with torch.no_grad():
        for depth in range(len(model.fcs)):
            J = vmap(jacrev(partial(prefix, model, depth)))(X)
            out.append(_svdvals(J))
    return out


def run_jacrev_loop(model: MLP, X: torch.Tensor) -> list[torch.Tensor]:
    """The most literal hand-written version: loop over depths and examples, jacrev, svdvals."""
    out = []
    with torch.no_grad():
        for depth in range(len(model.fcs)):
            f = partial(prefix, model, depth)
            out.append(torch.stack([_svdvals(jacrev(f)(x)) for x in X]))
    return out


def run_jacfwd(model: MLP, X: torch.Tensor) -> list[torch.Tensor]:
    """One vmap(jacfwd) of the function returning every tap, then svdvals per tap."""
    with torch.no_grad():
        Js = vmap(jacfwd(partial(all_taps, model)))(X)
        return [_svdvals(J) for J in Js]


def run_isokit(model: MLP, X: torch.Tensor):
    """The defaults: the plan isokit picks (segments of taps with all examples per vmap here)."""
    return profile(model, X, method="exact")


def run_isokit_batched(model: MLP, X: torch.Tensor):
    """All examples in one vmapped sweep (less dispatch, more memory)."""
    return profile(model, X, method="exact", example_chunk=X.shape[0])


def run_jvp_pass(model: MLP, X: torch.Tensor):
    """The floor's first half: the bare vmap-jvp pass over all tangents, every tap returned."""
    n = X.shape[1]
    E = torch.eye(n, dtype=X.dtype, device=X.device)
    f = partial(all_taps, model)
    with torch.no_grad():
        return vmap(lambda x: vmap(lambda v: jvp(f, (x,), (v,))[1])(E))(X)


def make_eig_inputs(model: MLP, X: torch.Tensor) -> torch.Tensor:
    gen = torch.Generator().manual_seed(2)
    L, B, r = len(model.fcs), X.shape[0], min(WIDTH, X.shape[1])
    A = torch.randn(L * B, r, r, generator=gen, dtype=torch.float64)
    return (A @ A.transpose(1, 2)).to(X.device)


def run_eig(G: torch.Tensor) -> torch.Tensor:
    """The floor's second half: one eigvalsh per tap and example (isokit's eigensolver)."""
    return _eigvalsh(G)


# ----------------------------------------------------------------------------- timing


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, repeats: int, device: str) -> float:
    fn()  # warm-up
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mark() -> int:
    """Reset the peak-RSS mark (Linux ``clear_refs``) and return the current RSS in bytes."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return 1024 * (_status_kib("VmRSS") or 0)
    except OSError:  # not Linux: fall back to the lifetime maximum
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_peak() -> int:
    """Peak RSS in bytes since :func:`rss_mark` (``VmHWM``), else the lifetime maximum."""
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return 1024 * hwm
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(variant: str, depth: int, device: str) -> None:
    """Run one variant in this fresh process and print its peak memory increase."""
    model = make_mlp(depth, device=device)
    X = make_inputs(WIDTH, device)
    fn = {
        "isokit": run_isokit,
        "isokit-batched": run_isokit_batched,
        "jacfwd": run_jacfwd,
        "jacrev": run_jacrev,
        "floor-jvp": run_jvp_pass,
    }[variant]
    small = make_mlp(2, device=device)
    fn(small, X)  # load kernels and allocator pools on a tiny model first
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    before = rss_mark()
    t0 = time.perf_counter()
    fn(model, X)
    _sync(device)
    seconds = time.perf_counter() - t0
    peak = rss_peak() - before
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() - base
    print(json.dumps({"variant": variant, "depth": depth, "peak_bytes": peak, "seconds": seconds}))


def peak_memory(variant: str, depth: int, device: str) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            variant,
            "--depth",
            str(depth),
            "--device",
            device,
            "--threads",
            str(torch.get_num_threads()),
        ],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def wasserstein1(x: np.ndarray, wx: np.ndarray, y: np.ndarray, wy: np.ndarray) -> float:
    """W1 between two weighted point sets on the line (weights normalized): ∫|F_x − F_y|."""
    wx, wy = wx / wx.sum(), wy / wy.sum()
    grid = np.sort(np.concatenate([x, y]))
    fx = np.array([wx[x <= g].sum() for g in grid])
    fy = np.array([wy[y <= g].sum() for g in grid])
    return float(np.sum(np.abs(fx - fy)[:-1] * np.diff(grid)))


# ----------------------------------------------------------------------------- parts


def part_abc(depths, repeats, device, results):
    print(f"\n(a)-(c) tanh MLP width {WIDTH}, n_in {WIDTH}, {N_EXAMPLES} examples, {device}")
    print("  isokit: the defaults (plan of its choice); isokit-b: example_chunk=4 (one sweep)")
    print("  jacrev: vmapped over examples; jacrev-loop: a loop over depths and examples")
    header = (
        f"{'depth':>5} {'isokit':>8} {'isokit-b':>8} {'jacrev':>8} {'a: rev/iso':>10} "
        f"{'rev-loop':>8} {'loop/iso':>8} "
        f"{'jacfwd':>8} {'b: fwd/iso':>10} {'floor':>8} {'c: iso/fl':>9} {'iso-b/fl':>8}"
    )
    print(header)
    for depth in depths:
        model = make_mlp(depth, device=device)
        X = make_inputs(WIDTH, device)
        G = make_eig_inputs(model, X)
        t_iso = timed(partial(run_isokit, model, X), repeats, device)
        t_isob = timed(partial(run_isokit_batched, model, X), repeats, device)
        t_rev = timed(partial(run_jacrev, model, X), repeats, device)
        t_loop = timed(partial(run_jacrev_loop, model, X), max(1, repeats - 2), device)
        t_fwd = timed(partial(run_jacfwd, model, X), repeats, device)
        t_jvp = timed(partial(run_jvp_pass, model, X), repeats, device)
        t_eig = timed(partial(run_eig, G), repeats, device)
        floor = t_jvp + t_eig
        row = {
            "depth": depth,
            "isokit_s": t_iso,
            "isokit_batched_s": t_isob,
            "jacrev_s": t_rev,
            "jacrev_loop_s": t_loop,
            "ratio_jacrev_loop": t_loop / t_iso,
            "jacfwd_s": t_fwd,
            "floor_jvp_s": t_jvp,
            "floor_eig_s": t_eig,
            "ratio_jacrev": t_rev / t_iso,
            "ratio_jacfwd": t_fwd / t_iso,
            "isokit_over_floor": t_iso / floor,
            "isokit_batched_over_floor": t_isob / floor,
        }
        # sanity: the spectra agree
        s_iso = run_isokit(model, X).taps[-1].singular_values
        s_fwd = run_jacfwd(model, X)[-1].cpu().numpy()
        row["max_abs_diff_vs_jacfwd"] = float(np.abs(s_iso - s_fwd).max())
        results["abc"].append(row)
        print(
            f"{depth:>5} {t_iso:>7.3f}s {t_isob:>7.3f}s {t_rev:>7.3f}s {t_rev / t_iso:>9.1f}x "
            f"{t_loop:>7.3f}s {t_loop / t_iso:>7.1f}x "
            f"{t_fwd:>7.3f}s {t_fwd / t_iso:>9.2f}x {floor:>7.3f}s {t_iso / floor:>8.2f}x "
            f"{t_isob / floor:>7.2f}x"
        )


def part_memory(depths, device, results):
    print(f"\n(b) peak memory increase per variant (fresh subprocess each), {device}")
    variants = ("isokit", "isokit-batched", "jacfwd", "jacrev", "floor-jvp")
    print(f"{'depth':>5} " + " ".join(f"{v:>14}" for v in variants))
    for depth in depths:
        row = {"depth": depth}
        for variant in variants:
            row[variant] = peak_memory(variant, depth, device)["peak_bytes"]
        results["memory"].append(row)
        print(f"{depth:>5} " + " ".join(f"{row[v] / 2**20:>12.1f}Mi" for v in variants))


def part_slq(n_in, repeats, device, results):
    width, depth = 512, 6
    print(f"\n(d) SLQ vs exact: tanh MLP n_in {n_in}, width {width}, depth {depth}, 1 example")
    model = make_mlp(depth, n_in=n_in, width=width, device=device)
    X = make_inputs(n_in, device, n=1)
    kw = dict(method="lanczos", n_probes=16, lanczos_steps=64, slq_taps="all", seed=0)
    # every tap gets SLQ here, so that every tap has a density to compare
    t_exact = timed(lambda: profile(model, X, method="exact"), repeats, device)
    t_slq = timed(lambda: profile(model, X, **kw), repeats, device)
    kw_default = dict(method="lanczos", n_probes=16, lanczos_steps=64, seed=0)
    t_slq_default = timed(lambda: profile(model, X, **kw_default), repeats, device)
    exact = profile(model, X, method="exact")
    slq = profile(model, X, **kw)
    n_default = len(profile(model, X, **kw_default).meta["lanczos"]["slq_taps"])
    print(
        f"time: exact {t_exact:.2f}s, SLQ at every tap {t_slq:.2f}s (exact/SLQ "
        f"{t_exact / t_slq:.2f}x), SLQ at the default {n_default} taps {t_slq_default:.2f}s "
        f"(exact/SLQ {t_exact / t_slq_default:.2f}x)"
    )
    print(f"{'tap':>8} {'m1 exact':>10} {'m1 est':>10} {'rel err':>8} {'z':>6} {'W1(log s)':>10}")
    rows = []
    for te, ta in zip(exact.taps, slq.taps, strict=True):
        m1, est, se = te.stats["m1"][0], ta.stats["m1"][0], ta.se["m1"][0]
        s = te.singular_values[0]
        theta = ta.density["nodes"][0]
        w = ta.density["weights"][0]
        keep = (w > 0) & (theta > 0)
        w1 = wasserstein1(np.log(s), np.ones_like(s), 0.5 * np.log(theta[keep]), w[keep])
        rows.append(
            {
                "tap": ta.name,
                "m1": m1,
                "m1_est": est,
                "rel_err": abs(est - m1) / m1,
                "z": (est - m1) / se,
                "w1_log_s": w1,
            }
        )
        print(
            f"{ta.name:>8} {m1:>10.4g} {est:>10.4g} {abs(est - m1) / m1:>8.4f} "
            f"{(est - m1) / se:>6.2f} {w1:>10.4f}"
        )
    results["slq"] = {
        "n_in": n_in,
        "width": width,
        "depth": depth,
        "exact_s": t_exact,
        "slq_s": t_slq,
        "slq_default_taps_s": t_slq_default,
        "taps": rows,
    }


def _check_device(parser: argparse.ArgumentParser, device: str) -> None:
    """Refuse a device this machine lacks before any model is built on it."""
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        parser.error(f"--device {device!r} is not a torch device ({err}); use cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        parser.error(
            f"--device {device}: CUDA is not available here (torch {torch.__version__}); run on "
            "a machine with an NVIDIA GPU and a CUDA build of torch, or use --device cpu"
        )
    if dev.type not in ("cpu", "cuda"):
        parser.error(f"--device {device}: only cpu and cuda are supported")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="small depths, one repeat")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--parts", default="abcd", help="subset of 'abcd' (b includes memory)")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--depth", type=int, default=64, help=argparse.SUPPRESS)
    args = parser.parse_args()
    _check_device(parser, args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child(args.child, args.depth, args.device)
        return
    depths = (8, 16) if args.quick else (32, 64, 128)
    repeats = args.repeats or (1 if args.quick else 3)
    n_in_slq = 3072 if args.quick else 12288
    gpu = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else None
    print(
        f"isokit probe benchmark — torch {torch.__version__}, {platform.processor() or 'cpu'}, "
        f"{os.cpu_count()} CPU cores, threads {torch.get_num_threads()}, device {args.device}"
        + (f" ({gpu})" if gpu else "")
    )
    results: dict = {
        "torch": torch.__version__,
        "cores": os.cpu_count(),
        "device": args.device,
        "gpu": gpu,
        "abc": [],
        "memory": [],
        "slq": None,
    }
    if set("abc") & set(args.parts):
        part_abc(depths, repeats, args.device, results)
    if "b" in args.parts:
        part_memory(depths[1:2] if not args.quick else depths[-1:], args.device, results)
    if "d" in args.parts:
        part_slq(n_in_slq, repeats, args.device, results)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
