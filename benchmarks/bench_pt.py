"""Parallel-tempering benchmark: time per scan split into local moves, swaps and output.

``make bench-pt`` (or ``python benchmarks/bench_pt.py [--quick]``). One chain
of R replicas (random graph, 4 states, d parameters, 20 observations, MALA)
runs ``pt_step`` for 2^rounds - 1 scans at 1 rank and at 2 ranks (under
``mpiexec -n 2``, the replicas split in two blocks so one swap pair crosses
ranks), with ``mass_matrix`` "none" (the unit metric) and "auto" (the
default: dense for d = 4 and 16; d = 1 has no metric). ``phasic_mpi.inference.pt._swap_phase``
is wrapped by a timer (benchmark-only monkeypatch, pt.py is untouched); Sendrecv calls and
bytes come from the communicator facade's own counters (``Communicator.traffic``). Phases
per scan (medians over scans, max over ranks):

* local: pt_step minus swap phase minus round-end work;
* swaps: the swap phase (pairing, Sendrecv of 6 + 3d doubles, accept);
* round end: Allgatherv of stats/loglik + ladder adaptation (every 2^k scans,
  reported as the mean per scan);
* output: PTAlgorithm.history and drain (the cold draws since the last round
  end, gathered to rank 0) + RunWriter.append_many on rank 0 at round ends
  (mean per scan), as the run loop does them.
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (banner, parse_args, serve_worker, machine_info, run_two_ranks, table, time_into,  # noqa: E402
                    world, write_json)

from phasic_mpi.inference import pt  # noqa: E402
from phasic_mpi.inference.posterior import Posterior  # noqa: E402
from phasic_mpi.inference.priors import LogNormal  # noqa: E402

TIMES = {"swap": 0.0}
pt._swap_phase = time_into(pt._swap_phase, TIMES, "swap")


def make_density(d):
    from randgraph import random_graph
    graph = random_graph(4, d, 0.3, seed=11 + d)
    data = np.random.default_rng(3).exponential(1.0, 20) + 0.05
    return Posterior(graph, data, [LogNormal(0.0, 0.5)] * d)


def run_case(raw_comm, d, replicas, rounds, writer, metric="auto"):
    from mpi4py import MPI
    density = make_density(d)
    settings = pt.PTSettings(replicas=replicas, chains=1, rounds=rounds, warmup_rounds=rounds - 1, seed=2,
                             mass_matrix=metric)
    algo = pt.PTAlgorithm(settings)
    ctx = algo.context(density, raw_comm)
    comm = ctx.comm  # the facade: it counts its own calls
    state = algo.start(ctx)
    plain = {"local": [], "swap": [], "total": []}
    end_extra, out_time = 0.0, 0.0
    for scan in range(settings.n_scans):
        comm.barrier()
        TIMES["swap"] = 0.0
        t0 = time.perf_counter()
        state, _ = algo.step(state, ctx)
        t1 = time.perf_counter()
        swap = TIMES["swap"]
        if pt.round_ends_after(state.iteration):
            # round-end work beyond a plain scan: total minus the plain-scan median so far
            end_extra += (t1 - t0) - (np.median(plain["total"]) if plain["total"] else 0.0)
            t2 = time.perf_counter()
            hist = algo.history(state, ctx)
            state, drained = algo.drain(state, ctx)
            if hist and writer is not None:
                rows = {**hist, **(drained or {})}
                writer.append_many({f"pt_d{d}_R{replicas}_{metric}/{k}": v for k, v in rows.items()})
            out_time += time.perf_counter() - t2
            continue
        plain["local"].append((t1 - t0) - swap)
        plain["swap"].append(swap)
        plain["total"].append(t1 - t0)
    n = settings.n_scans
    res = {"local_s": float(np.median(plain["local"])), "swap_s": float(np.median(plain["swap"])),
           "round_end_s": max(end_extra, 0.0) / n, "output_s": out_time / n}
    res = {k: float(raw_comm.allreduce(v, op=MPI.MAX)) for k, v in res.items()}
    res["total_s"] = sum(res.values())
    calls = raw_comm.allreduce(comm.traffic()["sendrecv"].calls, op=MPI.SUM)
    sent = raw_comm.allreduce(comm.traffic()["sendrecv"].bytes_sent, op=MPI.SUM)
    return {"d": d, "replicas": replicas, "metric": metric, "ranks": raw_comm.size, "scans": n, **res,
            "sendrecv_calls": int(calls), "bytes_per_swap": (sent / calls) if calls else 0.0,
            "bytes_per_swap_expected": 8 * (6 + 3 * d)}


def cases(args):
    """(d, replicas, mass_matrix): "auto" is the default (dense for d = 4, 16), "none" the unit metric."""
    return [(d, r, m) for d in (1, 4, 16) for r in ((8,) if args.quick else (8, 32))
            for m in (("auto",) if d == 1 else ("none", "auto"))]


def worker(args):
    import h5py
    from phasic_mpi.io.store import RunWriter
    comm = world()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        writer = RunWriter(h5py.File(Path(tmp) / "pt.h5", "w")) if comm.rank == 0 else None
        for d, r, m in cases(args):
            rows.append(run_case(comm, d, r, args.rounds, writer, m))
        if writer is not None:
            writer.close()
    return rows


def main():
    args = parse_args(__doc__, lambda parser: parser.add_argument("--rounds", type=int, default=7))
    if serve_worker(args, worker):
        return
    machine = machine_info()
    print(banner("bench_pt", machine))
    print(f"1 chain, MALA, random graph 4 states, 20 obs, {2**args.rounds - 1} scans; "
          "medians over plain scans, max over ranks\n")
    rows = worker(args)
    rows += run_two_ranks(Path(__file__).resolve(), ["--rounds", str(args.rounds)] + (["--quick"] if args.quick else []))
    one = {(r["d"], r["replicas"], r["metric"]): r for r in rows if r["ranks"] == 1}
    out = []
    for r in rows:
        r["speedup_vs_1"] = one[(r["d"], r["replicas"], r["metric"])]["total_s"] / r["total_s"]
        out.append([str(r["d"]), str(r["replicas"]), r["metric"], str(r["ranks"]), 1e3 * r["local_s"],
                    1e3 * r["swap_s"],
                    1e3 * r["round_end_s"], 1e3 * r["output_s"], 1e3 * r["total_s"], str(r["sendrecv_calls"]),
                    r["bytes_per_swap"], r["speedup_vs_1"]])
    print(table(["d", "R", "metric", "P", "local ms", "swaps ms", "round-end ms", "output ms", "total ms",
                 "Sendrecv", "B/swap", "speedup"], out))
    print("\nround-end and output: amortised per scan; Sendrecv: calls over all ranks and scans;"
          " B/swap: bytes sent per Sendrecv (expected 8(6+3d))")
    path = write_json("bench_pt", {"machine": machine, "config": {"rounds": args.rounds, "states": 4, "n_obs": 20},
                                   "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
