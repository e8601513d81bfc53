/* Status names and the thread-local error message. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

static _Thread_local char last_error[1024];

const char *phase_last_error(void) { return last_error; }

void phase_clear_error(void) { last_error[0] = '\0'; }

int phase_fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

const char *phase_status_name(int status)
{
    switch (status) {
    case PHASE_OK: return "PHASE_OK";
    case PHASE_EINVAL: return "PHASE_EINVAL";
    case PHASE_ENOMEM: return "PHASE_ENOMEM";
    case PHASE_EDOMAIN: return "PHASE_EDOMAIN";
    case PHASE_EZERO: return "PHASE_EZERO";
    case PHASE_ERANGE: return "PHASE_ERANGE";
    case PHASE_EINFINITE: return "PHASE_EINFINITE";
    case PHASE_ECYCLE: return "PHASE_ECYCLE";
    default: return "PHASE_UNKNOWN";
    }
}
