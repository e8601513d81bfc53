"""Where a PT scan spends its time besides the density (1 rank, rabbits(2), the example's [pt]).

``python benchmarks/profile_pt.py [--quick]`` (not part of ``make bench``;
for the PT speed-up work). Runs ``driver.run`` on the rabbits(2) target of
``bench_peers.py`` with 2 chains × 8 replicas, MALA, 1 local step, first
without a profiler (time per scan from the run file's ``loop_time_s``), then
under cProfile. Each function's own time (tottime) is credited to the
nearest phasic_mpi function up its call stack (numpy and builtins are
charged to the phasic_mpi code that called them, split over callers in
proportion to the time each caller spent in them), and phasic_mpi functions
are grouped into density (posterior, transforms, priors, the libphase glue)
and everything else. cProfile slows Python calls, so shares matter more
than its absolute times; the unprofiled per-scan time and the cost of the
density itself (16 one-row calls, as PT makes them, and one 16-row call)
are measured separately.

Then a budget without any profiler (``scan_budget``): on the states of a
sampling round, the minimum over repeated calls of one scan, of the same
scan with a likelihood that costs nothing (the per-scan Python of PT and of
the density's wrapper), of one 16-row ``evaluate`` and of the native
likelihood call alone; the time a real scan spends outside
``density.evaluate`` (timed around each call, at the scan where it is least:
the share of a scan that is not the density, whose cost varies with the
proposals); and a run of one scan (``rounds = 1``) for the fixed
cost of a run (run file, final groups). Minima, because the machine is shared.
"""

import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_args, time_into  # noqa: E402
import peers_targets as targets  # noqa: E402

DENSITY_MODULES = ("posterior.py", "transforms.py", "priors.py", "native.py", "graph.py", "data.py")


def _is_phasic(func):
    return "phasic_mpi" in func[0] and "benchmarks" not in func[0]


def _credit(stats, func, amount, out, depth=0):
    """Credit ``amount`` seconds of ``func``'s own time to its nearest phasic_mpi callers."""
    if _is_phasic(func):
        out[func] = out.get(func, 0.0) + amount
        return
    callers = stats[func][4]
    total = sum(v[3] for v in callers.values())  # cumulative time per caller
    if depth > 20 or not callers or total <= 0:
        out[("(outside phasic_mpi)", 0, "other")] = out.get(("(outside phasic_mpi)", 0, "other"), 0.0) + amount
        return
    for caller, v in callers.items():
        _credit(stats, caller, amount * v[3] / total, out, depth + 1)


def attribute(profile):
    stats = pstats.Stats(profile).stats
    out = {}
    for func, (_, _, tottime, _, _) in stats.items():
        _credit(stats, func, tottime, out)
    return out


def density_costs(repeats=200):
    """Median seconds of 16 one-row evaluate calls and of one 16-row call, near the posterior."""
    density = targets.density_of("rabbits")
    z = density.to_z([[2.0, 2.0, 3.5]]) + 0.1 * np.random.default_rng(0).standard_normal((16, 3))
    one, batch = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for k in range(16):
            density.evaluate(z[k:k + 1])
        t1 = time.perf_counter()
        density.evaluate(z)
        batch.append(time.perf_counter() - t1)
        one.append(t1 - t0)
    return float(np.median(one)), float(np.median(batch))


def run_once(cfg, out, profiler=None):
    from phasic_mpi.config.loaders import build_density
    from phasic_mpi.io.runfile import RunFile
    from phasic_mpi.run.driver import run

    if profiler is not None:
        profiler.enable()
    run(cfg, build=build_density, out=out, overwrite=True, base_dir=targets.ROOT)
    if profiler is not None:
        profiler.disable()
    return RunFile(out).attrs


def _min_us(fn, repeats=300):
    """Minimum wall time of ``fn()`` over ``repeats`` calls, in microseconds."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return 1e6 * best


def _sampling_state(density, cfg):
    """(algorithm, context, state) of the example's PT after 300 scans (in sampling)."""
    from phasic_mpi.inference.pt import PTAlgorithm, PTSettings

    algorithm = PTAlgorithm(PTSettings.from_config(cfg["pt"]))
    ctx = algorithm.context(density, None)
    state = algorithm.start(ctx)
    for _ in range(300):
        state, _ = algorithm.step(state, ctx)
    return algorithm, ctx, state._replace(iteration=2 ** cfg["pt"]["warmup_rounds"] + 10)


def density_share(algorithm, ctx, state, density, repeats=300):
    """Per sampling scan: (whole scan, time inside ``density.evaluate``) in us at the
    scan with the least time outside the density, over ``repeats`` scans from ``state``."""
    inner = {"evaluate": 0.0}
    density.evaluate = time_into(density.evaluate, inner, "evaluate")
    best = (np.inf, 0.0)
    try:
        for _ in range(repeats):
            inner["evaluate"] = 0.0
            t0 = time.perf_counter()
            algorithm.step(state, ctx)
            whole = time.perf_counter() - t0
            if whole - inner["evaluate"] < best[0] - best[1]:
                best = (whole, inner["evaluate"])
    finally:
        del density.evaluate
    return 1e6 * best[0], 1e6 * best[1]


def scan_budget(cfg, out):
    """Per-scan costs (minima, no profiler) and the fixed cost of a one-scan run."""
    from phasic_mpi.model import native

    density = targets.density_of("rabbits")
    algorithm, ctx, state = _sampling_state(density, cfg)
    theta = density.to_theta(state.x)
    full = _min_us(lambda: algorithm.step(state, ctx))
    whole, inside = density_share(algorithm, ctx, state, density)
    call = _min_us(lambda: density.evaluate(state.x))
    lib = _min_us(lambda: native.loglik(density.graph, density.data, theta, grad=True, tol=density.tol))
    # the same scan with a likelihood that costs nothing: PT's own Python and the wrapper's
    free = targets.density_of("rabbits")
    free._loglik_theta = lambda th: (-0.5 * (np.log(th) ** 2).sum(axis=1), -np.log(th) / th)
    algorithm_f, ctx_f, state_f = _sampling_state(free, cfg)
    bare = _min_us(lambda: algorithm_f.step(state_f, ctx_f))
    wrapper = _min_us(lambda: free.evaluate(state_f.x))
    one = {**cfg, "pt": {**cfg["pt"], "rounds": 1, "warmup_rounds": 0}}
    fixed = min(_timed_run(one, out) for _ in range(5))
    print(f"\nper scan in sampling, min of 300 calls (us): whole scan {full:.0f}; one 16-row evaluate {call:.0f} "
          f"(native loglik + gradient {lib:.0f}, the rest its Python); scan with a free likelihood {bare:.0f}, "
          f"of which evaluate's Python {wrapper:.0f}, PT's own bookkeeping {bare - wrapper:.0f}")
    print(f"the same scans with the time inside density.evaluate measured (the scan with the least time "
          f"outside it, of 300): whole {whole:.0f}, inside evaluate {inside:.0f}, outside (PT's own) "
          f"{whole - inside:.0f} = {100 * (whole - inside) / whole:.1f} % of the scan")
    print(f"fixed cost of a run (one scan, min of 5): {1e3 * fixed:.0f} ms (set-up, run file, final groups)")


def _timed_run(cfg, out):
    t0 = time.perf_counter()
    run_once(cfg, out)
    return time.perf_counter() - t0


def main():
    args = parse_args(__doc__)
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "pt.h5")
        cfg = targets.run_config("rabbits", "pt", 7, out, args.quick)
        scans = 2 ** cfg["pt"]["rounds"] - 1
        attrs = run_once(cfg, out)
        scan_ms = 1e3 * attrs["loop_time_s"] / scans
        profiler = cProfile.Profile()
        run_once(cfg, out, profiler)
    one, batch = density_costs()
    credited = attribute(profiler)
    total = sum(credited.values())
    density = sum(t for f, t in credited.items() if Path(f[0]).name in DENSITY_MODULES)
    print(f"rabbits(2), 2 chains x 8 replicas, MALA, {scans} scans, 1 rank")
    print(f"unprofiled: {scan_ms:.2f} ms per scan (loop_time_s / scans); stop check "
          f"{1e3 * attrs['stop_check_time_s'] / scans:.3f} ms per scan")
    print(f"density alone: 16 one-row evaluate calls {1e3 * one:.2f} ms, one 16-row call {1e3 * batch:.2f} ms")
    print(f"profiled: {total:.2f} s in all, density stack {100 * density / total:.1f} %, "
          f"the rest {100 * (total - density) / total:.1f} %\n")
    print(f"{'share %':>8} {'ms/scan':>8}  function (own time + numpy/builtins it called)")
    for func, t in sorted(credited.items(), key=lambda kv: -kv[1])[:30]:
        where = "density " if Path(func[0]).name in DENSITY_MODULES else "        "
        print(f"{100 * t / total:8.1f} {1e3 * t / scans:8.3f}  {where}{Path(func[0]).name}:{func[1]} {func[2]}")
    with tempfile.TemporaryDirectory() as tmp:
        scan_budget(cfg, str(Path(tmp) / "one.h5"))


if __name__ == "__main__":
    main()
