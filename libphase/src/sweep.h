/* The lazy uniformization sweep (sweep.c) and Poisson-weighted sums over it
 * (poisson.c). Internal to libphase. */
#ifndef PHASE_SWEEP_H
#define PHASE_SWEEP_H

#include <math.h>
#include <string.h>

#include "internal.h"

/* Forced inlining for the step loop's helpers (GCC and clang). */
#if defined(__GNUC__)
#define SWEEP_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define SWEEP_ALWAYS_INLINE static inline
#endif

/* Entries below 2^-1000 are set to zero. The sweep rescales so that sum(v)
 * >= 2^-400, so this drops only mass below 2^-600 of the total (gradual
 * underflow would drop it a little later, at a large cost in time:
 * subnormal arithmetic is about 100x slower). */
#define FLUSH_BELOW 0x1p-1000
#define NEG_INF_LOG2 (INT64_MIN / 4)

/* ilogb(x) for finite x > 0, without a libm call on the hot path: the
 * biased exponent field, or libm for subnormals. */
static inline int fast_ilogb(double x)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    int biased = (int)((bits >> 52) & 0x7ff);
    return biased ? biased - 1023 : ilogb(x);
}

/* a_k = v_k . s (density), b_k = v_k . 1 (survival), c_k = sum_{j<k} a_j / Lambda
 * (mass absorbed by step k, excluding the defect: c_k = b_0 - b_k, summed
 * directly so that small CDFs keep their digits). */
enum { SEQ_A = 0, SEQ_B = 1, SEQ_C = 2 };

/* A non-negative number m * 2^e kept apart so that far tails stay representable. */
typedef struct {
    double m;
    int64_t e;
} scaled;

typedef struct {
    double tol;
    int store;            /* any gradient: accumulate adjoint weights adj_a, adj_b */
    int mode;             /* PHASE_GRADIENT_REVERSE (keep vectors) or _FORWARD
                             (propagate tangents); 0 without gradient */
    int64_t max_terms;
    /* At the current theta. */
    double Lambda, smax;
    double *rate;         /* n_edges */
    double *diag;         /* n: P_ii */
    double *s;            /* n: exit rates (probabilities if discrete) */
    double *in_p;         /* n_trans, P entries in target order */
    /* When no state has more than one in-edge (Kingman, Erlang, Coxian
     * chains): per state its source (itself if none) and that P entry (0 if
     * none), so the step needs no loop over in-edges; NULL otherwise. */
    int32_t *one_src;
    double *one_p, *one_c; /* one_c: d P / d theta there (forward mode, d = 1) */
    double *out_p;        /* n_trans, P entries in source order */
    double *buf[2];       /* v_K and v_{K-1}; zero outside their ranges */
    int32_t buf_lo[2], buf_hi[2];
    int cur;              /* buf[cur] holds vt_K */
    /* Sequences for k = 0..K: a_k = am[k] 2^ex[k], b_k = bm[k] 2^ex[k];
     * vt_k is zero outside [lo[k], hi[k]] (lo > hi: all zero). */
    int64_t K, seq_cap;
    double *am, *bm;
    int64_t *ex;
    /* c_k = cm[k], unscaled: ex[k] < 0 only once b_k has fallen below
     * 2^-400, when c_k is within 2^-400 of its limit, so terms too small for
     * a double do not matter. Summed with Neumaier's compensation. */
    double *cm, c_sum, c_comp;
    int32_t *shift;       /* vt_k = 2^shift[k] (vt_{k-1} P) */
    int32_t *lo, *hi;
    int64_t *pmax_a, *pmax_b; /* log2 bounds of max_{j<=k} a_j, b_j */
    double *adj_a, *adj_b;    /* gradient mode: d loglik / d a_k, d b_k, scaled by 2^ex[k] */
    double *adj_c;            /* gradient mode: d loglik / d c_k (unscaled); folded into
                                 adj_a by sweep_fold_c before any gradient sweep */
    /* Forward mode, d tangents per state (layout [i * d + m]):
     * dbuf[c] = d vt / d theta with the ranges of buf[c]; in_c = d P / d theta
     * on the edges in target order, diag_c on the diagonal, ds = d s / d theta;
     * da[k * d + m], db[k * d + m] = d a_k / d theta_m, d b_k / d theta_m
     * (scaled like a_k, b_k). */
    double *dbuf[2], *in_c, *diag_c, *ds, *da, *db, *dtotal;
    int64_t tangent_cap;
    int32_t d_tangents;
    /* Kept vectors vt_{j*stride}, j < n_stored: only their [lo, hi] ranges,
     * packed in chunks of chunk_len doubles (growing never copies). */
    int64_t stride, n_stored, seg_cap, store_limit, stored_doubles;
    double **seg;         /* seg[j]: vt_{j*stride}[lo..hi] */
    int64_t chunk_len, n_chunks, chunk_cap, fill_chunk, fill_pos;
    double **chunks;
    /* With stride > 1, the block of stride full vectors recomputed from a
     * kept one for the reverse sweep (zero outside their ranges). */
    double *block;
    int32_t *block_lo, *block_hi;
    int64_t block_first, block_len;
    /* Poisson weights of the last window [win_lo, win_hi], indexed by k:
     * Pois(k; mu) = wm[k] 2^we[k] / win_norm. */
    double *wm;
    int64_t *we, wcap, win_lo, win_hi;
    double win_norm;
    /* The window's core (we = 0 there; empty when lo > hi), and the range
     * of we that widening may have left non-zero (core windows clear it). */
    int64_t wcore_lo, wcore_hi, we_lo, we_hi;
    /* inv_k[k] = 1 / k for 0 < k < wcap (the recurrence's factors without a
     * division per term), and the last core window (Poisson(core_mu) on
     * [core_lo, core_hi], sum core_w, relative tails core_rel): the core
     * depends on mu and tol alone, and widening never writes inside it, so
     * a point with the same mu (a repeated time, a censored bound evaluated
     * twice) reuses it. */
    double *inv_k;
    double core_mu, core_w, core_rel;
    int64_t core_lo, core_hi;
    double trunc;         /* largest relative truncation bound so far */
    double c_max;         /* bound on every c_k: sum(alpha) */
    double c0;            /* c_0: mass absorbed before the sweep's start */
    int64_t e0;           /* ex[0]: v_0 = vt_0 2^e0 */
    /* Optional running sum acc_v += acc_w[k] 2^(ex[k] - acc_e) vt_k for
     * k < acc_n (and the same for the tangents into acc_dv): the vector at
     * a segment's end, built while the sweep passes (chain.c). acc_e is the
     * exponent of the first term; acc_lo..acc_hi bounds the touched states. */
    const double *acc_w;
    int64_t acc_n, acc_e;
    double *acc_v, *acc_dv;
    int32_t acc_lo, acc_hi;
} sweep;

/* In a function returning a status: grow the array field to at least need
 * entries from the capacity cap that a group of arrays shares (doubling, as
 * sweep_grow), store the new capacity in newcap, or fail the call with
 * PHASE_ENOMEM naming what. field keeps its contents either way. */
#define SWEEP_GROW(field, cap, need, newcap, what)                                    \
    do {                                                                              \
        int64_t grown_ = (cap);                                                       \
        void *q_ = sweep_grow((field), &grown_, (need), sizeof *(field));             \
        if (!q_) return phase_fail(PHASE_ENOMEM, "out of memory for %s", (what));     \
        (field) = q_;                                                                 \
        (newcap) = grown_;                                                            \
    } while (0)

/* Whether any of x[0..d-1] is non-zero. */
static inline int sweep_any_nonzero(const double *x, int32_t d)
{
    for (int32_t m = 0; m < d; m++)
        if (x[m] != 0.0) return 1;
    return 0;
}

/* Zero v on [lo, hi] (nothing when lo > hi). */
static inline void sweep_clear(double *v, int32_t lo, int32_t hi)
{
    if (lo <= hi) memset(v + lo, 0, sizeof(double) * (size_t)(hi - lo + 1));
}

/* Zero the d tangents of states lo..hi. */
static inline void sweep_clear_tangents(double *dv, int32_t lo, int32_t hi, int32_t d)
{
    if (lo <= hi) memset(dv + (size_t)lo * d, 0, sizeof(double) * (size_t)(hi - lo + 1) * d);
}

/* The support of a step's result on [a, b]: [*lo, *hi] bounds the states
 * where v (or, with dv, one of the d tangents) is non-zero; lo = 0, hi = -1
 * when there are none. */
static inline void sweep_support(const double *v, const double *dv, int32_t d, int32_t a,
                                 int32_t b, int32_t *lo, int32_t *hi)
{
#define SWEEP_NONZERO(j) (v[j] != 0.0 || (dv && sweep_any_nonzero(dv + (size_t)(j) * d, d)))
    int32_t first = a, last = b;
    while (first <= b && !SWEEP_NONZERO(first)) first++;
    while (last > first && !SWEEP_NONZERO(last)) last--;
#undef SWEEP_NONZERO
    *lo = first <= b ? first : 0;
    *hi = first <= b ? last : -1;
}

/* Whether the sweep propagates forward-mode tangents. */
static inline int sweep_tangents_on(const sweep *w) { return w->dbuf[0] != NULL; }

/* Forward-mode tangents (tangent.c). The value step vn = v P with its
 * tangents dvn = dv P + v dP on the same range rules as the value sweep;
 * returns sum(vn), sets dtotal = sum(dvn) per parameter. */
double sweep_forward_tangent(const phase_graph *g, const sweep *w, const double *v,
                             const double *dv, int32_t lo, int32_t hi, double *vn, double *dvn,
                             int32_t *nlo, int32_t *nhi, double *dtotal);
/* dP/dtheta at uniformization rate L on the edges in target order and on
 * the diagonal, and ds/dtheta, from the sparse edge coefficients. */
void sweep_tangent_coefficients(sweep *w, const phase_graph *g, double L);

/* mode: 0 (values only), PHASE_GRADIENT_REVERSE or PHASE_GRADIENT_FORWARD. */
/* realloc to at least need elements, doubling; *cap updated on success. */
void *sweep_grow(void *p, int64_t *cap, int64_t need, size_t elem);
int sweep_init(sweep *w, const phase_graph *g, const phase_options *opts, int mode);
void sweep_free(sweep *w);
/* Rates at theta, Lambda, P; restarts the sequences at v_0 = alpha. */
int sweep_set_theta(sweep *w, const phase_graph *g, const double *theta);
/* A segment of adaptive uniformization (chain.c): rates at theta, the given
 * Lambda (>= the out-rate of every state reachable from v0's support), and
 * the sequences restarted at v_0 = v0 2^e0 (zero outside [lo, hi]; tangents
 * dv0 in forward mode, layout [i * d + m], may be NULL), with c_0 = c0. */
int sweep_start(sweep *w, const phase_graph *g, const double *theta, double Lambda,
                const double *v0, const double *dv0, int32_t lo, int32_t hi, int64_t e0,
                double c0);
/* Run the recursion until index k exists. */
int sweep_ensure(sweep *w, const phase_graph *g, int64_t k);
/* vt_k on its range: element i - lo[k] is vt_k[i] for lo[k] <= i <= hi[k]
 * (gradient mode only; valid until the next call); NULL if memory ran out. */
const double *sweep_vector(sweep *w, const phase_graph *g, int64_t k);
/* log2 bound: m 2^e < 2^result (inline: the sweep calls it twice a term). */
static inline int64_t sweep_log2_bound(double m, int64_t e)
{
    if (m <= 0.0) return NEG_INF_LOG2;
    return (int64_t)fast_ilogb(m) + 1 + e;
}

/* Fold adj_c into adj_a (c_k = sum_{j<k} a_j / Lambda) and clear adj_c. */
void sweep_fold_c(sweep *w);

/* sum_k Pois(k; mu) x_k for x = a, b or c, as a scaled number; leaves the
 * window's weights for sweep_adjoint. */
int sweep_poisson(sweep *w, const phase_graph *g, double mu, int which, scaled *result);
/* Add coef * Pois(k; mu) * 2^ex[k] to adj_a, adj_b or adj_c (which; no 2^ex for c) over the window
 * of the last sweep_poisson call; coef = coef_m 2^coef_e. */
void sweep_adjoint(sweep *w, int which, double coef_m, int64_t coef_e);

#endif
