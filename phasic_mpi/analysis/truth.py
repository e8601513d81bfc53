"""The parameter values that simulated a run's data, read from its config.

One place for what ``summary``, the figures and studies call the truth:
``data.simulate.theta`` (the model's parameters, a list in their order or a
table), ``data.sfs.simulate.theta`` (the SFS model's, a table by name) and
``data.sfs.simulate.theta_mut`` (when the mutation rate is a parameter).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["true_values"]


def _by_name(theta: Any, names: Sequence[str]) -> dict[str, Any]:
    if isinstance(theta, Mapping):
        return dict(theta)
    if isinstance(theta, (list, tuple)) and len(theta) <= len(names):
        return dict(zip(names, theta))  # the model's parameters come first
    return {}


def true_values(config: Mapping[str, Any] | None, names: Sequence[str]) -> dict[str, float]:
    """``{name: value}`` for each of ``names`` the config simulated its data with.

    Parameters absent from the config's simulations are left out; a config
    without simulated data gives ``{}``.
    """
    data = (config or {}).get("data") or {}
    if not isinstance(data, Mapping):
        return {}
    found = _by_name((data.get("simulate") or {}).get("theta"), names)
    sfs = data.get("sfs") or {}
    sim = sfs.get("simulate") or {}
    found.update(_by_name(sim.get("theta"), ()))
    if sim.get("theta_mut") is not None and sfs.get("theta_mut") is None:
        found[sfs.get("theta_mut_name", "theta_mut")] = sim["theta_mut"]
    try:
        return {n: float(found[n]) for n in names if n in found}
    except (TypeError, ValueError):
        return {}
