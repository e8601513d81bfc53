"""SLURM batch scripts for ``phasic-mpi run``: ``phasic-mpi jobscript``.

:func:`render` returns an sbatch script (a string) from a size *profile*,
optionally overridden by a small TOML *cluster file*:

```toml
partition = "compute"
account = "proj123"
modules = ["python/3.11", "openmpi/4.1"]   # `module load` lines
nodes = 2
tasks_per_node = 32
cpus_per_task = 1
time = "12:00:00"
mem = "64G"                                 # per node
mpi = "pmix"                                # srun --mpi=...: pmi2 (MPICH) or pmix (Open MPI)
extra = ["--constraint=cpu", "--qos=normal"]   # more #SBATCH directives
venv = "/home/me/phasic_mpi/.venv"
```

The script checkpoints before the time limit (``--signal=TERM@<grace>``:
SLURM sends SIGTERM to the tasks, ``phasic-mpi run`` writes
``<out>.ckpt.npz`` and exits 143), requeues itself, and resumes from the
checkpoint when it starts again. No dependency besides the standard library.
"""

from __future__ import annotations

import re
import shlex
import sys
from typing import Any

from phasic_mpi.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["PROFILES", "ALGORITHMS", "JOB_KINDS", "JobscriptError", "job_kinds", "load_cluster",
           "render"]

#: nodes, tasks per node, cpus per task, time limit, memory per node
PROFILES: dict[str, dict[str, Any]] = {
    "debug": {"nodes": 1, "tasks_per_node": 2, "cpus_per_task": 1, "time": "00:15:00",
              "mem": "4G"},
    "small": {"nodes": 1, "tasks_per_node": 8, "cpus_per_task": 1, "time": "02:00:00",
              "mem": "16G"},
    "medium": {"nodes": 2, "tasks_per_node": 16, "cpus_per_task": 1, "time": "08:00:00",
               "mem": "32G"},
    "large": {"nodes": 4, "tasks_per_node": 32, "cpus_per_task": 1, "time": "24:00:00",
              "mem": "64G"},
    "production": {"nodes": 8, "tasks_per_node": 64, "cpus_per_task": 1,
                   "time": "48:00:00", "mem": "128G"},
}
# Job kinds that are not algorithms: one seed per array task; a study file.
# ``--algorithm`` takes these and every registered algorithm (:func:`job_kinds`).
JOB_KINDS = ("array", "study")
MPI_PLUGINS = ("pmi2", "pmix", "pmi1", "none")
# an example config per kind; another algorithm's default is ``<name>.toml``
_DEFAULT_CONFIG = {"svgd": "examples/rabbits.toml", "pt": "examples/rabbits_pt.toml",
                   "map": "examples/exponential_map.toml", "array": "examples/rabbits.toml",
                   "study": "examples/compare_study.toml"}
_TIME_RE = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$|^\d+-\d{1,2}$")
_MEM_RE = re.compile(r"^\d+[KMGT]?$")
_KEYS = {"partition": str, "account": str, "modules": list, "nodes": int,
         "tasks_per_node": int, "cpus_per_task": int, "time": str, "mem": str, "mpi": str,
         "extra": list, "venv": str, "signal_grace": int, "array": str}


class JobscriptError(ConfigError):
    """A bad cluster file or option; the message starts with the key."""


def job_kinds() -> tuple[str, ...]:
    """What ``--algorithm`` takes: every registered algorithm (the registry's, as
    the config layer sees it now), then :data:`JOB_KINDS`."""
    from phasic_mpi.config import registered_algorithms

    return registered_algorithms() + JOB_KINDS


def __getattr__(name: str) -> Any:
    # ALGORITHMS follows the registry: computed when read, so that an algorithm
    # registered after this module was imported is in it
    if name == "ALGORITHMS":
        return job_kinds()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_kind(algorithm: str) -> str:
    kinds = job_kinds()
    if algorithm not in kinds:
        raise JobscriptError(f"--algorithm: expected one of {', '.join(kinds)}, got {algorithm!r}")
    return algorithm


def _check(key: str, value: Any) -> Any:
    kind = _KEYS.get(key)
    if kind is None:
        raise JobscriptError(f"{key}: unknown key (known: {', '.join(sorted(_KEYS))})")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise JobscriptError(f"{key}: expected an integer >= 1, got {value!r}")
        if key == "signal_grace" and value < 10:
            raise JobscriptError(f"{key}: expected an integer >= 10 (seconds), got {value!r}")
        return value
    if kind is list:
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip()
                                                  for v in value):
            raise JobscriptError(f"{key}: expected a list of non-empty strings, got {value!r}")
        if any("\n" in v for v in value):
            raise JobscriptError(f"{key}: strings must not contain newlines")
        return list(value)
    if not isinstance(value, str) or not value.strip() or "\n" in value:
        raise JobscriptError(f"{key}: expected a non-empty one-line string, got {value!r}")
    if key == "time" and not _TIME_RE.match(value):
        raise JobscriptError(f"{key}: expected a SLURM time like 01:30:00 or 2-00:00:00, "
                             f"got {value!r}")
    if key == "mem" and not _MEM_RE.match(value):
        raise JobscriptError(f"{key}: expected a size like 4000, 16G or 500M, got {value!r}")
    if key == "mpi" and value not in MPI_PLUGINS:
        raise JobscriptError(f"{key}: expected one of {', '.join(MPI_PLUGINS)}, got {value!r}")
    if key == "array" and not re.match(r"^[0-9,\-:%]+$", value):
        raise JobscriptError(f"{key}: expected a SLURM array spec like 0-9 or 1,3,5%2, "
                             f"got {value!r}")
    return value


def validate_cluster(data: dict[str, Any]) -> dict[str, Any]:
    """Check a cluster table; returns it with every value checked."""
    return {key: _check(key, value) for key, value in data.items()}


def load_cluster(path: str) -> dict[str, Any]:
    """Read and validate a cluster TOML file."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise JobscriptError(f"--cluster: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise JobscriptError(f"--cluster: {path}: invalid TOML: {exc}") from None
    return validate_cluster(data)


def _time_seconds(t: str) -> int:
    days = 0
    if "-" in t:
        d, t = t.split("-", 1)
        days = int(d)
    parts = [int(p) for p in t.split(":")]
    if days and len(parts) == 1:  # D-HH
        h, m, s = parts[0], 0, 0
    elif len(parts) == 1:  # MM
        h, m, s = 0, parts[0], 0
    elif len(parts) == 2:  # MM:SS (D-HH:MM with days)
        h, m, s = (parts[0], parts[1], 0) if days else (0, parts[0], parts[1])
    else:
        h, m, s = parts
    return ((days * 24 + h) * 60 + m) * 60 + s


def render(profile: str = "debug", cluster: dict[str, Any] | None = None,
           config: str | None = None, algorithm: str = "svgd", out: str | None = None,
           job_name: str | None = None) -> str:
    """The sbatch script for ``profile``, overridden by ``cluster``.

    Parameters
    ----------
    profile : one of :data:`PROFILES`
    cluster : dict, optional
        Cluster settings (see the module docstring); validated here.
    config : str, optional
        The run config (default ``examples/rabbits.toml``, or
        ``examples/rabbits_pt.toml`` for ``pt``).
    algorithm : a registered algorithm ("svgd", "pt", "map", ...), "array" or "study"
        Only the defaults and the job name differ between algorithms (the
        algorithm is the config's); ``array`` runs one seed per array task;
        ``study`` runs ``phasic-mpi study`` on a study file (a requeued job
        continues it: finished cells are skipped).
    out : str, optional
        The run file (default ``runs/<config name>.h5``; for ``array``
        ``runs/<config name>_seed<N>.h5``).
    """
    # long: the script is written top to bottom, one block per feature, as it reads
    if profile not in PROFILES:
        raise JobscriptError(f"--profile: expected one of {', '.join(PROFILES)}, "
                             f"got {profile!r}")
    _check_kind(algorithm)
    s: dict[str, Any] = {"mpi": "pmi2", "modules": [], "extra": [], "venv": ".venv",
                         "array": "0-3"}
    s.update(PROFILES[profile])
    s.update(validate_cluster(dict(cluster or {})))
    limit = _time_seconds(s["time"])
    grace = s.get("signal_grace", 120 if limit > 600 else max(10, limit // 4))
    config = config or _DEFAULT_CONFIG.get(algorithm, f"{algorithm}.toml")
    stem = re.sub(r"\.toml$", "", config.rsplit("/", 1)[-1]) or "run"
    name = job_name or f"phasic-{stem}" + ("-array" if algorithm == "array" else "")
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)  # sbatch splits its directives at spaces
    q = shlex.quote  # every value the script's shell reads is quoted: nothing runs from a path

    lines = ["#!/bin/bash",
             f"# phasic-mpi {algorithm} job (profile {profile}); written by "
             "`phasic-mpi jobscript`.",
             "# Submit from the project directory:  mkdir -p logs && sbatch THIS_FILE",
             f"#SBATCH --job-name={name}",
             f"#SBATCH --nodes={s['nodes']}",
             f"#SBATCH --ntasks-per-node={s['tasks_per_node']}",
             f"#SBATCH --cpus-per-task={s['cpus_per_task']}",
             f"#SBATCH --time={s['time']}",
             f"#SBATCH --mem={s['mem']}"]
    if "partition" in s:
        lines.append(f"#SBATCH --partition={s['partition']}")
    if "account" in s:
        lines.append(f"#SBATCH --account={s['account']}")
    if algorithm == "array":
        lines.append(f"#SBATCH --array={s['array']}")
        lines.append("#SBATCH --output=logs/%x-%A_%a.out")
    else:
        lines.append("#SBATCH --output=logs/%x-%j.out")
    lines += [
        "# SIGTERM to the tasks <grace> s before the time limit: phasic-mpi",
        "# checkpoints and exits 143, and the script requeues the job.",
        f"#SBATCH --signal=TERM@{grace}",
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",
    ]
    lines += [f"#SBATCH {d}" for d in s["extra"]]
    out_default = (q(f"runs/{stem}_seed") + "${SEED}" + q(".h5") if algorithm == "array"
                   else q(f"runs/{stem}.h5"))
    lines += [
        "",
        "set -euo pipefail",
        "",
        "# --- settings ----------------------------------------------------------",
        f"CONFIG=${{CONFIG:-{q(config)}}}",
    ]
    if algorithm == "array":
        lines += ["# one seed per array task; the config's algorithm seed is replaced",
                  "SEED=${SLURM_ARRAY_TASK_ID:-0}"]
    lines += [
        f"OUT=${{OUT:-{q(out) if out else out_default}}}",
        f"VENV=${{VENV:-{q(s['venv'])}}}",
        f"MPI_PLUGIN=${{MPI_PLUGIN:-{s['mpi']}}}   # pmi2: MPICH (PyPI wheel); pmix: Open MPI",
        "",
    ]
    if s["modules"]:
        lines += ["module purge"] + [f"module load {q(m)}" for m in s["modules"]] + [""]
    lines += [
        "# one BLAS/OpenMP thread pool of --cpus-per-task threads per MPI task",
        "export SRUN_CPUS_PER_TASK=\"${SLURM_CPUS_PER_TASK:-1}\"",
        "for v in OMP_NUM_THREADS OPENBLAS_NUM_THREADS MKL_NUM_THREADS BLIS_NUM_THREADS \\",
        "         NUMEXPR_NUM_THREADS VECLIB_MAXIMUM_THREADS; do",
        "    export \"$v=$SRUN_CPUS_PER_TASK\"",
        "done",
        "export PYTHONUNBUFFERED=1",
        "",
        "mkdir -p logs \"$(dirname \"$OUT\")\"",
    ]
    run_config = "\"$CONFIG\""
    if algorithm == "array":
        lines += [
            "# the config with this task's seed, next to the original (relative paths keep",
            "# their meaning); every line `seed = N` at the start of a line is replaced",
            "RUN_CONFIG=\"${CONFIG%.toml}.seed${SEED}.toml\"",
            "sed -E \"s/^(seed[[:space:]]*=[[:space:]]*)[0-9]+/\\1${SEED}/\" \"$CONFIG\" "
            "> \"$RUN_CONFIG\"",
        ]
        run_config = "\"$RUN_CONFIG\""
    srun = ("srun --mpi=\"$MPI_PLUGIN\" --cpus-per-task=\"$SRUN_CPUS_PER_TASK\" "
            "--kill-on-bad-exit=1 \\")
    if algorithm == "study":
        resumable = "$OUT"
        lines += [
            "",
            "# after a requeue (time limit, preemption, node failure) the same command",
            "# continues: finished cells are skipped, checkpointed cells resume",
            "status=0",
            srun,
            "    \"$VENV/bin/phasic-mpi\" study \"$CONFIG\" --out \"$OUT\" || status=$?",
        ]
    else:
        resumable = "$OUT.ckpt.npz"
        lines += [
            "",
            "# resume after a requeue (time limit, preemption, node failure); a requeued",
            "# job that stopped before its first checkpoint replaces its own partial file.",
            "# A first start never replaces a run file: it refuses (status 2) if $OUT",
            "# exists, unless FORCE=1 (sbatch passes the environment).",
            "MODE=",
            "status=0",
            "if [ -e \"$OUT.ckpt.npz\" ]; then MODE=--resume",
            "elif [ \"${SLURM_RESTART_COUNT:-0}\" -gt 0 ] || [ \"${FORCE:-0}\" = 1 ]; then",
            "    MODE=--force",
            "fi",
            "",
            srun,
            f"    \"$VENV/bin/phasic-mpi\" run {run_config} --out \"$OUT\" ${{MODE:+\"$MODE\"}} \\",
            "    || status=$?",
            "# status 0 from the launcher is not enough: a rank that vanished with status",
            "# 0 (exit() in native user code) must not pass for a finished run",
            "if [ \"$status\" -eq 0 ] && ! \"$VENV/bin/python\" -c \\",
            "    'import sys; from phasic_mpi.io.store import is_complete as c; "
            "sys.exit(not c(sys.argv[1]))' \\",
            "    \"$OUT\"; then",
            "    echo \"status 0 but $OUT is not marked complete: failing the job\" >&2",
            "    status=1",
            "fi",
        ]
    lines += [
        "",
        f"if [ \"$status\" -eq 143 ] && [ -e \"{resumable}\" ]; then",
        "    echo \"checkpointed ($status): requeueing $SLURM_JOB_ID\"",
        "    scontrol requeue \"$SLURM_JOB_ID\"",
        "    exit 0",
        "fi",
        "exit \"$status\"",
    ]
    return "\n".join(lines) + "\n"


def _checked_config(path: str | None, algorithm: str | None) -> tuple[str, str]:
    """Validate the config (or study file) the job will run; returns it and the algorithm.

    ``algorithm`` ``None`` means the config's own; an algorithm must be the
    config's; ``array`` runs the config once per seed; ``study`` needs a
    study file (only its TOML is checked here: studies are validated by
    ``phasic-mpi study``, which this layer does not import).
    """
    from phasic_mpi.config import algorithm_name, load_config
    from phasic_mpi.config.validate import read_toml

    if algorithm == "study":
        path = path or _DEFAULT_CONFIG["study"]
        read_toml(path, "study file")
        return path, algorithm
    if algorithm is not None:
        _check_kind(algorithm)
    path = path or _DEFAULT_CONFIG.get(algorithm or "svgd", f"{algorithm}.toml")
    configured = algorithm_name(load_config(path))
    if algorithm not in (None, *JOB_KINDS) and algorithm != configured:
        raise JobscriptError(f"--algorithm: {algorithm}, but {path} configures "
                             f"{configured} (leave --algorithm out to use the config's)")
    return path, algorithm or configured or "svgd"


def main(args: Any) -> int:
    """``phasic-mpi jobscript``: check the inputs, then write the script to --out or stdout.

    The cluster file and the config are validated first, so that a typo
    fails here and not after the job has waited in the queue.
    """
    cluster = load_cluster(args.cluster) if args.cluster else None
    config, algorithm = _checked_config(args.config, args.algorithm)
    text = render(args.profile, cluster, config=config, algorithm=algorithm,
                  out=args.run_out)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
        import os
        os.chmod(args.out, 0o755)
    else:
        sys.stdout.write(text)
    return 0
