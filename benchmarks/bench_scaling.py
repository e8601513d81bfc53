"""Scaling projection: latency-bandwidth fit of MPI at 2 ranks + measured compute costs.

``make bench-scaling`` (or ``python benchmarks/bench_scaling.py [--quick]``).

1. Under ``mpiexec -n 2`` (worker mode): median times of ``Allgatherv``
   (total gathered size B, B/2 per rank) and ``Sendrecv`` (B each way) for
   B = 8 B ... 8 MB; least-squares fit (relative errors) ``t = alpha + beta*B``.
2. At 1 rank: per-particle cost of ``density.evaluate`` (batched, SVGD) and
   per-replica cost of one MALA step (one point, PT), for a cheap model
   (rabbits n=2, 3 parameters) and an expensive one (block_counting n=20,
   626 states, 1 parameter), 100 observations. Replicated per-iteration
   costs of SVGD that do not shrink with the ranks: evaluating a block
   inside an array of the global shape (the Posterior applies its
   transcendental functions to all N rows so that a block has the whole
   batch's bits), per global particle; and the ``median_subset`` bandwidth
   (4096 pairs, a constant). SVGD kernel per (local row, particle) pair, old
   (numpy rows + exact median) and new (``phase_stein``).
3. Projection to P = 8, 64, 512 ranks, m particles/replicas per rank
   (weak scaling, N = m P), with a model of MPICH's collective algorithms
   (its classic ``auto`` selection; B = total bytes gathered):

   * Allgatherv: recursive doubling if P is a power of two and B < 512 KiB
     (``MPIR_CVAR_ALLGATHER_LONG_MSG_SIZE``), ``log2(P) alpha + (P-1)/P B
     beta``; else Bruck if B < 80 KiB (``..._SHORT_MSG_SIZE``),
     ``ceil(log2 P) alpha + (P-1)/P B beta``; else ring, ``(P-1) alpha +
     (P-1)/P B beta``. alpha, beta: least squares of the 2-rank times
     (one step of any of them), mpi4py's call overhead included in alpha.
   * Allreduce of a few numbers: recursive doubling, ``ceil(log2 P) alpha``.
   * SVGD old (before issue 15): compute ``m c_lik + m N c_pair_old``, comm =
     3 Allgatherv of N d, N (d+2), N doubles + the exact median's selection
     (``SELECT_ROUNDS`` rounds of an Allgatherv of the pivot sample and 3
     small Allreduce, then one Allgatherv of at most ``SELECT_GATHER``);
     new: compute ``m c_lik + m N c_pair_new``, comm = 1 Allgatherv of
     N (2d + 4) doubles; both: the replicated costs above and the driver's
     per-iteration stop-flag Allreduce;
   * PT per scan: compute ``m c_move``, comm = 1 Sendrecv of 8 (6 + 3d) bytes
     (nearest neighbour, independent of P) + the round-end Allgatherv of
     N (6 + 2^k) doubles amortised over the 2^k scans of round k = 10;
   * efficiency = compute / (compute + replicated + comm); m* = smallest m
     (power of 2) with efficiency >= 50 %.
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import banner, median_time, parse_args, serve_worker, machine_info, run_two_ranks, table, world, write_json  # noqa: E402

SIZES = [8 * 4**k for k in range(11)]  # 8 B ... 8 MiB (min. 16 B: one double per rank)
P_GRID = (8, 64, 512)
M_GRID = (1, 4, 8, 16, 64)
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


def compute_costs():
    from phasic_mpi.model import models
    from phasic_mpi.inference import pt
    from phasic_mpi.inference.parallel import block_layout
    from phasic_mpi.inference.ptscan import local_move
    from phasic_mpi.inference.posterior import Posterior
    from phasic_mpi.inference.priors import LogNormal
    from mpi4py import MPI
    from phasic_mpi.inference.svgd import median_bandwidth, subset_median_bandwidth
    from phasic_mpi.inference.stein import stein_direction
    import stein_reference
    out = {}
    rng = np.random.default_rng(5)
    for name, graph in (("cheap: rabbits(2)", models.rabbits(2)), ("expensive: block_counting(20)",
                                                                    models.block_counting(20))):
        d = graph.n_params
        density = Posterior(graph, rng.exponential(1.0, 100) + 0.05, [LogNormal(0.0, 0.3)] * d)
        z = 0.1 * rng.standard_normal((64, d))
        c_lik = median_time(lambda: density.evaluate(z)) / len(z)
        big = np.resize(z, (4096, d))  # 8 rows inside the global shape of N = 4096
        c_global = max(0.0, median_time(lambda: density.evaluate(big, rows=slice(0, 8))) - 8 * c_lik) / 4096
        # one replica's MALA move (its density call included): one local slot of two
        ctx = pt.PTContext(density, pt.PTSettings(replicas=2, chains=1, step_size=0.1), MPI.COMM_SELF,
                           block_layout(2, 2, 0))
        slots, ids = pt._Slots(pt.initial_state(ctx)), np.zeros((1, 4), dtype=np.uint64)
        c_move = median_time(lambda: local_move(slots, np.ones(1), ids, ctx), 21)
        out[name] = {"d": d, "c_lik_s": c_lik, "c_global_s": c_global, "c_move_s": c_move}
    for d in (1, 3):
        zz = rng.standard_normal((1024, d))
        rows = range(1024)  # all rows: the median needs the whole pair multiset

        def old_kernel():
            stein_reference.stein_direction(zz, zz, rows, median_bandwidth(zz, MPI.COMM_SELF, rows))

        out[f"c_pair_old_d{d}_s"] = median_time(old_kernel, 5) / (1024 * 1024)
        out[f"c_pair_new_d{d}_s"] = median_time(lambda: stein_direction(zz, zz, rows, 1.0), 9) / (1024 * 1024)
        zb = rng.standard_normal((4096, d))
        out[f"c_bw_subset_d{d}_s"] = median_time(lambda: subset_median_bandwidth(zb, 1, 3, 4096), 9)
    return out


ALLGATHER_LONG_MSG_SIZE = 524288  # MPICH: recursive doubling below this (power-of-two P)
ALLGATHER_SHORT_MSG_SIZE = 81920  # MPICH: Bruck below this (other P)


def allgatherv(P, alpha, beta, B):
    """MPICH's Allgatherv of B bytes in total on P ranks (see the module docstring)."""
    steps = int(np.ceil(np.log2(P)))
    if (P & (P - 1)) == 0 and B < ALLGATHER_LONG_MSG_SIZE or B < ALLGATHER_SHORT_MSG_SIZE:
        return steps * alpha + beta * B * (P - 1) / P
    return (P - 1) * alpha + beta * B * (P - 1) / P


def allreduce_small(P, alpha):
    return int(np.ceil(np.log2(P))) * alpha


def median_comm(P, N, ag):
    """Collectives of the exact median bandwidth's selection (see the module docstring)."""
    from phasic_mpi.inference.selection import SELECT_GATHER, SELECT_SAMPLE
    pairs = N * (N - 1) // 2
    sample, final = 8 * min(SELECT_SAMPLE, pairs), 8 * min(SELECT_GATHER, pairs)
    return SELECT_ROUNDS * (allgatherv(P, *ag, sample) + 3 * allreduce_small(P, ag[0])) + allgatherv(P, *ag, final)


def svgd_eff(P, m, d, cost, pair, ag, path, replicated=True):
    """(efficiency, compute, replicated, comm) per iteration of the old or new SVGD step."""
    N = m * P
    compute = m * cost["c_lik_s"] + m * N * pair[f"c_pair_{path}"]
    extra = N * cost["c_global_s"] + (pair["c_bw_subset"] if path == "new" else 0.0) if replicated else 0.0
    if path == "old":
        comm = sum(allgatherv(P, *ag, 8 * N * w) for w in (d, d + 2, 1)) + median_comm(P, N, ag)
    else:
        comm = allgatherv(P, *ag, 8 * N * (2 * d + 4))
    comm += allreduce_small(P, ag[0])  # the driver's stop flag
    return compute / (compute + extra + comm), compute, extra, comm


def pt_eff(P, m, d, cost, sr, ag):
    N = m * P
    compute = m * cost["c_move_s"]
    comm = sr[0] + sr[1] * 8 * (6 + 3 * d) + allgatherv(P, *ag, 8 * N * (6 + 2**ROUND_K)) / 2**ROUND_K
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
    print("P-rank model: MPICH's Allgatherv (recursive doubling / Bruck / ring by P and size) and")
    print("Allreduce (recursive doubling), alpha and beta from the 2-rank fit (see the module docstring)\n")

    costs = compute_costs()
    print(table(["model", "d", "evaluate us/particle", "global shape us/particle", "MALA step us/replica"],
                [[k, str(v["d"]), 1e6 * v["c_lik_s"], 1e6 * v["c_global_s"], 1e6 * v["c_move_s"]]
                 for k, v in costs.items() if isinstance(v, dict)]))
    print(table(["d", "old kernel ns/pair", "new kernel ns/pair", "kernel speed-up", "subset bandwidth us"],
                [[str(d), 1e9 * costs[f"c_pair_old_d{d}_s"], 1e9 * costs[f"c_pair_new_d{d}_s"],
                  costs[f"c_pair_old_d{d}_s"] / costs[f"c_pair_new_d{d}_s"], 1e6 * costs[f"c_bw_subset_d{d}_s"]]
                 for d in (1, 3)]))
    print("(old kernel: numpy Stein rows + exact median over all pairs; new: phase_stein; the subset")
    print(" bandwidth, 4096 pairs at N = 4096, is a per-iteration constant on every rank)\n")

    proj, thr = [], []
    for name, cost in ((k, v) for k, v in costs.items() if isinstance(v, dict)):
        d = cost["d"]
        key = 1 if d == 1 else 3
        pair = {"c_pair_old": costs[f"c_pair_old_d{key}_s"], "c_pair_new": costs[f"c_pair_new_d{key}_s"],
                "c_bw_subset": costs[f"c_bw_subset_d{key}_s"]}
        for P in P_GRID:
            for m in M_GRID:
                old, new = svgd_eff(P, m, d, cost, pair, ag, "old"), svgd_eff(P, m, d, cost, pair, ag, "new")
                bare = svgd_eff(P, m, d, cost, pair, ag, "new", replicated=False)
                ep = pt_eff(P, m, d, cost, sr, ag)
                proj.append({"model": name, "P": P, "m": m, "svgd_old_eff": old[0], "svgd_eff": new[0],
                             "svgd_eff_no_replicated": bare[0], "svgd_compute_s": new[1],
                             "svgd_replicated_s": new[2], "svgd_comm_s": new[3], "svgd_old_comm_s": old[3],
                             "svgd_old_iter_s": sum(old[1:]), "svgd_iter_s": sum(new[1:]),
                             "pt_eff": ep[0], "pt_compute_s": ep[1], "pt_comm_s": ep[2]})
            thr.append({"model": name, "P": P,
                        "svgd_old_m_star": threshold(lambda m: svgd_eff(P, m, d, cost, pair, ag, "old")),
                        "svgd_m_star": threshold(lambda m: svgd_eff(P, m, d, cost, pair, ag, "new")),
                        "pt_m_star": threshold(lambda m: pt_eff(P, m, d, cost, sr, ag))})
    print("Projected efficiency = compute / (compute + replicated + comm), m per rank, N = m P:")
    print(table(["model", "P", "m", "SVGD old eff", "SVGD eff", "(no repl.)", "old iter us", "iter us",
                 "compute us", "repl. us", "comm us", "old comm us", "PT eff", "PT comm us"],
                [[r["model"], str(r["P"]), str(r["m"]), r["svgd_old_eff"], r["svgd_eff"],
                  r["svgd_eff_no_replicated"], 1e6 * r["svgd_old_iter_s"], 1e6 * r["svgd_iter_s"],
                  1e6 * r["svgd_compute_s"], 1e6 * r["svgd_replicated_s"], 1e6 * r["svgd_comm_s"],
                  1e6 * r["svgd_old_comm_s"], r["pt_eff"], 1e6 * r["pt_comm_s"]] for r in proj]))
    print("(old eff counts the old, slower kernel as compute; compare the iteration times)")
    print("\n(no repl.): without the replicated per-iteration costs (global-shape evaluation, subset bandwidth)")
    print("\nBelow m* particles (SVGD) / replicas (PT) per rank, efficiency < 50 %:")
    print(table(["model", "P", "SVGD old m*", "SVGD m*", "PT m*"],
                [[r["model"], str(r["P"]), str(r["svgd_old_m_star"]), str(r["svgd_m_star"]), str(r["pt_m_star"])]
                 for r in thr]))
    path = write_json("bench_scaling", {
        "machine": machine, "mpi_2ranks": rows,
        "fit": {"allgatherv": {"alpha_s": ag[0], "beta_s_per_byte": ag[1]},
                "sendrecv": {"alpha_s": sr[0], "beta_s_per_byte": sr[1]},
                "allgatherv_model": "MPICH auto: recursive doubling (P = 2^k, B < 512 KiB) | Bruck (B < 80 KiB) | ring"},
        "compute": costs, "projection": proj, "thresholds": thr})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
