"""The two targets of ``bench_peers.py``, as run configs (benchmark-only code).

Every sampler gets its log-density from the same validated config through
:func:`density_of` (phasic_mpi's own driver builds the identical
:class:`~phasic_mpi.inference.posterior.Posterior` from it), so emcee, ptemcee and
phasic_mpi's PT and SVGD sample exactly the same distribution.

* ``rabbits``: the rabbits(2) posterior of ``examples/rabbits.toml`` /
  ``examples/rabbits_pt.toml`` (3 rates, 200 observations simulated from
  θ = [1, 2, 4] with seed 1, jump ~ Gamma(2, 1), floods ~ LogNormal(0, 1)).
* ``hypoexp``: T = Exp(a) then Exp(b) in series (:func:`hypoexponential`),
  a, b ~ LogNormal(0, 1) each (exchangeable), 200 observations simulated from
  (a, b) = (1, 5) with seed 1. The density of T is symmetric in (a, b), so the
  posterior has two mirror modes of equal mass (a < b and a > b) separated by
  about 6 nats of log density on the diagonal a = b.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# The example's priors (examples/rabbits.toml, rabbits_pt.toml).
RABBITS = {
    "model": {"name": "rabbits", "options": {"n": 2}},
    "data": {"simulate": {"theta": [1.0, 2.0, 4.0], "n": 200, "seed": 1}},
    "prior": {"default": {"dist": "lognormal", "mu": 0.0, "sigma": 1.0},
              "jump": {"dist": "gamma", "shape": 2.0, "rate": 1.0}},
}
HYPOEXP = {
    "model": {"name": f"{HERE / 'peers_targets.py'}:hypoexponential", "options": {}},
    "data": {"simulate": {"theta": [1.0, 5.0], "n": 200, "seed": 1}},
    "prior": {"default": {"dist": "lognormal", "mu": 0.0, "sigma": 1.0}},
}
TARGETS = {"rabbits": RABBITS, "hypoexp": HYPOEXP}
# Where the reference's mode search starts (θ); the hypoexponential's two mirror modes.
MODE_STARTS = {"rabbits": [[1.0, 2.0, 4.0]], "hypoexp": [[1.0, 5.0], [5.0, 1.0]]}

# The example's algorithm settings (rabbits.toml [svgd], rabbits_pt.toml [pt]).
SVGD = {"particles": 64, "iterations": 1000, "optimizer": "adagrad", "step_size": 0.05,
        "decay": 0.01, "bandwidth": "median", "history_every": 10, "ksd_every": 50}
PT = {"replicas": 5, "chains": 4, "rounds": 10, "warmup_rounds": 7, "local_move": "mala",
      "local_steps": 1, "step_size": 0.5, "target_accept": 0, "swap": "nonreversible",
      "adapt_ladder": True, "mass_matrix": "auto", "cold_steps": 0}
# "pt_unit": the same with the unit metric of the local moves (PT before mass_matrix
# existed), run alongside so that before and after are measured in one run.
PT_UNIT = {**PT, "mass_matrix": "none"}
# "pt_2x8": the layout the example and the defaults had before 4 x 5 (2 chains of
# 8 temperatures), run alongside so that the change is measured in one run.
PT_2X8 = {**PT, "chains": 2, "replicas": 8}
# "pt_auto": the example's settings with the extra b = 1 moves per scan chosen in
# warm-up (cold_steps = "auto", inference/ptcold.py) instead of none.
PT_AUTO = {**PT, "cold_steps": "auto"}
# --quick: shorter runs of the same samplers (a smoke test of the benchmark).
QUICK = {"svgd": {"iterations": 300}, "pt": {"rounds": 8, "warmup_rounds": 5}}


def hypoexponential():
    """T = Exp(a) then Exp(b): states 1 -> 2 at rate a, 2 -> absorbed at rate b."""
    from phasic_mpi.model.graph import Graph

    def transitions(state):
        if state == (1,):
            return [((2,), [1.0, 0.0])]
        if state == (2,):
            return [((0,), [0.0, 1.0])]
        return []

    return Graph.from_callback(transitions, (1,), 2, param_names=["a", "b"])


def run_config(target: str, algorithm: str | None = None, seed: int = 7, out: str = "run.h5",
               quick: bool = False) -> dict:
    """Validated config of ``target`` with the example's ``algorithm`` section (svgd, pt, pt_unit, pt_2x8 or pt_auto)."""
    from phasic_mpi.config import validate_config

    raw: dict[str, Any] = copy.deepcopy(TARGETS[target])
    if algorithm is not None:
        section = dict({"svgd": SVGD, "pt": PT, "pt_unit": PT_UNIT, "pt_2x8": PT_2X8, "pt_auto": PT_AUTO}[algorithm])
        kind = "svgd" if algorithm == "svgd" else "pt"
        if quick:
            section.update(QUICK[kind])
        raw[kind] = {**section, "seed": seed}
    # No checkpoints and no progress output: the run is timed, not watched.
    raw["output"] = {"path": out, "checkpoint_every": 0, "progress": "none"}
    return validate_config(raw, ROOT, require_algorithm=algorithm is not None)


def density_of(target: str):
    """The target's :class:`~phasic_mpi.inference.posterior.Posterior`, built as the driver builds it."""
    from phasic_mpi.config.loaders import build_density

    density, _ = build_density(run_config(target), ROOT)
    return density
