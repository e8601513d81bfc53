/*
 * exit_guard.c -- a rank that calls exit() during a run must not end an MPI
 * job with status 0.
 *
 * Not part of libphase (which keeps no global state): this is the small
 * process-wide helper behind phasic_mpi._exitguard. Under MPICH's mpiexec a
 * rank that leaves with status 0 without MPI_Finalize ends the whole job with
 * status 0 (the other ranks are killed), so a compiled user model calling
 * exit(0) mid-run would turn a failed run into a success. While a run is in
 * progress the Python side arms this guard; an exit handler registered with
 * on_exit() (glibc; atexit() elsewhere, without the status) then prints one
 * line, calls MPI_Abort(COMM_WORLD, 1) through a pointer handed over by the
 * Python side, and falls back to _exit(1). Disarmed, the handler does nothing,
 * so interpreter shutdown is unaffected. _exit(), quick_exit() and signals
 * run no exit handlers and cannot be intercepted here.
 *
 * The state below is one per process by nature (exit() ends the process);
 * a forked child (getpid() differs) is never guarded.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "exit_guard.h"

/* MPI_Abort(MPI_Comm, int) with the communicator passed as an integer-sized
 * handle: MPICH's MPI_Comm is an int, Open MPI's and the MPI ABI's a pointer;
 * both travel in the first integer register on the 64-bit Linux ABIs. */
typedef int (*guard_abort_fn)(intptr_t comm, int code);

static volatile int guard_armed = 0;
static pid_t guard_pid = 0;
static int guard_rank = 0;
static guard_abort_fn guard_abort = NULL;
static intptr_t guard_comm = 0;
static int guard_registered = 0;

static void guard_fire(int status, int known)
{
    char text[200];
    int n;

    if (!guard_armed || getpid() != guard_pid)
        return;
    guard_armed = 0;
    if (known)
        n = snprintf(text, sizeof text, "phasic-mpi: error: rank %d exited (status %d) "
                     "during a run (exit() called by native code?)\n", guard_rank, status);
    else
        n = snprintf(text, sizeof text, "phasic-mpi: error: rank %d exited during a run "
                     "(exit() called by native code?)\n", guard_rank);
    if (n > 0) {
        size_t len = (size_t)n < sizeof text ? (size_t)n : sizeof text - 1;
        ssize_t written = write(STDERR_FILENO, text, len);
        (void)written;
    }
    if (guard_abort != NULL) {
        /* let the launcher forward the line before the job is torn down */
        struct timespec grace = {0, 300000000L};
        nanosleep(&grace, NULL);
        guard_abort(guard_comm, 1);
    }
    _exit(1);
}

#ifdef __GLIBC__
static void guard_handler(int status, void *arg)
{
    (void)arg;
    guard_fire(status, 1);
}
#else
static void guard_handler(void)
{
    guard_fire(0, 0);
}
#endif

int exit_guard_arm(int rank, void *mpi_abort, intptr_t comm)
{
    if (!guard_registered) {
#ifdef __GLIBC__
        if (on_exit(guard_handler, NULL) != 0)
            return -1;
#else
        if (atexit(guard_handler) != 0)
            return -1;
#endif
        guard_registered = 1;
    }
    guard_rank = rank;
    guard_abort = (guard_abort_fn)mpi_abort;  /* object to function pointer, as POSIX dlsym */
    guard_comm = comm;
    guard_pid = getpid();
    guard_armed = 1;
    return 0;
}

void exit_guard_disarm(void)
{
    guard_armed = 0;
}

int exit_guard_is_armed(void)
{
    return guard_armed && getpid() == guard_pid;
}
