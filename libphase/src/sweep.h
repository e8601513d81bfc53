/* The lazy uniformization sweep and Poisson-weighted sums (see sweep.c). */
#ifndef PHASE_SWEEP_H
#define PHASE_SWEEP_H

#include "internal.h"

enum { SEQ_A = 0, SEQ_B = 1 }; /* a_k = v_k . s (density), b_k = v_k . 1 (survival) */

/* A non-negative number m * 2^e kept apart so that far tails stay representable. */
typedef struct {
    double m;
    int64_t e;
} scaled;

typedef struct {
    double tol;
    int store;            /* keep vectors for a reverse sweep */
    int64_t max_terms;
    /* At the current theta. */
    double Lambda, smax;
    double *rate;         /* n_edges */
    double *diag;         /* n: P_ii */
    double *s;            /* n: exit rates (probabilities if discrete) */
    double *in_p;         /* n_trans, P entries in target order */
    double *out_p;        /* n_trans, P entries in source order */
    double *v_cur, *v_next;
    /* Sequences for k = 0..K: a_k = am[k] 2^ex[k], b_k = bm[k] 2^ex[k]. */
    int64_t K, seq_cap;
    double *am, *bm;
    int64_t *ex;
    int32_t *shift;       /* vt_k = 2^shift[k] (vt_{k-1} P) */
    int64_t *pmax_a, *pmax_b; /* log2 bounds of max_{j<=k} a_j, b_j */
    /* Kept vectors: vt_{j*stride} for j < n_stored. */
    int64_t stride, n_stored, store_cap, store_limit;
    double *stored;
    double *block;        /* recomputed block of stride vectors */
    int64_t block_first, block_cap;
    /* Poisson weights of the current window, indexed by k. */
    double *wm;
    int64_t *we, wcap;
    double trunc;         /* largest relative truncation bound so far */
} sweep;

int sweep_init(sweep *w, const phase_graph *g, const phase_options *opts, int store);
void sweep_free(sweep *w);
/* Rates at theta, Lambda, P; restarts the sequences at v_0 = alpha. */
int sweep_set_theta(sweep *w, const phase_graph *g, const double *theta);
/* Run the recursion until index k exists. */
int sweep_ensure(sweep *w, const phase_graph *g, int64_t k);
/* v P into vn; returns sum(vn). */
double sweep_forward(const phase_graph *g, const sweep *w, const double *v, double *vn);
void sweep_scale(int32_t n, double *v, int32_t shift);
/* Kept or recomputed vt_k (store mode only); NULL if memory ran out. */
const double *sweep_vector(sweep *w, const phase_graph *g, int64_t k);
/* sum_k Pois(k; mu) x_k for x = a or b, as a scaled number. When adj is not
 * NULL also adds coef * Pois(k; mu) * 2^ex[k] to adj[k], coef = coef_m 2^coef_e. */
int sweep_poisson(sweep *w, const phase_graph *g, double mu, int which, scaled *result,
                  double *adj, double coef_m, int64_t coef_e);

#endif
