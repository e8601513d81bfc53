"""Likelihood-term benchmark: the SFS and moment terms' cost per evaluation.

``python benchmarks/bench_terms.py [--repeats N]``. Per evaluation of 64 rows
(θ points), in one process and alternated, as medians of ``--repeats`` runs:

* **calibration**: examples/sfs_calibration_study.toml's model -- Kingman(6)
  with 10 absorption times plus the SFS of block-counting(6) over 100 loci
  (θ_mut a parameter) -- ``Posterior.evaluate`` with the SFS term, against
  the same posterior without it (absorption times alone);
* **block_counting(20)**: the SFS term alone (Poisson, θ_mut a parameter),
  and a moment term on all 19 branch-length means, against
  ``reward_moments`` with gradients alone (the libphase part both share).

"row loop" is the per-row Python evaluation the terms used before (copied
here as the baseline, so that before and after are measured in the same run);
"vectorised" is the current code. Ratios are against the baseline measured
in the same run. Results go to ``benchmarks/results/bench_terms.json``.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import math
import time

import numpy as np
from common import RESULTS, machine_info
from scipy.special import xlogy

from phasic_mpi.inference.posterior import Posterior
from phasic_mpi.inference.priors import Gamma, LogNormal
from phasic_mpi.model import models
from phasic_mpi.model.moments import reward_moments
from phasic_mpi.model.sfs import SFSData, simulate_sfs
from phasic_mpi.model.simulate import sample
from phasic_mpi.model.terms import MomentData, term_thetas

ROWS = 64


# -- the per-row evaluation the terms used before (the baseline) -------------

def _per_row(fn, n_params, *arrays):
    n_rows = arrays[0].shape[0]
    value = np.full(n_rows, -math.inf)
    grad = np.zeros((n_rows, n_params))
    for p in range(n_rows):
        rows = [np.ascontiguousarray(a[p]) for a in arrays]
        if all(np.isfinite(r).all() for r in rows):
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                value[p], grad[p] = fn(*rows)
    return value, grad


class RowLoopSFS(SFSData):
    """SFSData with the old per-row Poisson evaluation."""

    def loglik_and_grad(self, theta):
        thetas = term_thetas(theta, len(self.param_names))
        res = reward_moments(self.graph, thetas[:, :self.graph.n_params], self.rewards,
                             grad=True, errors="nan")
        return _per_row(self._row, len(self.param_names), res.mean, res.mean_grad, thetas)

    def _row(self, mean, dmean, theta):
        xi = self.counts
        mut = float(theta[-1]) if self.theta_mut_is_param else self.theta_mut
        scale = 0.5 * self.n_loci * mut
        lam = scale * mean
        if not (mut > 0) or np.any(lam < 0):
            return -math.inf, np.zeros(theta.size)
        value = float(xlogy(xi, lam).sum() - lam.sum()) + self._const
        dlam = np.where(xi > 0, xi / lam, 0.0) - 1.0
        grad = scale * (dlam @ dmean)
        if self.theta_mut_is_param:
            grad = np.append(grad, float(np.sum(xi - lam)) / mut)
        return value, grad


class RowLoopMoments(MomentData):
    """MomentData with the old per-row Gaussian evaluation."""

    def loglik_and_grad(self, theta):
        m, dm = self.moments_and_grad(theta)
        y, s = self.value, self.se
        const = float(np.sum(np.log(s))) + 0.5 * math.log(2 * math.pi) * y.size

        def row(mean, dmean):
            resid = (y - mean) / s
            return -0.5 * float(resid @ resid) - const, (resid / s) @ dmean

        return _per_row(row, len(self.param_names), m, dm)


# -- timing --------------------------------------------------------------------

def _median_times(fns, repeats):
    """Median wall time of each callable, alternating them ``repeats`` times."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(v)) for name, v in times.items()}


def _calibration(repeats, rng):
    bc, kingman = models.block_counting(6), models.kingman(6)
    counts = simulate_sfs(bc, [1.0], 0.4, n_loci=100, seed=1)
    times = sample(kingman, 10, [1.0], seed=2)
    priors = {"coal_rate": Gamma(4.0, 4.0), "theta_mut": LogNormal(-1.0, 0.5)}
    z = np.column_stack([rng.normal(0, 0.3, ROWS), rng.normal(-1, 0.5, ROWS)])
    alone = Posterior(kingman, times, {"coal_rate": priors["coal_rate"]})
    old = Posterior(kingman, times, priors, terms=[RowLoopSFS(bc, counts, n_loci=100)])
    new = Posterior(kingman, times, priors, terms=[SFSData(bc, counts, n_loci=100)])
    a, b = old.evaluate(z), new.evaluate(z)
    assert np.allclose(a.loglik, b.loglik, rtol=1e-12) and np.allclose(a.grad, b.grad, rtol=1e-10)
    t = _median_times({"times alone": lambda: alone.evaluate(z[:, :1]),
                       "row loop": lambda: old.evaluate(z),
                       "vectorised": lambda: new.evaluate(z)}, repeats)
    return t, "times alone"


def _block_counting(repeats, rng):
    bc = models.block_counting(20)
    counts = simulate_sfs(bc, [1.0], 5.0, n_loci=1, seed=1)
    theta = np.column_stack([np.exp(rng.normal(0, 0.3, ROWS)), np.exp(rng.normal(1.5, 0.3, ROWS))])
    old, new = RowLoopSFS(bc, counts), SFSData(bc, counts)
    rewards = new.rewards
    means = 2.0 / np.arange(1, 20)
    old_m = RowLoopMoments(bc, means, 0.1 * means, rewards=rewards)
    new_m = MomentData(bc, means, 0.1 * means, rewards=rewards)
    for o, n, th in ((old, new, theta), (old_m, new_m, theta[:, :1])):
        a, b = o.loglik_and_grad(th), n.loglik_and_grad(th)
        assert np.allclose(a[0], b[0], rtol=1e-12) and np.allclose(a[1], b[1], rtol=1e-10)
    t = _median_times({
        "moments alone": lambda: reward_moments(bc, theta[:, :1], rewards, grad=True,
                                                errors="nan"),
        "row loop": lambda: old.loglik_and_grad(theta),
        "vectorised": lambda: new.loglik_and_grad(theta),
        "moment term, row loop": lambda: old_m.loglik_and_grad(theta[:, :1]),
        "moment term, vectorised": lambda: new_m.loglik_and_grad(theta[:, :1]),
    }, repeats)
    return t, "moments alone"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    out = {"machine": machine_info(), "rows": ROWS, "repeats": args.repeats, "cases": {}}
    for name, case in (("calibration (kingman(6) + SFS bc(6))", _calibration),
                       ("block_counting(20)", _block_counting)):
        times, base = case(args.repeats, rng)
        print(f"\n{name}, {ROWS} rows, median of {args.repeats}")
        for label, t in times.items():
            print(f"  {label:26s} {t * 1e3:9.3f} ms   x{t / times[base]:.2f} of {base}")
        out["cases"][name] = {"baseline": base, "seconds": times}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_terms.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
