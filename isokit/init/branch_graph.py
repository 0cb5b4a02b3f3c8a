"""Residual additions of a captured graph, read as residual branches (``docs/idinit.md`` §8).

One reading for every graph isokit captures: a ``torch.fx`` symbolic trace
(:mod:`isokit.init.branch_trace`) or a ``torch.export`` capture driven by example inputs
(:mod:`isokit.init.branch_export`). :class:`GraphBranches` holds the reading and asks its subclass
what a node is (a weight layer, a norm, an addition, a product, an activation, a shape change);
the subclasses answer for their graph's vocabulary.

An addition is residual when its two operands share a computed ancestor (the fork, the block
input) and the operand with more weight layers between fork and addition (the branch) has more
than one or the other (the skip) has none: an identity skip or a projection shortcut of one layer.
Walking back from the branch operand through parameter-free ops, norms, dropout, scalar gates and
the data input of gating products (squeeze-excitation, GLU) reaches the branch's last layer.
"""

from __future__ import annotations

import warnings

from torch import fx

from isokit.init.branch_errors import HOWTO, BranchDiscoveryError, BranchDiscoveryWarning
from isokit.structure import ResidualBranch


class GraphBranches:
    """Residual branches of one graph. Ancestor sets are int bitsets over node indices; only data
    edges count (not shape queries, parameters, buffers or constants).

    Subclasses answer the vocabulary questions (the methods that raise ``NotImplementedError``)
    and set ``params`` (parameter name → parameter) before calling ``__init__``.
    """

    params: dict

    def __init__(self, nodes: list[fx.Node]) -> None:
        self.nodes = nodes
        self.idx = {n: i for i, n in enumerate(self.nodes)}
        self.data: dict[fx.Node, list[fx.Node]] = {}
        self.anc: dict[fx.Node, int] = {}
        latest: dict[fx.Node, fx.Node] = {}  # tensor -> its in-place updated version

        def resolve(n: fx.Node) -> fx.Node:
            while n in latest:
                n = latest[n]
            return n

        for n in self.nodes:
            ins = list(dict.fromkeys(resolve(i) for i in n.all_input_nodes))
            self.data[n] = [i for i in ins if i in self.data and self._computed(i)]
            self.anc[n] = 1 << self.idx[n]
            for d in self.data[n]:
                self.anc[n] |= self.anc[d]
            target = self._inplace_target(n)
            if target is not None:
                latest[resolve(target)] = n

    # ------------------------------------------------------------------ vocabulary (subclasses)

    def _source(self, n: fx.Node) -> bool:
        """Whether ``n`` is a model input."""
        raise NotImplementedError

    def _opaque(self, n: fx.Node) -> bool:
        """Whether ``n`` never carries data (parameters, constants, shape queries, the output)."""
        raise NotImplementedError

    def _layers(self, n: fx.Node) -> tuple[str, ...]:
        """The weight layers ``n`` applies (one for a Linear or convolution, none for most)."""
        raise NotImplementedError

    def _preset(self, n: fx.Node) -> str | None:
        """The name of the preset module (``nn.Transformer*``) ``n`` stands for or lies in."""
        raise NotImplementedError

    def _presets(self, name: str) -> list[ResidualBranch]:
        raise NotImplementedError

    def _kind(self, n: fx.Node) -> str | None:
        """``"add"``, ``"sub"``, ``"mul"``, ``"shape"`` or ``"act"`` for those ops, else None."""
        raise NotImplementedError

    def _norm(self, n: fx.Node) -> str | None:
        """The name of the norm module ``n`` is or lies in."""
        raise NotImplementedError

    def _sources(self, n: fx.Node) -> list[str]:
        """Parameter names feeding a parameter-only value such as ``self.alpha.tanh()``."""
        raise NotImplementedError

    def _inplace_target(self, n: fx.Node) -> fx.Node | None:
        """The tensor an in-place op ``n`` updates (later readers of it read ``n``)."""
        raise NotImplementedError

    def _expand(self, name: str) -> tuple[str, ...]:
        """The branch entries of one weight layer (an attention module is two in fx)."""
        return (name,)

    def _gate_module(self, n: fx.Node) -> str | None:
        """The scalar parameter of a gate module ``n`` calls as a whole (fx leaves)."""
        return None

    def _residual_shapes(self, n: fx.Node, a: fx.Node, b: fx.Node) -> bool:
        """Whether the operands' shapes allow a residual addition (known in captured graphs)."""
        return True

    # ------------------------------------------------------------------ the reading

    def _computed(self, n: fx.Node) -> bool:
        """Whether ``n`` carries data derived from a model input."""
        if self._source(n):
            return True
        if self._opaque(n):
            return False
        return bool(self.data.get(n))

    def _between(self, fork: int, operand: fx.Node, other: fx.Node) -> int:
        """Bitset of the nodes on ``operand``'s path from the fork, off ``other``'s path."""
        mask, out = self.anc[operand] & ~self.anc[other], 0
        while mask:
            i = mask.bit_length() - 1
            mask ^= 1 << i
            if self.anc[self.nodes[i]] >> fork & 1:
                out |= 1 << i
        return out

    def _members(self, mask: int) -> list[fx.Node]:
        return [n for i, n in enumerate(self.nodes) if mask >> i & 1]

    def _names(self, mask: int) -> list[str]:
        return list(dict.fromkeys(x for n in self._members(mask) for x in self._layers(n)))

    def _residuals(self) -> dict[fx.Node, tuple[fx.Node, int]]:
        """Residual addition → (its branch operand, the branch's path bitset)."""
        residual: dict[fx.Node, tuple[fx.Node, int]] = {}
        for n in self.nodes:
            if self._kind(n) != "add" or len(self.data[n]) != 2 or self._preset(n):
                continue
            a, b = self.data[n]
            common = self.anc[a] & self.anc[b]
            if not common or not self._residual_shapes(n, a, b):
                continue  # e.g. a positional embedding, a bias or an attention mask
            fork = common.bit_length() - 1
            pa, pb = self._between(fork, a, b), self._between(fork, b, a)
            na, nb = self._names(pa), self._names(pb)
            ca, cb = len(na), len(nb)
            if ca == cb == 0:
                continue
            if ca == cb or min(ca, cb) > 1:
                raise BranchDiscoveryError(
                    f"addition {n.name!r} after {self.nodes[fork].name!r} is ambiguous: its "
                    f"operands carry {ca} and {cb} weight layers ({na} and {nb}), so neither is "
                    "clearly the skip path (it must have fewer weight layers, and at most one). "
                    f"{HOWTO}"
                )
            residual[n] = (a, pa) if ca > cb else (b, pb)
        return residual

    def find(self) -> list[ResidualBranch]:
        residual = self._residuals()
        out: list[ResidualBranch] = []
        seen_presets: set[str] = set()
        for n in self.nodes:
            preset = self._preset(n)
            if preset is not None and preset not in seen_presets:
                seen_presets.add(preset)
                out += self._presets(preset)
            if n not in residual:
                continue
            operand, path = residual[n]
            last, norm, gate, why = self._walk(operand, path, n)
            if last is None:
                warnings.warn(
                    f"residual addition {n.name!r} has no last layer of its own: its branch {why}; "
                    "it is skipped and its layers count as main stem",
                    BranchDiscoveryWarning,
                    stacklevel=4,
                )
                continue
            nested = 0  # layers of residual blocks nested in this branch belong to those blocks
            for inner, (_, inner_path) in residual.items():
                if inner is not n and path >> self.idx[inner] & 1:
                    nested |= inner_path
            tail = tuple(x for name in self._layers(last) for x in self._expand(name))
            layers = [
                x
                for name in self._names(path & ~nested)
                for x in self._expand(name)
                if x not in tail
            ]
            out.append(ResidualBranch(layers=(*layers, *tail), gate=gate, norm=norm))
        return out

    def _walk(self, n: fx.Node, path: int, add: fx.Node):
        """Walk back from the branch operand to the branch's last weight layer."""
        norm = gate = None
        while True:
            if not path >> self.idx[n] & 1:
                return None, norm, gate, "reaches the block input without passing a weight layer"
            preset = self._preset(n)
            if preset is not None:
                return None, norm, gate, f"ends inside the preset module {preset!r}"
            layers = self._layers(n)
            if len(layers) == 1:
                return n, norm, gate, ""
            if layers:
                return None, norm, gate, f"ends in {n.name!r}, which applies {list(layers)}"
            kind = self._kind(n)
            if kind in ("add", "sub") and len(self.data[n]) > 1:
                return None, norm, gate, f"ends in another addition ({n.name!r})"
            norm = norm or self._norm(n)
            gate = gate or self._gate_module(n)
            data = self.data[n]
            if kind == "mul":
                nxt, g = self._product_data(n, add)
                gate = gate or g
            elif len(data) == 1:
                nxt = data[0]
            else:
                inside = [d for d in data if path >> self.idx[d] & 1]
                if len(inside) != 1:
                    raise BranchDiscoveryError(
                        f"cannot tell which input of {n.name!r} ({n.target}) carries the branch "
                        f"output of addition {add.name!r}. {HOWTO}"
                    )
                nxt = inside[0]
            n = nxt

    def _product_data(self, n: fx.Node, add: fx.Node) -> tuple[fx.Node, str | None]:
        """The data input of an elementwise product, and the scalar gate parameter if any."""
        gate = None
        for arg in n.all_input_nodes:
            if self._computed(arg):
                continue
            names = self._sources(arg)
            if len(names) == 1 and names[0] in self.params and self.params[names[0]].numel() == 1:
                gate = names[0]
        data = self.data[n]
        if len(data) == 1:
            return data[0], gate
        a, b = data
        if self.anc[b] >> self.idx[a] & 1:
            return a, gate  # b is a side path computed from a (squeeze-excitation)
        if self.anc[a] >> self.idx[b] & 1:
            return b, gate
        gated_a, gated_b = self._gating(a), self._gating(b)
        if gated_a != gated_b:
            return (b if gated_a else a), gate  # GLU: the activated operand is the gate
        raise BranchDiscoveryError(
            f"cannot tell the data input from the gate in product {n.name!r} on the branch of "
            f"addition {add.name!r} (inputs {a.name!r} and {b.name!r}). {HOWTO}"
        )

    def _gating(self, n: fx.Node) -> bool:
        while self._kind(n) == "shape" and self.data[n]:
            n = self.data[n][0]
        return self._kind(n) == "act"
