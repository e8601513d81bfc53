"""SVGD benchmark: time per iteration split into likelihood, kernel, communication, output.

``make bench-svgd`` (or ``python benchmarks/bench_svgd.py [--quick]``). The
phases of :func:`phasic_mpi.inference.svgd.svgd_step` are re-run here with the same
public functions (allgather_rows, density.evaluate, median_bandwidth,
stein_direction, _optimizer_update), each timed on its own:

* likelihood: ``density.evaluate`` of this rank's block (random graph, 4
  states, d parameters, lognormal priors, 20 observations);
* kernel: median bandwidth (the squared distances of the pairs the local rows
  own, about n/2 per row, and their exact selection: an in-place partition on
  one rank, with small Allreduce/Allgatherv on several), Stein direction of
  the local rows, optimizer;
* comm: the three Allgatherv (particles, scores+logp+invalid, phi norms);
* wait: a Barrier before the 2nd and 3rd Allgatherv (load imbalance, which
  svgd_step itself spends inside those Allgatherv);
* output: Gatherv of the particles to rank 0 + RunWriter.append of one row.

Bytes per rank per iteration are counted from the buffers passed to MPI (a
counting proxy around the communicator). The 2-rank part re-runs this script
under ``mpiexec -n 2`` in worker mode. Figures are medians over iterations.
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import banner, parse_args, serve_worker, CountingComm, machine_info, run_two_ranks, table, world, write_json  # noqa: E402

from phasic_mpi.inference.parallel import allgather_rows, block_layout, gather_rows  # noqa: E402
from phasic_mpi.inference.posterior import Posterior  # noqa: E402
from phasic_mpi.inference.priors import LogNormal  # noqa: E402
from phasic_mpi.inference.svgd import (SVGDSettings, _optimizer_update, initial_state,  # noqa: E402
                             median_bandwidth, stein_direction)

N_GRID, D_GRID = (64, 256, 1024, 4096), (1, 4, 16)
PHASES = ("likelihood", "kernel", "comm", "wait", "output")


def make_density(d):
    from randgraph import random_graph
    graph = random_graph(4, d, 0.3, seed=11 + d)
    data = np.random.default_rng(3).exponential(1.0, 20) + 0.05
    return Posterior(graph, data, [LogNormal(0.0, 0.5)] * d)


def run_case(comm, n, d, iters, writer):
    """Median seconds per phase and bytes per rank per iteration for one (n, d)."""
    density = make_density(d)
    settings = SVGDSettings(particles=n, iterations=iters + 1, seed=1)
    layout = block_layout(n, comm.size, comm.rank)
    state = initial_state(density, settings, layout)
    times = {p: [] for p in PHASES + ("bandwidth",)}
    nbytes = []
    for it in range(iters + 1):  # the first iteration is a warm-up
        comm.Barrier()
        comm.reset()
        t0 = time.perf_counter()
        z = allgather_rows(comm, layout, state.particles)
        t1 = time.perf_counter()
        ev = density.evaluate(z, rows=layout.rows)
        local = np.column_stack([ev.grad, ev.logp, ev.invalid.astype(np.float64)])
        t2 = time.perf_counter()
        comm.Barrier()  # load imbalance of the likelihood, kept out of "comm"
        w1 = time.perf_counter()
        gathered = allgather_rows(comm, layout, local)
        t3 = time.perf_counter()
        scores = gathered[:, :d]
        rows = range(layout.start, layout.stop)
        ta = time.perf_counter()
        h = median_bandwidth(z, comm, rows)
        tb = time.perf_counter()
        phi = stein_direction(z, scores, rows, h)
        t4 = time.perf_counter()
        comm.Barrier()
        w2 = time.perf_counter()
        norms = allgather_rows(comm, layout, (phi * phi).sum(axis=1)[:, None])[:, 0]
        t5 = time.perf_counter()
        state = _optimizer_update(state, phi, settings)
        t6 = time.perf_counter()
        comm_bytes = comm.sent + comm.received
        zs = gather_rows(comm, layout, state.particles)
        if zs is not None:
            writer.append(f"svgd_n{n}_d{d}/particles", density.to_theta(zs)[None])
        t7 = time.perf_counter()
        del norms
        if it == 0:
            continue
        times["likelihood"].append(t2 - t1)
        times["kernel"].append((t4 - t3) + (t6 - t5))
        times["comm"].append((t1 - t0) + (t3 - w1) + (t5 - w2))
        times["wait"].append((w1 - t2) + (w2 - t4))
        times["output"].append(t7 - t6)
        times["bandwidth"].append(tb - ta)
        nbytes.append(comm_bytes)
    med = {p: float(np.median(v)) for p, v in times.items()}
    # the slowest rank sets the pace: take the max over ranks of each median
    med = {p: float(comm.allreduce(v, op=__import__("mpi4py").MPI.MAX)) for p, v in med.items()}
    sent_recv = int(np.median(nbytes))
    return {"n": n, "d": d, "ranks": comm.size, **{f"{p}_s": v for p, v in med.items()},
            "total_s": sum(med[p] for p in PHASES), "bytes_per_rank": sent_recv}


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
            rows.append(run_case(comm, n, d, iters, writer))
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
    rows = worker(args)  # 1 rank, in this process (COMM_WORLD of size 1)
    extra = ["--iters", str(args.iters)] + (["--quick"] if args.quick else [])
    rows += run_two_ranks(Path(__file__).resolve(), extra)
    one = {(r["n"], r["d"]): r for r in rows if r["ranks"] == 1}
    out = []
    for r in rows:
        speedup = one[(r["n"], r["d"])]["total_s"] / r["total_s"]
        r["speedup_vs_1"] = speedup
        out.append([str(r["n"]), str(r["d"]), str(r["ranks"])]
                   + [1e3 * r[f"{p}_s"] for p in PHASES] + [1e3 * r["bandwidth_s"]] + [1e3 * r["total_s"], str(r["bytes_per_rank"]), speedup])
    print(table(["n", "d", "P", "lik ms", "kernel ms", "comm ms", "wait ms", "output ms", "(bw ms)", "total ms",
                 "bytes/rank", "speedup"], out))
    print("\n(bw ms): part of kernel spent in median_bandwidth (the distances of the pairs the local rows own,")
    print("        each pair once, and their exact selection, distributed over the ranks)")
    print("wait ms: Barrier before the 2nd and 3rd Allgatherv (load imbalance; inside Allgatherv in svgd_step)")
    print("bytes/rank: sent + received by one rank per iteration in the 3 Allgatherv and the median's")
    print("            Allreduce/Allgatherv (output excluded)")
    path = write_json("bench_svgd", {"machine": machine, "config": {"iters": args.iters, "n": list(N_GRID),
                                                                     "d": list(D_GRID), "states": 4,
                                                                     "n_obs": 20}, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
