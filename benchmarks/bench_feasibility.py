"""Feasibility estimate against the real per-iteration time (issue 12, open item 2).

``python benchmarks/bench_feasibility.py [--repeats 3]``. For rabbits (n = 2,
200 observations) and Kingman(50) (200 observations), SVGD (64 particles, 1000
iterations) and PT (8 replicas x 2 chains, 1023 scans; the examples' sizes)
run on one process; each run stores the feasibility
check's estimate (``estimated_seconds_per_iteration``: the Stein kernel or PT
move floor plus the density's cost per row, timed on a few prior draws, times
the rows per iteration) next to the measured ``loop_time_s``. The table gives
both and their ratio (median over the repeats, each repeat measuring both in
the same run, so machine load cancels to first order). Also printed: the
uniformization terms per evaluated row (mean / median / max) in the run and
over prior draws, which is where a prior-based estimate misses PT's early
proposals far in the tails.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import warnings

import numpy as np

import phasic_mpi as pm
from phasic_mpi.config import validate_config
from phasic_mpi.config.loaders import build_density
from phasic_mpi.model import native

LOGNORMAL = {"dist": "lognormal", "mu": 0.0, "sigma": 1.0}
MODELS = {
    "rabbits": {"model": {"name": "rabbits", "options": {"n": 2}},
                "data": {"simulate": {"theta": [1.0, 2.0, 4.0], "n": 200, "seed": 1}},
                "prior": {"default": LOGNORMAL,
                          "jump": {"dist": "gamma", "shape": 2.0, "rate": 1.0}}},
    "kingman50": {"model": {"name": "kingman", "options": {"n": 50}},
                  "data": {"simulate": {"theta": [1.0], "n": 200, "seed": 2}},
                  "prior": {"coal_rate": {"dist": "gamma", "shape": 2.0, "rate": 2.0}}},
}
ALGORITHMS = {
    # the sizes of examples/rabbits.toml and rabbits_pt.toml
    "svgd": {"particles": 64, "iterations": 1000, "stop_early": False},
    "pt": {"replicas": 8, "chains": 2, "rounds": 10, "warmup_rounds": 7},
}


class Recording:
    """The density, remembering every row it evaluates."""

    def __init__(self, density):
        self.density, self.z = density, []

    def __getattr__(self, name):
        return getattr(self.density, name)

    def evaluate(self, z, rows=None):
        self.z.append(np.asarray(z)[rows] if rows is not None else np.asarray(z))
        return self.density.evaluate(z, rows=rows)


def terms(density, z):
    info = {}
    native.loglik(density.graph, density.data, density.to_theta(z), grad=True, info=info)
    return info["n_terms"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"{'model':10} {'algorithm':9} {'estimate ms/it':>14} {'measured ms/it':>14} "
          f"{'measured/estimate':>17}  terms/row in the run (mean/median/max), prior")
    for model, spec in MODELS.items():
        cfg = validate_config({**spec, "svgd": {"particles": 2, "iterations": 1}}, ".")
        density, _ = build_density(cfg)
        prior = terms(density, density.sample_prior_z(np.random.default_rng(0), 400))
        for name, settings in ALGORITHMS.items():
            est, real, seen = [], [], None
            for _ in range(args.repeats):
                recording = Recording(density)
                result = pm.sample(recording, algorithm=name, progress="none", **settings)
                est.append(result.attrs["estimated_seconds_per_iteration"])
                real.append(result.attrs["loop_time_s"] / result.iteration)
                seen = np.concatenate(recording.z)
            ratio = float(np.median(np.array(real) / np.array(est)))
            k = terms(density, seen[:: max(1, len(seen) // 500)])
            print(f"{model:10} {name:9} {np.median(est) * 1e3:14.2f} {np.median(real) * 1e3:14.2f} "
                  f"{ratio:17.2f}  {k.mean():.0f}/{np.median(k):.0f}/{k.max()}, "
                  f"{prior.mean():.0f}/{np.median(prior):.0f}/{prior.max()}")


if __name__ == "__main__":
    main()
