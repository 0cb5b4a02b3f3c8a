"""Dense float64 references for the probe tests (``docs/probes.md §9.1``) and small test models."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import jacfwd, jacrev

from isokit.probe.taps import resolve_taps, run_with_taps
from tests.torchvision_style import BasicBlock


def eval_copy(model: nn.Module) -> nn.Module:
    """A float64 eval-mode deep copy (the reference never touches the original)."""
    return copy.deepcopy(model).double().eval().requires_grad_(False)


def dense_jacobians(model: nn.Module, x: torch.Tensor, taps="auto", *, check_fwd: bool = False):
    """``J_l = ∂h_l/∂x`` (``[D_l, n_in]``, float64) at every tap for ONE example ``x``.

    Built tap by tap with ``torch.func.jacrev`` on a float64 eval copy; with ``check_fwd`` each
    is cross-checked against ``jacfwd``.
    """
    names = resolve_taps(model, taps)
    m = eval_copy(model)
    mods = [m.get_submodule(n) for n in names]
    x = x.detach().double()
    out = []
    with _fastpath_off():
        for i in range(len(names)):

            def h(xx, i=i):
                return run_with_taps(m, mods, xx.unsqueeze(0)).outputs[i].reshape(-1)

            J = jacrev(h)(x).reshape(-1, x.numel())
            if check_fwd:
                Jf = jacfwd(h)(x).reshape(-1, x.numel())
                assert torch.allclose(J, Jf, rtol=1e-12, atol=1e-14)
            out.append(J)
    return out


class _fastpath_off:
    """Reference conditions for attention: no fused eval fast path, math SDPA."""

    def __enter__(self):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        self.saved = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        self.sdpa = sdpa_kernel(SDPBackend.MATH)
        self.sdpa.__enter__()

    def __exit__(self, *exc):
        self.sdpa.__exit__(*exc)
        torch.backends.mha.set_fastpath_enabled(self.saved)
        return False


def reference_gram(J: torch.Tensor, side: str) -> torch.Tensor:
    """The ``r``-side Gram of a dense Jacobian: ``JJᵀ`` (output side) or ``JᵀJ`` (input side)."""
    return J @ J.T if side == "output" else J.T @ J


def rel_fro(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative Frobenius difference ``‖a − b‖/‖b‖`` (absolute when ``b = 0``)."""
    nb = float(b.norm())
    return float((a - b).norm()) / (nb if nb > 0 else 1.0)


# ----------------------------------------------------------------------------- test models


# torchvision's BasicBlock (in-place ReLU, ``out += identity``), shared with the branch tests.
TVBasicBlock = BasicBlock


class TVResNet(nn.Module):
    """A two-stage torchvision-style ResNet built from :class:`TVBasicBlock`."""

    def __init__(self, width: int = 4, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(TVBasicBlock(width, width), TVBasicBlock(width, width))
        down = nn.Sequential(
            nn.Conv2d(width, 2 * width, 1, 2, bias=False), nn.BatchNorm2d(2 * width)
        )
        self.layer2 = nn.Sequential(
            TVBasicBlock(width, 2 * width, 2, down), TVBasicBlock(2 * width, 2 * width)
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)
        self.taps = ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "fc"]

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                n = mod.num_features
                mod.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                mod.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=gen))
                mod.weight.copy_(0.5 + torch.rand(n, generator=gen))
                mod.bias.copy_(torch.rand(n, generator=gen) - 0.5)
    return model


class SkipAcross(nn.Module):
    """Taps ``a`` and ``b`` with a skip from the input straight to ``c``: not a chain."""

    def __init__(self, n: int = 6) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Linear(n, n), nn.Tanh())
        self.b = nn.Sequential(nn.Linear(n, n), nn.Tanh())
        self.c = nn.Linear(n, n)
        self.taps = ["a", "b", "c"]

    def forward(self, x):
        h = self.b(self.a(x))
        return self.c(h + x)  # x skips over the taps a and b


@pytest.fixture
def seeded():
    torch.manual_seed(0)
    return torch.Generator().manual_seed(0)
