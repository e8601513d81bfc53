/* Internal declarations shared by the libphase sources. Not installed. */
#ifndef PHASE_INTERNAL_H
#define PHASE_INTERNAL_H

#include "phase.h"

struct phase_graph {
    int32_t n;          /* transient states */
    int32_t d;          /* parameters */
    int discrete;
    int64_t n_edges;
    double *alpha;      /* n */
    int32_t *src;       /* n_edges */
    int32_t *dst;       /* n_edges, PHASE_ABSORBING for exits */
    double *base;       /* n_edges */
    /* Sparse coefficients: edge e has coef_val[q] for parameter coef_idx[q],
     * q in [coef_ptr[e], coef_ptr[e+1]). */
    int64_t *coef_ptr;
    int32_t *coef_idx;
    double *coef_val;
    /* Transient edges (dst >= 0) in two orders: by source for the reverse
     * sweep (u = P u'), by target for the forward sweep (v' = v P); both are
     * "pull" loops, so neither scatters writes. */
    int64_t n_trans;
    int64_t *out_ptr;   /* n + 1 */
    int64_t *out_edge;  /* n_trans, edge ids sorted by source */
    int32_t *out_dst;   /* n_trans */
    int64_t *in_ptr;    /* n + 1 */
    int64_t *in_edge;   /* n_trans, edge ids sorted by target */
    int32_t *in_src;    /* n_trans */
    /* Reach of one step from a range [lo, hi] of states: every transient
     * edge from a state >= lo ends at >= reach_lo[lo], from a state <= hi at
     * <= reach_hi[hi] (each bound includes the state itself). */
    int32_t *reach_lo;  /* n */
    int32_t *reach_hi;  /* n */
    /* Exit edges and the states that have at least one. */
    int64_t n_exit;
    int64_t *exit_edge; /* n_exit */
    int32_t n_exit_states;
    int32_t *exit_states;
};

/* Record a message for phase_last_error() and return status. */
int phase_fail(int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* exp(x) for x <= 0 as the Stein kernel computes it (stein.c), exposed for
 * the C tests. */
double phase_stein_exp(double x);

/* 64 x 64 -> 128-bit product without 128-bit integers (random.c): returns
 * the low word, stores the high one; exposed for the C tests. */
uint64_t phase_mulhilo_portable(uint64_t a, uint64_t b, uint64_t *hi);

/* The order statistics lo and hi (hi = lo or lo + 1, 0-based) of a[0..m),
 * no NaN, with m doubles of scratch; a is not changed (bandwidth.c), exposed
 * for the C tests. */
void phase_select_median_pair(const double *a, int64_t m, int64_t lo, int64_t hi, double *scratch,
                              double *first, double *second);

/* Clear the thread-local message (successful calls leave it empty). */
void phase_clear_error(void);

#endif
