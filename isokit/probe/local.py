"""Local (per-block) Jacobian spectra: :func:`block_profile`.

Each tap module is differentiated alone at the input it actually receives in a forward pass of the
batch, with the exact tier (:mod:`isokit.probe.exact`).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from isokit.probe.checks import check_meta
from isokit.probe.exact import exact_spectra
from isokit.probe.options import ProbeOptions, resolve_options
from isokit.probe.prepare import Prepared, prepare
from isokit.probe.result import Profile
from isokit.probe.spectrum import TapSpectrum
from isokit.probe.taps import TapError, run_with_taps

__all__ = ["block_profile", "measure_blocks"]


class _Bound(nn.Module):
    """``u ↦ inner(u, *args, **kwargs)`` with the other arguments of the captured call."""

    def __init__(self, inner: nn.Module, args: tuple, kwargs: dict) -> None:
        super().__init__()
        self.inner = inner
        self._args, self._kwargs = args, kwargs

    def forward(self, u: Tensor) -> Any:
        return self.inner(u, *self._args, **self._kwargs)


def block_profile(
    model: nn.Module,
    inputs: Tensor,
    options: ProbeOptions | None = None,
    *,
    meta: dict[str, Any] | None = None,
    **overrides: Any,
) -> Profile:
    """Exact spectra of each tap module's local Jacobian ``∂h_l/∂u_l`` at its actual input.

    ``u_l`` is the first positional input of tap module ``l`` in a forward pass of the batch
    (captured with a hook; for the first tap it is whatever the model feeds it, e.g. the input
    itself). Each module is then differentiated alone (forward or reverse mode by dimensions,
    :mod:`isokit.probe.exact`), its other arguments as captured. ``n_in`` of each
    :class:`~isokit.probe.TapSpectrum` is ``d_l`` and ``r = min(D_l, d_l)``. On chains
    ``J_l = J_l^loc J_{l−1}``; with skips across tap boundaries the local spectra do not compose
    (``docs/probes.md §1``).

    Local Jacobians are always exact: of the :class:`~isokit.probe.ProbeOptions` (or keyword
    ``overrides``), ``taps``, ``dtype``, ``chunk_size``, ``example_chunk``, ``max_memory``,
    ``svd``, ``band`` and ``progress`` apply; ``method``, ``n_probes``, ``lanczos_steps``,
    ``slq_taps`` and ``seed`` are not used. ``start`` keeps the taps after that module, as in
    :func:`~isokit.probe.profile` (a local Jacobian does not depend on where the
    differentiation starts, ``docs/probes.md §3.6``).

    Example:
        >>> import torch, isokit
        >>> from isokit.models import MLP
        >>> model = isokit.init.apply(MLP(8, 8, depth=3, activation="tanh"), "orthogonal", seed=0)
        >>> blocks = isokit.probe.block_profile(model, torch.randn(2, 8))
        >>> blocks.meta["kind"], len(blocks.taps)
        ('local', 3)
    """
    meta = check_meta("meta", meta)
    opts = resolve_options(options, overrides)
    with prepare(model, inputs, opts) as prep:
        taps = measure_blocks(prep)
        prof_meta = prep.meta(
            method="exact",
            reason="local Jacobians are always exact",
            seed=None,
            meta=meta,
            extra={"kind": "local"},
        )
    return Profile(taps=taps, meta=prof_meta)


def measure_blocks(prep: Prepared) -> list[TapSpectrum]:
    """The local spectra of every tap of a prepared probe (see :func:`block_profile`)."""
    call = run_with_taps(prep.base, prep.mods, prep.base_x, capture_inputs=True)
    return [_block_tap(prep, i, call.inputs[i], call.args[i]) for i in range(len(prep.names))]


def _block_tap(prep: Prepared, i: int, u: Tensor, captured: tuple[tuple, dict]) -> TapSpectrum:
    opts, name = prep.options, prep.names[i]
    if u.shape[0] != prep.base_x.shape[0]:
        raise TapError(
            f"the input of tap {name!r} has no leading batch axis (shape "
            f"{tuple(u.shape)}); block_profile needs per-example block inputs"
        )
    args, kwargs = captured
    bound = _Bound(prep.mods[i], args, kwargs)
    try:
        ex = exact_spectra(
            bound,
            u.detach(),
            ["inner"],
            chunk_size=opts.chunk_size,
            max_memory=opts.max_memory,
            svd=opts.svd,
            progress=opts.progress,
            example_chunk=opts.example_chunk,
            labels=[name],
        )
    except RuntimeError as err:
        raise TapError(
            f"tap {name!r} cannot be differentiated alone on one example of its "
            f"captured input (shape {tuple(u.shape[1:])}): {err}"
        ) from err
    tap = ex.taps[0].to_spectrum(i + 1, dtype=opts.dtype, band=opts.band, method_prefix="local")
    tap.warnings.extend(ex.warnings)
    return tap
