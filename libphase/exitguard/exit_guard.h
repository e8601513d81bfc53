/* exit_guard.h -- see exit_guard.c. Not part of libphase. */
#ifndef PHASIC_EXIT_GUARD_H
#define PHASIC_EXIT_GUARD_H

#include <stdint.h>

/* Arm the guard of this process: an exit() until exit_guard_disarm() prints
 * one line naming `rank`, calls mpi_abort(comm, 1) if mpi_abort is not NULL,
 * then _exit(1). Returns 0, or -1 if no exit handler could be registered. */
int exit_guard_arm(int rank, void *mpi_abort, intptr_t comm);
void exit_guard_disarm(void);
int exit_guard_is_armed(void);

#endif
