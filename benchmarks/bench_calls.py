"""Per-call overhead of the public likelihood: the Python around libphase's C call.

``make bench-calls`` (or ``python benchmarks/bench_calls.py [--baseline REV]
[--quick]``). A notebook user calls ``native.loglik``, ``Graph.loglik``,
``Graph.loglik_and_grad`` or ``Graph.pdf`` at one θ at a time (inside
``scipy.optimize.minimize``, say); on small models the Python around the C
call used to cost as much as the likelihood. For kingman(10) and rabbits(5)
at one θ and 100 observations (a plain float64 array, or an Observations),
each call is timed one at a time, alternated with the same C call on structs
prepared beforehand ("C"); overhead = total - C. The tree at ``--baseline``
(default: the revision before the per-call work) and this tree run in child
processes, alternated; each figure is the smallest over the rounds (the least
disturbed on a shared machine). Prints min and median µs per call; all
figures go to ``benchmarks/results/bench_calls.json``.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from phasic_mpi.model import models
from phasic_mpi.model import native as _core

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_core import build_baseline, table  # noqa: E402

# The tree before the per-call work (native.loglik's cached observations).
BASELINE = "9e59299"
MODELS = [("kingman", 10, [1.0]), ("rabbits", 5, [1.0, 2.0, 4.0])]
N_OBS = 100


def c_call(graph, data, theta, kind):
    """The C call of ``kind`` on structs and pointers built once (no Python work per call)."""
    from phasic_mpi._libphase import ffi, lib

    th = np.ascontiguousarray(theta, dtype=np.float64).reshape(1, -1)
    handle, opts = _core.compiled(graph), _core._options(None, None)
    status = np.zeros(1, dtype=np.intc)
    buf = (lambda a: ffi.from_buffer("double[]", a))  # noqa: E731
    p_th, p_status = buf(th), ffi.from_buffer("int[]", status)
    if kind == "pdf":
        points = np.ascontiguousarray(data, dtype=np.float64)
        out = np.empty(points.size)
        p_pts, p_out = buf(points), buf(out)
        return lambda: lib.phase_eval(handle, opts, 1, p_th, points.size, p_pts, lib.PHASE_PDF,
                                      p_out, p_status, ffi.NULL)
    keep = []
    cdata = _core._data_struct(_core.as_observations(data), keep)
    out, gout = np.empty(1), np.empty((1, graph.n_params))
    p_out, p_g = buf(out), buf(gout) if kind.endswith("grad") else ffi.NULL
    return lambda: (keep, lib.phase_loglik(handle, opts, cdata, 1, p_th, p_out, p_g, p_status,
                                           ffi.NULL))


def public_call(graph, data, theta, kind):
    """The public call of ``kind`` a user makes."""
    if kind == "native.loglik":
        return lambda: _core.loglik(graph, data, theta)
    if kind.startswith("native.loglik+grad"):
        return lambda: _core.loglik(graph, data, theta, grad=True)
    if kind == "Graph.loglik_and_grad":
        return lambda: graph.loglik_and_grad(data, theta)
    if kind == "Graph.pdf":
        return lambda: graph.pdf(data, theta)
    raise ValueError(kind)


KINDS = ["native.loglik", "native.loglik+grad", "native.loglik+grad (Observations)",
         "Graph.loglik_and_grad", "Graph.pdf"]


def figures(repeats):
    """µs per call (min, median) of each public call and of its C call, interleaved."""
    rows = []
    for name, size, reference in MODELS:
        graph = getattr(models, name)(size)
        times = graph.sample(N_OBS, reference, seed=2024)
        theta = np.asarray(reference, dtype=np.float64)
        for kind in KINDS:
            data = _core.Observations(times) if "Observations" in kind else times
            ckind = "pdf" if kind == "Graph.pdf" else ("grad" if "grad" in kind else "value")
            fns = {"total": public_call(graph, data, theta, kind),
                   "c": c_call(graph, data, theta, ckind)}
            spent = {k: np.empty(repeats) for k in fns}
            for i in range(repeats):
                for key, fn in fns.items():
                    start = time.perf_counter()
                    fn()
                    spent[key][i] = time.perf_counter() - start
            rows.append({"model": f"{name}({size})", "call": kind,
                         **{f"{k}_{stat}": 1e6 * float(f(v)) for k, v in spent.items()
                            for stat, f in (("min", np.min), ("median", np.median))}})
    return rows


def worker_run(tree, repeats):
    """``figures`` in a child process whose ``phasic_mpi`` comes from ``tree``."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = json.loads(subprocess.run(
        [sys.executable, __file__, "--worker", str(repeats)],
        env=env, check=True, capture_output=True, text=True).stdout)
    if not Path(out["module"]).resolve().is_relative_to(Path(tree).resolve()):
        raise RuntimeError(f"the child imported {out['module']}, not the tree {tree}")
    return out["rows"]


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps({"module": _core.__file__, "rows": figures(int(sys.argv[2]))}))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE,
                        help=f"git revision of the 'before' column (default {BASELINE})")
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 calls, one round")
    parser.add_argument("--output", type=Path,
                        default=ROOT / "benchmarks" / "results" / "bench_calls.json")
    args = parser.parse_args()
    repeats, rounds = (200, 1) if args.quick else (3000, 3)
    runs = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="bench_calls_base_") as tmp:
        build_baseline(args.baseline, tmp)
        for _ in range(rounds):
            for label in runs:
                runs[label].append(worker_run(tmp if label == "before" else ROOT, repeats))
    merged = {label: [dict(rows[0], **{k: min(r[k] for r in rows) for k in rows[0]
                                       if k.endswith(("_min", "_median"))})
                      for rows in zip(*results)]
              for label, results in runs.items()}

    def cell(b, a, key):
        return f"{b[key]:.1f} -> {a[key]:.1f}"

    print(f"bench_calls: per-call µs at one θ, {N_OBS} observations, {repeats} calls × "
          f"{rounds} rounds; before = {args.baseline}, after = this tree (child processes "
          "alternated, smallest over rounds)")
    lines = []
    for b, a in zip(merged["before"], merged["after"]):
        for rec in (b, a):
            for stat in ("min", "median"):
                rec[f"overhead_{stat}"] = rec[f"total_{stat}"] - rec[f"c_{stat}"]
        lines.append([a["model"], a["call"], f"{a['c_min']:.1f} / {a['c_median']:.1f}",
                      cell(b, a, "total_min"), cell(b, a, "total_median"),
                      cell(b, a, "overhead_min"), cell(b, a, "overhead_median")])
    print(table(["model", "call", "C min / med", "total min", "total median",
                 "overhead min", "overhead median"], lines))
    print("(overhead = total - C: the Python around the C call; C = the same C call on "
          "structs built once)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"baseline": args.baseline, "repeats": repeats,
                                       "rounds": rounds, **merged}, indent=1))


if __name__ == "__main__":
    main()
