/*
 * The reverse (adjoint) sweep of the log-likelihood gradient, segment by
 * segment.
 *
 * Within one segment (rate Lambda, P = I + S / Lambda) the log-likelihood
 * is, to first order, L = sum_k A_k (vt_k . s) + B_k (vt_k . 1) + l . vt_0
 * of the next segment's start (A_k = adj_a[k], B_k = adj_b[k], scaled by
 * 2^ex[k]). Lambda is held fixed (f does not depend on it), so the adjoint
 *     u_K = A_K s + B_K 1 + F_K l,   u_k = A_k s + B_k 1 + F_k l + 2^shift[k+1] P u_{k+1}
 * gives dL/dP_ij = sum_k v_k[i] u_{k+1}[j] and dL/ds_i = sum_k A_k v_k[i],
 * hence dL/dw for every edge, and dL/dtheta = coef^T dL/dw: the cost does
 * not depend on the number of parameters.
 *
 * Segments (chain.c). The next segment starts from vt'_0 = mask (sum_{k <
 * end_n} end_w[k] 2^(ex[k] - e0') vt_k) (the segment's end sum, without the
 * dropped states), so its adjoint at k = 0, l = mask u'_0, enters this
 * segment's terms k < end_n with F_k = end_w[k] 2^(ex[k] - e0'). The sweep
 * runs from the last segment back to the first, each at its own Lambda;
 * each segment's gradient is added to the total. The drop and the rates
 * are held fixed like Lambda, so this is the exact derivative of what the
 * forward sweep computed, as in forward mode (chain.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"

int reverse_init(reverse_ws *r, const phase_graph *g)
{
    memset(r, 0, sizeof *r);
    /* One zeroed block for every array (link must start at zero; the others
     * are written before they are read): one allocation, one free. */
    const size_t n = (size_t)g->n, nt = (size_t)(g->n_trans > 0 ? g->n_trans : 1);
    const size_t ne = (size_t)(g->n_edges > 0 ? g->n_edges : 1), d = (size_t)(g->d > 0 ? g->d : 1);
    r->mem = calloc(5 * n + nt + ne + d, sizeof(double));
    if (!r->mem) return phase_fail(PHASE_ENOMEM, "out of memory for the reverse sweep");
    r->u = r->mem;
    r->un = r->u + n;
    r->D = r->un + n;
    r->H = r->D + n;
    r->link = r->H + n;
    r->G = r->link + n;
    r->gw = r->G + nt;
    r->gd = r->gw + ne;
    return PHASE_OK;
}

void reverse_free(reverse_ws *r)
{
    free(r->mem);
    memset(r, 0, sizeof *r);
}

/* The incoming adjoint of the next segment's start: l = link * 2^link_e on
 * [link_lo, link_hi], F_k = end_w[k] 2^(ex[k] - e0) for k < end_n. */
typedef struct {
    const double *end_w;
    int64_t end_n, e0, link_e;
    int32_t link_lo, link_hi;
} link_in;

/* log2 of F_k l's largest term, or NEG_INF_LOG2 without a link. */
static int64_t link_log2(const sweep *w, const reverse_ws *r, const link_in *in)
{
    if (!in || in->link_lo > in->link_hi) return NEG_INF_LOG2;
    double big = 0.0;
    for (int32_t i = in->link_lo; i <= in->link_hi; i++)
        if (fabs(r->link[i]) > big) big = fabs(r->link[i]);
    int64_t best = NEG_INF_LOG2;
    for (int64_t k = 0; big > 0.0 && k < in->end_n && k <= w->K; k++) {
        const int64_t lb = sweep_log2_bound(in->end_w[k], w->ex[k] - in->e0);
        if (lb > best) best = lb;
    }
    return best == NEG_INF_LOG2 ? best : best + sweep_log2_bound(big, in->link_e);
}

/* Scale adj_a and adj_b by 2^shift so that the largest of them and of the
 * link's terms is in [1, 2); returns shift. The gradient is linear in them:
 * scaling by an exact power of two keeps the reverse sweep's values clear
 * of FLUSH_BELOW when the loglik's sensitivity is tiny (log S(c) ~ -1e-300
 * at a tiny c). */
static int adjoint_shift(sweep *w, int64_t link_lb)
{
    double big = 0.0;
    for (int64_t k = 0; k <= w->K; k++) {
        if (fabs(w->adj_a[k]) > big) big = fabs(w->adj_a[k]);
        if (fabs(w->adj_b[k]) > big) big = fabs(w->adj_b[k]);
    }
    int64_t lb = big > 0.0 && isfinite(big) ? fast_ilogb(big) : NEG_INF_LOG2;
    if (link_lb - 1 > lb) lb = link_lb - 1;
    if (lb == NEG_INF_LOG2) return 0;
    const int shift = (int)(lb > 1000 ? -1000 : lb < -1000 ? 1000 : -lb);
    for (int64_t k = 0; k <= w->K; k++) {
        w->adj_a[k] = ldexp(w->adj_a[k], shift);
        w->adj_b[k] = ldexp(w->adj_b[k], shift);
    }
    return shift;
}

/* F_k 2^shift, the link's weight at term k in the shifted units (0 past it). */
static double link_weight(const sweep *w, const link_in *in, int64_t k, int shift)
{
    if (!in || k >= in->end_n || in->link_lo > in->link_hi) return 0.0;
    int64_t e = w->ex[k] - in->e0 + in->link_e + shift;
    if (e <= -1100) return 0.0;
    return ldexp(in->end_w[k], (int)(e < 1100 ? e : 1100));
}

/* u[i] += f link[i] on [lo, hi] clipped to the link's range. */
static void add_link(double *u, const reverse_ws *r, const link_in *in, double f, int32_t lo,
                     int32_t hi)
{
    if (f == 0.0) return;
    if (lo < in->link_lo) lo = in->link_lo;
    if (hi > in->link_hi) hi = in->link_hi;
    for (int32_t i = lo; i <= hi; i++) u[i] += f * r->link[i];
}

/* G_q accumulates v_k[i] (u_{k+1}[j] - u_{k+1}[i]) for the transient edge
 * q = i -> j (the -u[i] is the diagonal's share); D and H are needed only
 * for states with exits. Step k touches only states near the support of
 * v_k and v_{k-1}: G needs u_{k+1} on supp(v_k) and its successors, and
 * u_{k+1} was computed on exactly that range (one step of reach from
 * [lo[k], hi[k]]). Entries outside the computed range are stale but finite
 * and are only ever multiplied by zero entries of v. Adds this segment's
 * gradient to grad; leaves u_0 in r->un and vt_0 in *v0 (its range). */
static int reverse_sweep(sweep *w, const phase_graph *g, reverse_ws *r, const link_in *in,
                         double *grad, const double **v0)
{
    const int shift = adjoint_shift(w, link_log2(w, r, in));
    const int32_t n = g->n, n_exit = g->n_exit_states;
    const int32_t *exits = g->exit_states;
    const int64_t K = w->K;
    const double *adj_a = w->adj_a, *adj_b = w->adj_b, *s = w->s, *diag = w->diag;
    const int64_t *out_ptr = g->out_ptr;
    const int32_t *out_dst = g->out_dst;
    const double *out_p = w->out_p;
    double *un = r->un, *u = r->u, *D = r->D, *H = r->H, *G = r->G;

    const double *seg = sweep_vector(w, g, K);
    if (!seg) return phase_fail(PHASE_ENOMEM, "out of memory recomputing state vectors");
#define V_AT(k, i) ((i) >= w->lo[k] && (i) <= w->hi[k] ? seg[(i) - w->lo[k]] : 0.0)
    for (int32_t i = 0; i < n; i++) {
        un[i] = adj_b[K];
        u[i] = D[i] = H[i] = 0.0;
    }
    if (in) add_link(un, r, in, link_weight(w, in, K, shift), 0, n - 1);
    for (int32_t q = 0; q < n_exit; q++) {
        const int32_t i = exits[q];
        un[i] += adj_a[K] * s[i];
        H[i] = adj_a[K] * V_AT(K, i);
    }
    memset(G, 0, sizeof(double) * (size_t)(g->n_trans > 0 ? g->n_trans : 1));
    for (int64_t k = K - 1; k >= 0; k--) {
        seg = sweep_vector(w, g, k);
        if (!seg) return phase_fail(PHASE_ENOMEM, "out of memory recomputing state vectors");
        const double sig = ldexp(1.0, w->shift[k + 1]);
        const double A = adj_a[k], B = adj_b[k];
        const int32_t lo = w->lo[k], hi = w->hi[k];
        /* u_k is read next on one step of reach from v_{k-1}'s range. */
        int32_t a = 0, b = -1;
        if (k >= 1 && w->lo[k - 1] <= w->hi[k - 1]) {
            a = g->reach_lo[w->lo[k - 1]];
            b = g->reach_hi[w->hi[k - 1]];
        }
        /* Outside supp(v_k): only u. */
        for (int32_t i = a; i <= b; i++) {
            if (i >= lo && i <= hi) { /* done in the loop below */
                i = hi;
                continue;
            }
            double acc = diag[i] * un[i];
            for (int64_t q = out_ptr[i]; q < out_ptr[i + 1]; q++) acc += out_p[q] * un[out_dst[q]];
            const double ui_new = sig * acc + B;
            u[i] = fabs(ui_new) < FLUSH_BELOW ? 0.0 : ui_new; /* as in the forward sweep */
        }
        /* On supp(v_k): u and the edge accumulators. Descending, so that the
         * kept vectors are read in one descending stream across steps. */
        int64_t q_end = hi >= lo ? out_ptr[hi + 1] : 0;
        for (int32_t i = hi; i >= lo; i--) {
            const int64_t q_begin = out_ptr[i];
            const double ui = un[i], vi = sig * seg[i - lo];
            double acc = diag[i] * ui;
            for (int64_t q = q_begin; q < q_end; q++) {
                const double x = un[out_dst[q]];
                acc += out_p[q] * x;
                G[q] += vi * (x - ui);
            }
            q_end = q_begin;
            const double ui_new = sig * acc + B;
            u[i] = fabs(ui_new) < FLUSH_BELOW ? 0.0 : ui_new;
        }
        if (in) { /* the next segment's start, on the ranges just computed */
            const double f = link_weight(w, in, k, shift);
            if (lo <= hi) {
                add_link(u, r, in, f, a, b < lo - 1 ? b : lo - 1);
                add_link(u, r, in, f, lo, hi);
                add_link(u, r, in, f, a > hi + 1 ? a : hi + 1, b);
            } else {
                add_link(u, r, in, f, a, b);
            }
        }
        for (int32_t q = 0; q < n_exit; q++) {
            const int32_t i = exits[q];
            const double vi = V_AT(k, i);
            D[i] += sig * vi * un[i];
            H[i] += A * vi;
            u[i] += A * s[i];
        }
        double *t = un;
        un = u;
        u = t;
    }
#undef V_AT
    r->un = un; /* u_0 */
    r->u = u;
    r->shift = shift;
    *v0 = seg;
    const double inv = 1.0 / w->Lambda;
    for (int64_t q = 0; q < g->n_trans; q++) r->gw[g->out_edge[q]] = G[q] * inv;
    for (int64_t x = 0; x < g->n_exit; x++) {
        const int64_t e = g->exit_edge[x];
        const int32_t i = g->src[e];
        r->gw[e] = H[i] - D[i] * inv;
    }
    double *gd = r->gd;
    for (int32_t m = 0; m < g->d; m++) gd[m] = 0.0;
    for (int64_t e = 0; e < g->n_edges; e++)
        for (int64_t q = g->coef_ptr[e]; q < g->coef_ptr[e + 1]; q++)
            gd[g->coef_idx[q]] += r->gw[e] * g->coef_val[q];
    for (int32_t m = 0; m < g->d; m++) grad[m] += shift ? ldexp(gd[m], -shift) : gd[m];
    return PHASE_OK;
}

int chain_reverse(chain *c, reverse_ws *r, double *grad)
{
    const phase_graph *g = c->g;
    for (int32_t m = 0; m < g->d; m++) grad[m] = 0.0;
    link_in in = {c->end_w, c->end_n, 0, 0, 0, -1};
    for (int32_t j = c->n_seg - 1; j >= 0; j--) {
        sweep *w = &c->seg[j];
        const double *v0 = NULL;
        int st = reverse_sweep(w, g, r, j < c->n_seg - 1 ? &in : NULL, grad, &v0);
        if (st || j == 0) return st;
        /* This segment's start: l = u_0 where it kept mass (the dropped
         * states and those without mass carry no derivative, as in forward
         * mode), in the units of this segment's shifted adjoint. */
        const int32_t lo = w->lo[0], hi = w->hi[0];
        memset(r->link, 0, sizeof(double) * (size_t)g->n);
        for (int32_t i = lo; i <= hi; i++) r->link[i] = v0[i - lo] > 0.0 ? r->un[i] : 0.0;
        in.link_lo = lo;
        in.link_hi = hi;
        in.e0 = w->ex[0];
        in.link_e = -(int64_t)r->shift; /* u_0 2^-shift is dL / dvt_0 */
    }
    return PHASE_OK;
}
