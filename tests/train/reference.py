"""What the trainer's tests compare against: a hand-written PyTorch loop following the documented
contract (seed streams, data order, schedule formula, loss), and small data sets built here."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional

from isokit.models import MLP
from isokit.train import Split, TrainData
from isokit.train.loop import stream_seed


def lr_formula(step: int, *, total: int, schedule: str, warmup: int) -> float:
    """The documented multiplier: linear warm-up (s+1)/w, then 1 or a half cosine to 0 at
    ``total``, written here from the docs rather than imported."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / (total - warmup)
    return (1.0 + math.cos(math.pi * progress)) / 2.0


def loss_of(task: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The documented losses: cross-entropy (−log softmax at the label, averaged), or ½·mean
    over examples of the squared error summed over outputs."""
    if task == "classification":
        return -functional.log_softmax(output, dim=1).gather(1, target[:, None]).mean()
    return 0.5 * ((output - target) ** 2).sum(dim=1).mean()


def plain_loss(task: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The loss as a plain PyTorch loop writes it (torch's fused cross-entropy, whose last bit
    can differ from :func:`loss_of`'s)."""
    if task == "classification":
        return functional.cross_entropy(output, target)
    return loss_of(task, output, target)


def batch_order(n: int, batch_size: int, seed: int, steps: int) -> list[torch.Tensor]:
    """The documented data order: a fresh ``randperm`` each epoch from a generator seeded with
    ``stream_seed(seed, 0)``, cut into consecutive batches (the last one short)."""
    gen = torch.Generator().manual_seed(stream_seed(seed, 0))
    per_epoch = math.ceil(n / batch_size)
    out, order = [], None
    for step in range(steps):
        if step % per_epoch == 0:
            order = torch.randperm(n, generator=gen)
        within = step % per_epoch
        out.append(order[within * batch_size : (within + 1) * batch_size])
    return out


def reference_run(
    model: nn.Module,
    data: TrainData,
    *,
    optimizer: str,
    lr: float,
    steps: int,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    batch_size: int | None = None,
    seed: int = 0,
    schedule: str = "constant",
    warmup: int = 0,
    dtype: torch.dtype = torch.float64,
) -> list[float]:
    """Train ``model`` in place with a plain loop; the loss of every step's batch before its
    update (stopping after the first non-finite one)."""
    model.to(dtype).train()
    x = data.train.inputs.to(dtype)
    y = data.train.targets if data.task == "classification" else data.train.targets.to(dtype)
    n = x.shape[0]
    full = batch_size is None or batch_size >= n
    order = None if full else batch_order(n, batch_size, seed, steps)
    params = list(model.parameters())
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    losses = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(seed, 1))  # dropout draws
        for step in range(steps):
            xb, yb = (x, y) if full else (x[order[step]], y[order[step]])
            loss = plain_loss(data.task, model(xb), yb)
            losses.append(loss.item())
            if not math.isfinite(losses[-1]):
                break
            for group in opt.param_groups:
                group["lr"] = lr * lr_formula(step, total=steps, schedule=schedule, warmup=warmup)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return losses


def blobs(*, n_train: int = 96, n_test: int = 32, dim: int = 6, classes: int = 3, seed: int = 0):
    """A classification set: Gaussian clusters around random centres (float64)."""
    gen = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(classes, dim, generator=gen, dtype=torch.float64)

    def split(n: int) -> Split:
        labels = torch.randint(classes, (n,), generator=gen)
        inputs = centres[labels] + torch.randn(n, dim, generator=gen, dtype=torch.float64)
        return Split(inputs=inputs, targets=labels)

    return TrainData(
        name="blobs",
        task="classification",
        train=split(n_train),
        test=split(n_test),
        num_classes=classes,
    )


def scalar_data(n: int = 1) -> TrainData:
    """Inputs 1 and targets 0: for ``y = w·x`` the loss is ½w² and its gradient w."""
    ones, zeros = torch.ones(n, 1, dtype=torch.float64), torch.zeros(n, 1, dtype=torch.float64)
    return TrainData(
        name="scalar",
        task="regression",
        train=Split(inputs=ones, targets=zeros),
        test=Split(inputs=ones, targets=zeros),
    )


def mlp(*args, seed: int = 0, **kwargs) -> MLP:
    """An isokit MLP with torch's default init drawn from ``seed`` (the test's RNG untouched),
    so that every test sees the same weights whatever ran before it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLP(*args, **kwargs)


def dropout_net(dim: int = 6, classes: int = 3, *, seed: int = 0) -> nn.Sequential:
    """A small classifier with dropout (so training draws random numbers), float64."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nn.Sequential(
            nn.Linear(dim, 16), nn.Tanh(), nn.Dropout(0.3), nn.Linear(16, 16), nn.Tanh(),
            nn.Linear(16, classes),
        )  # fmt: skip
    return net.double()


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
