"""A scheme that fails or is interrupted leaves the model exactly as it was, structure included.

Each case interrupts a scheme with ``KeyboardInterrupt`` at a point where it has already changed
the model (added scalars and hooks, replaced norms, written weights) and compares everything a
user could observe before and after: the state dict, the module tree with each module's type and
identity, every hook dictionary and every module attribute.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import isokit.init.control as control
import isokit.init.idinit as idinit_module
from isokit.init import apply
from isokit.models import MLP, ResNet, Transformer
from tests.torchvision_style import BasicBlock, conv1x1

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    return ResNet(depth=8, width=4, norm="batch")


class _TorchvisionResNet(nn.Module):
    """A two-stage ResNet of torchvision's BasicBlocks (in-place ReLU, `out += identity`)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        down = nn.Sequential(conv1x1(8, 16, 2), nn.BatchNorm2d(16))
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2, down))
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(x.mean((2, 3)))


def _torchvision_resnet() -> nn.Module:
    torch.manual_seed(0)
    return _TorchvisionResNet()


def _transformer() -> nn.Module:
    torch.manual_seed(0)
    return Transformer(depth=2, d_model=8, heads=2, d_ff=16, seq_len=4, norm="pre")


def _inputs(model: nn.Module) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    if isinstance(model, Transformer):
        return torch.randn(3, 4, 8, generator=gen)
    return torch.randn(3, 3, 8, 8, generator=gen)


def _observe(model: nn.Module) -> dict:
    """Everything about a model a scheme may change."""
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "modules": [(name, type(m), id(m)) for name, m in model.named_modules()],
        "params": [(name, id(p)) for name, p in model.named_parameters()],
        "hooks": {
            name: {d: list(getattr(m, d, {}).values()) for d in _HOOK_DICTS}
            for name, m in model.named_modules()
        },
        "attrs": {name: sorted(vars(m)) for name, m in model.named_modules()},
        "training": [m.training for m in model.modules()],
    }


def _assert_same(before: dict, after: dict) -> None:
    assert before["modules"] == after["modules"]
    assert before["params"] == after["params"]
    assert before["hooks"] == after["hooks"]
    assert before["attrs"] == after["attrs"]
    assert before["training"] == after["training"]
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key


def _interrupt_on_call(monkeypatch, module, name: str, call: int = 1) -> None:
    """Make ``module.name`` raise KeyboardInterrupt right after its ``call``-th call returns."""
    original = getattr(module, name)
    calls = []

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(module, name, wrapper)


# (model, scheme, module holding the helper, helper, the call after which to interrupt)
CASES = [
    # after the norms were replaced: scalars, hooks and RemovedNorm modules all in place
    (_resnet, "fixup", control, "replace_norms", 1),
    (_resnet, "skipinit", control, "replace_norms", 1),
    (_resnet, "rezero", control, "replace_norms", 1),
    (_transformer, "fixup", control, "replace_norms", 1),
    (_transformer, "skipinit", control, "replace_norms", 1),
    (_transformer, "rezero", control, "replace_norms", 1),
    (_transformer, "t-fixup", control, "replace_norms", 1),
    # half-way through adding Fixup's scalar biases, or the hooked gates
    (_resnet, "fixup", control, "add_output_bias", 3),
    (_transformer, "fixup", control, "add_input_bias", 5),
    (_resnet, "rezero", control, "add_output_scale", 2),
    (_transformer, "skipinit", control, "add_output_scale", 3),
    # the same on torchvision's BasicBlock (branches found by tracing, in-place adds)
    (_torchvision_resnet, "fixup", control, "replace_norms", 1),
    (_torchvision_resnet, "fixup", control, "add_output_bias", 2),
    (_torchvision_resnet, "skipinit", control, "add_output_scale", 2),
    (_torchvision_resnet, "rezero", control, "add_output_scale", 3),
    # after every weight was written
    (_resnet, "idinit", idinit_module, "finish_norms", 1),
    (_transformer, "idinit", idinit_module, "finish_norms", 1),
]


@pytest.mark.parametrize(("build", "scheme", "module", "helper", "call"), CASES)
def test_interrupted_scheme_leaves_model_exactly_as_it_was(
    monkeypatch, build, scheme, module, helper, call
):
    model = build()
    x = _inputs(model)
    with torch.no_grad():
        y_before = model(x)
    before = _observe(model)
    _interrupt_on_call(monkeypatch, module, helper, call)
    with pytest.raises(KeyboardInterrupt):
        apply(model, scheme, seed=0)
    _assert_same(before, _observe(model))
    with torch.no_grad():
        assert torch.equal(model(x), y_before)


@pytest.mark.parametrize(("build", "scheme", "module", "helper", "call"), CASES)
def test_scheme_after_an_interrupted_one_equals_a_fresh_run(
    monkeypatch, build, scheme, module, helper, call
):
    # No marker (such as the "hook already registered" flag) survives the rollback.
    interrupted = build()
    with monkeypatch.context() as patch:
        _interrupt_on_call(patch, module, helper, call)
        with pytest.raises(KeyboardInterrupt):
            apply(interrupted, scheme, seed=0)
    apply(interrupted, scheme, seed=0)
    fresh = apply(build(), scheme, seed=0)
    a, b = _observe(interrupted), _observe(fresh)
    assert [(n, t) for n, t, _ in a["modules"]] == [(n, t) for n, t, _ in b["modules"]]
    assert {n: {d: len(h) for d, h in v.items()} for n, v in a["hooks"].items()} == {
        n: {d: len(h) for d, h in v.items()} for n, v in b["hooks"].items()
    }
    assert a["state"].keys() == b["state"].keys()
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
    x = _inputs(fresh)
    with torch.no_grad():
        assert torch.equal(interrupted(x), fresh(x))


class _InterruptOnForward(nn.Module):
    """A layer that raises KeyboardInterrupt on its ``n``-th forward call (a user's Ctrl-C)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.calls = n, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return x


def test_lsuv_interrupted_inside_a_forward_pass_restores_weights_and_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), _InterruptOnForward(4), nn.Linear(16, 4))
    model.train()
    before = _observe(model)
    with pytest.raises(KeyboardInterrupt):
        apply(model, "lsuv", data=torch.randn(16, 8), seed=0)
    model[2].calls = 0  # the counter is the test's own state, not the scheme's
    _assert_same(before, _observe(model))


def test_failure_after_norm_removal_puts_the_same_norm_objects_back(monkeypatch):
    model = _resnet()
    norms = {n: m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    original = control.replace_norms

    def replace_then_fail(m):
        original(m)
        fail()

    monkeypatch.setattr(control, "replace_norms", replace_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        apply(model, "skipinit", seed=0)
    assert {n: m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)} == norms


def test_rollback_keeps_hooks_the_user_registered():
    model = MLP(4, 4, 2)
    seen = []
    model.fcs[0].register_forward_hook(lambda m, a, out: seen.append(out.shape))
    before = _observe(model)
    with pytest.raises(ValueError, match="gain=1e\\+300 does not fit"):
        apply(model, "orthogonal", seed=0, gain=1e300)
    _assert_same(before, _observe(model))
    model(torch.zeros(2, 4))
    assert seen == [torch.Size([2, 4])]


@pytest.mark.parametrize("scheme", ["fixup", "skipinit", "rezero", "idinit"])
@pytest.mark.parametrize("build", [_resnet, _torchvision_resnet])
def test_interrupt_while_the_report_is_completed_leaves_the_model_as_it_was(
    monkeypatch, build, scheme
):
    # The scheme has finished (gates, hooks and weights in place) and apply() is filling in the
    # report's "kept" rows: a Ctrl-C there used to leave the initialized model behind.
    import isokit.init.registry as registry

    model = build()
    before = _observe(model)
    _interrupt_on_call(monkeypatch, registry, "_report_kept", 1)
    with pytest.raises(KeyboardInterrupt):
        apply(model, scheme, seed=0)
    _assert_same(before, _observe(model))


def test_interrupt_while_printing_the_verbose_report_leaves_the_model_as_it_was(monkeypatch):
    import builtins

    model = _torchvision_resnet()
    before = _observe(model)

    def interrupted_print(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(builtins, "print", interrupted_print)
    with pytest.raises(KeyboardInterrupt):
        apply(model, "fixup", seed=0, verbose=True)
    _assert_same(before, _observe(model))
