"""Prior-referenced vs variational-reference parallel tempering (issue 14.4).

On the two targets of ``bench_peers.py`` (rabbits(2) with 200 observations;
the symmetric two-rate hypoexponential, whose two mirror modes have equal
mass), at the example's PT settings (8 replicas, 2 chains, 10 rounds, 7 of
them warm-up; one rank), every configuration runs ``--repeats`` times with
seeds 0, 1, ...; the table gives medians over the repeats, and the ESS/s
ratio to the prior-referenced run of the same repeat (same machine, same
moment). Measured per run:

* Lambda: the barrier (sum of swap rejection rates) averaged over the
  sampling rounds; for the stabilised variant separately for the prior legs
  (``Λ prior leg``) and the variational legs (``Λ var leg``);
* round trips per scan: all chains' round trips in the sampling rounds over
  the number of sampling scans;
* bulk ESS (min over parameters, ArviZ) of the b = 1 draws of the
  independent chains (stabilised: the variational chain of each ensemble
  only, i.e. 1 chain against the prior-referenced run's 2), per second of
  the whole run (warm-up included: one MALA proposal far in the tail, e.g.
  after a refit, can cost seconds, since the likelihood's cost grows with the
  rates) and per second of the sampling rounds alone;
* on the hypoexponential, the fraction of draws in the mode a < b (0.5 exact).

Usage: ``python benchmarks/bench_pt_reference.py [--repeats N] [--quick]``
(``make bench-pt-reference``). Results: benchmarks/results/pt_reference.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import banner, machine_info, parse_args, table, write_json  # noqa: E402
import peers_targets as targets  # noqa: E402
from peers_reference import bulk_ess, modes  # noqa: E402

CONFIGS = {
    "prior": {},
    "variational diagonal, stabilised": {"reference": "variational", "variational_family": "diagonal"},
    "variational full, stabilised": {"reference": "variational", "variational_family": "full"},
    "variational full, 2 var legs": {"reference": "variational", "variational_family": "full",
                                     "stabilised": False},
}


def run_once(density, settings):
    """Run PT serially to the end; (draws (chains, draws, d) in θ, wall s, sampling-rounds wall s,
    round reports)."""
    from mpi4py import MPI

    from phasic_mpi.inference.pt import PTAlgorithm, round_of

    algorithm = PTAlgorithm(settings)
    t0 = time.perf_counter()
    ctx = algorithm.context(density, MPI.COMM_SELF)
    state, reports, t_sampling = algorithm.start(ctx), [], None
    for scan in range(algorithm.n_iterations):
        if t_sampling is None and round_of(scan) >= settings.warmup_rounds:
            t_sampling = time.perf_counter()
        state, _ = algorithm.step(state, ctx)
        if algorithm.history_due(state.iteration):
            reports.append(algorithm.history(state, ctx))
    final = algorithm.finish(state, ctx)
    t1 = time.perf_counter()
    draws = np.stack([final.draws[n] for n in density.param_names], axis=-1)
    return draws, t1 - t0, t1 - t_sampling, reports


def measure(target, name, draws, wall, sampling_wall, reports, settings):
    from phasic_mpi.inference.ptreference import variational_chains

    sampling = [r for r in reports if r["round"][0] >= settings.warmup_rounds]
    lam = np.mean([r["Lambda"][0] for r in sampling], axis=0)  # per chain
    var = variational_chains(settings)
    scans = sum(int(r["round_scans"][0]) for r in sampling)
    # Stabilised, the two chains of an ensemble exchange their b = 1 states
    # every other scan: counting both would double-count; one chain per
    # ensemble (the variational one) is counted, against every chain otherwise.
    paired = settings.reference == "variational" and settings.stabilised
    ess = bulk_ess(draws[var] if paired else draws)
    row = {"target": target, "config": name, "wall_s": wall, "ess": ess, "ess_per_s": ess / wall,
           "sampling_s": sampling_wall, "ess_per_sampling_s": ess / sampling_wall,
           "lambda_prior_leg": float(lam[~var].mean()) if (~var).any() else np.nan,
           "lambda_var_leg": float(lam[var].mean()) if var.any() else np.nan,
           "round_trips_per_scan": sum(float(r["round_trips"][0].sum()) for r in sampling) / scans,
           "log_z": float(np.mean(sampling[-1]["log_z"][0][:, 0]))}
    if target == "hypoexp":
        row["frac_a_lt_b"], row["switches"] = modes(draws)
    return row


def add_arguments(parser):
    parser.add_argument("--repeats", type=int, default=3, help="repetitions per configuration (default 3)")


def main():
    args = parse_args(__doc__, add_arguments)
    from phasic_mpi.inference.pt import PTSettings

    machine = machine_info()
    print(banner("bench_pt_reference", machine))
    repeats = 1 if args.quick else args.repeats
    section = dict(targets.PT, **(targets.QUICK["pt"] if args.quick else {}))
    rows = []
    for target in targets.TARGETS:
        density = targets.density_of(target)
        for rep in range(repeats):
            for name, extra in CONFIGS.items():
                settings = PTSettings(**{**section, **extra, "seed": rep})
                draws, wall, sampling_wall, reports = run_once(density, settings)
                row = measure(target, name, draws, wall, sampling_wall, reports, settings)
                rows.append({**row, "rep": rep})
                print(f"  {target} rep {rep} {name}: {wall:.1f} s, ESS {row['ess']:.0f}", flush=True)
    base = {(r["target"], r["rep"]): r["ess_per_s"] for r in rows if r["config"] == "prior"}
    base_sampling = {(r["target"], r["rep"]): r["ess_per_sampling_s"] for r in rows if r["config"] == "prior"}
    for r in rows:
        r["vs_prior"] = r["ess_per_s"] / base[(r["target"], r["rep"])]
        r["sampling_vs_prior"] = r["ess_per_sampling_s"] / base_sampling[(r["target"], r["rep"])]
    keys = ("lambda_prior_leg", "lambda_var_leg", "round_trips_per_scan", "ess", "ess_per_s", "vs_prior",
            "sampling_vs_prior", "wall_s", "sampling_s", "log_z", "frac_a_lt_b")
    summary = []
    for target in targets.TARGETS:
        for name in CONFIGS:
            group = [r for r in rows if r["target"] == target and r["config"] == name]
            summary.append({"target": target, "config": name, "reps": len(group),
                            **{k: float(np.median([r[k] for r in group])) for k in keys if k in group[0]}})
    head = ["target", "reference", "Λ prior leg", "Λ var leg", "trips/scan", "bulk ESS", "ESS/s",
            "x prior", "x prior (sampling)", "wall s", "sampling s", "log Z", "frac a<b"]
    print(f"\nmedians of {repeats} repeat(s); PT {section}")
    print(table(head, [[s["target"], s["config"], s["lambda_prior_leg"], s["lambda_var_leg"],
                        s["round_trips_per_scan"], s["ess"], s["ess_per_s"], s["vs_prior"],
                        s["sampling_vs_prior"], s["wall_s"], s["sampling_s"], s["log_z"],
                        s.get("frac_a_lt_b", np.nan)] for s in summary]))
    write_json("pt_reference", {"machine": machine, "settings": section, "rows": rows, "summary": summary})


if __name__ == "__main__":
    main()
