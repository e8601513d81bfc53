"""Algorithms by name: the run loop, the config, the store, plotting, studies
and job scripts find every algorithm here.

Adding an algorithm means one module implementing
:class:`~phasic_mpi.inference.protocol.Algorithm` and one line in
:data:`BUILTIN` (or a call to :func:`register` from outside the package).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["BUILTIN", "algorithm_class", "algorithm_names", "make_algorithm", "register",
           "settings_class"]

# name -> "module:class"; imported on first use (PT and SVGD pull in scipy)
BUILTIN = {
    "svgd": "phasic_mpi.inference.svgd:SVGDAlgorithm",
    "pt": "phasic_mpi.inference.pt:PTAlgorithm",
    "map": "phasic_mpi.inference.mapfit:MapAlgorithm",
}
_registered: dict[str, type] = {}


def register(cls: type) -> type:
    """Register an algorithm class (usable as a decorator); its ``name`` is the key."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"an algorithm needs a class attribute name (an identifier), got {name!r}")
    _registered[name] = cls
    return cls


def algorithm_names() -> tuple[str, ...]:
    """Every known algorithm name, built-ins first."""
    return tuple(BUILTIN) + tuple(n for n in _registered if n not in BUILTIN)


def algorithm_class(name: str) -> type:
    """The class registered under ``name`` (KeyError listing the known names)."""
    if name in _registered:
        return _registered[name]
    if name not in BUILTIN:
        raise KeyError(f"unknown algorithm {name!r} (known: {', '.join(algorithm_names())})")
    module, _, attr = BUILTIN[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    _registered[name] = cls
    return cls


def settings_class(name: str) -> type:
    """The settings dataclass of algorithm ``name`` (its config section's schema)."""
    return algorithm_class(name).Settings


def make_algorithm(settings: Any) -> Any:
    """The algorithm object for a settings object (found by its ``section``)."""
    return algorithm_class(settings.section)(settings)
