"""Wall and CPU time of ``phasic-mpi summary`` and ``phasic-mpi plot`` on the BNN run file.

Builds the BNN example's run file once (examples/bnn.py, 3151 parameters; a
small PT run: ``--replicas`` temperatures, 2 chains, ``--rounds`` rounds),
then runs each command ``--repeat`` times as a user would (a fresh process
each time, so the imports count) and prints the median wall and CPU
seconds. The baseline measured in the same run, ``python -c "import
phasic_mpi"`` in a fresh process, gives ratios that are comparable across
loads of the machine.

``--before PYTHON:EXAMPLES`` also times another installation (e.g. a clone
of an older commit: its ``.venv/bin/python`` and its ``examples``
directory) on a run file it builds itself; the two are run alternately, so
a change in the machine's load hits both alike.

Usage::

    .venv/bin/python benchmarks/bench_report.py [--repeat 5] [--before PY:DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """
[model]
density = "{bnn}:make_density"
options = {{ n_data = 100, noise = 0.1, seed = 0, prior_sd = 1.0 }}

[pt]
replicas = {replicas}
chains = 2
rounds = {rounds}
warmup_rounds = {warmup}
step_size = 0.05
seed = 1

[output]
path = "{out}"
progress = "none"
"""

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
       "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"}


def _timed(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system of the child) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _build(python: str, examples: str, work: Path, args: argparse.Namespace) -> list:
    """Write the run file of one installation; its three commands to time."""
    work.mkdir(parents=True, exist_ok=True)
    run, config = work / "bnn.h5", work / "bnn_bench.toml"
    config.write_text(CONFIG.format(bnn=Path(examples) / "bnn.py", out=run,
                                    replicas=args.replicas, rounds=args.rounds,
                                    warmup=max(1, args.rounds - 2)))
    if run.exists():
        run.unlink()
    cli = [python, "-m", "phasic_mpi.cli"]
    wall, _ = _timed([*cli, "run", str(config)])
    print(f"{python}: built {run} in {wall:.1f} s ({run.stat().st_size / 2**20:.1f} MiB)")
    return [("baseline: import phasic_mpi", [python, "-c", "import phasic_mpi"]),
            ("phasic-mpi summary", [*cli, "summary", str(run)]),
            ("phasic-mpi plot", [*cli, "plot", str(run), "--out", str(work / "plots")])]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5, help="runs of each command (median)")
    p.add_argument("--before", metavar="PYTHON:EXAMPLES",
                   help="also time this installation (interpreter and examples directory)")
    p.add_argument("--replicas", type=int, default=4)
    p.add_argument("--rounds", type=int, default=6, help="2**rounds - 1 scans")
    p.add_argument("--workdir", help="keep the run files and figures here")
    args = p.parse_args()
    installs = {"after": (sys.executable, str(ROOT / "examples"))}
    if args.before:
        python, _, examples = args.before.partition(":")
        installs = {"before": (python, examples), **installs}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        commands = {label: _build(py, ex, work / label, args)
                    for label, (py, ex) in installs.items()}
        times: dict[tuple[str, str], list] = {}
        for _ in range(args.repeat):  # alternate installations: the same load for both
            for label, cmds in commands.items():
                for name, cmd in cmds:
                    times.setdefault((label, name), []).append(_timed(cmd))
        for label in installs:
            figures = sorted(f.name for f in (work / label / "plots").glob("*.png"))
            print(f"{label}: {len(figures)} figures: {', '.join(figures)}")
        print(f"median of {args.repeat} runs (a fresh process each; load average now "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        print(f"{'':<7} {'command':<28} {'wall s':>8} {'cpu s':>8} {'wall / baseline':>16}")
        for label, cmds in commands.items():
            base = statistics.median(w for w, _ in times[(label, cmds[0][0])])
            for name, _ in cmds:
                runs = times[(label, name)]
                wall = statistics.median(w for w, _ in runs)
                cpu = statistics.median(c for _, c in runs)
                print(f"{label:<7} {name:<28} {wall:8.2f} {cpu:8.2f} {wall / base:16.1f}")


if __name__ == "__main__":
    main()
