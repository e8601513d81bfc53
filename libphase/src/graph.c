/* Building a compiled graph and evaluating its edge rates at theta. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void phase_options_default(phase_options *opts)
{
    opts->tol = 1e-12;
    opts->memory_limit = (size_t)256 << 20;
    opts->gradient_mode = PHASE_GRADIENT_AUTO;
    opts->adaptive = 1;
}

void phase_graph_free(phase_graph *g)
{
    if (!g) return;
    free(g->alpha);
    free(g->src);
    free(g->dst);
    free(g->base);
    free(g->coef_ptr);
    free(g->coef_idx);
    free(g->coef_val);
    free(g->out_ptr);
    free(g->out_edge);
    free(g->out_dst);
    free(g->in_ptr);
    free(g->in_edge);
    free(g->in_src);
    free(g->exit_edge);
    free(g->exit_states);
    free(g->reach_lo);
    free(g->reach_hi);
    free(g);
}

int32_t phase_graph_n_states(const phase_graph *g) { return g->n; }
int32_t phase_graph_n_params(const phase_graph *g) { return g->d; }
int64_t phase_graph_n_edges(const phase_graph *g) { return g->n_edges; }

static int validate(int32_t n, int32_t d, const double *alpha, int64_t n_edges,
                    const int32_t *src, const int32_t *dst, const double *base,
                    const double *coef)
{
    if (n < 1) return phase_fail(PHASE_EINVAL, "n_states must be >= 1 (got %d)", (int)n);
    if (d < 0) return phase_fail(PHASE_EINVAL, "n_params must be >= 0 (got %d)", (int)d);
    if (n_edges < 0) return phase_fail(PHASE_EINVAL, "n_edges must be >= 0");
    if (!alpha) return phase_fail(PHASE_EINVAL, "alpha is NULL");
    if (n_edges > 0 && (!src || !dst || !base))
        return phase_fail(PHASE_EINVAL, "src, dst and base must not be NULL");
    if (d > 0 && n_edges > 0 && !coef)
        return phase_fail(PHASE_EINVAL, "coef is NULL but n_params = %d", (int)d);
    double mass = 0.0;
    for (int32_t i = 0; i < n; i++) {
        if (!(alpha[i] >= 0.0) || !isfinite(alpha[i]))
            return phase_fail(PHASE_EINVAL, "alpha[%d] = %g is not a probability", (int)i, alpha[i]);
        mass += alpha[i];
    }
    if (mass > 1.0 + 1e-12)
        return phase_fail(PHASE_EINVAL, "start distribution sums to %.17g > 1", mass);
    for (int64_t e = 0; e < n_edges; e++) {
        if (src[e] < 0 || src[e] >= n)
            return phase_fail(PHASE_EINVAL, "edge %lld: source %d out of range [0, %d)",
                              (long long)e, (int)src[e], (int)n);
        if (dst[e] != PHASE_ABSORBING && (dst[e] < 0 || dst[e] >= n))
            return phase_fail(PHASE_EINVAL, "edge %lld: target %d out of range", (long long)e,
                              (int)dst[e]);
        if (dst[e] == src[e])
            return phase_fail(PHASE_EINVAL, "edge %lld: self-loop at state %d", (long long)e,
                              (int)src[e]);
        if (!(base[e] >= 0.0) || !isfinite(base[e]))
            return phase_fail(PHASE_EINVAL, "edge %lld: base rate %g must be finite and >= 0",
                              (long long)e, base[e]);
        for (int32_t k = 0; k < d; k++)
            if (!isfinite(coef[e * d + k]))
                return phase_fail(PHASE_EINVAL, "edge %lld: coefficient %d is not finite",
                                  (long long)e, (int)k);
    }
    return PHASE_OK;
}

/* Counting sort of the transient edges by key (source or target). */
static void bucket(int32_t n, int64_t n_edges, const int32_t *dst, const int32_t *key,
                   int64_t *ptr, int64_t *order)
{
    memset(ptr, 0, sizeof(int64_t) * (size_t)(n + 1));
    for (int64_t e = 0; e < n_edges; e++)
        if (dst[e] != PHASE_ABSORBING) ptr[key[e] + 1]++;
    for (int32_t i = 0; i < n; i++) ptr[i + 1] += ptr[i];
    int64_t *fill = malloc(sizeof(int64_t) * (size_t)(n + 1));
    memcpy(fill, ptr, sizeof(int64_t) * (size_t)(n + 1));
    for (int64_t e = 0; e < n_edges; e++)
        if (dst[e] != PHASE_ABSORBING) order[fill[key[e]]++] = e;
    free(fill);
}

int phase_graph_new(phase_graph **out, int32_t n, int32_t d, const double *alpha,
                    int64_t n_edges, const int32_t *src, const int32_t *dst,
                    const double *base, const double *coef, int discrete)
{
    phase_clear_error();
    if (!out) return phase_fail(PHASE_EINVAL, "out is NULL");
    *out = NULL;
    int st = validate(n, d, alpha, n_edges, src, dst, base, coef);
    if (st) return st;

    phase_graph *g = calloc(1, sizeof *g);
    if (!g) return phase_fail(PHASE_ENOMEM, "out of memory");
    g->n = n;
    g->d = d;
    g->discrete = discrete != 0;
    g->n_edges = n_edges;
    size_t ne = (size_t)(n_edges > 0 ? n_edges : 1), nn = (size_t)n;

    int64_t nnz = 0;
    for (int64_t e = 0; e < n_edges; e++)
        for (int32_t k = 0; k < d; k++) nnz += coef[e * d + k] != 0.0;
    int64_t n_trans = 0;
    for (int64_t e = 0; e < n_edges; e++) n_trans += dst[e] != PHASE_ABSORBING;
    g->n_trans = n_trans;
    g->n_exit = n_edges - n_trans;
    size_t nt = (size_t)(n_trans > 0 ? n_trans : 1);

    g->alpha = malloc(sizeof(double) * nn);
    g->src = malloc(sizeof(int32_t) * ne);
    g->dst = malloc(sizeof(int32_t) * ne);
    g->base = malloc(sizeof(double) * ne);
    g->coef_ptr = malloc(sizeof(int64_t) * (ne + 1));
    g->coef_idx = malloc(sizeof(int32_t) * (size_t)(nnz > 0 ? nnz : 1));
    g->coef_val = malloc(sizeof(double) * (size_t)(nnz > 0 ? nnz : 1));
    g->out_ptr = malloc(sizeof(int64_t) * (nn + 1));
    g->out_edge = malloc(sizeof(int64_t) * nt);
    g->out_dst = malloc(sizeof(int32_t) * nt);
    g->in_ptr = malloc(sizeof(int64_t) * (nn + 1));
    g->in_edge = malloc(sizeof(int64_t) * nt);
    g->in_src = malloc(sizeof(int32_t) * nt);
    g->exit_edge = malloc(sizeof(int64_t) * (size_t)(g->n_exit > 0 ? g->n_exit : 1));
    g->exit_states = malloc(sizeof(int32_t) * nn);
    g->reach_lo = malloc(sizeof(int32_t) * nn);
    g->reach_hi = malloc(sizeof(int32_t) * nn);
    if (!g->reach_lo || !g->reach_hi || !g->alpha || !g->src || !g->dst || !g->base || !g->coef_ptr || !g->coef_idx ||
        !g->coef_val || !g->out_ptr || !g->out_edge || !g->out_dst || !g->in_ptr ||
        !g->in_edge || !g->in_src || !g->exit_edge || !g->exit_states) {
        phase_graph_free(g);
        return phase_fail(PHASE_ENOMEM, "out of memory building a graph with %lld edges",
                          (long long)n_edges);
    }
    memcpy(g->alpha, alpha, sizeof(double) * nn);
    if (n_edges > 0) {
        memcpy(g->src, src, sizeof(int32_t) * (size_t)n_edges);
        memcpy(g->dst, dst, sizeof(int32_t) * (size_t)n_edges);
        memcpy(g->base, base, sizeof(double) * (size_t)n_edges);
    }
    int64_t q = 0;
    for (int64_t e = 0; e < n_edges; e++) {
        g->coef_ptr[e] = q;
        for (int32_t k = 0; k < d; k++) {
            double c = coef[e * d + k];
            if (c != 0.0) {
                g->coef_idx[q] = k;
                g->coef_val[q] = c;
                q++;
            }
        }
    }
    g->coef_ptr[n_edges] = q;

    bucket(n, n_edges, g->dst, g->src, g->out_ptr, g->out_edge);
    for (int64_t p = 0; p < n_trans; p++) g->out_dst[p] = g->dst[g->out_edge[p]];
    bucket(n, n_edges, g->dst, g->dst, g->in_ptr, g->in_edge);
    for (int64_t p = 0; p < n_trans; p++) g->in_src[p] = g->src[g->in_edge[p]];

    /* Suffix minimum and prefix maximum of the edge targets (see internal.h). */
    for (int32_t i = 0; i < n; i++) g->reach_lo[i] = g->reach_hi[i] = i;
    for (int64_t p = 0; p < n_trans; p++) {
        int32_t i = g->src[g->out_edge[p]], j = g->out_dst[p];
        if (j < g->reach_lo[i]) g->reach_lo[i] = j;
        if (j > g->reach_hi[i]) g->reach_hi[i] = j;
    }
    for (int32_t i = n - 2; i >= 0; i--)
        if (g->reach_lo[i + 1] < g->reach_lo[i]) g->reach_lo[i] = g->reach_lo[i + 1];
    for (int32_t i = 1; i < n; i++)
        if (g->reach_hi[i - 1] > g->reach_hi[i]) g->reach_hi[i] = g->reach_hi[i - 1];

    char *has_exit = calloc(nn, 1);
    if (!has_exit) {
        phase_graph_free(g);
        return phase_fail(PHASE_ENOMEM, "out of memory");
    }
    int64_t x = 0;
    for (int64_t e = 0; e < n_edges; e++)
        if (g->dst[e] == PHASE_ABSORBING) {
            g->exit_edge[x++] = e;
            has_exit[g->src[e]] = 1;
        }
    g->n_exit_states = 0;
    for (int32_t i = 0; i < n; i++)
        if (has_exit[i]) g->exit_states[g->n_exit_states++] = i;
    free(has_exit);
    *out = g;
    return PHASE_OK;
}

int phase_graph_rates(const phase_graph *g, const double *theta, double *rates)
{
    phase_clear_error();
    if (!g || !rates || (g->d > 0 && !theta))
        return phase_fail(PHASE_EINVAL, "NULL argument to phase_graph_rates");
    int st = PHASE_OK;
    for (int64_t e = 0; e < g->n_edges; e++) {
        double w = g->base[e];
        for (int64_t q = g->coef_ptr[e]; q < g->coef_ptr[e + 1]; q++)
            w += g->coef_val[q] * theta[g->coef_idx[q]];
        rates[e] = w;
        if (!(w >= 0.0) || !isfinite(w)) {
            if (st == PHASE_OK)
                phase_fail(PHASE_EDOMAIN, "edge %lld (%d -> %d) has rate %g at this theta",
                           (long long)e, (int)g->src[e], (int)g->dst[e], w);
            st = PHASE_EDOMAIN;
        }
    }
    return st;
}
