"""Where a small model's likelihood time goes: callgrind instruction counts by part.

``python benchmarks/profile_small.py [--baseline REV]`` (needs gcc and
valgrind; about two minutes). For kingman(10) and rabbits(5) at 100 and 1000
observations, value and value+gradient, a C driver
(``profile_small_driver.c``) calls ``phase_loglik`` on a batch of 64 θ, with
the libphase of this tree and of a baseline revision (default: the one before
the issue 15.5 work). Instructions are counted by callgrind inside
``phase_loglik`` only (repeatable on a shared machine) and grouped by function
into the parts of one evaluation; the Poisson core window and the one-in-edge
step are compiled out of line for the count so that they stay apart. Each
count is turned into time with the ns per instruction of the same driver
measured natively (best of 200 calls, the drivers alternated three times),
and printed as ns per (nonzero of S × term), the unit of bench-core's target.
"""

import argparse
import collections
import io
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_core import SMALL_BASELINE, SMALL_MODELS, SMALL_OBS, jittered, nnz_S  # noqa: E402

from phasic_mpi.model import models  # noqa: E402

N_THETA = 64
CALLGRIND_REPS = 3
# (column, what it is, functions whose own instructions it counts)
PARTS = [
    ("entry", "argument checks, workspace", r"(check_\w+|chain_init|sweep_init|chain_free|"
     r"sweep_free|end_weights|defect|phase_clear_error|phase_options_default|"
     r"malloc|calloc|free|realloc|cfree|_int_\w+|tcache\w*|unlink_chunk|"
     r"malloc_consolidate|sysmalloc)"),
    ("rates", "rates, Λ and P per θ", r"(set_rates|phase_graph_rates|chain_set_theta|reach_at|"
     r"sweep_set_theta|sweep_start|start_segment|sweep_tangent_coefficients)"),
    ("pois.w", "Poisson weights, per observation", r"(core_window|sweep_poisson|weights_room|"
     r"grow_weights|acc_add|right_bound_x|needed_log2|log2_ceil)"),
    ("pois.dot", "Poisson-weighted sum", r"dot"),
    ("obs", "per-observation loop, segment, log", r"(observations_pass|point_value|"
     r"chain_segment|chain_check|chain_retry|point_adjoint|scaled_log|__ieee754_log\w*|"
     r"log|__log\w*|ldexp|__scalbn|scalbn|__floor\w*|floor)"),
    ("step", "the step v P (the nonzero work)", r"(forward|forward_one)"),
    ("term", "per-term bookkeeping", r"(record|sweep_ensure|sequences_room|sweep_grow|"
     r"accumulate|scale|keep|arena_take)"),
    ("tangent", "forward-mode tangent step", r"sweep_forward_tangent"),
    ("adjoint", "adjoint weights, fold, gradient dot", r"(sweep_adjoint|sweep_fold_c|"
     r"chain_fold_c|tangent_gradient|phase_loglik)"),
    ("reverse", "reverse sweep (reverse.c)", r"(chain_reverse|sweep_vector|reverse_\w+)"),
    ("memset", "memset/memcpy (clears)", r"(__mem\w+)"),
]
OUT_OF_LINE = [("poisson.c", "static int core_window("), ("sweep.c", "static double forward_one(")]


def write_case(path, graph, data, thetas):
    """The binary input of the driver: a header, the graph's arrays, observations, θ."""
    with open(path, "wb") as fh:
        np.array([graph.n_states, graph.n_params, graph.n_edges, int(graph.discrete),
                  len(data), len(thetas)], dtype=np.int64).tofile(fh)
        np.asarray(graph.alpha, np.float64).tofile(fh)
        np.asarray(graph.edge_src, np.int32).tofile(fh)
        np.asarray(graph.edge_dst, np.int32).tofile(fh)
        np.asarray(graph.edge_base, np.float64).tofile(fh)
        np.asarray(graph.edge_coef, np.float64).tofile(fh)
        np.asarray(data, np.float64).tofile(fh)
        np.asarray(thetas, np.float64).tofile(fh)


def build(rev, tmp):
    """The driver linked with the libphase of ``rev`` (None: this working tree)."""
    tree = Path(tempfile.mkdtemp(dir=tmp))
    if rev is None:
        shutil.copytree(ROOT / "libphase", tree / "libphase")
    else:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "libphase"],
                                 check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
    src = tree / "libphase" / "src"
    for name, head in OUT_OF_LINE:  # kept apart in the count (absent ones are skipped)
        text = (src / name).read_text()
        (src / name).write_text(text.replace("\n" + head, "\n__attribute__((noinline)) " + head))
    out = tree / "driver"
    # the extension's alignment flags (libphase/build_cffi.py ALIGN_FLAGS), so that the
    # native ns per instruction does not depend on where the code happens to land
    subprocess.run(["gcc", "-std=c11", "-O3", "-g", "-falign-loops=64", "-falign-functions=64",
                    f"-I{tree}/libphase/include", f"-I{src}",
                    str(ROOT / "benchmarks" / "profile_small_driver.c"),
                    *map(str, sorted(src.glob("*.c"))), "-lm", "-o", str(out)],
                   check=True, capture_output=True)
    return out


def run(driver, case, grad, reps):
    """The driver's output fields: ll0, g0, terms/theta, best_us_per_theta."""
    out = subprocess.run([str(driver), str(case), str(int(grad)), str(reps)], check=True,
                         capture_output=True, text=True).stdout
    return dict(item.split("=") for item in out.split())


def instructions(driver, case, grad, tmp):
    """Instructions per θ inside phase_loglik by part (callgrind)."""
    out_file = Path(tmp) / "callgrind.out"
    subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=phase_loglik",
                    f"--callgrind-out-file={out_file}", str(driver), str(case), str(int(grad)),
                    str(CALLGRIND_REPS)], check=True, capture_output=True)
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no",
                           "--threshold=100", str(out_file)],
                          check=True, capture_output=True, text=True).stdout
    parts, total = collections.Counter(), 0
    for line in text.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$", line)
        if not m:
            continue
        count, where = int(m.group(1).replace(",", "")), m.group(2)
        if where.startswith("PROGRAM TOTALS"):
            total = count
            continue
        name = re.sub(r"\.(part|isra|constprop|cold)\.\d+", "",
                      where.split(" [")[0].split(":")[-1].strip())
        label = next((p[0] for p in PARTS if re.fullmatch(p[2], name)), "other")
        parts[label] += count
    per = CALLGRIND_REPS * N_THETA
    return total / per, {k: v / per for k, v in parts.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=SMALL_BASELINE,
                        help=f"git revision for 'before' (default {SMALL_BASELINE})")
    args = parser.parse_args()
    labels = [p[0] for p in PARTS] + ["other"]
    with tempfile.TemporaryDirectory(prefix="profile_small_") as tmp:
        drivers = {"before": build(args.baseline, tmp), "after": build(None, tmp)}
        print(f"ns per nonzero per term by part, libphase {args.baseline} (before) and this "
              "tree (after);\nbatch of 64 θ, callgrind instructions × measured ns/instruction "
              "of the same run:\n")
        print(f"{'case':22s} {'':6s} {'µs/θ':>7s} {'kinstr/θ':>8s} {'ns/instr':>8s} "
              f"{'ns/nnz/term':>11s} | " + " ".join(f"{c:>7s}" for c in labels))
        for name, size, reference in SMALL_MODELS:
            graph = getattr(models, name)(size)
            for n_obs in SMALL_OBS:
                case = Path(tmp) / f"{name}{size}_{n_obs}.bin"
                write_case(case, graph, graph.sample(n_obs, reference, seed=2024),
                           jittered(reference, N_THETA))
                for grad in (False, True):
                    best = collections.defaultdict(lambda: np.inf)
                    for _ in range(3):  # alternated: the machine is shared
                        for v, drv in drivers.items():
                            fields = run(drv, case, grad, 200)
                            best[v] = min(best[v], float(fields["best_us_per_theta"]))
                    for v, drv in drivers.items():
                        total, parts = instructions(drv, case, grad, tmp)
                        ns_instr = best[v] * 1e3 / total
                        unit = nnz_S(graph) * float(run(drv, case, grad, 1)["terms/theta"])
                        print(f"{name}({size}) {n_obs:4d} {'grad' if grad else 'value':5s} "
                              f"{v:6s} {best[v]:7.1f} {total / 1e3:8.1f} {ns_instr:8.4f} "
                              f"{best[v] * 1e3 / unit:11.2f} | " + " ".join(
                                  f"{parts.get(c, 0.0) * ns_instr / unit:7.3f}" for c in labels))
    print("\nparts: " + "; ".join(f"{c}: {what}" for c, what, _ in PARTS) + "; other: the rest")


if __name__ == "__main__":
    main()
