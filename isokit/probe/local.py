"""Local (per-block) Jacobian spectra: :func:`block_profile`.

Each tap module is differentiated alone at the input it actually receives in a forward pass of the
batch, with the exact tier (:mod:`isokit.probe.exact`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from isokit.probe.common import _check_inputs, _dry_run, _exact_tap, _meta
from isokit.probe.exact import exact_spectra
from isokit.probe.hygiene import model_device, probe_context
from isokit.probe.result import Profile
from isokit.probe.taps import TapError, TapSpec, resolve_taps, run_with_taps

__all__ = ["block_profile"]


# ----------------------------------------------------------------------------------- blocks


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
    *,
    taps: TapSpec = "auto",
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = None,
    max_memory: int | None = None,
    svd: bool = False,
    band: float = 0.1,
    meta: dict[str, Any] | None = None,
    progress: bool = False,
) -> Profile:
    """Exact spectra of each tap module's local Jacobian ``∂h_l/∂u_l`` at its actual input.

    ``u_l`` is the first positional input of tap module ``l`` in a forward pass of the batch
    (captured with a hook; for the first tap it is whatever the model feeds it, e.g. the input
    itself). Each module is then differentiated alone (forward or reverse mode by dimensions,
    :mod:`isokit.probe.exact`), its other arguments as captured. ``n_in`` of each
    :class:`TapSpectrum` is ``d_l`` and ``r = min(D_l, d_l)``. On chains ``J_l = J_l^loc J_{l−1}``;
    with skips across tap boundaries the local spectra do not compose (``probes.md`` §1).
    """
    _check_inputs(inputs)
    names = resolve_taps(model, taps)
    with probe_context(model, dtype=dtype) as m:
        device = model_device(m)
        x = inputs.detach().to(device=device, dtype=dtype)
        mods = [m.get_submodule(n) for n in names]
        _dry_run(m, mods, x, model)
        call = run_with_taps(m, mods, x, capture_inputs=True)
        out = []
        reasons = []
        for i, (name, mod) in enumerate(zip(names, mods, strict=True)):
            u = call.inputs[i]
            args, kwargs = call.args[i]
            if u.shape[0] != x.shape[0]:
                raise TapError(
                    f"the input of tap {name!r} has no leading batch axis (shape "
                    f"{tuple(u.shape)}); block_profile needs per-example block inputs"
                )
            bound = _Bound(mod, args, kwargs)
            try:
                ex = exact_spectra(
                    bound,
                    u.detach(),
                    ["inner"],
                    chunk_size=chunk_size,
                    max_memory=max_memory,
                    svd=svd,
                    progress=progress,
                )
            except RuntimeError as err:
                raise TapError(
                    f"tap {name!r} cannot be differentiated alone on one example of its "
                    f"captured input (shape {tuple(u.shape[1:])}): {err}"
                ) from err
            tap = _exact_tap(ex.taps[0], i + 1, dtype=dtype, band=band, method_prefix="local")
            tap.name = name
            tap.warnings.extend(ex.warnings)
            out.append(tap)
            reasons.append(ex.plan.strategy)
    prof_meta = _meta(
        model,
        inputs,
        names,
        method="exact",
        reason="local Jacobians are always exact",
        dtype=dtype,
        device=device,
        seed=None,
        meta=meta,
        extra={"kind": "local"},
    )
    return Profile(taps=out, meta=prof_meta)
