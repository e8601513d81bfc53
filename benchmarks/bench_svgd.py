"""SVGD benchmark: the Stein kernel per pair and the time per iteration, old path vs new, same run.

``make bench-svgd`` (or ``python benchmarks/bench_svgd.py [--quick]``).

1. Kernel per (row, particle) pair, d = 1, 3, 4, 16, n = 1024, all rows:
   the old numpy rows (``tests/stein_reference.py``, what svgd_step ran
   before) against libphase's ``phase_stein`` (Stein direction; and both
   with the KSD row sums), medians of repeats, and their ratio.
2. Time per iteration, split into phases, for both paths (re-run here from
   the same public pieces as :func:`phasic_mpi.inference.svgd.svgd_step`):

   * old: Allgatherv of the particles, ``density.evaluate`` of the block,
     Allgatherv of scores+logp+invalid, exact distributed median bandwidth,
     numpy Stein direction, Allgatherv of |phi|^2, optimizer;
   * new: the Stein direction in C with the ``median_subset`` bandwidth
     (4096 pairs in libphase, no communication), optimizer,
     ``density.evaluate`` of the new block on its own (a rowwise density),
     one Allgather(v) of particles+scores+logp+status+|phi|^2+phi (as
     svgd_step: the KSD rows travel only on the iterations that compute
     them, the run loop's stop request inside the status column).

   Phases: likelihood (density.evaluate), kernel (bandwidth, Stein
   direction, optimizer; "bw" is the bandwidth's part), comm (the
   Allgatherv and the median's collectives), wait (a Barrier before the
   gathers: load imbalance, spent inside them in svgd_step), output (rank 0
   appends one row of particles to a run file; the old path Gatherv's them
   first, the new one already holds them). Random graph, 4 states, d
   parameters, lognormal priors, 20 observations. Bytes per rank per
   iteration from a counting proxy around the communicator. The 2-rank part
   re-runs this script under ``mpiexec -n 2``. Medians over iterations.
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import banner, median_time, parse_args, serve_worker, CountingComm, machine_info, run_two_ranks, table, world, write_json  # noqa: E402

from phasic_mpi.inference.parallel import allgather_rows, block_layout, gather_rows  # noqa: E402
from phasic_mpi.inference.posterior import Posterior  # noqa: E402
from phasic_mpi.inference.priors import LogNormal  # noqa: E402
from phasic_mpi.inference.svgd import (SVGDSettings, _optimizer_update, initial_state,  # noqa: E402
                                       median_bandwidth, subset_median_bandwidth)
from phasic_mpi.inference.stein import stein_terms  # noqa: E402
import stein_reference  # noqa: E402  (tests/, on sys.path through common)

N_GRID, D_GRID = (64, 256, 1024, 4096), (1, 4, 16)
PHASES = ("likelihood", "kernel", "comm", "wait", "output")


def make_density(d):
    from randgraph import random_graph
    graph = random_graph(4, d, 0.3, seed=11 + d)
    data = np.random.default_rng(3).exponential(1.0, 20) + 0.05
    return Posterior(graph, data, [LogNormal(0.0, 0.5)] * d)


def old_iteration(comm, layout, density, state, settings, t):
    """One iteration of the old svgd_step; fills the timestamps ``t``, returns the new state."""
    t["start"] = time.perf_counter()
    z = allgather_rows(comm, layout, state.particles)
    t["gathered"] = time.perf_counter()
    ev = density.evaluate(z, rows=layout.rows)
    local = np.column_stack([ev.grad, ev.logp, ev.invalid.astype(np.float64)])
    t["evaluated"] = time.perf_counter()
    comm.Barrier()
    t["waited"] = time.perf_counter()
    scores = allgather_rows(comm, layout, local)[:, :z.shape[1]]
    t["comm_end"] = time.perf_counter()
    rows = range(layout.start, layout.stop)
    h = median_bandwidth(z, comm, rows)
    t["bw"] = time.perf_counter()
    phi = stein_reference.stein_direction(z, scores, rows, h)
    t["kernel"] = time.perf_counter()
    comm.Barrier()
    t["waited2"] = time.perf_counter()
    allgather_rows(comm, layout, (phi * phi).sum(axis=1)[:, None])
    t["comm2"] = time.perf_counter()
    state = _optimizer_update(state, phi, settings)
    t["updated"] = time.perf_counter()
    zs = gather_rows(comm, layout, state.particles)
    return state, zs


def new_iteration(comm, layout, density, state, settings, t, shared):
    """One iteration of the new svgd_step (as gather_block + svgd_step); returns (state, shared z)."""
    z, scores = shared
    t["start"] = time.perf_counter()
    h = subset_median_bandwidth(z, settings.seed, state.iteration, settings.bandwidth_pairs)
    t["bw"] = time.perf_counter()
    rows = range(layout.start, layout.stop)
    phi, _ = stein_terms(z, scores, rows, h)
    state = _optimizer_update(state, phi, settings)
    t["updated"] = time.perf_counter()
    ev = density.evaluate(state.particles)  # a rowwise density: the block alone
    # as gather_block: status = invalid + 2 x stop request (none here); no KSD column (not due)
    local = np.column_stack([state.particles, ev.grad, ev.logp, ev.invalid.astype(np.float64),
                             (phi * phi).sum(axis=1), phi])
    t["evaluated"] = time.perf_counter()
    comm.Barrier()
    t["waited"] = time.perf_counter()
    g = allgather_rows(comm, layout, local)
    t["comm_end"] = time.perf_counter()
    d = z.shape[1]
    return state, (g[:, :d], g[:, d:2 * d])  # views, as svgd_step keeps them (row strides in C)


def phase_times(path, t):
    """Seconds per phase of one iteration from its timestamps."""
    if path == "old":
        return {"likelihood": t["evaluated"] - t["gathered"],
                "kernel": (t["kernel"] - t["comm_end"]) + (t["updated"] - t["comm2"]),
                "comm": (t["gathered"] - t["start"]) + (t["comm_end"] - t["waited"]) + (t["comm2"] - t["waited2"]),
                "wait": (t["waited"] - t["evaluated"]) + (t["waited2"] - t["kernel"]),
                "bandwidth": t["bw"] - t["comm_end"]}
    return {"likelihood": t["evaluated"] - t["updated"], "kernel": t["updated"] - t["start"],
            "comm": t["comm_end"] - t["waited"], "wait": t["waited"] - t["evaluated"],
            "bandwidth": t["bw"] - t["start"]}


def run_case(comm, n, d, iters, writer, path):
    """Median seconds per phase and bytes per rank per iteration for one (n, d) and path."""
    density = make_density(d)
    settings = SVGDSettings(particles=n, iterations=iters + 1, seed=1)
    layout = block_layout(n, comm.size, comm.rank)
    state = initial_state(density, settings, layout)
    shared = None
    if path == "new":  # the state's global arrays, as the first svgd_step gathers them
        z = allgather_rows(comm, layout, state.particles)
        shared = (z, allgather_rows(comm, layout, density.evaluate(z, rows=layout.rows).grad))
    times = {p: [] for p in PHASES + ("bandwidth",)}
    nbytes = []
    for it in range(iters + 1):  # the first iteration is a warm-up
        comm.Barrier()
        comm.reset()
        t = {}
        if path == "old":
            state, zs = old_iteration(comm, layout, density, state, settings, t)
        else:
            state, shared = new_iteration(comm, layout, density, state, settings, t, shared)
            zs = shared[0] if comm.rank == 0 else None
        comm_bytes = comm.sent + comm.received
        if zs is not None:
            writer.append(f"svgd_{path}_n{n}_d{d}/particles", density.to_theta(zs)[None])
        out_end = time.perf_counter()
        if it == 0:
            continue
        for p, v in phase_times(path, t).items():
            times[p].append(v)
        times["output"].append(out_end - (t["updated"] if path == "old" else t["comm_end"]))
        nbytes.append(comm_bytes)
    med = {p: float(np.median(v)) for p, v in times.items()}
    # the slowest rank sets the pace: take the max over ranks of each median
    med = {p: float(comm.allreduce(v, op=__import__("mpi4py").MPI.MAX)) for p, v in med.items()}
    return {"path": path, "n": n, "d": d, "ranks": comm.size, **{f"{p}_s": v for p, v in med.items()},
            "total_s": sum(med[p] for p in PHASES), "bytes_per_rank": int(np.median(nbytes))}


def kernel_per_pair(quick):
    """ns per (row, particle) pair of the Stein kernel, old numpy rows vs C, same data, same run."""
    n, out = (512 if quick else 1024), []
    rng = np.random.default_rng(7)
    for d in (1, 3, 4, 16):
        z, s = rng.normal(size=(n, d)), rng.normal(size=(n, d))
        h, rows, pairs = float(median_bandwidth(z)), range(n), n * n
        old = median_time(lambda: stein_reference.stein_direction(z, s, rows, h), 3) / pairs
        new = median_time(lambda: stein_terms(z, s, rows, h), 9) / pairs
        old_ksd = median_time(lambda: stein_reference.kernelized_stein_discrepancy(z, s, h), 3) / pairs
        new_ksd = median_time(lambda: stein_terms(z, s, rows, h, phi=False, ksd=True), 9) / pairs
        out.append({"d": d, "n": n, "old_ns": 1e9 * old, "new_ns": 1e9 * new, "ratio": old / new,
                    "old_ksd_ns": 1e9 * old_ksd, "new_ksd_ns": 1e9 * new_ksd, "ksd_ratio": old_ksd / new_ksd})
    return out


def grid(args):
    ns = N_GRID[:2] if args.quick else N_GRID
    return [(n, d) for n in ns for d in D_GRID]


def worker(args):
    comm = CountingComm(world())
    import h5py
    from phasic_mpi.io.store import RunWriter
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        writer = RunWriter(h5py.File(Path(tmp) / f"svgd{comm.rank}.h5", "w")) if comm.rank == 0 else None
        for n, d in grid(args):
            iters = args.iters if n < 4096 else max(2, args.iters // 2)
            for path in ("old", "new"):
                rows.append(run_case(comm, n, d, iters if path == "new" else max(2, iters // 2), writer, path))
        if writer is not None:
            writer.close()
    return rows


def main():
    def options(parser):
        parser.add_argument("--iters", type=int, default=10)
        parser.add_argument("--output", type=Path, default=None)

    args = parse_args(__doc__, options)
    if serve_worker(args, worker):
        return
    machine = machine_info()
    print(banner("bench_svgd", machine))
    print("random graph, 4 states, 20 observations; medians over iterations; max over ranks\n")
    pairs = kernel_per_pair(args.quick)
    print("Stein kernel per (row, particle) pair, all rows of n particles (medians):")
    print(table(["d", "n", "old numpy ns", "C ns", "speed-up", "old KSD ns", "C KSD ns", "KSD speed-up"],
                [[str(r["d"]), str(r["n"]), r["old_ns"], r["new_ns"], r["ratio"], r["old_ksd_ns"],
                  r["new_ksd_ns"], r["ksd_ratio"]] for r in pairs]))
    rows = worker(args)  # 1 rank, in this process (COMM_WORLD of size 1)
    extra = ["--iters", str(args.iters)] + (["--quick"] if args.quick else [])
    rows += run_two_ranks(Path(__file__).resolve(), extra)
    key = {(r["path"], r["n"], r["d"], r["ranks"]): r for r in rows}
    out = []
    for r in rows:
        r["speedup_vs_1"] = key[(r["path"], r["n"], r["d"], 1)]["total_s"] / r["total_s"]
        r["new_vs_old"] = key[("old", r["n"], r["d"], r["ranks"])]["total_s"] / r["total_s"]
        out.append([r["path"], str(r["n"]), str(r["d"]), str(r["ranks"])]
                   + [1e3 * r[f"{p}_s"] for p in PHASES] + [1e3 * r["bandwidth_s"], 1e3 * r["total_s"],
                                                            str(r["bytes_per_rank"]), r["speedup_vs_1"],
                                                            r["new_vs_old"]])
    print("\nTime per iteration (medians over iterations, max over ranks):")
    print(table(["path", "n", "d", "P", "lik ms", "kernel ms", "comm ms", "wait ms", "output ms", "(bw ms)",
                 "total ms", "bytes/rank", "vs 1 rank", "vs old"], out))
    print("\n(bw ms): part of kernel in the bandwidth (old: exact distributed median; new: 4096 pairs)")
    print("wait ms: Barrier before the Allgatherv (load imbalance; inside Allgatherv in svgd_step)")
    print("bytes/rank: sent + received by one rank per iteration in the collectives (output excluded)")
    print("vs old: old path's total / this row's total, same n, d, P")
    path = write_json("bench_svgd", {"machine": machine, "config": {"iters": args.iters, "n": list(N_GRID),
                                                                     "d": list(D_GRID), "states": 4,
                                                                     "n_obs": 20}, "kernel_per_pair": pairs,
                                     "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
