"""Scaling projection: latency-bandwidth fit of MPI at 2 ranks + measured compute costs.

``make bench-scaling`` (or ``python benchmarks/bench_scaling.py [--quick]``).

1. Under ``mpiexec -n 2`` (worker mode): median times of ``Allgatherv``
   (total gathered size B, B/2 per rank) and ``Sendrecv`` (B each way) for
   B = 8 B ... 8 MB; least-squares fit (relative errors) ``t = alpha + beta*B``.
2. At 1 rank: per-particle cost of ``density.evaluate`` (batched, SVGD) and
   per-replica cost of one MALA step (one point, PT), for a cheap model
   (rabbits n=2, 3 parameters) and an expensive one (block_counting n=20,
   626 states, 1 parameter), 100 observations; SVGD kernel cost per
   (local row, particle) pair: median bandwidth (the pairs its rows own and
   their selection) and Stein direction.
3. Projection to P = 8, 64, 512 ranks, m particles/replicas per rank
   (weak scaling, N = m P):

   * Allgatherv on P ranks, ring model: ``(P-1) (alpha + beta B/P)``;
   * SVGD per iteration: compute ``m c_lik + m N c_pair``, comm = 3
     Allgatherv of N d, N (d+2), N doubles + the median bandwidth's
     selection: ``SELECT_ROUNDS`` rounds of one Allgatherv of the pivot
     sample (``SELECT_SAMPLE`` doubles) and 3 small Allreduce/allgather
     (``2 log2(P) alpha`` each, recursive doubling), then one Allgatherv of
     at most ``SELECT_GATHER`` candidates;
   * PT per scan: compute ``m c_move``, comm = 1 Sendrecv of 8 (6 + 3d) bytes
     (nearest neighbour, independent of P) + the round-end Allgatherv of
     N (6 + 2^k) doubles amortised over the 2^k scans of round k = 10;
   * efficiency = compute / (compute + comm) (compute assumed perfectly
     parallel: the median bandwidth is distributed, see bench_svgd's "bw"
     column); m* = smallest m (power of 2) with efficiency >= 50 %.
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import banner, parse_args, serve_worker, machine_info, run_two_ranks, table, world, write_json  # noqa: E402

SIZES = [8 * 4**k for k in range(11)]  # 8 B ... 8 MiB (min. 16 B: one double per rank)
P_GRID = (8, 64, 512)
M_GRID = (1, 4, 16, 64)
ROUND_K = 10
SELECT_ROUNDS = 3  # typical rounds of the median bandwidth's selection at N = 10^3..10^5


def _repeats(nbytes):
    return 200 if nbytes <= 8192 else 50 if nbytes <= 2**20 else 12


def worker(args):
    from mpi4py import MPI
    comm = world()
    other = 1 - comm.rank
    rows = []
    sizes = SIZES[::2] if args.quick else SIZES
    for nbytes in sizes:
        n = max(nbytes // 8, 2)
        half = n // 2
        send = np.ones(half)
        out = np.empty(2 * half)
        counts, displs = np.array([half, half]), np.array([0, half])
        sr_send, sr_recv = np.ones(n), np.empty(n)
        ag, sr = [], []
        for rep in range(_repeats(nbytes) + 2):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allgatherv(send, [out, counts, displs, MPI.DOUBLE])
            t1 = time.perf_counter()
            comm.Barrier()
            t2 = time.perf_counter()
            comm.Sendrecv(sr_send, dest=other, recvbuf=[sr_recv, MPI.DOUBLE], source=other)
            t3 = time.perf_counter()
            if rep >= 2:
                ag.append(t1 - t0)
                sr.append(t3 - t2)
        ag_med = comm.allreduce(float(np.median(ag)), op=MPI.MAX)
        sr_med = comm.allreduce(float(np.median(sr)), op=MPI.MAX)
        rows.append({"bytes": 16 * half, "sendrecv_bytes": 8 * n, "allgatherv_s": ag_med, "sendrecv_s": sr_med})
    return rows


def fit(b, t):
    """alpha, beta of t = alpha + beta b, least squares on relative errors."""
    b, t = np.asarray(b, float), np.asarray(t, float)
    A = np.column_stack([np.ones_like(b), b]) / t[:, None]
    (alpha, beta), *_ = np.linalg.lstsq(A, np.ones_like(t), rcond=None)
    return max(float(alpha), 0.0), float(beta)


def median_time(fn, repeats=7):
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def compute_costs():
    from phasic_mpi import models, pt
    from phasic_mpi.inference.posterior import Posterior
    from phasic_mpi.inference.priors import LogNormal
    from mpi4py import MPI
    from phasic_mpi.inference.svgd import median_bandwidth, stein_direction
    out = {}
    rng = np.random.default_rng(5)
    for name, graph in (("cheap: rabbits(2)", models.rabbits(2)), ("expensive: block_counting(20)",
                                                                    models.block_counting(20))):
        d = graph.n_params
        density = Posterior(graph, rng.exponential(1.0, 100) + 0.05, [LogNormal(0.0, 0.3)] * d)
        z = 0.1 * rng.standard_normal((64, d))
        c_lik = median_time(lambda: density.evaluate(z)) / len(z)
        state = pt._evaluate(density, z[0])
        srng = np.random.default_rng(0)
        c_move = median_time(lambda: pt._local_move(z[0], *state, 1.0, 0.1, srng, "mala", density), 21)
        out[name] = {"d": d, "c_lik_s": c_lik, "c_move_s": c_move}
    for d in (1, 3):
        zz = rng.standard_normal((1024, d))
        rows = range(1024)  # all rows: the median needs the whole pair multiset

        def kernel():
            stein_direction(zz, zz, rows, median_bandwidth(zz, MPI.COMM_SELF, rows))

        c_pair = median_time(kernel, 5) / (1024 * 1024)
        out[f"c_pair_d{d}_s"] = c_pair
    return out


def ring(P, alpha, beta, B):
    return (P - 1) * (alpha + beta * B / P)


def median_comm(P, N, ag):
    """Collectives of the median bandwidth's selection (see the module docstring)."""
    from phasic_mpi.inference.selection import SELECT_GATHER, SELECT_SAMPLE
    pairs = N * (N - 1) // 2
    sample, final = 8 * min(SELECT_SAMPLE, pairs), 8 * min(SELECT_GATHER, pairs)
    return SELECT_ROUNDS * (ring(P, *ag, sample) + 3 * 2 * np.log2(P) * ag[0]) + ring(P, *ag, final)


def svgd_eff(P, m, d, cost, c_pair, ag):
    N = m * P
    compute = m * cost["c_lik_s"] + m * N * c_pair
    comm = sum(ring(P, *ag, 8 * N * w) for w in (d, d + 2, 1)) + median_comm(P, N, ag)
    return compute / (compute + comm), compute, comm


def pt_eff(P, m, d, cost, sr, ag):
    N = m * P
    compute = m * cost["c_move_s"]
    comm = sr[0] + sr[1] * 8 * (6 + 3 * d) + ring(P, *ag, 8 * N * (6 + 2**ROUND_K)) / 2**ROUND_K
    return compute / (compute + comm), compute, comm


def threshold(fn):
    for k in range(0, 21):
        if fn(2**k)[0] >= 0.5:
            return 2**k
    return None


def main():
    args = parse_args(__doc__)
    if serve_worker(args, worker):
        return
    machine = machine_info()
    print(banner("bench_scaling", machine), end="\n\n")
    rows = run_two_ranks(Path(__file__).resolve(), ["--quick"] if args.quick else [])
    ag = fit([r["bytes"] for r in rows], [r["allgatherv_s"] for r in rows])
    sr = fit([r["sendrecv_bytes"] for r in rows], [r["sendrecv_s"] for r in rows])
    print("MPI at 2 ranks (medians, max over ranks):")
    print(table(["bytes", "Allgatherv us", "fit us", "Sendrecv us", "fit us"],
                [[str(r["bytes"]), 1e6 * r["allgatherv_s"], 1e6 * (ag[0] + ag[1] * r["bytes"]),
                  1e6 * r["sendrecv_s"], 1e6 * (sr[0] + sr[1] * r["sendrecv_bytes"])] for r in rows]))
    print(f"\nAllgatherv (B = total gathered): alpha = {1e6 * ag[0]:.3g} us, 1/beta = {1e-9 / ag[1]:.3g} GB/s")
    print(f"Sendrecv   (B = each way):       alpha = {1e6 * sr[0]:.3g} us, 1/beta = {1e-9 / sr[1]:.3g} GB/s")
    print("P-rank Allgatherv model: ring, (P-1)(alpha + beta B/P)\n")

    costs = compute_costs()
    print(table(["model", "d", "evaluate us/particle", "MALA step us/replica"],
                [[k, str(v["d"]), 1e6 * v["c_lik_s"], 1e6 * v["c_move_s"]] for k, v in costs.items()
                 if isinstance(v, dict)]))
    print(f"SVGD kernel (distances, median, Stein): {1e9 * costs['c_pair_d1_s']:.3g} ns/pair (d=1), {1e9 * costs['c_pair_d3_s']:.3g} ns/pair (d=3)\n")

    proj, thr = [], []
    for name, cost in ((k, v) for k, v in costs.items() if isinstance(v, dict)):
        d = cost["d"]
        c_pair = costs["c_pair_d1_s"] if d == 1 else costs["c_pair_d3_s"]
        for P in P_GRID:
            for m in M_GRID:
                es = svgd_eff(P, m, d, cost, c_pair, ag)
                ep = pt_eff(P, m, d, cost, sr, ag)
                proj.append({"model": name, "P": P, "m": m, "svgd_eff": es[0], "svgd_compute_s": es[1],
                             "svgd_comm_s": es[2], "pt_eff": ep[0], "pt_compute_s": ep[1], "pt_comm_s": ep[2]})
            thr.append({"model": name, "P": P,
                        "svgd_m_star": threshold(lambda m: svgd_eff(P, m, d, cost, c_pair, ag)),
                        "pt_m_star": threshold(lambda m: pt_eff(P, m, d, cost, sr, ag))})
    print("Projected efficiency = compute / (compute + comm), m per rank, N = m P:")
    print(table(["model", "P", "m", "SVGD eff", "SVGD comm us", "PT eff", "PT comm us"],
                [[r["model"], str(r["P"]), str(r["m"]), r["svgd_eff"], 1e6 * r["svgd_comm_s"], r["pt_eff"],
                  1e6 * r["pt_comm_s"]] for r in proj]))
    print("\nBelow m* particles (SVGD) / replicas (PT) per rank, communication dominates (eff < 50 %):")
    print(table(["model", "P", "SVGD m*", "PT m*"],
                [[r["model"], str(r["P"]), str(r["svgd_m_star"]), str(r["pt_m_star"])] for r in thr]))
    path = write_json("bench_scaling", {
        "machine": machine, "mpi_2ranks": rows,
        "fit": {"allgatherv": {"alpha_s": ag[0], "beta_s_per_byte": ag[1]},
                "sendrecv": {"alpha_s": sr[0], "beta_s_per_byte": sr[1]},
                "allgatherv_model": "ring: (P-1)(alpha + beta*B/P), B = total gathered bytes"},
        "compute": costs, "projection": proj, "thresholds": thr})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
