"""Parameter families: vector- and matrix-valued parameters over flat names.

Samplers work on a flat vector of named scalars (``param_names``). A model
whose parameters form arrays (a network's weight matrices) declares them as
*families*: ``param_shapes = {"w1": (50, 10)}`` says that the 500 scalars
``w1_0_0 ... w1_49_9`` (or ``w1[0,0] ... w1[49,9]``) are the entries of one
50 x 10 array, in row-major order. Names in the bracket style declare their
family by themselves. :class:`ParamLayout` maps between the flat draws and
the posterior's variables (one array per family, scalars as they are), so a
run file and :meth:`Result.to_inference_data` show ``w1`` with dims
``(chain, draw, w1_dim_0, w1_dim_1)`` instead of 500 scalars.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ParamLayout", "member_name", "param_layout"]

_BRACKET = re.compile(r"^(?P<base>[^\[\]]+)\[(?P<index>\d+(?:,\s*\d+)*)\]$")
_RESERVED = {"chain", "draw"}


def member_name(base: str, index: Sequence[int], style: str) -> str:
    """Name of entry ``index`` of family ``base``: ``w_1_2`` (``"_"``) or ``w[1,2]`` (``"["``)."""
    if style == "[":
        return f"{base}[{','.join(map(str, index))}]"
    return f"{base}_{'_'.join(map(str, index))}"


@dataclass(frozen=True)
class ParamLayout:
    """The posterior variables that a flat parameter vector forms.

    Attributes
    ----------
    param_names : tuple of str
        The flat names, in sampler column order.
    shapes : dict of str to tuple of int
        The families and their shapes (empty when every parameter is a scalar).
    variables : tuple of (name, shape, columns)
        In order of first appearance: a scalar has shape ``()`` and one
        column; a family lists the columns of its entries in row-major order.
    """

    param_names: tuple[str, ...]
    shapes: dict[str, tuple[int, ...]]
    variables: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]

    def pack(self, draws: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Flat draws ``name -> (chain, draw)`` as variables ``(chain, draw, *shape)``.

        Entries of ``draws`` that are not parameters are passed through after
        the variables.
        """
        out: dict[str, np.ndarray] = {}
        for name, shape, cols in self.variables:
            if not shape:
                out[name] = np.asarray(draws[self.param_names[cols[0]]])
                continue
            parts = [np.asarray(draws[self.param_names[c]]) for c in cols]
            out[name] = np.stack(parts, axis=-1).reshape(*parts[0].shape, *shape)
        names = set(self.param_names)
        out.update({k: np.asarray(v) for k, v in draws.items() if k not in names})
        return out

    def unpack(self, variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Variables ``(chain, draw, *shape)`` as flat draws ``name -> (chain, draw)``.

        Variables that are not in the layout are passed through.
        """
        out: dict[str, np.ndarray] = {}
        for name, shape, cols in self.variables:
            arr = np.asarray(variables[name])
            if not shape:
                out[self.param_names[cols[0]]] = arr
                continue
            flat = arr.reshape(*arr.shape[:arr.ndim - len(shape)], -1)
            out.update({self.param_names[c]: flat[..., k] for k, c in enumerate(cols)})
        known = {name for name, _, _ in self.variables}
        out.update({k: np.asarray(v) for k, v in variables.items() if k not in known})
        return out


def _check_shape(base: str, shape: Any) -> tuple[int, ...]:
    try:
        dims = tuple(int(n) for n in shape)
        ok = dims and all(n >= 1 and n == m for n, m in zip(dims, shape))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"param_shapes.{base}: need a non-empty sequence of positive "
                         f"integers, got {shape!r}")
    return dims


def _bracket_families(names: Sequence[str], declared: Mapping[str, Any]) -> dict[str, tuple]:
    """Families declared by bracket names ``w[i,j]``: base -> shape of the full grid."""
    found: dict[str, set[tuple[int, ...]]] = {}
    for name in names:
        m = _BRACKET.match(name)
        if m and m["base"] not in declared:
            found.setdefault(m["base"], set()).add(tuple(int(i) for i in m["index"].split(",")))
    shapes = {}
    for base, indices in found.items():
        ndims = {len(i) for i in indices}
        shape = tuple(max(i[k] for i in indices) + 1 for k in range(max(ndims)))
        if len(ndims) > 1 or len(indices) != math.prod(shape):
            raise ValueError(f"parameters {base}[...]: the indices do not fill a grid "
                             f"(declare param_shapes, or name every entry of {base}[...])")
        shapes[base] = shape
    return shapes


def _members(base: str, shape: tuple[int, ...], index: Mapping[str, int]) -> tuple[int, ...]:
    first = (0,) * len(shape)
    styles = [s for s in ("_", "[") if member_name(base, first, s) in index]
    if not styles:
        raise ValueError(f"param_shapes.{base}: no parameter named "
                         f"{member_name(base, first, '_')} or {member_name(base, first, '[')}")
    cols = []
    for idx in np.ndindex(*shape):
        name = member_name(base, idx, styles[0])
        if name not in index:
            raise ValueError(f"param_shapes.{base}: shape {shape} needs a parameter {name}")
        cols.append(index[name])
    return tuple(cols)


def param_layout(param_names: Sequence[str], param_shapes: Mapping[str, Any] | None = None, *,
                 detect: bool = True) -> ParamLayout:
    """The layout of ``param_names`` with the families of ``param_shapes``.

    Parameters
    ----------
    param_names : sequence of str
        Flat parameter names.
    param_shapes : mapping of str to sequence of int, optional
        Family name -> shape. The entries are the parameters named
        ``<name>_<i>_<j>...`` or ``<name>[<i>,<j>,...]`` (one style per family),
        taken in row-major order wherever they stand in ``param_names``.
    detect : bool
        Also make a family of every set of bracket names ``<name>[...]``
        that ``param_shapes`` does not declare.

    Raises
    ------
    ValueError
        A shape that is not a tuple of positive integers, a missing entry, a
        family name that is also a scalar's or a reserved name, or an entry
        claimed by two families.
    """
    names = tuple(param_names)
    shapes = {str(base): _check_shape(base, shape) for base, shape in (param_shapes or {}).items()}
    if detect:
        shapes.update(_bracket_families(names, shapes))
    index = {name: m for m, name in enumerate(names)}
    owner: dict[int, str] = {}
    members = {}
    for base, shape in shapes.items():
        if base in index or base in _RESERVED or "/" in base or not base:
            raise ValueError(f"param_shapes.{base}: the name of a family must differ from "
                             "every parameter name and from chain/draw")
        members[base] = _members(base, shape, index)
        for c in members[base]:
            if c in owner:
                raise ValueError(f"param_shapes: {names[c]} is in both {owner[c]} and {base}")
            owner[c] = base
    variables, seen = [], set()
    for m, name in enumerate(names):
        base = owner.get(m)
        if base is None:
            variables.append((name, (), (m,)))
        elif base not in seen:
            seen.add(base)
            variables.append((base, shapes[base], members[base]))
    return ParamLayout(names, shapes, tuple(variables))
