"""phasic_mpi's PT and SVGD against emcee and ptemcee on the same log-density.

``make bench-peers`` (or ``python benchmarks/bench_peers.py [--quick]
[--repeats N]``; needs the ``bench`` extra: emcee, ptemcee-for-orbitize).
Targets (``peers_targets.py``): the rabbits(2) posterior of the examples and
the symmetric two-rate hypoexponential posterior (two mirror modes).

Every sampler sees the same density in unconstrained z = log θ (prior and
log-Jacobian included): phasic_mpi through its driver (the example's
[pt] / [svgd] settings, ``run_phasic``), emcee (32 walkers,
``vectorize=True``) and ptemcee (8 temperatures × 32 walkers, adaptive
ladder, all walkers of a step in one call through a batched ``pool.map``)
through ``LogProb``, the same Posterior's value without the gradient they
do not use. Per repetition r (seed 7 + r), for each target: PT and SVGD on
1 rank in this process, then emcee and ptemcee each for as much CPU time as
that PT run took (equal CPU time: on a shared machine the wall time of two
runs a minute apart differs with the load, the CPU time of a one-threaded
process much less); then PT and SVGD on 2 ranks (one ``mpiexec -n 2`` of
this script for both targets). Medians over the repetitions. PT runs
twice: ``pt`` with the settings' defaults (``mass_matrix = "auto"``: a metric
adapted in warm-up) and ``pt_unit`` with ``mass_matrix = "none"`` (the unit
metric PT had before), so before and after are measured in the same run;
``pt_2x8`` is the layout of before (2 chains of 8 temperatures; now 4 of 5), ``pt_auto``
adds the extra b = 1 moves per scan chosen in warm-up (``cold_steps = "auto"``).

Timed (wall clock, and CPU time of the process, summed over ranks): for
phasic_mpi the ``driver.run`` call (model and data set-up, initial state,
every scan or iteration including warm-up, gathers, run-file writes; not
interpreter/MPI start-up); for emcee/ptemcee from sampler construction to
the last step (initial evaluation and burn-in included). ``x emcee`` compares
ESS per wall second, ``x emcee cpu`` ESS per CPU second (the steadier figure
when other jobs share the machine; it does not count waits such as fsync). emcee/ptemcee discard the first half of their steps; PT keeps the
b = 1 draws of its sampling rounds; SVGD's draws are its final particles.

Bulk ESS: ArviZ ``ess(method="bulk")``, min over parameters, walkers as
chains for emcee/ptemcee (their walkers are not independent, so this is the
customary but optimistic count); SVGD's is the particle count (nominal: the
particles are not Markov draws). Accuracy: posterior mean and sd of θ
against a grid quadrature (``peers_reference.py``) in reference-sd units.
Symmetric target: fraction of draws with a < b (exact: 0.5) with its Monte
Carlo standard error sqrt(p (1 - p) / ESS) from ArviZ's mean-ESS of the
indicator a < b (chains or walkers as chains; optimistic for the ensemble
samplers, whose walkers are not independent), the fraction pooled over the
repetitions with its standard error and z = (p - 0.5) / se, and mode switches
(changes of the sign of a - b between consecutive kept draws of a chain or
walker) per second of total wall time and per CPU second.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (banner, machine_info, parse_args, run_two_ranks, serve_worker, table,  # noqa: E402
                    world, write_json, RESULTS)
import peers_targets as targets  # noqa: E402
from peers_reference import LogProb, Reference, accuracy, bulk_ess, modes, reference  # noqa: E402

EMCEE_WALKERS = 32
PTEMCEE_TEMPS, PTEMCEE_WALKERS = 8, 32
MIN_STEPS = 200  # emcee/ptemcee steps even if the time budget is shorter


def run_phasic(target, algorithm, seed, out, quick=False, comm=None):
    """phasic_mpi's ``algorithm`` (pt, pt_unit, pt_2x8, pt_auto or svgd) on ``target`` at the example's settings.

    The one place that calls phasic_mpi's sampler (switch it to the public
    API here). A collective call; returns ``(draws (chains, draws, d) in θ,
    wall s, density evaluations, CPU s summed over ranks)`` on rank 0, ``(None,
    wall, evals, cpu)`` elsewhere.
    """
    from mpi4py import MPI

    from phasic_mpi.config.loaders import build_density
    from phasic_mpi.io.runfile import RunFile
    from phasic_mpi.run.driver import run

    comm = MPI.COMM_WORLD if comm is None else comm
    cfg = targets.run_config(target, algorithm, seed, out, quick)
    algorithm = "svgd" if algorithm == "svgd" else "pt"  # pt_unit, pt_2x8 and pt_auto are pt runs
    comm.Barrier()
    t0, c0 = time.perf_counter(), time.process_time()
    run(cfg, build=build_density, out=out, overwrite=True, comm=comm, base_dir=targets.ROOT)
    cpu = comm.allreduce(time.process_time() - c0, op=MPI.SUM)
    wall = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
    section = cfg[algorithm]
    if algorithm == "pt":
        evals = section["chains"] * section["replicas"] * (1 + (2**section["rounds"] - 1) * section["local_steps"])
    else:
        evals = section["particles"] * (section["iterations"] + 1)
    if comm.rank != 0:
        return None, wall, evals, cpu
    post = RunFile(out).posterior()
    if algorithm == "pt":  # the extra b = 1 moves: one row per chain each, cold_steps per scan of round r
        import h5py

        with h5py.File(out, "r") as fh:
            cold = fh["pt/cold_steps"][()].ravel()
        evals += section["chains"] * int(np.sum(cold * 2 ** np.arange(len(cold))))
    names = targets.density_of(target).param_names
    return np.stack([post[n] for n in names], axis=-1), wall, evals, cpu


def run_emcee(density, budget_s, seed):
    """emcee, vectorised, from prior draws, stepping until it has used ``budget_s`` CPU seconds."""
    import emcee

    t0, c0 = time.perf_counter(), time.process_time()
    logprob = LogProb(density)
    rng = np.random.default_rng(seed)
    p0 = density.sample_prior_z(rng, EMCEE_WALKERS)
    sampler = emcee.EnsembleSampler(EMCEE_WALKERS, density.n_params, logprob, vectorize=True)
    sampler._random = np.random.RandomState(seed)  # emcee 3 has no seed argument
    chain = []
    for state in sampler.sample(p0, iterations=10**9, store=False):
        chain.append(state.coords.copy())
        if len(chain) >= MIN_STEPS and time.process_time() - c0 >= budget_s:
            break
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    z = np.stack(chain[len(chain) // 2:], axis=1)  # (walkers, draws, d)
    return density.to_theta(z), wall, logprob.calls, cpu


class BatchedPool:
    """ptemcee evaluates walkers by ``pool.map(f, rows)``; this map makes it one batched call.

    It returns what ptemcee's own evaluator returns per row: (loglik,
    logprior, blobs), with loglik 0 where the prior is -inf (its rule for b = 0).
    """

    def __init__(self, logprob):
        self.logprob = logprob

    def map(self, fn, rows):
        loglik, logprior = self.logprob.split(np.array(list(rows)))
        loglik = np.where(np.isneginf(logprior), 0.0, loglik)
        return [(a, b, []) for a, b in zip(loglik, logprior)]


def run_ptemcee(density, budget_s, seed):
    """ptemcee (adaptive ladder), batched, stepping until it has used ``budget_s`` CPU seconds; β = 1 draws."""
    import ptemcee

    t0, c0 = time.perf_counter(), time.process_time()
    logprob = LogProb(density)
    d = density.n_params
    p0 = density.sample_prior_z(np.random.default_rng(seed), PTEMCEE_TEMPS * PTEMCEE_WALKERS)
    sampler = ptemcee.Sampler(PTEMCEE_WALKERS, d, logl=None, logp=None, ntemps=PTEMCEE_TEMPS,
                              pool=BatchedPool(logprob), random=np.random.RandomState(seed))
    chain = []
    for p, *_ in sampler.sample(p0.reshape(PTEMCEE_TEMPS, PTEMCEE_WALKERS, d), iterations=10**9,
                                storechain=False, adapt=True):
        chain.append(p[0].copy())
        if len(chain) >= MIN_STEPS and time.process_time() - c0 >= budget_s:
            break
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    z = np.stack(chain[len(chain) // 2:], axis=1)
    return density.to_theta(z), wall, logprob.calls, cpu


# ---------------------------------------------------------------- runs
def row(target, sampler, ranks, rep, draws, wall, evals, cpu):
    return {"target": target, "sampler": sampler, "ranks": ranks, "rep": rep, "wall_s": wall,
            "cpu_s": cpu, "evals": int(evals), "draws": np.asarray(draws).tolist()}


def phasic_rows(args, ranks, rep, tmp):
    """PT and SVGD on both targets at this communicator's size (rows on rank 0 only)."""
    rows = []
    for target in targets.TARGETS:
        for algorithm in ("pt", "pt_unit", "pt_2x8", "pt_auto", "svgd"):
            out = str(Path(tmp) / f"{target}_{algorithm}_{ranks}.h5")
            draws, wall, evals, cpu = run_phasic(target, algorithm, 7 + rep, out, args.quick)
            if draws is not None:
                rows.append(row(target, algorithm, ranks, rep, draws, wall, evals, cpu))
    return rows


def worker(args):
    return phasic_rows(args, world().size, args.rep, args.tmp)


def repetition(args, rep, tmp):
    """One repetition: 1-rank phasic, the peers at PT's CPU time, then 2-rank phasic."""
    rows = phasic_rows(args, 1, rep, tmp)
    for target in targets.TARGETS:
        density = targets.density_of(target)
        budget = next(r["cpu_s"] for r in rows if r["target"] == target and r["sampler"] == "pt")
        for name, runner in (("emcee", run_emcee), ("ptemcee", run_ptemcee)):
            rows.append(row(target, name, 1, rep, *runner(density, budget, 7 + rep)))
    extra = ["--rep", str(rep), "--tmp", tmp] + (["--quick"] if args.quick else [])
    rows += run_two_ranks(Path(__file__).resolve(), extra, timeout=1800)
    return rows


# ------------------------------------------------------------- analysis
def cached_reference(target):
    """The target's grid reference, cached in results/ under its config (it takes ~1 min)."""
    import json

    key = json.dumps(targets.TARGETS[target], sort_keys=True)
    path = RESULTS / "peers_reference.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    if key not in cache:
        ref = reference(targets.density_of(target), targets.MODE_STARTS[target])
        cache[key] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in ref._asdict().items()}
        RESULTS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cache, indent=1) + "\n")
    return Reference(**{k: (np.array(v) if isinstance(v, list) else v) for k, v in cache[key].items()})


def measure(r, ref):
    """ESS, ESS/s, accuracy and (symmetric target) mode statistics of one run."""
    draws = np.array(r["draws"])
    ess = float(draws.shape[1]) if r["sampler"] == "svgd" else bulk_ess(draws)
    dmean, dsd = accuracy(draws, ref)
    out = {"ess": ess, "ess_per_s": ess / r["wall_s"], "ess_per_cpu_s": ess / r["cpu_s"], "dmean": dmean,
           "dsd": dsd, "ess_per_1k_evals": 1e3 * ess / r["evals"]}
    if r["target"] == "hypoexp":
        switches = modes(draws)[1]
        frac, se = mode_fraction(draws)
        # SVGD's particles are not a sequence: switches along them (and their ESS) mean nothing
        chain = r["sampler"] != "svgd"
        out.update(frac_a_lt_b=frac, frac_se=se if chain else np.nan,
                   switches_per_s=switches / r["wall_s"] if chain else np.nan,
                   switches_per_cpu_s=switches / r["cpu_s"] if chain else np.nan)
    return out


def mode_fraction(draws):
    """Fraction of draws with a < b and its Monte Carlo standard error from the ESS of the indicator."""
    import arviz as az

    side = (draws[:, :, 0] < draws[:, :, 1]).astype(float)
    frac = float(side.mean())
    if frac in (0.0, 1.0):  # one mode only: no variance to estimate, the error is not small
        return frac, np.nan
    return frac, float(np.sqrt(frac * (1.0 - frac) / az.ess(side, method="mean")))


def pooled_modes(rows):
    """Per (sampler, ranks) on the symmetric target: the mode fraction pooled over the
    repetitions (their mean), its standard error and z = (fraction - 0.5) / se."""
    groups = {}
    for r in rows:
        if r["target"] == "hypoexp":
            groups.setdefault((r["sampler"], r["ranks"]), []).append(r)
    out = {}
    for key, g in groups.items():
        frac = float(np.mean([r["frac_a_lt_b"] for r in g]))
        se = float(np.sqrt(np.sum([r["frac_se"] ** 2 for r in g])) / len(g))
        out[key] = (frac, se, (frac - 0.5) / se)
    return out


def summarise(rows, refs):
    """Median over repetitions per (target, sampler, ranks); ESS/s ratio to emcee per repetition."""
    for r in rows:
        r.update(measure(r, refs[r["target"]]))
    emcee = {(r["target"], r["rep"]): r for r in rows if r["sampler"] == "emcee"}
    for r in rows:
        r["vs_emcee"] = r["ess_per_s"] / emcee[(r["target"], r["rep"])]["ess_per_s"]
        r["vs_emcee_cpu"] = r["ess_per_cpu_s"] / emcee[(r["target"], r["rep"])]["ess_per_cpu_s"]
    groups = {}
    for r in rows:
        groups.setdefault((r["target"], r["sampler"], r["ranks"]), []).append(r)
    keys = ("wall_s", "cpu_s", "evals", "ess", "ess_per_s", "vs_emcee", "ess_per_cpu_s", "vs_emcee_cpu",
            "ess_per_1k_evals", "dmean", "dsd", "frac_a_lt_b", "frac_se", "switches_per_s", "switches_per_cpu_s")
    return [{"target": t, "sampler": s, "ranks": p, "reps": len(g),
             **{k: float(np.median([r[k] for r in g])) for k in keys if k in g[0]}}
            for (t, s, p), g in groups.items()]


def bitwise(rows):
    """Whether phasic_mpi's draws at 2 ranks equal those at 1 rank bit for bit (same seed)."""
    one = {(r["target"], r["sampler"], r["rep"]): r["draws"] for r in rows if r["ranks"] == 1}
    return all(r["draws"] == one[(r["target"], r["sampler"], r["rep"])]
               for r in rows if r["ranks"] == 2)


def print_table(summary, refs, pooled):
    order = {"emcee": 0, "ptemcee": 1, "pt_unit": 2, "pt": 3, "pt_2x8": 4, "pt_auto": 5, "svgd": 6}
    for target in targets.TARGETS:
        ref = refs[target]
        print(f"\n{target}: reference mean {np.round(ref.mean, 4).tolist()}, sd {np.round(ref.sd, 4).tolist()} "
              f"(grid of {ref.points} points; faces {ref.edge_nats:.1f} nats below the top; "
              f"resolution error {ref.resolution_error:.1e} sd)")
        sym = target == "hypoexp"
        head = ["sampler", "ranks", "wall s", "cpu s", "evals", "bulk ESS", "ESS/s", "x emcee", "ESS/cpu-s",
                "x emcee cpu", "ESS/1k evals", "max|dmean|/sd", "max|dsd|/sd"] + (["frac a<b", "+- se", "switches/s", "sw/cpu-s"] if sym else [])
        out = []
        for s in sorted((s for s in summary if s["target"] == target),
                        key=lambda s: (order[s["sampler"]], s["ranks"])):
            out.append([s["sampler"], str(s["ranks"]), s["wall_s"], s["cpu_s"], str(int(s["evals"])), s["ess"],
                        s["ess_per_s"], s["vs_emcee"], s["ess_per_cpu_s"], s["vs_emcee_cpu"],
                        s["ess_per_1k_evals"], s["dmean"], s["dsd"]]
                       + ([s["frac_a_lt_b"], s["frac_se"], s["switches_per_s"], s["switches_per_cpu_s"]]
                          if sym else []))
        print(table(head, out))
        if sym:
            print("mode fraction a < b pooled over the repetitions (exact 0.5): " + "; ".join(
                f"{name} {ranks}: {frac:.3f} +- {se:.3f} (z {z:+.1f})"
                for (name, ranks), (frac, se, z) in sorted(pooled.items(), key=lambda kv: (order[kv[0][0]], kv[0][1]))
                if np.isfinite(se)))


def add_arguments(parser):
    parser.add_argument("--repeats", type=int, default=None, help="repetitions (default 3; 1 with --quick)")
    parser.add_argument("--rep", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", default=None, help=argparse.SUPPRESS)


def main():
    args = parse_args(__doc__, add_arguments)
    if serve_worker(args, worker):
        return
    repeats = args.repeats or (1 if args.quick else 3)
    machine = machine_info()
    print(banner("bench_peers", machine))
    refs = {t: cached_reference(t) for t in targets.TARGETS}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):
            t0 = time.perf_counter()
            rows += repetition(args, rep, tmp)
            print(f"repetition {rep + 1}/{repeats}: {time.perf_counter() - t0:.0f} s", flush=True)
    summary = summarise(rows, refs)
    print(f"\nmedians over {repeats} repetition(s); x emcee (cpu) = median of the per-repetition ratio of "
          "bulk ESS per wall (CPU) second to emcee's on the same target; the peers ran for PT's CPU time; "
          "SVGD's ESS = its particle count (nominal)")
    print_table(summary, refs, pooled_modes(rows))
    same = bitwise(rows)
    print(f"\nphasic_mpi draws at 2 ranks bitwise equal to 1 rank (same seed): {same}")
    for r in rows:
        del r["draws"]
    path = write_json("bench_peers", {"machine": machine, "quick": args.quick, "repeats": repeats,
                                      "references": {t: {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                                                         for k, v in ref._asdict().items()}
                                                     for t, ref in refs.items()},
                                      "bitwise_1_vs_2_ranks": same, "summary": summary, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
