"""The sweep configs of the depth analysis: one grid per model family at initialization, and the
training grids (a short run at every trained depth, a long run on a subset).

Each family has its own grid, so that it gets its own probe method, inputs and scheme list
(IDInit's residual options mean nothing on a plain MLP). A grid is a plain dict in the layout of
a sweep config (``docs/sweeps.md``), expanded by :func:`isokit.sweep.parse_sweep`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from isokit.report import load_config

__all__ = [
    "DEFAULT_SCHEMES",
    "IDINIT_CHANNEL",
    "IDINIT_ZERO_LAST",
    "Budget",
    "Family",
    "TrainPlan",
    "budget",
    "families",
    "init_config",
    "scheme_label",
    "train_config",
    "train_families",
    "train_plans",
]

#: Every scheme of the default report config, which owns the list.
DEFAULT_SCHEMES: tuple[str, ...] = tuple(s.label for s in load_config(None).schemes)
#: IDInit with a zero last layer on every branch instead of IDIZ_ε (uncertain point 3).
IDINIT_ZERO_LAST = {
    "name": "idinit",
    "label": "idinit-zero-last",
    "options": {"residual_last": "zero"},
}
#: IDInit with channel-maintain (Dirac-centre) convolutions instead of patch-maintain (point 5).
IDINIT_CHANNEL = {"name": "idinit", "label": "idinit-channel", "options": {"conv_mode": "channel"}}

Scheme = str | dict[str, Any]


def scheme_label(scheme: Scheme) -> str:
    """The label a scheme entry gets in the sweep's axes (its name when it has no label)."""
    return scheme if isinstance(scheme, str) else str(scheme.get("label", scheme["name"]))


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Sizes of one run: model widths, depths per family, examples, training steps."""

    quick: bool
    mlp_width: int
    resmlp_width: int
    resnet_width: int
    d_model: int
    mlp_depths: tuple[int, ...]
    resmlp_depths: tuple[int, ...]
    resnet_depths: tuple[int, ...]
    transformer_depths: tuple[int, ...]
    examples: int
    schemes: tuple[str, ...]
    short_steps: int
    long_steps: int
    batch_size: int
    lr: float
    momentum: float
    train_mlp_depths: tuple[int, ...]
    train_resmlp_depths: tuple[int, ...]
    train_resnet_depths: tuple[int, ...]
    long_resmlp_depth: int
    long_resnet_depth: int
    train_limit: int
    eval_examples: int

    @property
    def effective_lr(self) -> float:
        """η/(1−β) of the heavy-ball optimizer the training grids use."""
        return self.lr / (1.0 - self.momentum)


def budget(quick: bool, **overrides: Any) -> Budget:
    """The quick or full budget, with any non-None ``overrides`` (the command-line flags)."""
    if quick:
        base = dict(
            mlp_width=32,
            resmlp_width=32,
            resnet_width=4,
            d_model=16,
            mlp_depths=(4, 16),
            resmlp_depths=(4, 16),
            resnet_depths=(8, 20),
            transformer_depths=(2, 8),
            examples=2,
            schemes=("idinit", "kaiming-normal", "fixup"),
            short_steps=5,
            long_steps=10,
            batch_size=16,
            train_mlp_depths=(),
            train_resmlp_depths=(4, 16),
            train_resnet_depths=(8,),
            long_resmlp_depth=4,
            long_resnet_depth=8,
            train_limit=1024,
            eval_examples=128,
        )
    else:
        base = dict(
            mlp_width=64,
            resmlp_width=256,
            resnet_width=16,
            d_model=32,
            mlp_depths=(4, 8, 16, 32, 64, 128),
            resmlp_depths=(8, 16, 32, 64),
            resnet_depths=(20, 56, 110),
            transformer_depths=(2, 4, 8, 16, 32),
            examples=4,
            schemes=DEFAULT_SCHEMES,
            short_steps=100,
            long_steps=1000,
            batch_size=32,
            train_mlp_depths=(4, 16, 64),
            train_resmlp_depths=(8, 16, 32, 64),
            train_resnet_depths=(20, 56, 110),
            long_resmlp_depth=16,
            long_resnet_depth=20,
            train_limit=20000,
            eval_examples=500,
        )
    base.update(lr=0.01, momentum=0.9)
    base.update({k: v for k, v in overrides.items() if v is not None})
    return Budget(quick=quick, **base)


@dataclass(frozen=True, kw_only=True)
class Family:
    """One model family of the depth sweep: its ``[[models]]`` table without the depth."""

    label: str
    model: dict[str, Any]
    depths: tuple[int, ...]
    schemes: tuple[Scheme, ...]
    residual: bool
    image_size: int = 32
    probe_taps: tuple[str, ...] | None = None
    data_options: dict[str, Any] = field(default_factory=dict)


def _schemes(b: Budget, *variants: dict[str, Any]) -> tuple[Scheme, ...]:
    # The IDInit variants of the uncertain points follow the default IDInit in the legend.
    out: list[Scheme] = list(b.schemes)
    at = out.index("idinit") + 1 if "idinit" in out else len(out)
    return tuple(out[:at] + list(variants) + out[at:])


def families(b: Budget) -> list[Family]:
    """The families probed at initialization, on Gaussian inputs.

    MLPs and the residual MLP take ``width`` inputs and have no head, so their last tap is the
    last hidden layer (a square Jacobian). ResNets see one-channel 32×32 images (Fashion-MNIST's
    padded size); their 1024 inputs make an exact probe of every block cost minutes, so they are
    probed exactly at the logits only (``fc``: 10 rows, in reverse mode, docs/probes.md §3.2).
    """
    return _families(b, trained=False)


def _families(b: Budget, *, trained: bool) -> list[Family]:
    """The four families, at initialization on Gaussian inputs or trained on Fashion-MNIST."""
    plain = tuple(s for s in b.schemes if s not in ("fixup", "rezero"))  # no branches on MLPs
    if trained:
        mlp_depths, resmlp_depths = b.train_mlp_depths, b.train_resmlp_depths
        resnet_depths, transformer_depths = b.train_resnet_depths, ()
        mlp_in, resmlp_in, head = 784, 784, {"out_features": 10}
        flat, image = {"pad_to": None, "channels": 1}, {"pad_to": 32, "channels": 1}
        head_taps: tuple[str, ...] | None = ("head",)
    else:
        mlp_depths, resmlp_depths = b.mlp_depths, b.resmlp_depths
        resnet_depths, transformer_depths = b.resnet_depths, b.transformer_depths
        mlp_in, resmlp_in, head = b.mlp_width, b.resmlp_width, {}
        flat, image, head_taps = {}, {}, None
    out = [
        Family(
            label=f"mlp-{act}",
            model={"kind": "mlp", "in_features": mlp_in, "width": b.mlp_width, **head}
            | {"activation": act},
            probe_taps=head_taps,
            depths=mlp_depths,
            schemes=plain,
            residual=False,
            data_options=flat,
        )
        for act in ("relu", "tanh")
    ]
    out.append(
        Family(
            label="residual-mlp",
            model={"kind": "residual-mlp", "in_features": resmlp_in, "width": b.resmlp_width}
            | head
            | {"activation": "relu"},
            probe_taps=head_taps,
            depths=resmlp_depths,
            schemes=_schemes(b, IDINIT_ZERO_LAST),
            residual=True,
            data_options=flat,
        )
    )
    out.append(
        Family(
            label="resnet",
            model={
                "kind": "resnet",
                "width": b.resnet_width,
                "norm": "none",
                "in_channels": 1,
                "num_classes": 10,
            },
            probe_taps=("fc",),
            depths=resnet_depths,
            schemes=_schemes(b, IDINIT_ZERO_LAST, IDINIT_CHANNEL),
            residual=True,
            data_options=image,
        )
    )
    d = b.d_model
    out.append(
        Family(
            label="transformer",
            model={
                "kind": "transformer",
                "d_model": d,
                "heads": max(1, d // 8),
                "d_ff": 2 * d,
                "seq_len": 8,
                "norm": "none",
            },
            depths=transformer_depths,
            schemes=_schemes(b, IDINIT_ZERO_LAST),
            residual=True,
        )
    )
    return [f for f in out if f.depths]


def init_config(family: Family, seeds: tuple[int, ...], examples: int) -> dict[str, Any]:
    """The at-initialization sweep config of ``family``: every depth × scheme × seed, probed
    exactly in float64 on ``examples`` Gaussian inputs."""
    return {
        "title": f"Depth sweep at initialization: {family.label}",
        "method": "exact",
        "dtype": "float64",
        "threads": 1,
        "inputs": {
            "examples": examples,
            "distribution": "gaussian",
            "image_size": family.image_size,
        },
        "probes": {"profile": True, "signal": False},
        # Config-wide, not per model: training checkpoints read the config's method_options.
        "method_options": {} if family.probe_taps is None else {"taps": list(family.probe_taps)},
        "models": [dict(family.model)],
        "sweep": {
            "depth": list(family.depths),
            "schemes": list(family.schemes),
            "seeds": list(seeds),
        },
    }


@dataclass(frozen=True, kw_only=True)
class TrainPlan:
    """One training grid: a family trained at ``depths`` for ``steps`` steps."""

    family: Family
    depths: tuple[int, ...]
    steps: int
    checkpoints: tuple[int, ...]

    @property
    def label(self) -> str:
        return f"train{self.steps}-{self.family.label}"


def train_families(b: Budget) -> list[Family]:
    """The trained families, on Fashion-MNIST: MLPs on the flattened 28×28 images (784
    inputs, 10 logits), ResNets on the images padded to 32×32. Every trained model is probed
    at its logits (``head``, ``fc``): exactly, in reverse mode, 10 rows of the input-output
    Jacobian, where an exact probe of every block on 784 or 1024 inputs would dominate the run."""
    return _families(b, trained=True)


def train_plans(b: Budget) -> list[TrainPlan]:
    """The short runs (every trained depth but the long one) and the long runs (one ResNet and
    one residual-MLP depth); the long runs' checkpoint at the short step stands in for the
    short run at their depth (the schedule is constant after warm-up, so it is the same run)."""
    long_depth = {"residual-mlp": b.long_resmlp_depth, "resnet": b.long_resnet_depth}
    plans = []
    for fam in train_families(b):
        short = tuple(d for d in fam.depths if d != long_depth.get(fam.label))
        if short:
            plans.append(
                TrainPlan(
                    family=fam, depths=short, steps=b.short_steps, checkpoints=(0, b.short_steps)
                )
            )
        if fam.label in long_depth:
            plans.append(
                TrainPlan(
                    family=fam,
                    depths=(long_depth[fam.label],),
                    steps=b.long_steps,
                    checkpoints=(0, b.short_steps, b.long_steps),
                )
            )
    return plans


def train_config(plan: TrainPlan, b: Budget, seeds: tuple[int, ...]) -> dict[str, Any]:
    """The sweep config of a training grid: heavy-ball SGD on Fashion-MNIST with a short linear
    warm-up and a constant rate, probed exactly at the checkpoints on held-out images."""
    fam = plan.family
    config = init_config(
        Family(
            label=fam.label,
            model=fam.model,
            depths=plan.depths,
            schemes=fam.schemes,
            residual=fam.residual,
            image_size=32,
            probe_taps=fam.probe_taps,
        ),
        seeds,
        examples=b.examples,
    )
    config["title"] = f"Depth sweep, {plan.steps} training steps: {fam.label}"
    if fam.data_options.get("pad_to", 32) is None:
        # An MLP reads the 28×28 image as 784 features (it flattens any shape of that size).
        config["inputs"]["shape"] = [1, 28, 28]
    config["train"] = {
        "data": "fashion-mnist",
        "data_options": {**fam.data_options, "limit": b.train_limit, "test_limit": 2000},
        "optimizer": "sgd-momentum",
        "lr": b.lr,
        "momentum": b.momentum,
        "batch_size": b.batch_size,
        "steps": plan.steps,
        "warmup_steps": min(20, b.short_steps),  # the same in the short and long runs
        "eval_every": max(1, plan.steps // 10),
        "eval_examples": b.eval_examples,
        "target_accuracy": 0.7,
        "checkpoints": list(plan.checkpoints),
        "probe_examples": b.examples,
    }
    return config
