#!/bin/bash
# Slurm integration test (`make test-slurm`; CI runs it from .ci/run): a
# throw-away one-node Slurm from Debian's packages (munge, slurmctld, slurmd,
# slurm-client), started by hand without systemd under a temporary directory
# /tmp/phasic-slurm.XXXXXX, runs the shipped job scripts with sbatch, each job
# on 2 tasks (srun --mpi=pmi2 with the MPICH wheel):
#   svgd       jobs/svgd.sbatch, a short SVGD run;
#   pt         jobs/pt.sbatch, a short parallel-tempering run;
#   array      jobs/array.sbatch as a 2-task array: seeds 0 and 1;
#   study      jobs/study.sbatch on an 8-cell study (cells/ must equal a 1-rank
#              `phasic-mpi study` of the same file);
#   timelimit  jobs/svgd.sbatch with --time=00:02:00 --signal=TERM@30 and a run
#              longer than that: Slurm's time-limit signal makes phasic-mpi
#              checkpoint and exit 143, the script requeues the job
#              (scontrol requeue) and the job resumes from the checkpoint.
# Every run file must equal, dataset by dataset and bit by bit, the file of
# the same config run uninterrupted by `mpiexec -n 2 phasic-mpi run`.
#
# Needs root (apt-get, daemons). Only one run at a time (a lock). Leftovers of
# earlier runs (processes, MPICH shared memory) are removed first; on exit the
# jobs are cancelled and every process of this run is stopped by PID. On
# failure the logs are printed and the directory is kept.
# Exit status 77: the Slurm packages were missing and apt-get could not
# install them (no test ran).
# Variables: TEST_SLURM_TIMEOUT (overall limit, default 600 s), KEEP=1 (keep
# the directory after a success), VENV (default .venv).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python
NTASKS=2
LIMIT=${TEST_SLURM_TIMEOUT:-600}
export PHASIC_SLURM_T0=${PHASIC_SLURM_T0:-$(date +%s)}  # one clock across the re-exec below
T0=$PHASIC_SLURM_T0
log() { echo "[test-slurm $(($(date +%s) - T0))s] $*"; }
fail() { log "FAIL: $*" >&2; exit 1; }
# where `set -e` stops the script (a failure without a message of its own)
trap 'log "stopped: status $? at line $LINENO: $BASH_COMMAND" >&2' ERR
PATH=$PATH:/usr/sbin:/sbin  # the daemons, for a caller whose PATH lacks them

[ "$(id -u)" -eq 0 ] \
    || fail "needs root (installs packages, starts slurmctld/slurmd/munged); uid is $(id -u)"
[ -x "$VENV/bin/phasic-mpi" ] || fail "no $VENV/bin/phasic-mpi: run \`make install\` first"

# --- packages (all installed before any daemon starts) -----------------------------
# Outside the overall limit below: a first installation may take minutes, and
# apt-get has limits of its own here.
need=()
for cmd in slurmctld slurmd sbatch munged; do
    command -v "$cmd" >/dev/null || need+=("$cmd")
done
if [ "${#need[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null || fail "missing ${need[*]} and no apt-get to install them"
    log "installing slurmctld slurmd slurm-client munge (missing: ${need[*]})"
    # The packages' maintainer scripts must not start services: this test
    # starts its own daemons (policy-rc.d is Debian's switch for that).
    made_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    rc=0
    { timeout 300 apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq \
            slurmctld slurmd slurm-client munge >/dev/null; } || rc=$?
    [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
    if [ "$rc" -ne 0 ]; then  # 77: nothing was tested (.ci/run reports a skip)
        log "FAIL: could not install the Slurm packages: apt-get status $rc" >&2
        exit 77
    fi
    log "installed"
fi

# --- never hang ----------------------------------------------------------------
# The rest runs under `timeout`. --foreground keeps it in the caller's process
# group so that Ctrl-C reaches it; the TERM trap below then stops everything
# this run started (found by its directory, see run_pids), and --kill-after
# is the last resort should that cleanup itself hang.
if [ -z "${PHASIC_SLURM_UNDER_TIMEOUT:-}" ]; then
    export PHASIC_SLURM_UNDER_TIMEOUT=1
    exec timeout --foreground --kill-after=90 "$LIMIT" bash "${BASH_SOURCE[0]}" "$@"
fi

# Variables of an enclosing Slurm job (if any) would leak into our jobs.
for v in $(compgen -e | grep '^SLURM_' || true); do unset "$v"; done

# --- one run at a time -----------------------------------------------------------
# Under the lock, any process of a /tmp/phasic-slurm.* cluster is a leftover of
# an earlier run (a killed test), never of a live one. Daemons and runs are
# started with the lock's descriptor closed (9>&-), so that leftovers never
# hold it.
exec 9>/tmp/phasic-slurm.lock
flock -w 300 9 || fail "another test-slurm still holds /tmp/phasic-slurm.lock after 300 s"

# The PIDs of this shell and its ancestors (never to be killed).
ancestors() {
    local pid=$BASHPID
    while [ "${pid:-0}" -gt 1 ]; do
        echo "$pid"
        pid=$(awk '/^PPid:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    done
}
# PIDs of the live processes whose command line or environment contains $1:
# the daemons have the directory in their arguments (-f DIR/slurm.conf,
# --socket=DIR/...), and slurmstepd, batch scripts, job tasks and the mpiexec
# runs inherit SLURM_CONF=DIR/slurm.conf. Zombies have neither and are skipped.
run_pids() {
    local files=(/proc/[0-9]*/cmdline /proc/[0-9]*/environ) skip
    skip=" $(ancestors | tr '\n' ' ') "
    { grep -alsF -- "$1" "${files[@]}" || true; } | cut -d/ -f3 | sort -un | while read -r pid; do
        case "$skip" in *" $pid "*) ;; *) echo "$pid" ;; esac
    done
}
# Whether PID is a live process (a zombie is dead, only not yet reaped).
alive() {
    local state
    state=$(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}
# TERM, then KILL after up to $2 s, the given PIDs.
stop_pids() {
    local pids=$1 grace=$2 pid left
    [ -n "$pids" ] || return 0
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq $((grace * 5))); do
        left=""
        for pid in $pids; do alive "$pid" && left="$left $pid"; done
        [ -z "$left" ] && return 0
        sleep 0.2
    done
    log "still alive after ${grace}s, killing:$left"
    kill -KILL $left 2>/dev/null || true
}
# MPICH's shared-memory segments that no live process has mapped or open, and
# older than a minute (a segment being created now is mapped within
# milliseconds): left by MPI jobs that were killed. Their names derive from
# the job id, and a stale one with the id of a new job breaks its MPI_Init.
clean_stale_shm() {
    local in_use f n=0
    in_use=$({ cat /proc/[0-9]*/maps 2>/dev/null | grep -o '/dev/shm/mpich[^ ]*' || true
               find /proc/[0-9]*/fd -lname '/dev/shm/mpich*' -printf '%l\n' 2>/dev/null || true; } | sort -u)
    while read -r f; do
        [ -n "$f" ] || continue
        grep -qxF -- "$f" <<<"$in_use" && continue
        rm -f -- "$f" && n=$((n + 1))
    done < <(find /dev/shm -maxdepth 1 -name 'mpich*' -mmin +1 2>/dev/null)
    [ "$n" -eq 0 ] || log "removed $n stale MPICH segment(s) from /dev/shm"
}

# --- leftovers of earlier runs -----------------------------------------------------
stale=$(run_pids /tmp/phasic-slurm.)
# slurmstepd/slurmd/slurmctld without a site configuration can only be ours.
if [ ! -e /etc/slurm/slurm.conf ] && [ ! -e /etc/slurm-llnl/slurm.conf ]; then
    for name in slurmstepd slurmd slurmctld; do stale="$stale $(pgrep -x "$name" || true)"; done
fi
stale=$(for pid in $stale; do if alive "$pid"; then echo "$pid"; fi; done | sort -un | tr '\n' ' ')
if [ -n "${stale// /}" ]; then
    log "stopping leftovers of an earlier run: $(ps -o pid=,args= -p "$(echo $stale | tr ' ' ,)" | cut -c1-100 | tr '\n' ';')"
    stop_pids "$stale" 5
fi
clean_stale_shm

WORK=$(mktemp -d /tmp/phasic-slurm.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/munge" "$WORK/log" "$WORK/state" "$WORK/spool" "$WORK/run"
DAEMONS=()  # PIDs of munged, slurmctld, slurmd (in this order)

# Print what explains a failure: job states, node state, the end of each log.
dump_logs() {
    log "--- diagnostics (all files in $WORK) ---"
    if [ -n "${SLURM_CONF:-}" ]; then
        timeout 10 sinfo -N -l 2>&1 || true
        timeout 10 scontrol show job 2>&1 | grep -E 'JobId=|JobState=|Restarts=|StartTime=|ExitCode=' || true
    fi
    local f
    for f in "$WORK"/log/*; do
        [ -f "$f" ] || continue
        echo "--- $f (last 25 lines)"
        tail -n 25 "$f"
    done
}
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    [ "$status" -eq 0 ] || dump_logs
    # Jobs first, while the daemons still run: scancel signals their steps;
    # then whatever is left of this run except the daemons (slurmstepd, job
    # tasks, mpiexec runs); then the daemons; then anything still alive.
    if [ -n "${SLURM_CONF:-}" ] && [ "${#DAEMONS[@]}" -gt 0 ]; then
        timeout 10 scancel --user=root 2>/dev/null
        for _ in $(seq 30); do
            [ -z "$(timeout 10 squeue -h -o %i 2>/dev/null)" ] && break
            sleep 1
        done
    fi
    local daemons=" ${DAEMONS[*]} " others="" pid
    for pid in $(run_pids "$WORK/"); do
        # slurmctld's helper slurmscriptd goes with slurmctld
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != slurmscriptd ] || continue
        case "$daemons" in *" $pid "*) ;; *) others="$others $pid" ;; esac
    done
    stop_pids "$others" 10
    # slurmd and slurmctld before munged, which they need until they exit
    [ "${#DAEMONS[@]}" -le 1 ] || stop_pids "${DAEMONS[*]:1}" 10
    [ "${#DAEMONS[@]}" -eq 0 ] || stop_pids "${DAEMONS[0]}" 5
    stop_pids "$(run_pids "$WORK/" | tr '\n' ' ')" 5
    if [ "$status" -ne 0 ]; then
        log "FAILED (status $status); daemon, job and reference logs are in $WORK"
    elif [ -z "${KEEP:-}" ]; then
        rm -rf "$WORK"
    else
        log "kept $WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'log "interrupted by SIGINT"; exit 130' INT
trap 'log "SIGTERM: the overall limit of ${LIMIT} s (TEST_SLURM_TIMEOUT) was reached, or an outside kill"; exit 124' TERM

# --- munge -----------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
        || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown munge: /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi
chown munge: "$WORK/munge"
chmod 755 "$WORK/munge"
MUNGE_SOCKET=$WORK/munge/munge.socket
# setpriv execs munged as user munge (runuser would stay as its parent), so
# that $! is munged itself; setsid keeps the daemons out of our process group.
setsid setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground \
    --socket="$MUNGE_SOCKET" --pid-file="$WORK/munge/munged.pid" \
    --log-file="$WORK/log/munged.log" --seed-file="$WORK/munge/seed" \
    </dev/null >"$WORK/log/munged.out" 2>&1 9>&- &
DAEMONS+=($!)
for _ in $(seq 100); do [ -S "$MUNGE_SOCKET" ] && break; sleep 0.1; done
[ -S "$MUNGE_SOCKET" ] || fail "munged did not create $MUNGE_SOCKET within 10 s"

# --- slurm.conf --------------------------------------------------------------------
HOST=$(hostname -s)
# The node as slurmd detects it (CPUs, sockets, cores, threads); not `nproc`,
# which honours OMP_NUM_THREADS=1 (exported by the Makefile): a node of 1 CPU
# leaves 2-task jobs pending for ever.
NODE=$(slurmd -C | sed -n "s/^NodeName=[^ ]* \(CPUs=.*\) RealMemory=.*/\1/p")
[ -n "$NODE" ] || fail "slurmd -C did not describe this node: $(slurmd -C 2>&1)"
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
export SLURM_CONF=$WORK/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=phasictest
# A fresh job id range: MPICH names its /dev/shm segments after the PMI job
# id, and a stale segment with the same id breaks MPI_Init.
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
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
JobRequeue=1
# finished jobs stay visible to scontrol for the whole test
MinJobAge=3600
# SIGKILL 5 s after the SIGTERM of scancel or of a time limit (default 30)
KillWait=5
InactiveLimit=0
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$HOST $NODE RealMemory=$MEM_MB State=UNKNOWN
# Two jobs may share a CPU: the time-limit job mostly sleeps, and the short
# jobs run next to it instead of after it.
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:2
EOF

log "starting slurmctld and slurmd (node $HOST: $NODE; config $SLURM_CONF)"
setsid slurmctld -D -f "$SLURM_CONF" </dev/null >"$WORK/log/slurmctld.out" 2>&1 9>&- &
DAEMONS+=($!)
setsid slurmd -D -f "$SLURM_CONF" </dev/null >"$WORK/log/slurmd.out" 2>&1 9>&- &
DAEMONS+=($!)
state=""
for _ in $(seq 60); do
    state=$(timeout 10 sinfo -h -N -o '%T' 2>/dev/null | head -n 1 || true)
    [ "$state" = idle ] && break
    sleep 1
done
[ "$state" = idle ] || fail "node $HOST not idle 60 s after starting the daemons (state '$state')"
T_SETUP=$(($(date +%s) - T0))
log "node idle (setup took ${T_SETUP} s)"

# --- helpers -------------------------------------------------------------------------
# submit [VAR=VALUE...] -- [sbatch args] SCRIPT: prints the job id. The
# variables go to the script's environment (CONFIG, OUT, VENV). --mem: the
# node of a small machine may have less than the scripts' 4G.
submit() {
    local vars=()
    while [ "$1" != -- ]; do vars+=("$1"); shift; done
    shift
    env "${vars[@]}" timeout 30 sbatch --parsable --chdir="$WORK" --mem=500M "$@" 9>&- \
        || fail "sbatch $* failed"
}
# job_field JOB FIELD: one field of `scontrol show job` (empty if unknown)
job_field() {
    timeout 10 scontrol -o show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}
# A requeued job is held for two minutes (its BeginTime) before it may start
# again. The test releases it sooner (StartTime=now), but only once its
# previous run is over: its slurmstepd have exited (the new run's steps have
# the same ids, and an old slurmstepd still tearing down breaks the new step:
# srun's PMI2 exchange fails and MPI_Finalize hangs), and 5 s have passed
# since the requeue (its SubmitTime): slurmd revokes the job's credential at
# the requeue, with a resolution of one second, and refuses a run whose
# credential is not newer ("Job credential revoked": the job FAILS).
release_requeued() {
    local j reason submitted
    while read -r j reason submitted; do
        [ "$reason" = BeginTime ] || continue
        [ "$(date +%s)" -ge $(($(date -d "$submitted" +%s) + 5)) ] || continue
        pgrep -f "^slurmstepd: \[$j\." >/dev/null && continue
        timeout 10 scontrol update JobId="$j" StartTime=now 2>/dev/null || true
    done < <(timeout 10 squeue -h -t PENDING -o '%A %r %V' 2>/dev/null || true)
}
# wait_job JOB LIMIT_S NAME: until the job has completed with exit code 0
wait_job() {
    local job=$1 limit=$2 name=$3 state reason deadline=$(($(date +%s) + $2))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        state=$(job_field "$job" JobState)
        reason=$(job_field "$job" Reason)
        case "$state" in
            COMPLETED)
                [ "$(job_field "$job" ExitCode)" = 0:0 ] \
                    || fail "$name: job $job completed with ExitCode $(job_field "$job" ExitCode)"
                return 0 ;;
            FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED)
                fail "$name: job $job ended $state (ExitCode $(job_field "$job" ExitCode)); its log: $(cat "$WORK"/log/"$name"*.out 2>/dev/null | tail -n 30)" ;;
        esac
        release_requeued
        sleep 1
    done
    fail "$name: job $job still ${state:-unknown} (Reason=${reason:-?}) after $limit s"
}
# reference NAME CONFIG OUT: in the background, the same config run
# uninterrupted by mpiexec; its PID is in REF_PID
reference() {
    ( MPIEXEC_TIMEOUT=540 timeout 600 "$VENV/bin/mpiexec" -n "$NTASKS" \
        "$VENV/bin/phasic-mpi" run "$2" --out "$3" --force \
        </dev/null >"$WORK/log/ref-$1.log" 2>&1 9>&- ) &
    REF_PID=$!
}
# wait_reference PID NAME: its exit status must be 0 (mpiexec is under timeout)
wait_reference() {
    local rc=0
    wait "$1" || rc=$?
    [ "$rc" -ne 124 ] || fail "reference run $2 took longer than 600 s (log: $WORK/log/ref-$2.log)"
    [ "$rc" -eq 0 ] || fail "reference run $2 failed with status $rc: $(tail -n 20 "$WORK/log/ref-$2.log")"
}
compare() {  # A B [--attr NAME=VALUE...]: bitwise equal run files
    "$PY" "$ROOT/tests/slurm/compare_h5.py" "$@" || fail "run files differ: $1 vs $2"
}
# svgd_config NAME ITERATIONS [SEED]: examples/rabbits.toml with fewer
# iterations (all of them: no early stop), checkpoints every 50 and progress
# lines in the job log
svgd_config() {
    sed -E -e "s/^iterations = .*/iterations = $2\nstop_early = false/" -e "s/^seed = .*/seed = ${3:-7}/" \
        -e 's/^checkpoint_every = .*/checkpoint_every = 50/' \
        -e 's/^progress = .*/progress = "log"/' -e 's/^log_every = .*/log_every = 1.0/' \
        "$ROOT/examples/rabbits.toml" >"$WORK/$1.toml"
    echo "$WORK/$1.toml"
}
# pt_config NAME ROUNDS: examples/rabbits_pt.toml with 2**ROUNDS - 1 scans
pt_config() {
    sed -E -e "s/^rounds = [0-9]+/rounds = $2/" -e "s/^warmup_rounds = [0-9]+/warmup_rounds = $(($2 - 2))/" \
        -e 's/^checkpoint_every = [0-9]+/checkpoint_every = 50/' \
        -e 's/^progress = .*/progress = "log"/' -e 's/^log_every = .*/log_every = 1.0/' \
        "$ROOT/examples/rabbits_pt.toml" >"$WORK/$1.toml"
    echo "$WORK/$1.toml"
}
# slow_config NAME ITERATIONS: the SVGD of examples/rabbits.toml on the same
# posterior slowed to >= 0.1 s per iteration (tests/slurm/throttled.py), so
# that the run outlasts the signal of a 2-minute limit on any machine (no
# early stop: a converged run would end before the signal)
slow_config() {
    {
        printf '[model]\ndensity = "%s:throttled"\n' "$ROOT/tests/slurm/throttled.py"
        printf 'options = { config = "%s", delay_s = 0.1 }\n\n' "$ROOT/examples/rabbits.toml"
        awk '/^\[/ {keep = ($0 == "[svgd]" || $0 == "[output]")} keep' "$ROOT/examples/rabbits.toml" \
            | sed -E -e "s/^iterations = .*/iterations = $2\nstop_early = false/" \
                -e 's/^checkpoint_every = .*/checkpoint_every = 100/' \
                -e 's/^progress = .*/progress = "log"/' -e 's/^log_every = .*/log_every = 10.0/' \
                -e '/^path = /d'
    } >"$WORK/$1.toml"
    echo "$WORK/$1.toml"
}
# study_config NAME: an 8-cell study (exponential model; SVGD and PT on the
# same data sets) for jobs/study.sbatch
study_config() {
    cat >"$WORK/$1.toml" <<'TOML'
[study]
replicates = 2
seed = 3
grid = { "data.simulate.n" = [15, 30] }
[study.methods.svgd]
svgd = { particles = 16, iterations = 100, history_every = 0, ksd_every = 0 }
[study.methods.pt]
pt = { replicas = 3, rounds = 5, warmup_rounds = 3 }
[model]
name = "exponential"
[data]
simulate = { n = 20, theta = [1.5] }
[prior]
rate = { dist = "gamma", shape = 2.0, rate = 1.0 }
TOML
    echo "$WORK/$1.toml"
}
since() { echo $(($(date +%s) - $1)); }

# --- submit every job, start the reference runs ------------------------------------------
# The time-limit job goes first (it takes longest); the short jobs run next to
# it. The signal comes 30 s before the 2-minute limit, or up to a minute
# earlier (the controller checks time limits periodically; `man sbatch`,
# --signal): between 30 and 90 s after the start, and the run of 1200
# iterations lasts at least 120 s. 30 s is also the grace that
# `phasic-mpi jobscript` writes for a 2-minute limit.
SLOW=$(slow_config timelimit 1200)
SVGD=$(svgd_config svgd 200)
PT=$(pt_config pt 8)
ARRAY=$(svgd_config array 200)
STUDY=$(study_config study)

T_SUBMIT=$(date +%s)
J_LIMIT=$(submit CONFIG="$SLOW" OUT="$WORK/timelimit.h5" VENV="$VENV" -- --job-name=timelimit \
    --output="$WORK/log/%x-%j.out" --time=00:02:00 --signal=TERM@30 "$ROOT/jobs/svgd.sbatch")
J_SVGD=$(submit CONFIG="$SVGD" OUT="$WORK/svgd.h5" VENV="$VENV" -- --job-name=svgd \
    --output="$WORK/log/%x-%j.out" "$ROOT/jobs/svgd.sbatch")
J_PT=$(submit CONFIG="$PT" OUT="$WORK/pt.h5" VENV="$VENV" -- --job-name=pt \
    --output="$WORK/log/%x-%j.out" "$ROOT/jobs/pt.sbatch")
# No OUT: the script derives runs/rabbits_seed<N>.h5 (under --chdir) from the
# array index, which is also the seed.
J_ARRAY=$(submit CONFIG="$ARRAY" VENV="$VENV" -- --job-name=array --array=0-1 \
    --output="$WORK/log/%x-%A_%a.out" "$ROOT/jobs/array.sbatch")
# jobs/study.sbatch asks for the `small` profile's 8 tasks; 2 here: rank 0
# coordinates and writes, rank 1 runs the cells
J_STUDY=$(submit CONFIG="$STUDY" OUT="$WORK/study.h5" VENV="$VENV" -- --job-name=study \
    --ntasks-per-node="$NTASKS" --output="$WORK/log/%x-%j.out" "$ROOT/jobs/study.sbatch")
log "submitted: timelimit $J_LIMIT, svgd $J_SVGD, pt $J_PT, array $J_ARRAY (tasks 0, 1), study $J_STUDY"

# The references: the slow one mostly sleeps and runs next to the others.
reference timelimit "$SLOW" "$WORK/timelimit_ref.h5"
REF_LIMIT=$REF_PID
svgd_config array_seed0 200 0 >/dev/null
svgd_config array_seed1 200 1 >/dev/null
(
    set -e
    for name in svgd pt array_seed0 array_seed1; do
        cfg=$WORK/$name.toml
        [ "$name" != svgd ] || cfg=$SVGD
        MPIEXEC_TIMEOUT=240 timeout 300 "$VENV/bin/mpiexec" -n "$NTASKS" \
            "$VENV/bin/phasic-mpi" run "$cfg" --out "$WORK/${name}_ref.h5" --force \
            </dev/null >"$WORK/log/ref-$name.log" 2>&1
    done
    # the study's reference on one rank: its cells/ must not depend on the rank count
    timeout 300 "$VENV/bin/phasic-mpi" study "$STUDY" --out "$WORK/study_ref.h5" --force \
        </dev/null >"$WORK/log/ref-study.log" 2>&1
) 9>&- &
REF_SHORT=$!

# --- svgd, pt, array ---------------------------------------------------------------------
wait_job "$J_SVGD" 240 svgd
log "svgd: job $J_SVGD completed $(since "$T_SUBMIT") s after submission"
wait_job "$J_PT" 240 pt
log "pt: job $J_PT completed $(since "$T_SUBMIT") s after submission"
wait_job "${J_ARRAY}_0" 240 array
wait_job "${J_ARRAY}_1" 240 array
log "array: tasks ${J_ARRAY}_0 and _1 completed $(since "$T_SUBMIT") s after submission"
wait_reference "$REF_SHORT" "svgd/pt/array/study"
compare "$WORK/svgd.h5" "$WORK/svgd_ref.h5" --attr n_ranks=$NTASKS
compare "$WORK/pt.h5" "$WORK/pt_ref.h5" --attr n_ranks=$NTASKS
for seed in 0 1; do
    compare "$WORK/runs/rabbits_seed$seed.h5" "$WORK/array_seed${seed}_ref.h5" \
        --attr n_ranks=$NTASKS --attr seed=$seed
done
wait_job "$J_STUDY" 240 study
log "study: job $J_STUDY completed $(since "$T_SUBMIT") s after submission"
compare "$WORK/study.h5" "$WORK/study_ref.h5" --attr n_ranks=$NTASKS
log "svgd, pt, array, study: ok"

# --- timelimit ------------------------------------------------------------------------------
wait_job "$J_LIMIT" 420 timelimit
OUT_LOG=$WORK/log/timelimit-$J_LIMIT.out
restarts=$(job_field "$J_LIMIT" Restarts)
[ "${restarts:-0}" -ge 1 ] || fail "timelimit: job $J_LIMIT completed without a requeue (Restarts=${restarts:-?}): the run ended before the time limit's signal"
grep -q "stopped by SIGTERM at iteration" "$OUT_LOG" \
    || fail "timelimit: phasic-mpi did not report a checkpoint on SIGTERM ($OUT_LOG)"
grep -q "checkpointed (143): requeueing $J_LIMIT" "$OUT_LOG" \
    || fail "timelimit: the script did not requeue after exit status 143 ($OUT_LOG)"
log "timelimit: job $J_LIMIT completed $(since "$T_SUBMIT") s after submission, requeued $restarts time(s): $(grep -o 'stopped by SIGTERM at iteration [0-9]*' "$OUT_LOG" | tr '\n' ';')"
wait_reference "$REF_LIMIT" timelimit
compare "$WORK/timelimit.h5" "$WORK/timelimit_ref.h5" --attr n_ranks=$NTASKS --attr resumed=true
log "timelimit: ok"

log "all Slurm tests passed in $(since "$T0") s (setup ${T_SETUP} s, jobs and references $(since "$T_SUBMIT") s)"
