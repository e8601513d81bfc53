#!/bin/bash
# Slurm integration test (`make test-slurm`): a throw-away one-node Slurm from
# Debian's packages (slurmctld, slurmd, slurm-client, munge), started by hand
# without systemd, runs the shipped jobs/svgd.sbatch:
#   1. a short SVGD run on 2 tasks (srun --mpi=pmi2, MPICH wheel): the run file
#      must equal, dataset by dataset and bit by bit, `mpiexec -n 2 phasic-mpi run`;
#   2. a longer SVGD run's tasks are sent SIGTERM (scancel --signal=TERM, what
#      --signal=TERM@<grace> does before the time limit): it checkpoints,
#      exits 143, requeues itself and resumes; the result must again equal an
#      uninterrupted mpiexec run bit by bit.
# Needs root (apt-get, daemons). Every daemon is stopped by PID on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python
NTASKS=2
T0=$(date +%s)
log() { echo "[test-slurm $(($(date +%s) - T0))s] $*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "test-slurm: needs root (installs packages, starts slurmctld/slurmd/munged)" >&2
    exit 1
fi

# --- packages (all installed before any daemon starts) -------------------------
need=()
for cmd in slurmctld slurmd sbatch munged; do
    command -v "$cmd" >/dev/null || need+=("$cmd")
done
if [ "${#need[@]}" -gt 0 ]; then
    log "installing slurmctld slurmd slurm-client munge (missing: ${need[*]})"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi

WORK=$(mktemp -d /tmp/phasic-slurm.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
    status=$?
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "$status" -ne 0 ]; then
        log "FAILED ($status); daemon logs and job logs in $WORK"
        tail -n 20 "$WORK"/log/*.log 2>/dev/null || true
    elif [ -z "${KEEP:-}" ]; then
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT

# --- munge ---------------------------------------------------------------------
mkdir -p "$WORK/munge" "$WORK/log" "$WORK/state" "$WORK/spool" "$WORK/run"
chown munge: "$WORK/munge"
chmod 755 "$WORK/munge"
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
        || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown munge: /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi
MUNGE_SOCKET=$WORK/munge/munge.socket
runuser -u munge -- /usr/sbin/munged --foreground --socket="$MUNGE_SOCKET" \
    --pid-file="$WORK/munge/munged.pid" --log-file="$WORK/log/munged.log" \
    --seed-file="$WORK/munge/seed" &
PIDS+=($!)
for _ in $(seq 50); do [ -S "$MUNGE_SOCKET" ] && break; sleep 0.1; done
[ -S "$MUNGE_SOCKET" ] || { echo "munged did not start" >&2; exit 1; }

# --- slurm.conf ----------------------------------------------------------------
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
export SLURM_CONF=$WORK/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=phasictest
# a fresh job id range: MPICH names its /dev/shm segments after the PMI job id, and a
# stale segment of an earlier killed run with the same id breaks MPI_Init
FirstJobId=$((1000 + RANDOM * 30))
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
SlurmctldPort=$((20000 + RANDOM % 20000))
SlurmdPort=$((40000 + RANDOM % 20000))
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/run/slurmctld.pid
SlurmdPidFile=$WORK/run/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
JobRequeue=1
MinJobAge=600
KillWait=30
InactiveLimit=0
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
printf 'ConstrainCores=no\n' >"$WORK/cgroup.conf"

log "starting slurmctld and slurmd ($CPUS CPUs, config $SLURM_CONF)"
slurmctld -D -f "$SLURM_CONF" >"$WORK/log/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" >"$WORK/log/slurmd.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 120); do
    state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n 1 || true)
    [ "$state" = idle ] && break
    sleep 0.5
done
[ "$state" = idle ] || { echo "node not idle (state '$state')" >&2; sinfo -N -l >&2 || true; exit 1; }
log "node $HOST idle"

# --- helpers -------------------------------------------------------------------
# submit SCRIPT with extra sbatch args; prints the job id
submit() { sbatch --parsable --chdir="$WORK" --output="$WORK/log/%x-%j.out" \
    --ntasks-per-node="$NTASKS" --mem=500M "$@"; }
job_state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
wait_job() {  # JOBID TIMEOUT_S: wait until the job has finished; fails unless COMPLETED
    local s
    for _ in $(seq $(($2 * 2))); do
        s=$(job_state "$1")
        case "$s" in
            COMPLETED) return 0 ;;
            FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE)
                echo "job $1: $s" >&2; cat "$WORK"/log/*-"$1".out >&2 || true; return 1 ;;
        esac
        sleep 0.5
    done
    echo "job $1: still $s after $2 s" >&2
    return 1
}
mpirun_ref() {  # CONFIG OUT: the reference run under mpiexec
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 MPIEXEC_TIMEOUT=600 \
        "$VENV/bin/mpiexec" -n "$NTASKS" "$VENV/bin/phasic-mpi" run "$1" --out "$2" --force \
        >"$WORK/log/ref-$(basename "$2").log" 2>&1
}
config() {  # NAME ITERATIONS CHECKPOINT_EVERY: a copy of examples/rabbits.toml
    sed -E -e "s/^iterations = .*/iterations = $2/" \
        -e "s/^checkpoint_every = .*/checkpoint_every = $3/" \
        -e 's/^progress = .*/progress = "log"/' -e 's/^log_every = .*/log_every = 1.0/' \
        "$ROOT/examples/rabbits.toml" >"$WORK/$1.toml"
    echo "$WORK/$1.toml"
}

# --- 1. SVGD under srun --mpi=pmi2 equals mpiexec --------------------------------
CFG=$(config short 200 50)
log "1. jobs/svgd.sbatch ($NTASKS tasks) vs mpiexec -n $NTASKS"
JOB=$(CONFIG=$CFG OUT=$WORK/short.h5 VENV=$VENV submit --job-name=short "$ROOT/jobs/svgd.sbatch")
mpirun_ref "$CFG" "$WORK/short_ref.h5"
wait_job "$JOB" 300
"$PY" "$ROOT/tests/slurm/compare_h5.py" "$WORK/short.h5" "$WORK/short_ref.h5"
grep -q "MPI reports 1 process" "$WORK"/log/*-"$JOB".out && { echo "singleton launch" >&2; exit 1; }
log "1. ok"

# --- 2. SIGTERM before the limit: checkpoint, requeue, resume ----------------------
CFG=$(config long "${LONG_ITERATIONS:-4000}" 100)
log "2. SIGTERM -> checkpoint -> requeue -> resume"
JOB=$(CONFIG=$CFG OUT=$WORK/long.h5 VENV=$VENV submit --job-name=long "$ROOT/jobs/svgd.sbatch")
for _ in $(seq 240); do
    [ -e "$WORK/long.h5.ckpt.npz" ] && break
    sleep 0.5
done
[ -e "$WORK/long.h5.ckpt.npz" ] || { echo "no checkpoint written" >&2; exit 1; }
sleep 5  # well into the run, past the first periodic checkpoint
scancel --signal=TERM "$JOB"   # the job steps' tasks, as --signal=TERM@<grace> does
log "2. sent SIGTERM to the tasks of job $JOB"
mpirun_ref "$CFG" "$WORK/long_ref.h5"
for _ in $(seq 600); do
    restarts=$(scontrol show job "$JOB" | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p')
    [ "${restarts:-0}" -ge 1 ] && break
    sleep 0.5
done
[ "${restarts:-0}" -ge 1 ] || { echo "job $JOB was not requeued" >&2; exit 1; }
log "2. job $JOB requeued (Restarts=$restarts)"
# a requeued job is eligible again only after its new BeginTime; start it now
scontrol update JobId="$JOB" StartTime=now 2>/dev/null || true
wait_job "$JOB" 600
grep -q "checkpointed (143): requeueing" "$WORK"/log/long-"$JOB".out
grep -q -- "--resume\|resum" "$WORK"/log/long-"$JOB".out || true
"$PY" "$ROOT/tests/slurm/compare_h5.py" "$WORK/long.h5" "$WORK/long_ref.h5"
log "2. ok"

log "all Slurm tests passed in $(($(date +%s) - T0)) s"
