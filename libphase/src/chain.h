/* Adaptive uniformization (chain.c): the time axis cut into segments, each
 * uniformized at the rate of the states that still hold mass. Internal to
 * libphase. */
#ifndef PHASE_CHAIN_H
#define PHASE_CHAIN_H

#include "sweep.h"

typedef struct {
    const phase_graph *g;
    phase_options opts;
    int mode;             /* sweep mode: 0, PHASE_GRADIENT_REVERSE or _FORWARD */
    int allow;            /* adaptive segments allowed by the options and mode */
    double t_max;         /* largest time the call will ask for */
    const double *theta;  /* current parameters */
    /* Segments: seg[j] covers [tau[j], tau[j + 1]); tau[n_seg] is the planned
     * end of the last one (INFINITY once it is final, i.e. open-ended). */
    int32_t n_seg, n_alloc, seg_cap;
    sweep *seg;
    double *tau;
    int final;
    /* Bounds on what the segment boundaries lost before segment j (absolute,
     * in probability mass): err_v[j] = m 2^e (dropped and truncated state
     * mass: bounds |error| of b and c, smax times it of a), err_c[j] (the
     * truncated part of the absorbed mass c). */
    scaled *err_v;
    double *err_c;
    double chain_err;     /* largest relative bound these gave over the points */
    /* Per theta: total out-rate of each state and the largest out-rate of
     * any state reachable from it (itself included), edge rates. */
    double *lam, *reach, *rate;
    /* The segment end: Poisson(M) weights (normalised) of terms 0..end_n-1,
     * their right tail (relative), and the running sums of the open segment. */
    double *end_w, end_tail;
    int64_t end_n;
    double *acc_v[2], *acc_dv[2]; /* segment j sums into [j % 2] */
    struct chain_drop *drop; /* n: scratch for choosing the states to drop */
} chain;

int chain_init(chain *c, const phase_graph *g, const phase_options *opts, int mode,
               double t_max);
void chain_free(chain *c);
/* Start at theta. adaptive = 0 forces one segment at the largest rate (the
 * single-rate uniformization), 1 lets the chain cut the time axis where it pays. */
int chain_set_theta(chain *c, const double *theta, int adaptive);
/* The segment holding time x >= 0 (opens segments up to it). */
int chain_segment(chain *c, double x, int32_t *j);
/* Record the relative error bound that the boundaries before segment j
 * leave on x (sequence which) in chain_err. */
void chain_check(chain *c, int32_t j, int which, scaled x);
/* Whether a theta evaluated with segments must be redone with one rate:
 * it failed (status st: a zero or out-of-range value may be the segments')
 * or a point's bound from the boundaries exceeds CHAIN_ERR_SHARE tol. */
int chain_retry(const chain *c, int st);
/* Gradient mode: fold adj_c into adj_a in every segment (sweep_fold_c),
 * passing each segment's adjoint of its starting c_0 back to the terms of
 * the previous segment's end sum. */
void chain_fold_c(chain *c);

/* The reverse sweep's workspace (reverse.c). */
typedef struct {
    double *mem;                   /* one block holding all the arrays below */
    double *u, *un, *D, *H, *link; /* n (u and un swap roles step by step) */
    double *G;                     /* n_trans */
    double *gw;                    /* n_edges */
    double *gd;                    /* d: one segment's gradient */
    int shift;                     /* the last segment's adjoint scale */
} reverse_ws;

int reverse_init(reverse_ws *r, const phase_graph *g);
void reverse_free(reverse_ws *r);
/* Gradient (g->d entries) of the log-likelihood whose adjoint weights the
 * observations left in the chain's segments (adj_c folded), by reverse
 * sweeps from the last segment back to the first. */
int chain_reverse(chain *c, reverse_ws *r, double *grad);

#endif
