/* Step-wise adaptive uniformization for log-likelihoods of stiff graphs
 * (stepau.c, its birth chain in stepbirth.c). Internal to libphase. */
#ifndef PHASE_STEPAU_H
#define PHASE_STEPAU_H

#include <stdint.h>

#include "internal.h"

typedef struct stepau stepau;

#define SEG_JUMPS 64.0      /* birth chain: expected jumps per time segment */
#define SEG_TAIL 1e-32      /* its Poisson(SEG_JUMPS) weights are truncated below this */
#define DROP_Q 1e-30        /* birth-chain entries dropped below this probability */

struct stepau {
    const phase_graph *g;
    double tol;
    int32_t d;        /* tangents per state: g->d in forward mode, else 0 */
    int64_t n_obs;    /* exact observations with a non-zero weight, by time */
    double *t, *wt, t_max;
    double *wr;       /* right-censored weight at each merged time (NULL: none) */
    double *dlam, *ds; /* n * d: d lambda_i / d theta_m and d s_i / d theta_m */
    double nnz;       /* nonzeros of S: the cost of one full step */
    int32_t *layer;   /* n: longest path from a source to the state (acyclic graph) */
    /* per theta */
    double *rate, *lam, *s;
    double *v[2], *dv[2];
    uint8_t *fl[2];   /* 1: in the support U_k */
    int32_t lo[2], hi[2];
    int64_t cap;      /* sequences, k < cap */
    double *L, *a, *da, *sufmax;
    double *b, *c, *db, *dc; /* survival b_k = v_k . 1, absorbed c_k, tangents (wr only) */
    double *dL;       /* k * g->d: d L_k / d theta (L_k is the out-rate of one state) */
    /* birth chain: q (segment start), y (term), qn (segment end), all K + 1 */
    double *q, *y, *qn;
    double *dq, *dy, *dqn; /* their tangents, (K + 1) d */
    int64_t J;        /* terms per segment */
    double *pw, seg_tail; /* Poisson(SEG_JUMPS) weights 0..J (normalised), their tail */
    double *pj, *alpha_j, *tail_j, *beta_j; /* J + 1 each (beta: (J + 1) d) */
    double *f, *df, *tailp; /* per observation (df: n_obs d) */
    double *sb_j, *sc_j, *dsb_j, *dsc_j; /* wr only: projections on b, c per term */
    double *S, *C, *dS, *dC; /* wr only: sum_k p_k b_k, sum_k p_k c_k per observation */
    int64_t *slot, n_points; /* merged time of each input point (-1: weight 0) */
};

/* A workspace for the observations of one phase_loglik call, or *out = NULL
 * when the call is outside what step-wise uniformization handles (discrete
 * graphs, interval-censored observations, an exact 0 with an atom, reverse-mode
 * gradients asked for explicitly, opts->adaptive = 0); mode as in
 * chain_init. Gradients are forward-mode tangents: also for the reverse
 * mode that PHASE_GRADIENT_AUTO picks when d <= AUTO_FORWARD_D. */
int stepau_new(stepau **out, const phase_graph *g, const phase_options *opts,
               const phase_data *data, int mode);
void stepau_free(stepau *sa);
/* The log-likelihood (and in forward mode its gradient, g->d entries) at
 * theta. *used = 0 when it declines this theta (it would not pay, or a
 * point's error bound exceeds its share of tol, or a value is too small or
 * zero): the caller evaluates it with the chain instead. The decision
 * depends on theta, the data and the options alone. */
int stepau_loglik(stepau *sa, const double *theta, double *ll, double *grad, phase_info *info,
                  int *used);
/* The density (log_scale: its log) at each of the n_exact points of the
 * workspace's data (stepau_new with mode 0), in their order, into row; the
 * same *used and declining as stepau_loglik. */
int stepau_points(stepau *sa, const double *theta, int log_scale, double *row, phase_info *info,
                  int *used);

/* The birth chain (stepbirth.c): Poisson(SEG_JUMPS) weights of a segment's
 * terms into sa->pw (once per workspace), and the weights p_k(t) of the
 * rates L_0..L_{K-1} at every observation, projected onto a_k (and their
 * tangents): sa->f, sa->df, sa->tailp; *dropped gets the mass the chain
 * let go, *n_segs its segments, *ok = 0 when its mass runs out first. */
int stepau_segment_weights(stepau *sa);
void stepau_birth_chain(stepau *sa, int64_t K, double *dropped, int64_t *n_segs, int *ok);

#endif
