"""PT's adapted metric and chain x replica layouts on bench-peers' two targets.

``make bench-pt-layouts`` (or ``python benchmarks/bench_pt_layouts.py [--quick]
[--seeds N] [--first-seed S] [--metric-seeds N]``; needs the ``bench`` extra: emcee, ptemcee-for-orbitize).

Two questions about issue 15.2 that ``bench_peers.py`` answers too noisily (3
repetitions, one run each, medians of per-run mode switches whose spread
between seeds is about 9 %). Its seeds are fixed (7 + r), so re-running it
repeats the same switch counts bit for bit and only the timing changes: at
2 x 8 ``pt`` switches 295 / 348 / 294 times at seeds 7 / 8 / 9 and
``pt_unit`` 330 / 324 / 374, a gap that 40 further seeds do not show.

1. **Metric.** Does the dense metric adapted in warm-up (``mass_matrix =
   "auto"``, ``pt``) switch modes less than the unit metric (``"none"``,
   ``pt_unit``) on the symmetric hypoexponential target? Both run at the
   same seeds, alternated, at bench-peers' 2 x 8 settings; printed: mean ±
   standard error over the seeds of the CPU s per run, the mode switches per
   run and per CPU s, the fraction of draws with a < b, and the paired
   difference of switches per run.
2. **Layout.** chains x replicas (2, 4, 8 x 4, 5, 8) at the example's other
   settings on both targets, each seed's emcee (vectorised) and ptemcee
   (8 x 32, batched) run for a fixed CPU budget in the same process right
   after that seed's PT runs (benchmark-only code shared with
   ``bench_peers.py``). Layouts use different numbers of slots, so every
   figure is per CPU second: bulk ESS (ArviZ, min over parameters) per CPU s
   and its ratio to that seed's emcee, and on the symmetric target mode
   switches per CPU s (and their ratio to ptemcee's); medians and ranges
   over the seeds.

CPU time (``time.process_time``, one thread) rather than wall time: other
jobs share the machine. Each run goes through the driver as in
``bench_peers.run_phasic`` (model set-up, warm-up, run-file writes included).
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import banner, machine_info, parse_args, table, write_json  # noqa: E402
import peers_targets as targets  # noqa: E402
from bench_peers import mode_fraction, run_emcee, run_phasic, run_ptemcee  # noqa: E402
from peers_reference import bulk_ess, modes  # noqa: E402

LAYOUTS = [(2, 4), (2, 5), (2, 8), (4, 4), (4, 5), (4, 8), (8, 4), (8, 5), (8, 8)]
QUICK_LAYOUTS = [(2, 8), (4, 4), (4, 5)]
PEER_BUDGET_S = 1.5  # CPU s of each emcee / ptemcee run (about one 2 x 8 PT run)


def phasic_run(target, layout, seed, tmp, mass_matrix="auto"):
    """One PT run through the driver with ``layout`` = (chains, replicas): a measurement row."""
    chains, replicas = layout
    base = targets.PT
    targets.PT = {**base, "chains": chains, "replicas": replicas, "mass_matrix": mass_matrix}
    try:
        draws, _, _, cpu = run_phasic(target, "pt", seed, str(Path(tmp) / "run.h5"))
    finally:
        targets.PT = base
    return measured(target, f"{chains}x{replicas}", seed, draws, cpu)


def measured(target, name, seed, draws, cpu):
    out = {"target": target, "sampler": name, "seed": seed, "cpu_s": cpu, "ess": bulk_ess(draws)}
    if target == "hypoexp":
        out["switches"] = modes(draws)[1]
        out["frac"] = mode_fraction(draws)[0]
    return out


def metric_study(seeds, tmp):
    """pt (adapted dense metric) and pt_unit at the same seeds, alternated, on the symmetric target."""
    rows = []
    for seed in seeds:
        for mass in ("auto", "none"):
            r = phasic_run("hypoexp", (2, 8), seed, tmp, mass)
            r["sampler"] = "pt" if mass == "auto" else "pt_unit"
            rows.append(r)
    return rows


def mean_se(values):
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.4g} ± {v.std(ddof=1) / np.sqrt(len(v)):.2g}"


def print_metric(rows):
    by = {s: [r for r in rows if r["sampler"] == s] for s in ("pt", "pt_unit")}
    print(f"\n1. metric: symmetric target, 2 x 8, {len(by['pt'])} seeds each (mean ± se over seeds)")
    out = [[s, mean_se([r["cpu_s"] for r in g]), mean_se([r["switches"] for r in g]),
            mean_se([r["switches"] / r["cpu_s"] for r in g]), mean_se([r["frac"] for r in g])]
           for s, g in by.items()]
    print(table(["sampler", "CPU s", "switches per run", "switches per CPU s", "frac a<b (0.5)"], out))
    diff = [a["switches"] - b["switches"] for a, b in zip(by["pt"], by["pt_unit"])]
    print(f"paired switches per run, pt - pt_unit: {mean_se(diff)}")


def print_layouts(rows):
    print("\n2. layouts: medians [min-max] over seeds; ratios to the same seed's emcee / ptemcee")
    for target in targets.TARGETS:
        per_seed = {(r["sampler"], r["seed"]): r for r in rows if r["target"] == target}
        names = list(dict.fromkeys(r["sampler"] for r in rows if r["target"] == target))
        sym = target == "hypoexp"
        out = []
        for name in names:
            g = [r for r in rows if r["target"] == target and r["sampler"] == name]
            ess = [r["ess"] / r["cpu_s"] for r in g]
            emcee = [per_seed[("emcee", r["seed"])] for r in g]
            vs = [e / (p["ess"] / p["cpu_s"]) for e, p in zip(ess, emcee)]
            line = [name, float(np.median([r["cpu_s"] for r in g])), float(np.median(ess)), spread(vs)]
            if sym:
                sw = [r["switches"] / r["cpu_s"] for r in g]
                ref = [per_seed[("ptemcee", r["seed"])] for r in g]
                line += [spread(sw, "{:.0f}"), spread([s / (p["switches"] / p["cpu_s"]) for s, p in zip(sw, ref)]),
                         float(np.mean([r["frac"] for r in g]))]
            out.append(line)
        head = ["sampler", "CPU s", "ESS/CPU-s", "x emcee"] + (["switches/CPU-s", "x ptemcee", "frac a<b"]
                                                                if sym else [])
        print(f"\n{target}")
        print(table(head, out))


def spread(values, fmt="{:.2f}"):
    return f"{fmt.format(np.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def add_arguments(parser):
    parser.add_argument("--seeds", type=int, default=None, help="seeds of the layout grid (default 5; 2 with --quick)")
    parser.add_argument("--first-seed", type=int, default=7, help="first seed of the layout grid (default 7)")
    parser.add_argument("--metric-seeds", type=int, default=None,
                        help="seeds of the metric study (default 40; 6 with --quick)")


def main():
    import tempfile

    args = parse_args(__doc__, add_arguments)
    machine = machine_info()
    print(banner("bench_pt_layouts", machine))
    layouts = QUICK_LAYOUTS if args.quick else LAYOUTS
    seeds = range(args.first_seed, args.first_seed + (args.seeds or (2 if args.quick else 5)))
    metric_seeds = range(100, 100 + (args.metric_seeds or (6 if args.quick else 40)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        metric = metric_study(metric_seeds, tmp)
        print(f"metric study: {time.perf_counter() - t0:.0f} s", flush=True)
        for seed in seeds:
            t0 = time.perf_counter()
            for target in targets.TARGETS:
                rows += [phasic_run(target, layout, seed, tmp) for layout in layouts]
                density = targets.density_of(target)
                for name, runner in (("emcee", run_emcee), ("ptemcee", run_ptemcee)):
                    draws, _, _, cpu = runner(density, PEER_BUDGET_S, seed)
                    rows.append(measured(target, name, seed, draws, cpu))
            print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    print_metric(metric)
    print_layouts(rows)
    path = write_json("bench_pt_layouts", {"machine": machine, "quick": args.quick, "metric": metric,
                                           "layouts": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
