"""Building config tables for tests: a base table with one value changed at a dotted path."""

from __future__ import annotations

import copy


def with_value(base: dict, path: str, value: object) -> dict:
    """A deep copy of ``base`` with ``value`` at ``path`` (``models.1.depth``; list indices ok)."""
    data = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data
