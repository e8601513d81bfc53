"""Model specs and parameter vectors as written in a config: the checks that
both the validation and the loaders need (so neither imports the other back).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from phasic_mpi.config.schema import fail as _fail
from phasic_mpi.config.schema import number

if TYPE_CHECKING:  # pragma: no cover
    from phasic_mpi.model.graph import Graph

__all__ = ["SIMULATE_MAX_JUMPS", "normalize_theta", "resolve_model_spec"]

SIMULATE_MAX_JUMPS = 1_000_000  # Graph.sample's default max_jumps, which load_data uses


def resolve_model_spec(name: str, base_dir: str | os.PathLike = ".",
                       path: str = "model.name", *,
                       builtins: bool = True) -> tuple[str, str, str | None]:
    """Classify a model spec: ``(kind, target, function)``.

    ``kind`` is ``"builtin"`` (target = name), ``"module"`` (target = dotted
    module name) or ``"file"`` (target = absolute path, which must exist).
    A spec ``head:function`` is a file if ``head`` ends in ``.py`` or
    contains a path separator, else a module. With ``builtins=False`` (log
    densities) a spec without ``:`` is an error.
    """
    from phasic_mpi.model.models import MODELS

    if ":" not in name:
        if not builtins:
            _fail(path, f"expected 'module:function' or 'path/file.py:function', "
                        f"got {name!r}")
        if name not in MODELS:
            _fail(path, f"unknown built-in model {name!r} (built-ins: "
                        f"{', '.join(MODELS)}; or 'module:function' or "
                        "'path/file.py:function')")
        return "builtin", name, None
    head, func = name.rsplit(":", 1)
    if not func.isidentifier():
        _fail(path, f"{func!r} in {name!r} is not a function name")
    if head.endswith(".py") or "/" in head or os.sep in head:
        file = os.path.abspath(os.path.join(os.fspath(base_dir), os.path.expanduser(head)))
        if not os.path.isfile(file):
            _fail(path, f"model file not found: {file}")
        return "file", file, func
    if not all(part.isidentifier() for part in head.split(".")):
        _fail(path, f"{head!r} in {name!r} is not a module name")
    return "module", head, func


def normalize_theta(value: Any, graph: Graph, path: str = "data.simulate.theta") -> list[float]:
    """Parameter values as a list in ``graph.param_names`` order, domain-checked.

    ``value`` is a list of numbers or a table ``{name: number}``.
    """
    names = list(graph.param_names)
    if isinstance(value, Mapping):
        for key in value:
            if key not in names:
                _fail(f"{path}.{key}", f"unknown parameter (model parameters: "
                                       f"{', '.join(names)})")
        missing = [n for n in names if n not in value]
        if missing:
            _fail(path, f"missing parameter(s) {', '.join(missing)}")
        value = [value[n] for n in names]
    if not isinstance(value, (list, tuple)):
        _fail(path, f"expected a list of {len(names)} numbers ({', '.join(names)}), "
                    f"got {value!r}")
    if len(value) != len(names):
        _fail(path, f"expected {len(names)} values ({', '.join(names)}), got {len(value)}")
    theta = [number()(v, f"{path}[{i}]") for i, v in enumerate(value)]
    try:
        rates = graph.checked_rates(theta)
    except ValueError as exc:
        _fail(path, str(exc))
    stuck = graph.stuck_reachable_at(rates)
    if stuck.size:
        _fail(path, f"{graph.label(stuck[0])} is reachable from the start but cannot "
                    f"reach absorption at theta={theta}")
    from phasic_mpi.model.simulate import expected_jumps, too_many_jumps

    mean = expected_jumps(graph, rates)
    if not mean <= SIMULATE_MAX_JUMPS:
        _fail(path, too_many_jumps(graph, rates, mean, SIMULATE_MAX_JUMPS))
    return theta
