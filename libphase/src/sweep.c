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
 * To keep far tails representable, v_k is held as vt_k * 2^ex[k] and
 * rescaled by an exact power of two whenever its mass drops below 2^-400.
 * Each step updates only the range of states that can be non-zero: the
 * support of v_k, widened by one step of the graph's reach (reach_lo/hi).
 * In stiff models most mass has long left the fast states, so the active
 * range is a fraction of the graph (Kingman n = 200: about a tenth).
 * In gradient mode the vectors are kept for the reverse sweep, each only on
 * its range: all of them while they fit in memory_limit, else every
 * stride-th one (the stride doubles each time storage fills), the rest
 * recomputed block by block. Forward-mode tangents step beside the values
 * (tangent.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sweep.h"

#define RESCALE_EXP (-400) /* rescale v when sum(v) < 2^-400 */
#define CHUNK_BYTES ((size_t)4 << 20)

void *sweep_grow(void *p, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap) return p;
    int64_t c = *cap > 0 ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(p, (size_t)c * elem);
    if (q) *cap = c;
    return q;
}


int sweep_init(sweep *w, const phase_graph *g, const phase_options *opts, int mode)
{
    memset(w, 0, sizeof *w);
    size_t n = (size_t)g->n, ne = (size_t)(g->n_edges > 0 ? g->n_edges : 1);
    size_t nt = (size_t)(g->n_trans > 0 ? g->n_trans : 1);
    w->tol = opts->tol;
    w->store = mode != 0;
    w->mode = mode;
    size_t limit = opts->memory_limit;
    w->max_terms = (int64_t)(limit / 64);
    if (w->max_terms < ((int64_t)1 << 20)) w->max_terms = (int64_t)1 << 20;
    w->store_limit = (int64_t)(limit / sizeof(double));
    if (w->store_limit < 2 * (int64_t)n) w->store_limit = 2 * (int64_t)n;
    w->chunk_len = (int64_t)(CHUNK_BYTES / sizeof(double));
    if (w->chunk_len < (int64_t)n) w->chunk_len = (int64_t)n;
    w->rate = malloc(sizeof(double) * ne);
    w->diag = malloc(sizeof(double) * n);
    w->s = malloc(sizeof(double) * n);
    w->in_p = malloc(sizeof(double) * nt);
    w->out_p = malloc(sizeof(double) * nt);
    w->buf[0] = calloc(n, sizeof(double));
    w->buf[1] = calloc(n, sizeof(double));
    if (!w->rate || !w->diag || !w->s || !w->in_p || !w->out_p || !w->buf[0] || !w->buf[1])
        return phase_fail(PHASE_ENOMEM, "out of memory for the sweep workspace");
    int single = 1;
    for (int32_t j = 0; j < g->n && single; j++) single = g->in_ptr[j + 1] - g->in_ptr[j] <= 1;
    if (single && g->n > 0) {
        w->one_src = malloc(sizeof(int32_t) * n);
        w->one_p = calloc(n, sizeof(double));
        if (!w->one_src || !w->one_p)
            return phase_fail(PHASE_ENOMEM, "out of memory for the sweep workspace");
        for (int32_t j = 0; j < g->n; j++)
            w->one_src[j] = g->in_ptr[j + 1] > g->in_ptr[j] ? g->in_src[g->in_ptr[j]] : j;
    }
    w->buf_lo[0] = w->buf_lo[1] = 0;
    w->buf_hi[0] = w->buf_hi[1] = -1;
    if (mode == PHASE_GRADIENT_FORWARD && g->d > 0) {
        const size_t d = (size_t)g->d;
        w->dbuf[0] = calloc(n * d, sizeof(double));
        w->dbuf[1] = calloc(n * d, sizeof(double));
        w->in_c = malloc(sizeof(double) * nt * d);
        w->diag_c = malloc(sizeof(double) * n * d);
        w->ds = malloc(sizeof(double) * n * d);
        w->dtotal = malloc(sizeof(double) * d);
        if (!w->dbuf[0] || !w->dbuf[1] || !w->in_c || !w->diag_c || !w->ds || !w->dtotal)
            return phase_fail(PHASE_ENOMEM, "out of memory for the tangent sweep");
        w->d_tangents = g->d;
        if (w->one_src && d == 1 && !(w->one_c = calloc(n, sizeof(double))))
            return phase_fail(PHASE_ENOMEM, "out of memory for the tangent sweep");
    }
    return PHASE_OK;
}

void sweep_free(sweep *w)
{
    free(w->rate);
    free(w->diag);
    free(w->s);
    free(w->in_p);
    free(w->one_src);
    free(w->one_p);
    free(w->one_c);
    free(w->out_p);
    free(w->buf[0]);
    free(w->buf[1]);
    free(w->dbuf[0]);
    free(w->dbuf[1]);
    free(w->in_c);
    free(w->diag_c);
    free(w->ds);
    free(w->dtotal);
    free(w->da);
    free(w->db);
    free(w->am);
    free(w->bm);
    free(w->cm);
    free(w->ex);
    free(w->shift);
    free(w->lo);
    free(w->hi);
    free(w->pmax_a);
    free(w->pmax_b);
    free(w->adj_a);
    free(w->adj_b);
    free(w->adj_c);
    free(w->seg);
    for (int64_t c = 0; c < w->n_chunks; c++) free(w->chunks[c]);
    free(w->chunks);
    free(w->block);
    free(w->block_lo);
    free(w->block_hi);
    free(w->wm);
    free(w->we);
    free(w->inv_k);
    memset(w, 0, sizeof *w);
}

/* ---- the recursion ----------------------------------------------------- */

/* The states [*a, *b] that a step from v (zero outside [lo, hi]) can reach,
 * with the stale entries of vn outside them zeroed; 0 when v is all zero
 * (then vn is all zero and its range empty). Out of line: inlined, it moved
 * forward()'s loop and cost block-counting(10) 3 % (same instructions). */
__attribute__((noinline)) static int step_range(const phase_graph *g, int32_t lo, int32_t hi,
                                                double *vn, int32_t *nlo, int32_t *nhi,
                                                int32_t *a, int32_t *b)
{
    if (lo > hi) { /* nothing left */
        sweep_clear(vn, *nlo, *nhi);
        *nlo = 0;
        *nhi = -1;
        return 0;
    }
    *a = g->reach_lo[lo];
    *b = g->reach_hi[hi];
    sweep_clear(vn, *nlo, (*nhi < *a - 1 ? *nhi : *a - 1));
    sweep_clear(vn, (*nlo > *b + 1 ? *nlo : *b + 1), *nhi);
    return 1;
}

/* vn = v P where v is zero outside [lo, hi]; vn held a vector on
 * [*nlo, *nhi] before and is zero outside the returned [*nlo, *nhi] after.
 * Returns sum(vn). */
static double forward(const phase_graph *g, const sweep *w, const double *v, int32_t lo,
                      int32_t hi, double *vn, int32_t *nlo, int32_t *nhi)
{
    const int64_t *ptr = g->in_ptr;
    const int32_t *from = g->in_src;
    const double *p = w->in_p, *diag = w->diag;
    int32_t a, b;
    if (!step_range(g, lo, hi, vn, nlo, nhi, &a, &b)) return 0.0;
    double total = 0.0;
    for (int32_t j = a; j <= b; j++) {
        double x = diag[j] * v[j];
        for (int64_t q = ptr[j]; q < ptr[j + 1]; q++) x += p[q] * v[from[q]];
        x = x < FLUSH_BELOW ? 0.0 : x; /* see FLUSH_BELOW */
        vn[j] = x;
        total += x;
    }
    /* The support [first, last] from its ends afterwards: a test per state
     * in the loop cost a tenth of a small model's step. Zeros between a and
     * b are already there. */
    sweep_support(vn, NULL, 0, a, b, nlo, nhi);
    return total;
}

/* forward() when no state has more than one in-edge (w->one_src): no loop
 * over in-edges, the same sums (x + 0 = x for x >= 0), so the same bits.
 * A function of its own: a second loop inside forward() slowed the general
 * one by 15 % (block-counting(10), same instructions: code layout). */
static double forward_one(const phase_graph *g, const sweep *w, const double *v, int32_t lo,
                          int32_t hi, double *vn, int32_t *nlo, int32_t *nhi)
{
    const double *diag = w->diag, *p1 = w->one_p;
    const int32_t *src = w->one_src;
    int32_t a, b;
    if (!step_range(g, lo, hi, vn, nlo, nhi, &a, &b)) return 0.0;
    double total = 0.0;
    for (int32_t j = a; j <= b; j++) {
        double x = diag[j] * v[j];
        x += p1[j] * v[src[j]];
        x = x < FLUSH_BELOW ? 0.0 : x;
        vn[j] = x;
        total += x;
    }
    sweep_support(vn, NULL, 0, a, b, nlo, nhi);
    return total;
}

static void scale(double *v, int32_t lo, int32_t hi, int32_t shift)
{
    const double f = ldexp(1.0, shift);
    for (int32_t i = lo; i <= hi; i++) v[i] *= f;
}


static int sequences_room(sweep *w, int64_t need)
{
    if (need <= w->seq_cap) return PHASE_OK;
    const int64_t cap = w->seq_cap;
    int64_t c = cap;
    const char *what = "the sequences";
    SWEEP_GROW(w->am, cap, need, c, what);
    SWEEP_GROW(w->bm, cap, need, c, what);
    SWEEP_GROW(w->cm, cap, need, c, what);
    SWEEP_GROW(w->ex, cap, need, c, what);
    SWEEP_GROW(w->shift, cap, need, c, what);
    SWEEP_GROW(w->lo, cap, need, c, what);
    SWEEP_GROW(w->hi, cap, need, c, what);
    SWEEP_GROW(w->pmax_a, cap, need, c, what);
    SWEEP_GROW(w->pmax_b, cap, need, c, what);
    if (w->store) {
        SWEEP_GROW(w->adj_a, cap, need, c, what);
        SWEEP_GROW(w->adj_b, cap, need, c, what);
        SWEEP_GROW(w->adj_c, cap, need, c, what);
    }
    if (sweep_tangents_on(w)) { /* room for all c terms */
        int64_t tc = w->tangent_cap;
        SWEEP_GROW(w->da, w->tangent_cap, c * w->d_tangents, tc, "tangents");
        SWEEP_GROW(w->db, w->tangent_cap, c * w->d_tangents, tc, "tangents");
        w->tangent_cap = tc;
    }
    w->seq_cap = c;
    return PHASE_OK;
}

/* ---- kept vectors ------------------------------------------------------ */

/* Room for len doubles at the fill position (a segment never spans chunks). */
static double *arena_take(sweep *w, int64_t len)
{
    if (w->fill_pos + len > w->chunk_len) {
        w->fill_chunk++;
        w->fill_pos = 0;
    }
    while (w->fill_chunk >= w->n_chunks) {
        int64_t cap = w->chunk_cap;
        double **c = sweep_grow(w->chunks, &cap, w->n_chunks + 1, sizeof(double *));
        if (!c) return NULL;
        w->chunks = c;
        w->chunk_cap = cap;
        double *mem = malloc(sizeof(double) * (size_t)w->chunk_len);
        if (!mem) return NULL;
        w->chunks[w->n_chunks++] = mem;
    }
    double *at = w->chunks[w->fill_chunk] + w->fill_pos;
    w->fill_pos += len;
    return at;
}

static int64_t seg_len(const sweep *w, int64_t k) { return w->hi[k] >= w->lo[k] ? w->hi[k] - w->lo[k] + 1 : 0; }

/* Storage is full: keep every other vector, double the stride, and pack the
 * kept segments towards the front (they only move down, so memmove is safe). */
static void thin_out(sweep *w)
{
    const int64_t old_stride = w->stride;
    w->fill_chunk = 0;
    w->fill_pos = 0;
    w->stored_doubles = 0;
    int64_t kept = 0;
    for (int64_t j = 0; j < w->n_stored; j += 2, kept++) {
        int64_t k = j * old_stride, len = seg_len(w, k);
        double *src = w->seg[j], *dst = len ? arena_take(w, len) : NULL; /* chunks exist */
        if (len && dst != src) memmove(dst, src, sizeof(double) * (size_t)len);
        w->seg[kept] = dst;
        w->stored_doubles += len;
    }
    w->n_stored = kept;
    w->stride = old_stride * 2;
    w->block_first = -1;
}

/* Keep vt_k (now in buf[cur]) if k is on the stride. */
static int keep(sweep *w, int64_t k)
{
    if (k % w->stride) return PHASE_OK;
    int64_t len = seg_len(w, k);
    if (w->stored_doubles + len > w->store_limit) {
        thin_out(w);
        if (k % w->stride) return PHASE_OK;
    }
    int64_t cap = w->seg_cap;
    double **sg = sweep_grow(w->seg, &cap, w->n_stored + 1, sizeof(double *));
    if (!sg) return phase_fail(PHASE_ENOMEM, "out of memory keeping state vectors");
    w->seg = sg;
    w->seg_cap = cap;
    double *dst = NULL;
    if (len) {
        if (!(dst = arena_take(w, len)))
            return phase_fail(PHASE_ENOMEM, "out of memory keeping state vectors");
        memcpy(dst, w->buf[w->cur] + w->lo[k], sizeof(double) * (size_t)len);
    }
    w->seg[w->n_stored++] = dst;
    w->stored_doubles += len;
    return PHASE_OK;
}

/* buf[cur] has become vt_k: record a_k, b_k, the exponent and prefix maxima.
 * Inlined into the step loop: as a call (six arguments, the sweep's fields
 * reloaded) it cost a tenth of a small model's sweep. */
SWEEP_ALWAYS_INLINE int record(sweep *w, const phase_graph *g, int64_t k, double total,
                               int32_t shift, const double *dtotal)
{
    int st = k < w->seq_cap ? PHASE_OK : sequences_room(w, k + 1); /* a call per step was 4 % */
    if (st) return st;
    const double *v = w->buf[w->cur];
    double a = 0.0;
    for (int32_t q = 0; q < g->n_exit_states; q++) {
        int32_t i = g->exit_states[q];
        a += v[i] * w->s[i];
    }
    w->am[k] = a;
    w->bm[k] = total;
    if (k == 0) {
        w->c_sum = w->c0;
        w->c_comp = 0.0;
    } else { /* c_k = c_{k-1} + a_{k-1} / Lambda, compensated (Neumaier) */
        const int64_t e = w->ex[k - 1];
        const double x = (e == 0 ? w->am[k - 1] : e > -1100 ? ldexp(w->am[k - 1], (int)e) : 0.0) /
                         w->Lambda; /* ldexp(x, 0) is x: no libm call in the common case */
        const double t = w->c_sum + x;
        w->c_comp += w->c_sum >= x ? (w->c_sum - t) + x : (x - t) + w->c_sum;
        w->c_sum = t;
    }
    w->cm[k] = w->c_sum + w->c_comp;
    w->shift[k] = shift;
    w->lo[k] = w->buf_lo[w->cur];
    w->hi[k] = w->buf_hi[w->cur];
    w->ex[k] = k == 0 ? w->e0 : w->ex[k - 1] - shift;
    int64_t la = sweep_log2_bound(a, w->ex[k]), lb = sweep_log2_bound(total, w->ex[k]);
    w->pmax_a[k] = k == 0 || la > w->pmax_a[k - 1] ? la : w->pmax_a[k - 1];
    w->pmax_b[k] = k == 0 || lb > w->pmax_b[k - 1] ? lb : w->pmax_b[k - 1];
    w->K = k;
    if (!w->store) return PHASE_OK;
    w->adj_a[k] = w->adj_b[k] = w->adj_c[k] = 0.0;
    if (sweep_tangents_on(w)) {
        const int32_t d = g->d;
        const double *dv = w->dbuf[w->cur];
        double *da = w->da + k * d, *db = w->db + k * d;
        for (int32_t m = 0; m < d; m++) {
            da[m] = 0.0;
            db[m] = dtotal ? dtotal[m] : 0.0; /* alpha does not depend on theta */
        }
        for (int32_t q = 0; q < g->n_exit_states; q++) {
            const int32_t i = g->exit_states[q];
            for (int32_t m = 0; m < d; m++)
                da[m] += dv[(size_t)i * d + m] * w->s[i] + v[i] * w->ds[(size_t)i * d + m];
        }
    }
    return w->mode == PHASE_GRADIENT_REVERSE ? keep(w, k) : PHASE_OK;
}


/* Rates at theta, the uniformization rate (the largest out-rate when
 * Lambda is 0, else Lambda) and P; both buffers become all zero. */
static int set_rates(sweep *w, const phase_graph *g, const double *theta, double Lambda)
{
    int st = phase_graph_rates(g, theta, w->rate);
    if (st) return st;
    const int32_t n = g->n;
    /* Both buffers become all zero (lambda uses buf[1] as scratch first). */
    sweep_clear(w->buf[0], w->buf_lo[0], w->buf_hi[0]);
    if (sweep_tangents_on(w))
        for (int c = 0; c < 2; c++)
            sweep_clear_tangents(w->dbuf[c], w->buf_lo[c], w->buf_hi[c], g->d);
    double *lambda = w->buf[1];
    for (int32_t i = 0; i < n; i++) lambda[i] = 0.0, w->s[i] = 0.0;
    for (int64_t e = 0; e < g->n_edges; e++) {
        lambda[g->src[e]] += w->rate[e];
        if (g->dst[e] == PHASE_ABSORBING) w->s[g->src[e]] += w->rate[e];
    }
    double L = 0.0, smax = 0.0, mass = 0.0;
    for (int32_t i = 0; i < n; i++) {
        if (lambda[i] > L) L = lambda[i];
        if (w->s[i] > smax) smax = w->s[i];
        mass += g->alpha[i];
    }
    if (g->discrete) {
        if (L > 1.0 + 1e-12) {
            sweep_clear(lambda, 0, n - 1);
            return phase_fail(PHASE_EDOMAIN,
                              "out-probabilities of a state sum to %.17g > 1 at this theta", L);
        }
        L = 1.0;
    } else if (Lambda > 0.0) {
        L = Lambda; /* states faster than it never hold mass in this segment */
    } else if (L == 0.0) {
        L = 1.0; /* nothing moves; any Lambda > 0 is exact */
    }
    w->Lambda = L;
    w->smax = smax;
    w->c_max = mass;
    for (int32_t i = 0; i < n; i++) {
        double d = 1.0 - lambda[i] / L;
        w->diag[i] = d > 0.0 ? d : 0.0;
    }
    sweep_clear(lambda, 0, n - 1);
    w->buf_lo[0] = w->buf_lo[1] = 0;
    w->buf_hi[0] = w->buf_hi[1] = -1;
    for (int64_t q = 0; q < g->n_trans; q++) {
        w->in_p[q] = w->rate[g->in_edge[q]] / L;
        w->out_p[q] = w->rate[g->out_edge[q]] / L;
    }
    for (int32_t j = 0; w->one_src && j < n; j++)
        if (g->in_ptr[j + 1] > g->in_ptr[j]) w->one_p[j] = w->in_p[g->in_ptr[j]];
    if (sweep_tangents_on(w)) sweep_tangent_coefficients(w, g, L);
    w->n_stored = 0;
    w->stored_doubles = 0;
    w->fill_chunk = 0;
    w->fill_pos = 0;
    w->stride = 1;
    w->block_first = -1;
    w->trunc = 0.0;
    w->cur = 0;
    return PHASE_OK;
}

/* Add term k (now in buf[cur]) to the running segment-end sum, if any. */
static void accumulate(sweep *w, const phase_graph *g, int64_t k)
{
    if (k >= w->acc_n || w->lo[k] > w->hi[k]) return;
    if (w->acc_lo > w->acc_hi) w->acc_e = w->ex[k]; /* the first term: the largest exponent */
    const int64_t de = w->ex[k] - w->acc_e;          /* ex is non-increasing */
    if (de <= -1100) return;                          /* below every double: nothing to add */
    const double f = ldexp(w->acc_w[k], (int)de);
    const double *v = w->buf[w->cur];
    const int32_t lo = w->lo[k], hi = w->hi[k];
    for (int32_t i = lo; i <= hi; i++) w->acc_v[i] += f * v[i];
    if (sweep_tangents_on(w)) {
        const size_t d = (size_t)g->d;
        const double *dv = w->dbuf[w->cur];
        for (size_t x = (size_t)lo * d; x < ((size_t)hi + 1) * d; x++) w->acc_dv[x] += f * dv[x];
    }
    if (lo < w->acc_lo || w->acc_lo > w->acc_hi) w->acc_lo = lo;
    if (hi > w->acc_hi) w->acc_hi = hi;
}

int sweep_set_theta(sweep *w, const phase_graph *g, const double *theta)
{
    int st = set_rates(w, g, theta, 0.0);
    if (st) return st;
    /* Start the sweep at v_0 = alpha. */
    const int32_t n = g->n;
    double *v0 = w->buf[0], total = 0.0;
    int32_t first = n, last = -1;
    for (int32_t i = 0; i < n; i++) {
        total += (v0[i] = g->alpha[i]);
        if (v0[i] != 0.0) {
            if (first == n) first = i;
            last = i;
        }
    }
    w->buf_lo[0] = first <= last ? first : 0;
    w->buf_hi[0] = last;
    w->c0 = 0.0;
    w->e0 = 0;
    w->acc_n = 0;
    return record(w, g, 0, total, 0, NULL);
}

int sweep_start(sweep *w, const phase_graph *g, const double *theta, double Lambda,
                const double *v0, const double *dv0, int32_t lo, int32_t hi, int64_t e0,
                double c0)
{
    int st = set_rates(w, g, theta, Lambda);
    if (st) return st;
    double total = 0.0, *dtotal = NULL;
    for (int32_t i = lo; i <= hi; i++) total += (w->buf[0][i] = v0[i]);
    if (sweep_tangents_on(w)) {
        const size_t d = (size_t)g->d;
        dtotal = w->dtotal;
        for (size_t m = 0; m < d; m++) dtotal[m] = 0.0;
        for (int32_t i = lo; dv0 && i <= hi; i++)
            for (size_t m = 0; m < d; m++)
                dtotal[m] += (w->dbuf[0][(size_t)i * d + m] = dv0[(size_t)i * d + m]);
    }
    w->buf_lo[0] = lo <= hi ? lo : 0;
    w->buf_hi[0] = lo <= hi ? hi : -1;
    w->c0 = c0;
    w->e0 = e0;
    w->acc_lo = 0;
    w->acc_hi = -1;
    if ((st = record(w, g, 0, total, 0, dtotal))) return st;
    accumulate(w, g, 0);
    return PHASE_OK;
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
        const int c = w->cur, d = 1 - c;
        double total, *dtotal = NULL;
        if (sweep_tangents_on(w)) {
            dtotal = w->dtotal;
            total = sweep_forward_tangent(g, w, w->buf[c], w->dbuf[c], w->buf_lo[c],
                                          w->buf_hi[c], w->buf[d], w->dbuf[d], &w->buf_lo[d],
                                          &w->buf_hi[d], dtotal);
        } else if (w->one_src) {
            total = forward_one(g, w, w->buf[c], w->buf_lo[c], w->buf_hi[c], w->buf[d],
                                &w->buf_lo[d], &w->buf_hi[d]);
        } else {
            total = forward(g, w, w->buf[c], w->buf_lo[c], w->buf_hi[c], w->buf[d],
                            &w->buf_lo[d], &w->buf_hi[d]);
        }
        int32_t shift = 0;
        if (total > 0.0 && fast_ilogb(total) < RESCALE_EXP) {
            shift = -fast_ilogb(total);
            scale(w->buf[d], w->buf_lo[d], w->buf_hi[d], shift);
            if (sweep_tangents_on(w)) {
                scale(w->dbuf[d], w->buf_lo[d] * g->d, (w->buf_hi[d] + 1) * g->d - 1, shift);
                scale(dtotal, 0, g->d - 1, shift);
            }
            total *= ldexp(1.0, shift);
        }
        w->cur = d;
        int st = record(w, g, w->K + 1, total, shift, dtotal);
        if (st) return st;
        accumulate(w, g, w->K);
    }
    return PHASE_OK;
}

const double *sweep_vector(sweep *w, const phase_graph *g, int64_t k)
{
    const size_t n = (size_t)g->n;
    if (w->stride == 1) return seg_len(w, k) ? w->seg[k] : w->buf[0];
    const int64_t first = (k / w->stride) * w->stride;
    if (w->block_len < w->stride) {
        /* (Re)allocate stride full vectors, all zero. */
        free(w->block);
        free(w->block_lo);
        free(w->block_hi);
        w->block = calloc(n * (size_t)w->stride, sizeof(double));
        w->block_lo = malloc(sizeof(int32_t) * (size_t)w->stride);
        w->block_hi = malloc(sizeof(int32_t) * (size_t)w->stride);
        if (!w->block || !w->block_lo || !w->block_hi) {
            w->block_len = 0;
            return NULL;
        }
        for (int64_t j = 0; j < w->stride; j++) w->block_lo[j] = 0, w->block_hi[j] = -1;
        w->block_len = w->stride;
        w->block_first = -1;
    }
    if (first != w->block_first) {
        int64_t len = w->stride;
        if (first + len > w->K + 1) len = w->K + 1 - first;
        /* Slot 0: the kept vector, expanded; then recompute the others. */
        double *v0 = w->block;
        sweep_clear(v0, w->block_lo[0], w->block_hi[0]);
        if (seg_len(w, first))
            memcpy(v0 + w->lo[first], w->seg[first / w->stride],
                   sizeof(double) * (size_t)seg_len(w, first));
        w->block_lo[0] = w->lo[first];
        w->block_hi[0] = w->hi[first];
        for (int64_t j = 1; j < len; j++) {
            double *vn = w->block + (size_t)j * n;
            forward(g, w, vn - n, w->block_lo[j - 1], w->block_hi[j - 1], vn, &w->block_lo[j],
                    &w->block_hi[j]);
            if (w->shift[first + j]) scale(vn, w->block_lo[j], w->block_hi[j], w->shift[first + j]);
        }
        w->block_first = first;
    }
    return w->block + (size_t)(k - first) * n + (seg_len(w, k) ? w->lo[k] : 0);
}
