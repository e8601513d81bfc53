"""Calibration of PT's stepping-stone log Z and its standard errors.

Runs parallel tempering on two targets with a closed-form evidence, at the
settings of their tests in tests/inference/test_pt.py, over ``--seeds``
seeds, and prints for the forward and the reverse direction:

* z = (estimate - exact) / se per chain, for the forward and reverse
  stepping stone and the geometric bridge, and for the chains' mean
  (se = sqrt(sum se_c^2) / K, as the tests combine them): mean z (bias in
  units of the reported se) and sd z (1 if the se is right), and the share
  of |z| > 3 (0.27 % for a calibrated Gaussian z);
* per ladder pair, the weights of the reverse direction w = exp((b_j+1 - b_j) V)
  at level j (and of the forward one at level j + 1): their Hill tail index
  alpha (the variance is infinite for alpha < 2) on the top 5 % pooled over
  chains, and the largest weight's share of a chain's sum (median over
  chains and seeds);
* on the mixture, the chains' mean share of b = 1 draws with z > 0 (0.7
  exact) and its standard error over the chains.

Targets: ``mixture`` (prior N(0, 10^2), L = 0.3 N(-5, 0.5^2) + 0.7 N(5,
0.5^2); 6 replicas, 16 chains, 12 rounds, 9 warm-up), ``mixture8`` (the same
with 8 chains) and ``expgamma`` (30 exponential times, Gamma(2, 1) prior; 6
replicas, 2 chains, 10 rounds, 6 warm-up). This is a statistical benchmark,
not a timing one. Over 60 seeds a calibrated sd z is itself uncertain by
about 0.1 (``--first-seed`` runs further seeds).

Usage: ``python benchmarks/bench_logz_calibration.py [--seeds N] [--first-seed S] [--jobs J] [--targets T ...]
[--quick]``.
Results: benchmarks/results/logz_calibration.json.
"""

from __future__ import annotations

import math
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, banner, machine_info, parse_args, table, write_json  # noqa: E402

sys.path.insert(0, str(ROOT / "tests" / "inference"))
from test_pt import Mixture  # noqa: E402  (the test's own target)


def target(name, seed):
    """(density, settings, exact log Z) of a target at ``seed``."""
    from scipy.special import gammaln
    from scipy.stats import norm

    from phasic_mpi import models
    from phasic_mpi.inference.posterior import Posterior
    from phasic_mpi.inference.priors import Gamma
    from phasic_mpi.inference.pt import PTSettings

    if name in ("mixture", "mixture8"):
        chains = 16 if name == "mixture" else 8
        settings = PTSettings(replicas=6, chains=chains, rounds=12, warmup_rounds=9, local_steps=2, seed=seed,
                              step_size=1.0)
        return Mixture(), settings, float(norm.logpdf(5.0, 0.0, math.sqrt(100.25)))
    graph = models.exponential()
    times = graph.sample(30, [2.0], seed=5)
    a, b = 2.0, 1.0
    shape, rate = a + times.size, b + times.sum()
    settings = PTSettings(replicas=6, chains=2, rounds=10, warmup_rounds=6, seed=seed, step_size=0.5)
    exact = a * np.log(b) - gammaln(a) + gammaln(shape) - shape * np.log(rate)
    return Posterior(graph, times, [Gamma(a, b)]), settings, float(exact)


def run_one(job):
    """One PT run: the last report's log Z and se, the ladder and the pooled potentials."""
    from mpi4py import MPI

    from phasic_mpi.inference.pt import PTAlgorithm

    name, seed = job
    density, settings, exact = target(name, seed)
    algorithm = PTAlgorithm(settings)
    ctx = algorithm.context(density, MPI.COMM_SELF)
    state = algorithm.start(ctx)
    last = None
    while state.iteration < algorithm.n_iterations:
        state, _ = algorithm.step(state, ctx)
        if algorithm.history_due(state.iteration):
            last = algorithm.history(state, ctx)
    final = algorithm.finish(state, ctx)
    draws = next(iter(final.draws.values()))  # (chains, draws)
    return {"log_z": np.asarray(last["log_z"][0]), "se": np.asarray(last["log_z_se"][0]),
            "bridge": np.column_stack([last["log_z_bridge"][0], last["log_z_bridge_se"][0]]),
            "betas": np.asarray(state.betas), "potential": np.asarray(state.round_loglik), "exact": exact,
            "positive": (np.asarray(draws) > 0).mean(axis=1)}


def hill_alpha(log_w, top=0.05):
    """Hill's estimate of the tail index of the weights exp(log_w) (top ``top`` share)."""
    s = np.sort(log_w)[::-1]
    k = max(int(top * s.size), 10)
    xi = float(np.mean(s[:k] - s[k]))
    return 1.0 / xi if xi > 0 else math.inf


def pair_weights(run):
    """Per pair j: (alpha_fwd, alpha_rev, median max-share fwd, median max-share rev)."""
    betas, pot = run["betas"], run["potential"]
    k, n = betas.shape
    out = []
    for j in range(n - 1):
        rows = {"fwd": [], "rev": []}
        for c in range(k):
            db = betas[c, j] - betas[c, j + 1]
            rows["fwd"].append(db * pot[:, c * n + j + 1])
            rows["rev"].append(-db * pot[:, c * n + j])
        entry = []
        for direction in ("fwd", "rev"):
            entry.append(hill_alpha(np.concatenate(rows[direction])))
        for direction in ("fwd", "rev"):
            share = [float(np.exp(w.max() - np.logaddexp.reduce(w))) for w in rows[direction]]
            entry.append(float(np.median(share)))
        out.append(entry)
    return np.array(out)


def zscores(runs):
    """Per estimate (forward, reverse, bridge): chain-level z (all chains, all seeds) and chains'-mean
    z (per seed)."""
    est = [np.column_stack([r["log_z"], r["bridge"][:, 0]]) for r in runs]
    se = [np.column_stack([r["se"], r["bridge"][:, 1]]) for r in runs]
    chain = np.concatenate([(e - r["exact"]) / s for e, s, r in zip(est, se, runs)])
    mean = np.array([(e.mean(axis=0) - r["exact"]) / (np.sqrt((s**2).sum(axis=0)) / len(s))
                     for e, s, r in zip(est, se, runs)])
    return chain, mean


def summarise(name, runs):
    chain, mean = zscores(runs)
    rows = []
    for d, direction in enumerate(("forward", "reverse", "bridge")):
        for level, z in (("chain", chain[:, d]), ("mean of chains", mean[:, d])):
            rows.append((name, direction, level, z.size, float(z.mean()), float(z.std(ddof=1)),
                         float(np.mean(np.abs(z) > 3)), float(np.median(np.abs(z)))))
    pairs = np.median(np.stack([pair_weights(r) for r in runs]), axis=0)
    betas = np.median(np.stack([r["betas"][0] for r in runs]), axis=0)
    return rows, pairs, betas


def weight_summary(runs):
    """Mixture: the chains' mean of the b = 1 share of z > 0 (0.7 exact) and its standard error, per seed."""
    mean = np.array([r["positive"].mean() for r in runs])
    se = np.array([r["positive"].std(ddof=1) / math.sqrt(r["positive"].size) for r in runs])
    return {"share_mean": mean.tolist(), "share_se": se.tolist(),
            "median_se": float(np.median(se)), "frac_se_ge_0.01": float(np.mean(se >= 0.01)),
            "frac_err_ge_0.02": float(np.mean(np.abs(mean - 0.7) >= 0.02)),
            "sd_z": float(np.std((mean - 0.7) / se, ddof=1))}


def main():
    args = parse_args(__doc__, lambda p: (p.add_argument("--seeds", type=int, default=40),
                                          p.add_argument("--first-seed", type=int, default=1),
                                          p.add_argument("--jobs", type=int, default=2),
                                          p.add_argument("--targets", nargs="+",
                                                         default=["expgamma", "mixture8", "mixture"]),
                                          p.add_argument("--save", type=Path, default=None)))
    seeds = 4 if args.quick else args.seeds
    machine = machine_info()
    print(banner("logz calibration", machine))
    first = args.first_seed
    result = {"machine": machine, "seeds": seeds, "first_seed": first, "targets": {}}
    all_rows = []
    for name in args.targets:
        with ProcessPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(run_one, [(name, s) for s in range(first, first + seeds)]))
        if args.save is not None:
            np.savez(args.save / f"{name}.npz", **{f"{key}_{i}": v for i, r in enumerate(runs)
                                                   for key, v in r.items()})
        rows, pairs, betas = summarise(name, runs)
        all_rows += rows
        print(f"\n{name}: median ladder {np.round(betas, 4).tolist()}")
        print(table(("pair j", "alpha fwd", "alpha rev", "max share fwd", "max share rev"),
                    [(j, *p) for j, p in enumerate(pairs)]))
        result["targets"][name] = {"rows": rows, "pairs": pairs.tolist(), "median_ladder": betas.tolist()}
        if name.startswith("mixture"):
            weights = weight_summary(runs)
            result["targets"][name]["weights"] = weights
            print("mode share z > 0: " + ", ".join(f"{key} {value:.4g}" for key, value in weights.items()
                                                   if not isinstance(value, list)))
    print()
    print(table(("target", "direction", "level", "n", "mean z", "sd z", "P(|z|>3)", "median |z|"), all_rows))
    write_json("logz_calibration", result)


if __name__ == "__main__":
    main()
