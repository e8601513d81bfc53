/*
 * The uniformization sweep shared by every evaluation.
 *
 * With Lambda >= max_i lambda_i(theta) and P = I + S / Lambda, the state
 * vectors v_0 = alpha, v_{k+1} = v_k P give
 *     f(t) = sum_k Pois(k; Lambda t) a_k,   a_k = v_k . s
 *     P(T > t) = sum_k Pois(k; Lambda t) b_k,   b_k = v_k . 1
 * (discrete graphs: P = T, pmf(k) = a_{k-1}, P(T > k) = b_k, Lambda = 1).
 *
 * The sweep is lazy: it runs as far as the Poisson windows of the points ask.
 * To keep far tails representable, v_k is stored as vt_k * 2^ex[k] and
 * rescaled by an exact power of two whenever its mass drops below 2^-400.
 * When a gradient is wanted the vectors are kept (all of them, or every
 * stride-th one under the memory limit, recomputing the rest in blocks) for
 * the reverse sweep in loglik.c.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sweep.h"

#define RESCALE_EXP (-400)     /* rescale v when sum(v) < 2^-400 */
#define WEIGHT_RESCALE 400     /* keep Poisson weights in [2^-400, 1] */
#define NEG_INF_LOG2 (INT64_MIN / 4)
#define UNREPRESENTABLE (-1100) /* log2 below every double */

static void *grow(void *p, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap) return p;
    int64_t c = *cap > 0 ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(p, (size_t)c * elem);
    if (q) *cap = c;
    return q;
}

int sweep_init(sweep *w, const phase_graph *g, const phase_options *opts, int store)
{
    memset(w, 0, sizeof *w);
    size_t n = (size_t)g->n, ne = (size_t)(g->n_edges > 0 ? g->n_edges : 1);
    size_t nt = (size_t)(g->n_trans > 0 ? g->n_trans : 1);
    w->tol = opts->tol;
    w->store = store;
    size_t limit = opts->memory_limit;
    w->max_terms = (int64_t)(limit / 64);
    if (w->max_terms < ((int64_t)1 << 20)) w->max_terms = (int64_t)1 << 20;
    w->store_limit = (int64_t)(limit / (sizeof(double) * n));
    if (w->store_limit < 2) w->store_limit = 2;
    w->rate = malloc(sizeof(double) * ne);
    w->diag = malloc(sizeof(double) * n);
    w->s = malloc(sizeof(double) * n);
    w->in_p = malloc(sizeof(double) * nt);
    w->out_p = malloc(sizeof(double) * nt);
    w->v_cur = malloc(sizeof(double) * n);
    w->v_next = malloc(sizeof(double) * n);
    if (!w->rate || !w->diag || !w->s || !w->in_p || !w->out_p || !w->v_cur || !w->v_next)
        return phase_fail(PHASE_ENOMEM, "out of memory for the sweep workspace");
    return PHASE_OK;
}

void sweep_free(sweep *w)
{
    free(w->rate);
    free(w->diag);
    free(w->s);
    free(w->in_p);
    free(w->out_p);
    free(w->v_cur);
    free(w->v_next);
    free(w->am);
    free(w->bm);
    free(w->ex);
    free(w->shift);
    free(w->pmax_a);
    free(w->pmax_b);
    free(w->stored);
    free(w->block);
    free(w->wm);
    free(w->we);
    memset(w, 0, sizeof *w);
}

static inline int64_t log2_bound(double m, int64_t e)
{
    /* An integer L with m * 2^e < 2^L (m >= 0); very negative for m == 0. */
    if (m <= 0.0) return NEG_INF_LOG2;
    return (int64_t)ilogb(m) + 1 + e;
}

/* Record v_cur as v_k: a_k, b_k, prefix maxima, optional storage. */
static int record(sweep *w, const phase_graph *g, int64_t k, double total, int32_t shift)
{
    int64_t need = k + 1;
    if (need > w->seq_cap) {
        int64_t cap = w->seq_cap;
        double *am = grow(w->am, &cap, need, sizeof(double));
        if (!am) return phase_fail(PHASE_ENOMEM, "out of memory at %lld terms", (long long)k);
        w->am = am;
        cap = w->seq_cap;
        double *bm = grow(w->bm, &cap, need, sizeof(double));
        if (!bm) return phase_fail(PHASE_ENOMEM, "out of memory");
        w->bm = bm;
        cap = w->seq_cap;
        int64_t *ex = grow(w->ex, &cap, need, sizeof(int64_t));
        if (!ex) return phase_fail(PHASE_ENOMEM, "out of memory");
        w->ex = ex;
        cap = w->seq_cap;
        int32_t *sh = grow(w->shift, &cap, need, sizeof(int32_t));
        if (!sh) return phase_fail(PHASE_ENOMEM, "out of memory");
        w->shift = sh;
        cap = w->seq_cap;
        int64_t *pa = grow(w->pmax_a, &cap, need, sizeof(int64_t));
        if (!pa) return phase_fail(PHASE_ENOMEM, "out of memory");
        w->pmax_a = pa;
        cap = w->seq_cap;
        int64_t *pb = grow(w->pmax_b, &cap, need, sizeof(int64_t));
        if (!pb) return phase_fail(PHASE_ENOMEM, "out of memory");
        w->pmax_b = pb;
        w->seq_cap = cap;
    }
    const double *v = w->v_cur;
    double a = 0.0;
    for (int32_t q = 0; q < g->n_exit_states; q++) {
        int32_t i = g->exit_states[q];
        a += v[i] * w->s[i];
    }
    w->am[k] = a;
    w->bm[k] = total;
    w->shift[k] = shift;
    w->ex[k] = k == 0 ? 0 : w->ex[k - 1] - shift;
    int64_t la = log2_bound(a, w->ex[k]), lb = log2_bound(total, w->ex[k]);
    w->pmax_a[k] = k == 0 || la > w->pmax_a[k - 1] ? la : w->pmax_a[k - 1];
    w->pmax_b[k] = k == 0 || lb > w->pmax_b[k - 1] ? lb : w->pmax_b[k - 1];
    w->K = k;

    if (!w->store) return PHASE_OK;
    size_t n = (size_t)g->n;
    if (k % w->stride) return PHASE_OK;
    if (w->n_stored == w->store_limit) {
        /* Full: keep every other vector and double the stride. */
        int64_t j, kept = 0;
        for (j = 0; j < w->n_stored; j += 2, kept++)
            if (j != kept) memcpy(w->stored + kept * n, w->stored + j * n, sizeof(double) * n);
        w->n_stored = kept;
        w->stride *= 2;
        if (k % w->stride) return PHASE_OK;
    }
    int64_t cap = w->store_cap;
    double *st = grow(w->stored, &cap, (w->n_stored + 1) * (int64_t)n, sizeof(double));
    if (!st) return phase_fail(PHASE_ENOMEM, "out of memory storing state vectors");
    w->stored = st;
    w->store_cap = cap;
    memcpy(w->stored + w->n_stored * n, v, sizeof(double) * n);
    w->n_stored++;
    return PHASE_OK;
}

int sweep_set_theta(sweep *w, const phase_graph *g, const double *theta)
{
    int st = phase_graph_rates(g, theta, w->rate);
    if (st) return st;
    int32_t n = g->n;
    double *lambda = w->v_next; /* scratch */
    for (int32_t i = 0; i < n; i++) lambda[i] = 0.0, w->s[i] = 0.0;
    for (int64_t e = 0; e < g->n_edges; e++) {
        lambda[g->src[e]] += w->rate[e];
        if (g->dst[e] == PHASE_ABSORBING) w->s[g->src[e]] += w->rate[e];
    }
    double L = 0.0, smax = 0.0;
    for (int32_t i = 0; i < n; i++) {
        if (lambda[i] > L) L = lambda[i];
        if (w->s[i] > smax) smax = w->s[i];
    }
    if (g->discrete) {
        if (L > 1.0 + 1e-12)
            return phase_fail(PHASE_EDOMAIN,
                              "out-probabilities of a state sum to %.17g > 1 at this theta", L);
        L = 1.0;
    } else if (L == 0.0) {
        L = 1.0; /* nothing moves; any Lambda > 0 is exact */
    }
    w->Lambda = L;
    w->smax = smax;
    for (int32_t i = 0; i < n; i++) {
        double d = 1.0 - lambda[i] / L;
        w->diag[i] = d > 0.0 ? d : 0.0;
    }
    for (int64_t q = 0; q < g->n_trans; q++) {
        w->in_p[q] = w->rate[g->in_edge[q]] / L;
        w->out_p[q] = w->rate[g->out_edge[q]] / L;
    }
    /* Start the sweep at v_0 = alpha. */
    double total = 0.0;
    for (int32_t i = 0; i < n; i++) total += (w->v_cur[i] = g->alpha[i]);
    w->n_stored = 0;
    w->stride = 1;
    w->block_first = -1;
    w->trunc = 0.0;
    return record(w, g, 0, total, 0);
}

double sweep_forward(const phase_graph *g, const sweep *w, const double *v, double *vn)
{
    double total = 0.0;
    const int64_t *ptr = g->in_ptr;
    const int32_t *from = g->in_src;
    const double *p = w->in_p, *diag = w->diag;
    for (int32_t j = 0; j < g->n; j++) {
        double x = diag[j] * v[j];
        for (int64_t q = ptr[j]; q < ptr[j + 1]; q++) x += p[q] * v[from[q]];
        vn[j] = x;
        total += x;
    }
    return total;
}

void sweep_scale(int32_t n, double *v, int32_t shift)
{
    double f = ldexp(1.0, shift);
    for (int32_t i = 0; i < n; i++) v[i] *= f;
}

int sweep_ensure(sweep *w, const phase_graph *g, int64_t k)
{
    if (k <= w->K) return PHASE_OK;
    if (k >= w->max_terms)
        return phase_fail(PHASE_ERANGE,
                          "the sum needs more than %lld terms (Lambda = %g); raise memory_limit "
                          "or rescale time",
                          (long long)w->max_terms, w->Lambda);
    while (w->K < k) {
        double total = sweep_forward(g, w, w->v_cur, w->v_next);
        int32_t shift = 0;
        if (total > 0.0 && ilogb(total) < RESCALE_EXP) {
            shift = -ilogb(total);
            sweep_scale(g->n, w->v_next, shift);
            total *= ldexp(1.0, shift);
        }
        double *t = w->v_cur;
        w->v_cur = w->v_next;
        w->v_next = t;
        int st = record(w, g, w->K + 1, total, shift);
        if (st) return st;
    }
    return PHASE_OK;
}

const double *sweep_vector(sweep *w, const phase_graph *g, int64_t k)
{
    size_t n = (size_t)g->n;
    if (w->stride == 1) return w->stored + (size_t)k * n;
    int64_t first = (k / w->stride) * w->stride;
    if (first != w->block_first) {
        int64_t len = w->stride;
        if (first + len > w->K + 1) len = w->K + 1 - first;
        int64_t cap = w->block_cap;
        double *b = grow(w->block, &cap, w->stride * (int64_t)n, sizeof(double));
        if (!b) return NULL;
        w->block = b;
        w->block_cap = cap;
        memcpy(w->block, w->stored + (size_t)(first / w->stride) * n, sizeof(double) * n);
        for (int64_t j = 1; j < len; j++) {
            double *vn = w->block + (size_t)j * n;
            sweep_forward(g, w, vn - n, vn);
            if (w->shift[first + j]) sweep_scale(g->n, vn, w->shift[first + j]);
        }
        w->block_first = first;
    }
    return w->block + (size_t)(k - first) * n;
}

/* ---- Poisson-weighted sums ------------------------------------------- */

static inline void acc_add(scaled *acc, double x, int64_t e)
{
    if (x == 0.0) return;
    if (acc->m == 0.0) {
        acc->m = x;
        acc->e = e;
    } else if (e == acc->e) {
        acc->m += x;
    } else if (e < acc->e) {
        int64_t d = e - acc->e;
        if (d > -1100) acc->m += ldexp(x, (int)d);
    } else {
        int64_t d = acc->e - e;
        acc->m = (d > -1100 ? ldexp(acc->m, (int)d) : 0.0) + x;
        acc->e = e;
    }
}

static int weights_room(sweep *w, int64_t need)
{
    int64_t cap = w->wcap;
    double *wm = grow(w->wm, &cap, need, sizeof(double));
    if (!wm) return phase_fail(PHASE_ENOMEM, "out of memory for Poisson weights");
    w->wm = wm;
    cap = w->wcap;
    int64_t *we = grow(w->we, &cap, need, sizeof(int64_t));
    if (!we) return phase_fail(PHASE_ENOMEM, "out of memory for Poisson weights");
    w->we = we;
    w->wcap = cap;
    return PHASE_OK;
}

/* Upper bound (log2) of x_j for all j > k, from b being non-increasing. */
static int64_t right_bound_x(const sweep *w, int which, int64_t k1)
{
    int64_t lb = log2_bound(w->bm[k1], w->ex[k1]);
    if (which == SEQ_A) {
        if (w->smax == 0.0) return NEG_INF_LOG2;
        lb += ilogb(w->smax) + 1;
    }
    return lb;
}

static inline int64_t log2_ceil(double x) { return x > 0.0 ? (int64_t)ilogb(x) + 1 : NEG_INF_LOG2; }

int sweep_poisson(sweep *w, const phase_graph *g, double mu, int which, scaled *result,
                  double *adj, double coef_m, int64_t coef_e)
{
    const double tol = w->tol;
    int st;
    result->m = 0.0;
    result->e = 0;
    if (mu == 0.0) {
        double x = which == SEQ_A ? w->am[0] : w->bm[0];
        result->m = x;
        result->e = w->ex[0];
        if (adj) adj[0] += ldexp(coef_m, (int)(coef_e + w->ex[0]));
        return PHASE_OK;
    }
    if (!(mu < 9.0e15)) return phase_fail(PHASE_ERANGE, "Lambda * t = %g is too large", mu);
    const int64_t M = (int64_t)floor(mu);
    if (M + 1 >= w->max_terms)
        return phase_fail(PHASE_ERANGE,
                          "Lambda * t = %g needs more than %lld terms; raise memory_limit or "
                          "rescale time",
                          mu, (long long)w->max_terms);
    /* Weights relative to the mode, indexed by k (wm[k] * 2^we[k]). */
    int64_t R = M, L = M;
    if ((st = weights_room(w, M + 2))) return st;
    w->wm[M] = 1.0;
    w->we[M] = 0;
    double W = 1.0;
    /* Core window: Poisson mass outside <= core_tol (relative to W). It is
     * tighter than tol because W normalises every value: its truncation is a
     * relative error of the result itself. */
    const double core_tol = tol * 1e-4;
    for (;;) {
        double next = w->wm[R] * mu / (double)(R + 1);
        double tail = next / (1.0 - mu / (double)(R + 2));
        if (tail <= core_tol * W) break;
        if ((st = weights_room(w, R + 2))) return st;
        R++;
        w->wm[R] = next;
        w->we[R] = 0;
        W += next;
    }
    double right_tail = w->wm[R] * mu / (double)(R + 1) / (1.0 - mu / (double)(R + 2));
    double left_tail = 0.0;
    while (L > 0) {
        double prev = w->wm[L] * (double)L / mu;
        double tail = prev / (1.0 - (double)(L - 1) / mu);
        if (tail <= core_tol * W) {
            left_tail = tail;
            break;
        }
        L--;
        w->wm[L] = prev;
        w->we[L] = 0;
        W += prev;
    }
    if ((st = sweep_ensure(w, g, R))) return st;
    const double *x = which == SEQ_A ? w->am : w->bm;
    const int64_t *pmax = which == SEQ_A ? w->pmax_a : w->pmax_b;
    scaled acc = {0.0, 0};
    for (int64_t k = R; k >= L; k--) acc_add(&acc, w->wm[k] * x[k], w->ex[k]);

    /* Extend the window while the data could still matter: terms beyond it
     * are bounded by (Poisson tail) x (bound on x there). Stop once that is
     * below tol x the sum, or below what a double can hold. */
    const int64_t log2_tol = log2_ceil(tol) - 1;
    const int64_t floor_log2 = UNREPRESENTABLE + log2_ceil(W);
    for (;;) {
        double next = w->wm[R] * mu / (double)(R + 1);
        int64_t ne = w->we[R];
        double tail = next / (1.0 - mu / (double)(R + 2));
        if ((st = sweep_ensure(w, g, R + 1))) return st;
        int64_t bound = log2_ceil(tail) + ne + right_bound_x(w, which, R + 1);
        int64_t need = acc.m > 0.0 ? log2_bound(acc.m, acc.e) + log2_tol : floor_log2;
        if (need < floor_log2) need = floor_log2;
        if (bound <= need) {
            double rel = acc.m > 0.0 ? ldexp(1.0, (int)(bound - log2_bound(acc.m, acc.e))) : 0.0;
            if (rel > w->trunc) w->trunc = rel;
            break;
        }
        if ((st = weights_room(w, R + 2))) return st;
        if (next < ldexp(1.0, -WEIGHT_RESCALE)) {
            next = ldexp(next, WEIGHT_RESCALE);
            ne -= WEIGHT_RESCALE;
        }
        R++;
        w->wm[R] = next;
        w->we[R] = ne;
        acc_add(&acc, next * x[R], ne + w->ex[R]);
    }
    while (L > 0) {
        double prev = w->wm[L] * (double)L / mu;
        int64_t pe = w->we[L];
        double tail = prev / (1.0 - (double)(L - 1) / mu);
        int64_t bound = log2_ceil(tail) + pe + pmax[L - 1];
        int64_t need = acc.m > 0.0 ? log2_bound(acc.m, acc.e) + log2_tol : floor_log2;
        if (need < floor_log2) need = floor_log2;
        if (bound <= need) break;
        if (prev < ldexp(1.0, -WEIGHT_RESCALE)) {
            prev = ldexp(prev, WEIGHT_RESCALE);
            pe -= WEIGHT_RESCALE;
        }
        L--;
        w->wm[L] = prev;
        w->we[L] = pe;
        acc_add(&acc, prev * x[L], pe + w->ex[L]);
    }
    double poisson_rel = (right_tail + left_tail) / W;
    if (poisson_rel > w->trunc) w->trunc = poisson_rel;
    result->m = acc.m / W;
    result->e = acc.e;
    if (adj) {
        double c = coef_m / W;
        for (int64_t k = L; k <= R; k++) {
            int64_t e = w->we[k] + w->ex[k] + coef_e;
            if (e > -1100) adj[k] += ldexp(c * w->wm[k], (int)(e < 1100 ? e : 1100));
        }
    }
    return PHASE_OK;
}
