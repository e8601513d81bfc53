"""Shared helpers of the MPI benchmarks (bench_svgd, bench_pt, bench_scaling).

Benchmark-only code: a counting communicator proxy, machine info (copied
from bench_core.py), the 1-rank / 2-rank launcher and table printing.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))


def machine_info():
    """Platform, CPU, library versions (copy of bench_core.machine_info plus MPI)."""
    import scipy
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu": cpu, "cores": os.cpu_count(), "numpy": np.__version__, "scipy": scipy.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    try:
        from mpi4py import MPI
        info["mpi4py"] = __import__("mpi4py").__version__
        info["mpi"] = MPI.Get_library_version().strip().splitlines()[0]
    except Exception:  # pragma: no cover
        pass
    return info


def _nbytes(buf):
    """Bytes of a buffer spec: an array, or [array, counts, displs, type] (counts in items)."""
    if buf is None:
        return 0
    if isinstance(buf, (list, tuple)):
        arr = buf[0]
        if len(buf) >= 3 and buf[1] is not None and not np.isscalar(buf[1]):
            return int(np.sum(buf[1])) * np.asarray(arr).itemsize
        return np.asarray(arr).nbytes
    return np.asarray(buf).nbytes


class CountingComm:
    """Communicator proxy: buffer collectives record bytes sent and received, then delegate."""

    def __init__(self, comm):
        self._comm = comm
        self.sent = 0
        self.received = 0
        self.sendrecv_sent = 0
        self.calls = {}

    def reset(self):
        self.sent = self.received = 0
        self.sendrecv_sent = 0
        self.calls = {}

    def _note(self, name, sent, received):
        self.sent += sent
        self.received += received
        self.calls[name] = self.calls.get(name, 0) + 1

    def Allgatherv(self, sendbuf, recvbuf):
        self._note("Allgatherv", _nbytes(sendbuf), _nbytes(recvbuf))
        return self._comm.Allgatherv(sendbuf, recvbuf)

    def Allgather(self, sendbuf, recvbuf):
        self._note("Allgather", _nbytes(sendbuf), _nbytes(recvbuf))
        return self._comm.Allgather(sendbuf, recvbuf)

    def Gatherv(self, sendbuf, recvbuf, root=0):
        self._note("Gatherv", _nbytes(sendbuf), _nbytes(recvbuf))
        return self._comm.Gatherv(sendbuf, recvbuf, root=root)

    def Sendrecv(self, sendbuf, *args, **kwargs):
        recvbuf = kwargs.get("recvbuf", args[1] if len(args) > 1 else None)
        self._note("Sendrecv", _nbytes(sendbuf), _nbytes(recvbuf))
        self.sendrecv_sent += _nbytes(sendbuf)
        return self._comm.Sendrecv(sendbuf, *args, **kwargs)

    def Allreduce(self, sendbuf, recvbuf, *args, **kwargs):
        self._note("Allreduce", _nbytes(sendbuf), _nbytes(recvbuf))
        return self._comm.Allreduce(sendbuf, recvbuf, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._comm, name)


def world():
    from mpi4py import MPI
    return MPI.COMM_WORLD


def run_two_ranks(script, args, timeout=600):
    """Run ``script --worker ARGS`` under ``mpiexec -n 2``; return rank 0's JSON."""
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if not mpiexec.exists():
        mpiexec = "mpiexec"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "worker.json"
        cmd = [str(mpiexec), "-n", "2", sys.executable, str(script), "--worker",
               "--worker-out", str(out), *args]
        subprocess.run(cmd, check=True, timeout=timeout)
        return json.loads(out.read_text())


def table(headers, rows):
    """Fixed-width text table."""
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else f"{c:.4g}" for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(name, record):
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False, default=float) + "\n")
    return path


def parse_args(doc, add_arguments=None):
    """The options every benchmark takes (--quick, and the hidden 2-rank worker mode)."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    if add_arguments is not None:
        add_arguments(parser)
    return parser.parse_args()


def serve_worker(args, worker):
    """In worker mode (under mpiexec), run ``worker`` and have rank 0 write its rows; True if so."""
    if not args.worker:
        return False
    rows = worker(args)
    if world().rank == 0:
        args.worker_out.write_text(json.dumps(rows))
    return True


def banner(name, machine):
    return f"{name}: {machine['cpu']}, {machine['cores']} cores; {machine.get('mpi', '')}"


def median_time(fn, repeats=7):
    """Median seconds of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def time_into(fn, totals, key):
    """``fn`` wrapped so that the wall time of each call is added to ``totals[key]``."""

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - t0

    return timed
