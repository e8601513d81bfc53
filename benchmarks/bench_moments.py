"""Moments benchmark: expected SFS and its gradient, libphase against scipy's sparse LU.

``make bench-moments`` (or ``python benchmarks/bench_moments.py [--quick]``).
For the block-counting coalescent of n = 20, 30, 40 samples (n = 40 has
37 337 states) it times, per θ and on one core:

* **ours**: ``reward_moments`` (libphase, one pass in reverse topological
  order) for the expected SFS -- all n - 1 reward vectors c_i, E[L_i] --
  with and without its exact gradient, for a batch of θ in one call and for
  one θ per call; and the variances of all n - 1 branch lengths with their
  gradients;
* **scipy**: the same values and gradients by one ``splu`` of -S per θ,
  reused for the n - 1 solves, the adjoint solve and the edge contraction
  (the LU path of ``phasic_mpi.moments``, which every graph used before);

in the same process, as medians of repeated runs (wall time, and CPU time
of this single-threaded process, which the target is judged on because other
jobs sharing the cores inflate the wall time), and prints the ratio, the
agreement between the two and with the closed form E[L_i] = 2 / (i θ), the
construction time of the graph, and the older tool's recorded figure for
reference. All figures go to ``benchmarks/results/bench_moments.json``.

Discrete graphs (the lazy jump chain of the same coalescent: each step leaves
the state with probability θ, to a neighbour in proportion to its rate): E[T]
and E[T^2] by the factorial moments with one ``splu`` of I - T (the path every
discrete graph took before) against libphase, and the variances of the n - 1
SFS rewards with gradients by libphase against the LU path.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import time
from pathlib import Path

import numpy as np
from common import RESULTS, machine_info

from phasic_mpi.model import models
from phasic_mpi.model.graph import Graph
from phasic_mpi.model.moments import (_diagonal_pairs, _lu_moments, _stirling2, factorial_moments,
                                      moments, reward_moments)

SIZES = (20, 30, 40)
N_THETA = 8  # θ per batched call
TARGET_MS = 20.0  # expected SFS + gradient at n = 40, per θ
OLDER_TOOL_MS = 22.7  # issue 14: the older tool's recorded SFS-40 expectation replay


def median_time(fn, repeats, min_total=0.5):
    """Median wall and CPU time of ``fn()`` over at least ``repeats`` runs (more if quick).

    The CPU time (this process, one thread) is less disturbed than the wall
    time when other jobs share the cores.
    """
    wall, cpu = [], []
    start = time.perf_counter()
    while len(wall) < repeats or (time.perf_counter() - start < min_total and len(wall) < 50):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu))


def bench_size(n, lu_repeats, quick):
    t0 = time.perf_counter()
    graph = models.block_counting(n)
    construct = time.perf_counter() - t0
    R = np.ascontiguousarray(models.sfs_rewards(graph))
    thetas = np.exp(np.random.default_rng(n).normal(0.0, 0.1, (N_THETA, 1)))
    reward_moments(graph, thetas[:1], R)  # compile the graph once, outside the timings
    row = {"n": n, "states": graph.n_states, "edges": graph.n_edges,
           "construct_s": construct}

    value_b, _ = median_time(lambda: reward_moments(graph, thetas, R), 5)
    grad_b, grad_b_cpu = median_time(lambda: reward_moments(graph, thetas, R, grad=True), 5)
    grad_1, _ = median_time(lambda: reward_moments(graph, thetas[0], R, grad=True), 9)
    pairs = _diagonal_pairs(R.shape[1])
    var_1, _ = median_time(lambda: reward_moments(graph, thetas[0], R, pairs, grad=True), 3)
    row.update(ours_value_ms=value_b / N_THETA * 1e3, ours_grad_ms=grad_b / N_THETA * 1e3,
               ours_grad_cpu_ms=grad_b_cpu / N_THETA * 1e3,
               ours_grad_single_ms=grad_1 * 1e3, ours_var_grad_ms=var_1 * 1e3)

    ours = reward_moments(graph, thetas, R, grad=True)
    n_lu = 1 if quick and n == max(SIZES) else 2
    lu_value, _ = median_time(lambda: _lu_moments(graph, thetas[0], R, pairs[:0], False),
                              lu_repeats, min_total=0)
    lu_grad, lu_grad_cpu = median_time(lambda: _lu_moments(graph, thetas[0], R, pairs[:0], True),
                             lu_repeats, min_total=0)
    lu = [_lu_moments(graph, theta, R, pairs[:0], True) for theta in thetas[:n_lu]]
    row.update(lu_value_ms=lu_value * 1e3, lu_grad_ms=lu_grad * 1e3,
               lu_grad_cpu_ms=lu_grad_cpu * 1e3,
               speedup_value=lu_value / (value_b / N_THETA),
               speedup_grad=lu_grad / (grad_b / N_THETA))
    i = np.arange(1, n)
    row["max_rel_diff_vs_lu"] = max(
        max(np.abs(ours.mean[p] / lu[p][0] - 1).max(),
            np.abs(ours.mean_grad[p] / lu[p][1] - 1).max()) for p in range(n_lu))
    row["max_rel_diff_vs_closed_form"] = float(max(
        np.abs(ours.mean * i * thetas / 2 - 1).max(),
        np.abs(-ours.mean_grad[..., 0] * i * thetas**2 / 2 - 1).max()))
    return row


def lazy_jump_chain(graph):
    """The discrete chain that leaves each state with probability θ, to j with
    probability θ w_ij / lambda_i (rates of ``graph`` at θ = 1): acyclic like it."""
    arrays = graph.to_arrays()
    rate = arrays["edge_base"] + arrays["edge_coef"] @ np.ones(graph.n_params)
    total = np.bincount(arrays["edge_src"], weights=rate, minlength=graph.n_states)
    prob = rate / total[arrays["edge_src"]]
    return Graph(arrays["alpha"], arrays["edge_src"], arrays["edge_dst"], np.zeros_like(prob),
                 prob[:, None], discrete=True)


def bench_discrete(n, lu_repeats):
    """E[T], E[T^2] (factorial LU before, libphase now) and the SFS variances with
    gradients (LU against libphase) of the lazy jump chain, per θ."""
    graph = lazy_jump_chain(models.block_counting(n))
    R = np.ascontiguousarray(models.sfs_rewards(models.block_counting(n)))
    theta, pairs = np.array([0.6]), _diagonal_pairs(R.shape[1])
    moments(graph, theta, 2)  # compile once, outside the timings
    before, _ = median_time(lambda: _stirling2(2)[1:, 1:] @ factorial_moments(graph, theta, 2),
                            lu_repeats, min_total=0)
    after, _ = median_time(lambda: moments(graph, theta, 2), 9)
    var_ours, _ = median_time(lambda: reward_moments(graph, theta, R, pairs, grad=True), 5)
    var_lu, _ = median_time(lambda: _lu_moments(graph, theta, R, pairs, True), lu_repeats,
                            min_total=0)
    old = _stirling2(2)[1:, 1:] @ factorial_moments(graph, theta, 2)
    ours, lu = reward_moments(graph, theta, R, pairs, grad=True), _lu_moments(graph, theta, R,
                                                                             pairs, True)
    diff = max(np.abs(moments(graph, theta, 2) / old - 1).max(),
               np.abs(ours.cross[0] / lu[2] - 1).max(),
               np.abs(ours.cross_grad[0] / lu[3] - 1).max())
    return {"n": n, "states": graph.n_states, "edges": graph.n_edges,
            "before_ET2_ms": before * 1e3, "ours_ET2_ms": after * 1e3,
            "speedup_ET2": before / after, "ours_var_grad_ms": var_ours * 1e3,
            "lu_var_grad_ms": var_lu * 1e3, "speedup_var_grad": var_lu / var_ours,
            "max_rel_diff": float(diff)}


def print_discrete(rows):
    headers = ["n", "states", "E,E2 factorial LU ms", "E,E2 ours ms", "speed-up",
               "SFS Var+grad LU ms", "ours ms", "speed-up", "rel.diff"]
    cells = [[str(r["n"]), str(r["states"]), f"{r['before_ET2_ms']:.2f}",
              f"{r['ours_ET2_ms']:.3f}", f"{r['speedup_ET2']:.0f}x",
              f"{r['lu_var_grad_ms']:.1f}", f"{r['ours_var_grad_ms']:.2f}",
              f"{r['speedup_var_grad']:.0f}x", f"{r['max_rel_diff']:.1e}"] for r in rows]
    widths = [max(len(h), *(len(c[k]) for c in cells)) for k, h in enumerate(headers)]
    for line in [headers] + cells:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths)))


def print_table(rows):
    headers = ["n", "states", "edges", "build s", "ours E ms", "ours E+grad ms",
               "(CPU)", "(1 θ/call)", "Var+grad ms", "LU E ms", "LU E+grad ms", "speed-up E+grad",
               "rel.diff LU", "rel.diff 2/(iθ)"]
    cells = [[str(r["n"]), str(r["states"]), str(r["edges"]), f"{r['construct_s']:.2f}",
              f"{r['ours_value_ms']:.2f}", f"{r['ours_grad_ms']:.2f}",
              f"{r['ours_grad_cpu_ms']:.2f}", f"{r['ours_grad_single_ms']:.2f}", f"{r['ours_var_grad_ms']:.1f}",
              f"{r['lu_value_ms']:.1f}", f"{r['lu_grad_ms']:.1f}", f"{r['speedup_grad']:.0f}x",
              f"{r['max_rel_diff_vs_lu']:.1e}", f"{r['max_rel_diff_vs_closed_form']:.1e}"]
             for r in rows]
    widths = [max(len(h), *(len(c[k]) for c in cells)) for k, h in enumerate(headers)]
    for line in [headers] + cells:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one LU repeat at n = 40")
    parser.add_argument("--output", type=Path, default=RESULTS / "bench_moments.json")
    args = parser.parse_args()
    rows = []
    for n in SIZES:
        rows.append(bench_size(n, 1 if args.quick and n == max(SIZES) else 3, args.quick))
        print(f"n = {n} done", flush=True)
    print("\nExpected SFS (all n-1 classes E[L_i]) per θ, one core; ours = libphase "
          f"(batch of {N_THETA} θ per call), LU = scipy splu per θ, same process, medians")
    print_table(rows)
    last = rows[-1]
    discrete = [bench_discrete(n, 1 if args.quick and n == max(SIZES) else 3) for n in SIZES]
    print("\nDiscrete (lazy jump chain of the same graph), one θ per call, medians: E[T] and "
          "E[T^2] before (factorial moments, splu of I - T) and now (libphase); the n - 1 "
          "SFS variances with gradients by the LU path and by libphase")
    print_discrete(discrete)
    print(f"\nreference: older tool's recorded SFS-{last['n']} expectation replay "
          f"{OLDER_TOOL_MS} ms (issue 14; not measured here) -> ours E+grad "
          f"{last['ours_grad_ms']:.1f} ms per θ ({OLDER_TOOL_MS / last['ours_grad_ms']:.1f}x)")
    # "on one core": the CPU time of this single-threaded process; the wall
    # time also counts the time other jobs held the core
    verdict = "PASS" if last["ours_grad_cpu_ms"] <= TARGET_MS else "MISS"
    print(f"target: expected SFS + gradient at n = {last['n']} <= {TARGET_MS} ms per θ: "
          f"{last['ours_grad_ms']:.1f} ms wall ({last['ours_grad_cpu_ms']:.1f} ms CPU) "
          f"-> {verdict}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    record = {"machine": machine_info(), "n_theta_per_call": N_THETA, "rows": rows,
              "discrete_rows": discrete,
              "older_tool_ms": OLDER_TOOL_MS, "target_ms": TARGET_MS, "verdict": verdict}
    with open(args.output, "w") as fh:
        fh.write(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
