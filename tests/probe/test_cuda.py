"""Probes on CUDA (``docs/probes.md §3.3``, ``§3.4``, ``§6``): the same code, the same numbers.

The CUDA cases skip, saying why, where CUDA is not available; ``benchmarks/gpu_check.sh`` runs
them on a GPU machine and fails if any skips. The CPU cases check what the CUDA path relies on
that a CPU can check: the TF32 flags (process-global, whatever the device) and how the memory
budget reads a CUDA device.
"""

from __future__ import annotations

import copy
import importlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from isokit.models import MLP, ResNet, Transformer
from isokit.probe import ProbeOptionError, profile
from isokit.probe.hygiene import _restore, snapshot_flags
from isokit.probe.memory import available_memory, default_max_memory

from .conftest import randomize_batchnorm

exact_module = importlib.import_module("isokit.probe.exact")

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="CUDA is not available on this machine")
DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]
MiB = 2**20


def _models():
    torch.manual_seed(0)
    return {
        "mlp-tanh": (MLP(16, 24, depth=4, activation="tanh"), (3, 16)),
        "resnet": (ResNet(depth=8, width=4), (2, 3, 8, 8)),
        "resnet-bn": (randomize_batchnorm(ResNet(depth=8, width=4, norm="batch")), (2, 3, 8, 8)),
        "transformer": (Transformer(2, 8, 2, 16, 4), (2, 4, 8)),
    }


def _close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-9) -> None:
    """Per example, ``|a − b| ≤ rtol·(|b| + max|b|)``: relative, with the example's largest
    singular value as the scale of the zeros (ReLU masks) and of the Gram's round-off."""
    scale = np.abs(b) + np.abs(b).max(axis=-1, keepdims=True)
    err = np.abs(a - b)
    worst = float((err / np.where(scale > 0, scale, 1.0)).max())
    assert (err <= rtol * scale).all(), f"max |Δs| / (|s| + s_max) = {worst:.3g} > {rtol}"


@pytest.fixture
def flags_restored():
    """Put the global flags back as they were, whatever the test did to them."""
    saved = snapshot_flags()
    yield
    _restore(saved)


# ----------------------------------------------------------------------------- float64 spectra


@needs_cuda
@pytest.mark.parametrize("kind", list(_models()))
def test_cuda_exact_profile_equals_cpu(kind):
    model, shape = _models()[kind]
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    cpu = profile(model, x, method="exact", with_blocks=True, with_signal=True)
    gpu = profile(
        copy.deepcopy(model).to("cuda"),
        x.to("cuda"),
        method="exact",
        with_blocks=True,
        with_signal=True,
    )
    assert gpu.meta["device"].startswith("cuda") and cpu.meta["device"] == "cpu"
    assert gpu.meta["dtype"] == "float64" and gpu.meta["method"] == "exact"
    for section in ("taps", "blocks"):
        for tc, tg in zip(getattr(cpu, section), getattr(gpu, section), strict=True):
            assert (tg.name, tg.D, tg.n_in) == (tc.name, tc.D, tc.n_in)
            assert isinstance(tg.singular_values, np.ndarray)
            assert tg.singular_values.dtype == np.float64
            assert tg.singular_values.shape == tc.singular_values.shape
            _close(tg.singular_values, tc.singular_values)
            np.testing.assert_allclose(tg.stats["m1"], tc.stats["m1"], rtol=1e-9)
    # Forward quantities of the signal need no random projection: the same on both devices.
    np.testing.assert_allclose(gpu.signal.q, cpu.signal.q, rtol=1e-9)
    np.testing.assert_allclose(gpu.signal.cos, cpu.signal.cos, rtol=1e-9, atol=1e-12)


@needs_cuda
def test_cuda_lanczos_runs_with_a_cuda_generator():
    torch.manual_seed(0)
    model = MLP(32, 32, depth=4, activation="tanh")
    x = torch.randn(2, 32, generator=torch.Generator().manual_seed(1))
    exact = profile(model, x, method="exact")
    m, xc = copy.deepcopy(model).to("cuda"), x.to("cuda")
    kw = dict(method="lanczos", n_probes=16, lanczos_steps=8, slq_taps="all")
    gen = torch.Generator(device="cuda").manual_seed(3)
    est = profile(m, xc, generator=gen, **kw)
    assert est.meta["method"] == "lanczos" and est.meta["seed"] == 3
    assert est.meta["device"].startswith("cuda")
    # The default generator is a CUDA one seeded by `seed`: the same draws as the explicit one.
    again = profile(m, xc, seed=3, **kw)
    for te, ta, tb in zip(exact.taps, est.taps, again.taps, strict=True):
        m1, got, se = te.stats["m1"], ta.stats["m1"], ta.se["m1"]
        assert np.all(np.abs(got - m1) <= 5 * se + 1e-12 * m1), (ta.name, got, m1, se)
        assert ta.density is not None and np.isfinite(ta.density["nodes"]).all()
        np.testing.assert_allclose(tb.stats["m1"], got, rtol=1e-12)


@needs_cuda
def test_a_cpu_generator_for_a_cuda_model_is_refused_naming_both_devices():
    model = MLP(8, 8, depth=2, activation="tanh").to("cuda")
    with pytest.raises(ProbeOptionError, match=r"generator.*is on cpu but the model is on cuda"):
        profile(model, torch.randn(1, 8, device="cuda"), generator=torch.Generator())


# ----------------------------------------------------------------------------- TF32


def _tf32_error(device: str) -> dict[str, float]:
    """Relative error of a float32 matmul and convolution against float64 on ``device``:
    about 1e-6 in IEEE float32, about 1e-4 and more where TF32 is used."""
    gen = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(1024, 1024, generator=gen, device=device) for _ in range(2))
    mm = (a @ b).double() - a.double() @ b.double()
    img = torch.randn(2, 64, 32, 32, generator=gen, device=device)
    w = torch.randn(64, 64, 3, 3, generator=gen, device=device)
    conv = F.conv2d(img, w, padding=1).double() - F.conv2d(img.double(), w.double(), padding=1)
    ref_mm, ref_conv = a.double() @ b.double(), F.conv2d(img.double(), w.double(), padding=1)
    return {
        "matmul": float(mm.norm() / ref_mm.norm()),
        "conv": float(conv.norm() / ref_conv.norm()),
    }


@pytest.mark.parametrize("device", DEVICES)
def test_tf32_is_off_inside_a_probe_and_restored_after(device, flags_restored):
    torch.manual_seed(0)
    model = MLP(8, 8, depth=3, activation="tanh").to(device)
    x = torch.randn(2, 8, device=device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.set_float32_matmul_precision("high")
    before = snapshot_flags()
    seen: list[dict] = []

    def record(module, args, out):
        # Reading the legacy flags must work inside a probe (torch refuses to when the two
        # precision APIs disagree) and say TF32 is off.
        flags = {
            "matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_precision": torch.get_float32_matmul_precision(),
        }
        if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
            flags["matmul.fp32_precision"] = torch.backends.cuda.matmul.fp32_precision
            flags["conv.fp32_precision"] = torch.backends.cudnn.conv.fp32_precision
        if device == "cuda" and not seen:  # the dry run, outside the torch.func transforms
            flags["error"] = _tf32_error(device)
        seen.append(flags)

    handle = model.fcs[0].register_forward_hook(record)
    try:
        outside = _tf32_error(device) if device == "cuda" else None
        profile(model, x, method="exact")
    finally:
        handle.remove()
    assert seen, "the hook never ran"
    for flags in seen:
        assert flags["matmul.allow_tf32"] is False and flags["cudnn.allow_tf32"] is False
        assert flags["matmul_precision"] == "highest"
        assert flags.get("matmul.fp32_precision", "ieee") == "ieee"
        assert flags.get("conv.fp32_precision", "ieee") == "ieee"
    if device == "cuda":
        inside = seen[0]["error"]
        assert inside["matmul"] < 5e-5 and inside["conv"] < 5e-5, (inside, outside)
        if torch.cuda.get_device_capability() >= (8, 0):  # TF32 hardware: the check has power
            assert outside["matmul"] > 1e-4, (inside, outside)
    assert torch.backends.cuda.matmul.allow_tf32 is True
    assert torch.backends.cudnn.allow_tf32 is True
    assert torch.get_float32_matmul_precision() == "high"
    assert snapshot_flags() == before


@pytest.mark.skipif(
    not hasattr(torch.backends.cuda.matmul, "fp32_precision"),
    reason="this torch has no fp32_precision API",
)
def test_new_precision_api_settings_are_restored_exactly(flags_restored):
    b = torch.backends
    torch.set_float32_matmul_precision("highest")  # the legacy default
    # Only the newer API, the way torch recommends: the legacy flags then read as "mixed".
    b.cuda.matmul.fp32_precision = "tf32"
    b.cudnn.conv.fp32_precision = "ieee"
    b.fp32_precision = "tf32"  # inherited by the leaves still at "none"
    inherits = b.mkldnn.conv.fp32_precision
    before = snapshot_flags()
    assert before["cuda.matmul.allow_tf32"] is None  # torch refuses to read it
    profile(MLP(4, 4, depth=2), torch.randn(1, 4), method="exact")
    assert snapshot_flags() == before
    assert (b.cuda.matmul.fp32_precision, b.cudnn.conv.fp32_precision) == ("tf32", "ieee")
    # Leaves that inherited still inherit: not pinned to the value they read before.
    b.fp32_precision = "ieee"
    assert inherits == "tf32" and b.mkldnn.conv.fp32_precision == "ieee"


_PRISTINE = """
import json, torch
from isokit.models import MLP
from isokit.probe import profile
from isokit.probe.hygiene import _TREE, _nodes

def read():
    values = {n: torch._C._get_fp32_precision_getter(*_TREE[n][0]) for n in _nodes()}
    values["cudnn.allow_tf32"] = torch.backends.cudnn.allow_tf32
    return values

before = read()
profile(MLP(4, 4, depth=2), torch.randn(2, 4), method="exact")
print(json.dumps({"before": before, "after": read()}))
"""


@pytest.mark.skipif(
    not hasattr(torch.backends.cuda.matmul, "fp32_precision"),
    reason="this torch has no fp32_precision API",
)
def test_torch_default_precision_flags_survive_a_probe_in_a_fresh_process():
    # torch's defaults hold cuDNN's conv and rnn leaves at "tf32" under inheriting parents, a
    # state no test can recreate once a process has set the flags: so a fresh interpreter.
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _PRISTINE], capture_output=True, text=True, check=True, timeout=120
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["after"] == seen["before"]  # reading the legacy cuDNN flag raises if they differ


# ----------------------------------------------------------------------------- memory budget


def test_cuda_budget_reads_the_cuda_device(monkeypatch):
    GiB = 2**30
    calls = []

    def fake(value):
        def read(device=None):
            calls.append(torch.device(device))
            return value

        return read

    monkeypatch.setattr(torch.cuda, "mem_get_info", fake((3 * GiB, 80 * GiB)))
    monkeypatch.setattr(torch.cuda, "memory_reserved", fake(2 * GiB))
    monkeypatch.setattr(torch.cuda, "memory_allocated", fake(GiB // 2))
    # Free on the device plus what the caching allocator holds unused (2 − 0.5 GiB).
    assert available_memory("cuda:1") == 3 * GiB + 3 * GiB // 2
    assert default_max_memory(torch.device("cuda", 1)) == int(0.8 * (4.5 * GiB))
    assert calls and all(d == torch.device("cuda", 1) for d in calls)
    calls.clear()
    assert default_max_memory("cpu") > 0 and not calls  # the CPU budget reads no GPU


@pytest.mark.parametrize("device", DEVICES)
def test_exact_budget_is_that_of_the_inputs_device(device, monkeypatch):
    seen = []
    real = exact_module.default_max_memory

    def spy(dev=None):
        seen.append((torch.device(dev), real(dev)))
        return seen[-1][1]

    monkeypatch.setattr(exact_module, "default_max_memory", spy)
    model = MLP(8, 8, depth=2).to(device)
    x = torch.randn(2, 8, device=device)
    if device == "cuda":
        profile(model, x, method="exact")  # load the CUDA libraries' kernels and handles first
        seen.clear()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()  # nothing cached: free GPU memory is all there is
        free_before, _ = torch.cuda.mem_get_info()
    prof = profile(model, x, method="exact")
    assert seen and all(d.type == device for d, _ in seen)
    assert prof.meta["exact"]["max_memory"] in {budget for _, budget in seen}
    if device == "cuda":
        # 80 % of the free GPU memory (the probe's copy and dry run take a few MiB of it).
        budget = seen[0][1]
        assert abs(budget - 0.8 * free_before) <= 0.8 * 256 * MiB, (budget, free_before)


@needs_cuda
def test_cuda_budget_counts_memory_the_allocator_caches():
    torch.cuda.synchronize()
    block = torch.empty(1024 * MiB, dtype=torch.uint8, device="cuda")
    del block  # freed to PyTorch's cache: still used as far as the driver knows
    free, _ = torch.cuda.mem_get_info()
    assert torch.cuda.memory_reserved() - torch.cuda.memory_allocated() >= 1024 * MiB
    assert available_memory("cuda") >= free + 1024 * MiB
    torch.cuda.empty_cache()
