"""Scaling projection: latency-bandwidth fit of MPI at 2 ranks + measured compute costs.

``make bench-scaling`` (or ``python benchmarks/bench_scaling.py [--quick]``).

1. Under ``mpiexec -n 2`` (worker mode): 10th-percentile times of ``Allgatherv``
   (total gathered size B, B/2 per rank) and ``Sendrecv`` (B each way) for
   B = 8 B ... 8 MB; least-squares fit (relative errors) ``t = alpha + beta*B``.
2. At 1 rank, for a cheap model (rabbits n=2, 3 parameters) and an expensive
   one (block_counting n=20, 626 states, 1 parameter), 100 observations:
   per-particle cost of ``density.evaluate`` (batched, 64 rows) and
   per-replica cost of one MALA step (PT); the Stein kernel per (local row,
   particle) pair (``phase_stein``; and the numpy rows of before issue 15);
   and **one whole ``svgd_step`` of rank 0 at each (P, m)** (the mean of the
   fastest third of the repeats: other processes share the cores), with a
   communicator whose gather tiles the local rows to the global shape (its
   own time subtracted): the step's real per-rank work at N = m P particles,
   Python bookkeeping included. The costs this change removed are measured
   in the same run: the prior/transform work on an N-row array (what
   ``evaluate`` did so that a block had the whole batch's bits) and the
   numpy ``median_subset`` bandwidth (a Philox generator object, fancy
   indexing, a full median); "before" = the measured step + these - their
   replacements.
3. Projection to P = 8, 64, 512 ranks, m particles/replicas per rank
   (weak scaling, N = m P). A model, not a measurement: MPICH's collective
   algorithms (its default tuning, maint/tuning/coll/mpir/generic.json,
   selects the same for Allgather and Allgatherv; B = total bytes gathered):

   * recursive doubling if P is a power of two and B < 512 KiB,
     ``log2(P) alpha + (P-1)/P B beta_r``; else Bruck if B < 80 KiB,
     ``ceil(log2 P) alpha + (P-1)/P B beta_r``; else ring, ``(P-1) alpha +
     (P-1)/P B beta_r``. alpha, beta: least squares of the 2-rank times
     ``t = alpha + beta B`` (mpi4py's call overhead included in alpha); at 2
     ranks each rank receives B/2, so the cost per *received* byte is
     beta_r = 2 beta (the model before this change used beta, half the
     fitted cost).
   * Allreduce of a few numbers: recursive doubling, ``ceil(log2 P) alpha``.
   * SVGD per iteration: compute = ``m c_lik`` (c_lik batched, per particle)
     + the Stein kernel's time in the step (the work that parallelises);
     per-rank time = the measured step + comm, comm = the step's one
     gather of N (3d + 3) doubles (particles, scores, log p, status =
     invalid + 2 x stop request, |phi|^2, phi; the KSD row sums add a
     column on the iterations that compute it, none here). Before issue
     15.3 the row was 3d + 4 doubles (a KSD column always) and the run
     loop agreed on signals with an Allreduce of its own every iteration:
     "old comm" prices that on the same measured step. "cap" is the
     efficiency with no bookkeeping at all (compute / (compute + comm)):
     what the collective model alone allows.
   * PT per scan: compute ``m c_move``, comm = 1 Sendrecv of 8 (6 + 3d) bytes
     (nearest neighbour, independent of P) + the round-end Allgatherv of
     N (6 + 2^k) doubles amortised over the 2^k scans of round k = 10;
   * efficiency = compute / (per-rank time); m* = smallest m (power of 2)
     with efficiency >= 50 %.
"""

import itertools
import sys
import time
from pathlib import Path

import numpy as np

from phasic_mpi.inference.comm import Communicator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import banner, median_time, parse_args, serve_worker, machine_info, run_two_ranks, table, world, write_json  # noqa: E402

SIZES = [8 * 4**k for k in range(11)]  # 8 B ... 8 MiB (min. 16 B: one double per rank)
P_GRID = (8, 64, 512)
M_GRID = (1, 4, 8, 16, 64)
ROUND_K = 10


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
        # the 10th percentile: with other processes on the cores a rank is often descheduled
        # mid-collective, which the median picks up (milliseconds) and a network does not have
        ag_med = comm.allreduce(float(np.quantile(ag, 0.1)), op=MPI.MAX)
        sr_med = comm.allreduce(float(np.quantile(sr, 0.1)), op=MPI.MAX)
        rows.append({"bytes": 16 * half, "sendrecv_bytes": 8 * n, "allgatherv_s": ag_med, "sendrecv_s": sr_med})
    return rows


def fit(b, t):
    """alpha, beta of t = alpha + beta b, least squares on relative errors."""
    b, t = np.asarray(b, float), np.asarray(t, float)
    A = np.column_stack([np.ones_like(b), b]) / t[:, None]
    (alpha, beta), *_ = np.linalg.lstsq(A, np.ones_like(t), rcond=None)
    return max(float(alpha), 0.0), float(beta)


class TiledComm(Communicator):
    """Rank 0 of P: the gather tiles the local rows to the global shape (timed, to subtract)."""

    rank = 0

    def __init__(self, size):
        self.size, self.gather_s = size, 0.0

    def allgather_rows(self, layout, local):
        t0 = time.perf_counter()
        out = np.resize(np.ascontiguousarray(local, dtype=np.float64), (layout.n,) + local.shape[1:])
        self.gather_s += time.perf_counter() - t0
        return out


class Timed:
    """Wraps a function (or a density's evaluate) and sums the seconds spent in it."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0


class TimedDensity:
    """A density whose evaluate is timed (rowwise like the one it wraps)."""

    def __init__(self, density):
        self.density, self.evaluate = density, Timed(density.evaluate)
        self.rowwise = getattr(density, "rowwise", False)

    def __getattr__(self, name):
        return getattr(self.density, name)


def step_time(density, P, m, repeats):
    """One svgd_step of rank 0 at N = m P (gathers excluded): whole step
    and its evaluate, Stein kernel and bandwidth parts, and the batched
    likelihood cost per particle measured after each step (seconds)."""
    from phasic_mpi.inference import svgd
    from phasic_mpi.inference.parallel import block_layout

    settings = svgd.SVGDSettings(particles=m * P, iterations=10**6, seed=1, ksd_every=0, tolerance=0.0)
    comm, timed = TiledComm(P), TimedDensity(density)
    ctx = svgd.SVGDContext(timed, settings, comm, block_layout(m * P, P, 0))
    state, _ = svgd.svgd_step(svgd.initial_state(density, settings, ctx.layout), ctx)  # gathers the arrays
    parts = {"stein_terms": Timed(svgd.stein_terms), "subset_median_bandwidth": Timed(svgd.subset_median_bandwidth)}
    saved = {name: getattr(svgd, name) for name in parts}
    rows = []
    try:
        for name, fn in parts.items():
            setattr(svgd, name, fn)
        for _ in range(repeats + 1):
            comm.gather_s = timed.evaluate.seconds = 0.0
            for fn in parts.values():
                fn.seconds = 0.0
            t0 = time.perf_counter()
            state, _ = svgd.svgd_step(state, ctx)
            step = time.perf_counter() - t0 - comm.gather_s
            batch = np.resize(state.particles, (64, state.particles.shape[1]))
            t0 = time.perf_counter()
            density.evaluate(batch)  # the batched cost per particle, next to the step (same load)
            c_lik = (time.perf_counter() - t0) / 64
            rows.append((step, timed.evaluate.seconds, parts["stein_terms"].seconds,
                         parts["subset_median_bandwidth"].seconds, c_lik))
    finally:
        for name, fn in saved.items():
            setattr(svgd, name, fn)
    # other processes share the cores: the fastest third of the repeats (by step time),
    # averaged, estimates the undisturbed cost better than the median
    rows = np.array(rows[1:])
    fast = rows[rows[:, 0] <= np.quantile(rows[:, 0], 1 / 3)].mean(axis=0)
    # c_lik: the least disturbed of all its measurements (selecting by step time let one
    # preempted batch inflate the compute, giving efficiencies above 1 on a loaded machine);
    # the efficiency is then conservative
    fast[4] = rows[:, 4].min()
    return dict(zip(("step", "evaluate", "kernel", "bandwidth", "c_lik"), map(float, fast)))


def numpy_subset_bandwidth(z, seed, iteration, pairs):
    """The median_subset bandwidth as computed before (numpy Philox generator + np.median)."""
    from phasic_mpi.inference.parallel import stream

    n = z.shape[0]
    rng = stream(seed, 2, iteration)
    i = rng.integers(0, n, size=pairs)
    j = (i + rng.integers(1, n, size=pairs)) % n
    values = np.zeros(pairs)
    for c in range(z.shape[1]):
        t = z[i, c] - z[j, c]
        values += t * t
    return float(np.median(values)) / np.log(n + 1.0)


def compute_costs(quick):
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
        z = density.sample_prior_z(np.random.default_rng(1), 64)  # where the SVGD steps below start
        c_lik = median_time(lambda: density.evaluate(z)) / len(z)
        big = np.resize(z, (4096, d))

        def global_shape_work():  # what evaluate did on all N rows before (prior, transforms)
            density.logprior(big), density.to_theta(big), density.dtheta_dz(big)

        c_global = median_time(global_shape_work) / 4096
        # one replica's MALA move (its density call included): one local slot of two
        ctx = pt.PTContext(density, pt.PTSettings(replicas=2, chains=1, step_size=0.1), MPI.COMM_SELF,
                           block_layout(2, 2, 0))
        slots, ids = pt._Slots(pt.initial_state(ctx)), np.zeros((1, 4), dtype=np.uint64)
        c_move = median_time(lambda: local_move(slots, np.ones(1), ids, ctx), 21)
        steps = {f"{P}x{m}": step_time(density, P, m, 3 if quick or d == 1 else 30)
                 for P in P_GRID for m in M_GRID}
        out[name] = {"d": d, "c_lik_s": c_lik, "c_global_old_s": c_global, "c_move_s": c_move,
                     "step_s": steps}
    for d in (1, 3):
        zz = rng.standard_normal((1024, d))
        rows = range(1024)  # all rows: the median needs the whole pair multiset

        def old_kernel():
            stein_reference.stein_direction(zz, zz, rows, median_bandwidth(zz, MPI.COMM_SELF, rows))

        out[f"c_pair_old_d{d}_s"] = median_time(old_kernel, 5) / (1024 * 1024)
        out[f"c_pair_new_d{d}_s"] = median_time(lambda: stein_direction(zz, zz, rows, 1.0), 9) / (1024 * 1024)
        zb = rng.standard_normal((4096, d))
        # a new iteration (new pairs) every call, as in svgd_step: with the same pairs each
        # time the branch predictor learns the selection's branches (41 instead of 76 us
        # before issue 15.3's second part), which is how the "expected 41 us" was measured
        calls = itertools.count()
        out[f"c_bw_numpy_d{d}_s"] = median_time(lambda: numpy_subset_bandwidth(zb, 1, next(calls), 4096), 31)
        out[f"c_bw_subset_d{d}_s"] = median_time(lambda: subset_median_bandwidth(zb, 1, next(calls), 4096), 31)
    return out


ALLGATHER_LONG_MSG_SIZE = 524288  # MPICH: recursive doubling below this (power-of-two P)
ALLGATHER_SHORT_MSG_SIZE = 81920  # MPICH: Bruck below this (other P)


def allgatherv(P, alpha, beta, B):
    """MPICH's Allgather(v) of B bytes in total on P ranks (see the module docstring).

    ``beta`` is the 2-rank fit's cost per gathered byte; a rank receives
    (P-1)/P B bytes, B/2 at the fit, so per received byte it costs 2 beta."""
    steps = int(np.ceil(np.log2(P)))
    transfer = 2.0 * beta * B * (P - 1) / P
    if (P & (P - 1)) == 0 and B < ALLGATHER_LONG_MSG_SIZE or B < ALLGATHER_SHORT_MSG_SIZE:
        return steps * alpha + transfer
    return (P - 1) * alpha + transfer


def allreduce_small(P, alpha):
    return int(np.ceil(np.log2(P))) * alpha


def svgd_row_width(d, old=False):
    """Doubles per particle in SVGD's one gather: z, score, log p, status, |phi|^2, phi
    (old: and a KSD column on every iteration)."""
    return 3 * d + 3 + old


def svgd_iteration(P, m, cost, costs, ag):
    """Per-iteration terms of SVGD at (P, m), after and before this change (seconds)."""
    d, N = cost["d"], m * P
    key = 1 if d == 1 else 3
    t = cost["step_s"][f"{P}x{m}"]
    step, evaluate, kernel, bandwidth = t["step"], t["evaluate"], t["kernel"], t["bandwidth"]
    bw_old = costs[f"c_bw_numpy_d{key}_s"] if N * (N - 1) // 2 > 4096 else bandwidth
    bw_new = costs[f"c_bw_subset_d{key}_s"] if N * (N - 1) // 2 > 4096 else bandwidth
    removed = N * cost["c_global_old_s"] + bw_old - bw_new  # the costs issue 15.3's first part took out
    B = 8 * N * svgd_row_width(d)
    comm = allgatherv(P, *ag, B)  # the step's one collective: nothing else per iteration
    latency = comm - 2.0 * ag[1] * B * (P - 1) / P
    stop_flag = allreduce_small(P, ag[0])  # the run loop's Allreduce before the flag travelled in the gather
    comm_old = allgatherv(P, *ag, 8 * N * svgd_row_width(d, old=True)) + stop_flag
    compute = m * t["c_lik"] + kernel  # batched likelihood cost + the Stein kernel inside the step
    return {"P": P, "m": m, "N": N, "eff": compute / (step + comm), "eff_old_comm": compute / (step + comm_old),
            "eff_before": compute / (step + removed + comm_old), "cap": compute / (compute + comm),
            "evaluate_overhead_s": evaluate - m * t["c_lik"], "compute_s": compute, "iter_s": step + comm,
            "iter_old_comm_s": step + comm_old, "step_s": step, "evaluate_s": evaluate, "kernel_s": kernel,
            "bandwidth_s": bandwidth, "other_s": step - evaluate - kernel - bandwidth, "removed_s": removed,
            "gather_latency_s": latency, "gather_bytes_s": comm - latency, "old_stop_flag_s": stop_flag,
            "gather_bytes": B}


def pt_eff(P, m, d, cost, sr, ag):
    N = m * P
    compute = m * cost["c_move_s"]
    comm = sr[0] + sr[1] * 8 * (6 + 3 * d) + allgatherv(P, *ag, 8 * N * (6 + 2**ROUND_K)) / 2**ROUND_K
    return compute / (compute + comm), compute, comm


def threshold(fn, grid=tuple(2**k for k in range(21))):
    for m in grid:
        if fn(m) >= 0.5:
            return m
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
    print("MPI at 2 ranks (10th percentiles, max over ranks):")
    print(table(["bytes", "Allgatherv us", "fit us", "Sendrecv us", "fit us"],
                [[str(r["bytes"]), 1e6 * r["allgatherv_s"], 1e6 * (ag[0] + ag[1] * r["bytes"]),
                  1e6 * r["sendrecv_s"], 1e6 * (sr[0] + sr[1] * r["sendrecv_bytes"])] for r in rows]))
    print(f"\nAllgatherv (B = total gathered): alpha = {1e6 * ag[0]:.3g} us, 1/beta = {1e-9 / ag[1]:.3g} GB/s")
    print(f"Sendrecv   (B = each way):       alpha = {1e6 * sr[0]:.3g} us, 1/beta = {1e-9 / sr[1]:.3g} GB/s")
    print("P-rank model: MPICH's Allgatherv (recursive doubling / Bruck / ring by P and size) and")
    print("Allreduce (recursive doubling), alpha and beta from the 2-rank fit (see the module docstring)\n")

    costs = compute_costs(args.quick)
    models_ = {k: v for k, v in costs.items() if isinstance(v, dict)}
    print(table(["model", "d", "evaluate us/particle", "N-row prior+transform us/particle (before)",
                 "MALA step us/replica"],
                [[k, str(v["d"]), 1e6 * v["c_lik_s"], 1e6 * v["c_global_old_s"], 1e6 * v["c_move_s"]]
                 for k, v in models_.items()]))
    print(table(["d", "pre-15 kernel ns/pair", "kernel ns/pair", "subset bandwidth us before", "after",
                 "ratio"],
                [[str(d), 1e9 * costs[f"c_pair_old_d{d}_s"], 1e9 * costs[f"c_pair_new_d{d}_s"],
                  1e6 * costs[f"c_bw_numpy_d{d}_s"], 1e6 * costs[f"c_bw_subset_d{d}_s"],
                  costs[f"c_bw_numpy_d{d}_s"] / costs[f"c_bw_subset_d{d}_s"]] for d in (1, 3)]))
    print("(subset bandwidth: 4096 pairs at N = 4096, a per-iteration constant on every rank;")
    print(" before: numpy Philox generator + fancy indexing + np.median; after: phase_pair_median)\n")

    reference = (4.21e-6, 1.0 / 2.57e9)  # an earlier session's 2-rank fit, for comparison across runs
    quiet = (3.66e-6, 1.0 / 7.82e9)  # issue 15.3's fit on an idle machine (load 0.7), likewise
    proj, thr = [], []
    for name, cost in models_.items():
        for P in P_GRID:
            for m in M_GRID:
                it = svgd_iteration(P, m, cost, costs, ag)
                ref = svgd_iteration(P, m, cost, costs, reference)
                calm = svgd_iteration(P, m, cost, costs, quiet)
                pe = pt_eff(P, m, cost["d"], cost, sr, ag)
                proj.append({"model": name, **it, "eff_reference_fit": ref["eff"], "eff_quiet_fit": calm["eff"],
                             "eff_old_comm_quiet_fit": calm["eff_old_comm"], "cap_quiet_fit": calm["cap"],
                             "pt_eff": pe[0], "pt_compute_s": pe[1], "pt_comm_s": pe[2]})
            thr.append({"model": name, "P": P,
                        "svgd_m_star": threshold(lambda m: svgd_iteration(P, m, cost, costs, ag)["eff"],
                                                 M_GRID),
                        "pt_m_star": threshold(lambda m: pt_eff(P, m, cost["d"], cost, sr, ag)[0])})
    print("SVGD per iteration, rank 0 (a model: measured step + modelled collectives), N = m P:")
    print(table(["model", "P", "m", "eff", "old comm", "cap", "eff ref. fit", "quiet fit", "old comm",
                 "cap", "iter us", "compute us",
                 "evaluate us", "(overhead)", "kernel us", "bandwidth us", "other us", "gather lat. us",
                 "gather bytes us", "old stop flag us"],
                [[r["model"], str(r["P"]), str(r["m"]), r["eff"], r["eff_old_comm"], r["cap"],
                  r["eff_reference_fit"], r["eff_quiet_fit"], r["eff_old_comm_quiet_fit"], r["cap_quiet_fit"],
                  1e6 * r["iter_s"], 1e6 * r["compute_s"], 1e6 * r["evaluate_s"],
                  1e6 * r["evaluate_overhead_s"], 1e6 * r["kernel_s"], 1e6 * r["bandwidth_s"],
                  1e6 * r["other_s"], 1e6 * r["gather_latency_s"], 1e6 * r["gather_bytes_s"],
                  1e6 * r["old_stop_flag_s"]] for r in proj]))
    print("eff = compute / (measured step + the one gather), compute = m c_lik + kernel, c_lik the batched")
    print("cost per particle (64 rows, timed after each step); evaluate = its time inside the step, overhead")
    print("= evaluate - m c_lik (the density's per-call Python work); other: the step's remaining")
    print("bookkeeping (optimizer, packing, diagnostics, monitor). old comm: the same step with the gather")
    print("of 3d+4 doubles a row and the run loop's stop-flag Allreduce (before the flag travelled in the")
    print("gather); cap = compute / (compute + gather): the model's ceiling with no bookkeeping at all.")
    print("ref. fit: alpha = 4.21 us, 1/beta = 2.57 GB/s (an earlier session's 2-rank fit); quiet fit:")
    print("alpha = 3.66 us, 1/beta = 7.82 GB/s (this machine idle): eff, old comm and cap at it, comparable")
    print("across runs whatever the load during this one's 2-rank measurement.")
    print("\nPT per scan (model): efficiency, comm us")
    print(table(["model", "P", "m", "PT eff", "PT comm us"],
                [[r["model"], str(r["P"]), str(r["m"]), r["pt_eff"], 1e6 * r["pt_comm_s"]] for r in proj]))
    print("\nBelow m* particles (SVGD, m in M_GRID) / replicas (PT) per rank, efficiency < 50 %:")
    print(table(["model", "P", "SVGD m*", "PT m*"],
                [[r["model"], str(r["P"]), str(r["svgd_m_star"]), str(r["pt_m_star"])] for r in thr]))
    path = write_json("bench_scaling", {
        "machine": machine, "mpi_2ranks": rows,
        "fit": {"allgatherv": {"alpha_s": ag[0], "beta_s_per_byte": ag[1]},
                "sendrecv": {"alpha_s": sr[0], "beta_s_per_byte": sr[1]},
                "allgatherv_model": "MPICH generic tuning: recursive doubling (P = 2^k, B < 512 KiB) | "
                                    "Bruck (B < 80 KiB) | ring; 2 beta per received byte"},
        "compute": costs, "projection": proj, "thresholds": thr})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
