/*
 * Adaptive uniformization: the uniformization rate follows the states that
 * hold probability mass.
 *
 * One rate Lambda = max_i lambda_i for all time costs about Lambda t_max
 * terms, although in a stiff model (Kingman's coalescent: rates k(k-1)/2)
 * the fast states are empty long before t_max. Here the time axis is cut
 * into segments [tau_j, tau_j+1) of M / Lambda_j each (M = SEGMENT_TERMS
 * expected jumps). Segment j is an ordinary sweep (sweep.c) started from
 * v(tau_j) at the rate Lambda_j = the largest out-rate of any state
 * reachable from the support of v(tau_j), so P_j = I + S / Lambda_j is
 * stochastic on every state that can hold mass in the segment. A point t in
 * segment j is a Poisson sum of that segment's sequences at Lambda_j (t -
 * tau_j). The segment's end vector v(tau_j+1) = sum_k Pois(k; M) v_k is
 * summed while the sweep passes (terms 0..end_n-1, right tail below
 * DROP_REL tol). At the boundary, the states with the largest reach whose
 * joint mass is below DROP_REL tol of the total are dropped, which lowers
 * Lambda_j+1; with Lambda(t) ~ log(1 / DROP_REL tol) / t in Kingman's
 * coalescent, each segment is M terms and tau grows geometrically, so the
 * work grows with log(Lambda t_max) instead of Lambda t_max.
 *
 * Error control. Everything stays a sum of non-negative terms, so the
 * values only lose mass: the dropped mass and the truncated tail are added
 * to a bound err_v (absolute), which bounds the error of every later b and c
 * by err_v and of every later a by smax err_v (a unit of mass in any state
 * gives density at most smax, survival at most 1). chain_check turns that
 * into a relative bound per point; the caller redoes the theta with one
 * rate when a bound exceeds CHAIN_ERR_SHARE tol (far tails), so every value
 * keeps the single-rate path's error control.
 *
 * Gradients. f does not depend on the Lambda_j, tau_j or on which states
 * hold negligible mass, so, as Lambda in the single-rate sweep, they are
 * held fixed and the tangents go through the same steps: the segment end
 * sums the tangents with the same weights and the drop zeroes them with the
 * values. The reverse sweep (reverse.c) runs back through the segments,
 * passing each segment's adjoint of its start vector to the terms of the
 * previous segment's end sum.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"

#define SEGMENT_TERMS 64.0  /* M: expected jumps per segment */
#define DROP_REL 0x1p-30    /* drop and truncate below DROP_REL tol of the mass */
#define CHAIN_ERR_SHARE 0.25
#define MIN_TERMS 1024.0    /* below Lambda t_max = MIN_TERMS one rate is cheaper */
#define MIN_DROP 0.25       /* segments only if some reach is <= MIN_DROP Lambda_0 */
#define KEEP_GOING 0.97     /* a boundary that keeps Lambda above this share ends cutting */
#define REACH_PASSES 64

struct chain_drop {
    double reach, mass;
    int32_t i;
};

static int by_reach_desc(const void *a, const void *b)
{
    const struct chain_drop *x = a, *y = b;
    if (x->reach != y->reach) return x->reach < y->reach ? 1 : -1;
    return x->i < y->i ? -1 : x->i > y->i; /* ties in index order: deterministic */
}

/* Poisson(M) weights of terms 0..end_n-1, normalised, and the relative
 * right tail left out (computed from the mode outwards, as sweep_poisson). */
static int end_weights(chain *c)
{
    const double mu = SEGMENT_TERMS, eta = c->opts.tol * DROP_REL;
    const int64_t M = (int64_t)mu, cap = M + 64 + (int64_t)(40.0 * sqrt(mu));
    c->end_w = malloc(sizeof(double) * (size_t)cap);
    if (!c->end_w) return phase_fail(PHASE_ENOMEM, "out of memory for segment weights");
    double W = 1.0, wk = 1.0;
    c->end_w[M] = 1.0;
    for (int64_t k = M; k > 0; k--) W += (c->end_w[k - 1] = c->end_w[k] * ((double)k / mu));
    int64_t R = M;
    for (;;) {
        const double next = wk * (mu / (double)(R + 1));
        const double tail = next / (1.0 - mu / (double)(R + 2));
        if (tail <= eta * W || R + 2 >= cap) {
            c->end_tail = tail / W;
            break;
        }
        c->end_w[++R] = wk = next;
        W += next;
    }
    for (int64_t k = 0; k <= R; k++) c->end_w[k] /= W;
    c->end_n = R + 1;
    return PHASE_OK;
}

int chain_init(chain *c, const phase_graph *g, const phase_options *opts, int mode,
               double t_max)
{
    memset(c, 0, sizeof *c);
    c->g = g;
    c->opts = *opts;
    c->mode = mode;
    c->t_max = t_max;
    c->allow = opts->adaptive && !g->discrete && g->n > 0;
    c->seg_cap = 4;
    c->seg = calloc((size_t)c->seg_cap, sizeof(sweep));
    c->tau = malloc(sizeof(double) * (size_t)(c->seg_cap + 1));
    c->err_v = malloc(sizeof(scaled) * (size_t)c->seg_cap);
    c->err_c = malloc(sizeof(double) * (size_t)c->seg_cap);
    if (!c->seg || !c->tau || !c->err_v || !c->err_c)
        return phase_fail(PHASE_ENOMEM, "out of memory for the sweep workspace");
    c->n_alloc = 1;
    int st = sweep_init(&c->seg[0], g, opts, mode);
    if (st || !c->allow) return st;
    const size_t n = (size_t)g->n, ne = (size_t)(g->n_edges > 0 ? g->n_edges : 1);
    const size_t nd = mode == PHASE_GRADIENT_FORWARD ? n * (size_t)(g->d > 0 ? g->d : 1) : 1;
    c->lam = malloc(sizeof(double) * n);
    c->reach = malloc(sizeof(double) * n);
    c->rate = malloc(sizeof(double) * ne);
    c->drop = malloc(sizeof(struct chain_drop) * n);
    for (int b = 0; b < 2; b++) {
        c->acc_v[b] = calloc(n, sizeof(double));
        c->acc_dv[b] = calloc(nd, sizeof(double));
    }
    if (!c->lam || !c->reach || !c->rate || !c->drop || !c->acc_v[0] || !c->acc_v[1] ||
        !c->acc_dv[0] || !c->acc_dv[1])
        return phase_fail(PHASE_ENOMEM, "out of memory for the segment workspace");
    return end_weights(c);
}

void chain_free(chain *c)
{
    for (int32_t j = 0; j < c->n_alloc; j++) sweep_free(&c->seg[j]);
    free(c->seg);
    free(c->tau);
    free(c->err_v);
    free(c->err_c);
    free(c->lam);
    free(c->reach);
    free(c->rate);
    free(c->drop);
    free(c->end_w);
    for (int b = 0; b < 2; b++) {
        free(c->acc_v[b]);
        free(c->acc_dv[b]);
    }
    memset(c, 0, sizeof *c);
}

/* Out-rates and reach at theta. Returns 0 when segments cannot help or are
 * not safe: a zero rate with a parameter coefficient (its tangent flows
 * where no mass does, past the states the drop looks at), or a reach that
 * did not settle. The reach is the least fixed point of
 * reach_i = max(lam_i, reach_j for i -> j), by passes from the last state
 * down (one pass and a check for graphs numbered from the start). */
static int reach_at(chain *c)
{
    const phase_graph *g = c->g;
    const int32_t n = g->n;
    if (phase_graph_rates(g, c->theta, c->rate)) return 0;
    for (int32_t i = 0; i < n; i++) c->lam[i] = 0.0;
    for (int64_t e = 0; e < g->n_edges; e++) {
        if (c->rate[e] == 0.0 && g->coef_ptr[e + 1] > g->coef_ptr[e]) return 0;
        c->lam[g->src[e]] += c->rate[e];
    }
    memcpy(c->reach, c->lam, sizeof(double) * (size_t)n);
    int changed = 1;
    for (int pass = 0; changed && pass < REACH_PASSES; pass++) {
        changed = 0;
        for (int32_t i = n - 1; i >= 0; i--) {
            double r = c->reach[i];
            for (int64_t q = g->out_ptr[i]; q < g->out_ptr[i + 1]; q++)
                if (c->reach[g->out_dst[q]] > r) r = c->reach[g->out_dst[q]];
            if (r != c->reach[i]) c->reach[i] = r, changed = 1;
        }
    }
    return !changed;
}

static int grow_segments(chain *c, int32_t need)
{
    if (need > c->seg_cap) {
        int32_t cap = c->seg_cap * 2;
        sweep *s = realloc(c->seg, sizeof(sweep) * (size_t)cap);
        if (s) c->seg = s;
        double *tau = realloc(c->tau, sizeof(double) * (size_t)(cap + 1));
        if (tau) c->tau = tau;
        scaled *ev = realloc(c->err_v, sizeof(scaled) * (size_t)cap);
        if (ev) c->err_v = ev;
        double *ec = realloc(c->err_c, sizeof(double) * (size_t)cap);
        if (ec) c->err_c = ec;
        if (!s || !tau || !ev || !ec) return phase_fail(PHASE_ENOMEM, "out of memory for segments");
        c->seg_cap = cap;
    }
    while (c->n_alloc < need) {
        sweep *w = &c->seg[c->n_alloc++];
        int st = sweep_init(w, c->g, &c->opts, c->mode);
        if (st) return st;
    }
    return PHASE_OK;
}

/* Start segment j at time tau from v 2^e (zero outside [lo, hi]) at rate
 * Lambda; it sums its end vector unless it is the last one. */
static int start_segment(chain *c, int32_t j, double tau, double Lambda, const double *v,
                         const double *dv, int32_t lo, int32_t hi, int64_t e, double c0)
{
    int st = grow_segments(c, j + 1);
    if (st) return st;
    const phase_graph *g = c->g;
    double end = tau + SEGMENT_TERMS / Lambda;
    /* Cutting again pays only if at least two more segments' worth of time remain. */
    c->final = !(end + SEGMENT_TERMS / Lambda < c->t_max);
    sweep *w = &c->seg[j];
    w->acc_n = 0;
    if (!c->final) {
        const int b = j % 2;
        const size_t n = (size_t)g->n, d = c->mode == PHASE_GRADIENT_FORWARD ? (size_t)g->d : 0;
        memset(c->acc_v[b], 0, sizeof(double) * n);
        if (d) memset(c->acc_dv[b], 0, sizeof(double) * n * d);
        w->acc_w = c->end_w;
        w->acc_n = c->end_n;
        w->acc_v = c->acc_v[b];
        w->acc_dv = c->acc_dv[b];
    }
    c->tau[j] = tau;
    c->tau[j + 1] = c->final ? INFINITY : end;
    c->n_seg = j + 1;
    return sweep_start(w, g, c->theta, Lambda, v, dv, lo, hi, e, c0);
}

int chain_set_theta(chain *c, const double *theta, int adaptive)
{
    const phase_graph *g = c->g;
    c->theta = theta;
    c->chain_err = 0.0;
    c->final = 1;
    c->n_seg = 1;
    c->tau[0] = 0.0;
    c->tau[1] = INFINITY;
    c->err_v[0] = (scaled){0.0, 0};
    c->err_c[0] = 0.0;
    c->seg[0].acc_n = 0;
    if (!adaptive || !c->allow || !reach_at(c)) return sweep_set_theta(&c->seg[0], g, theta);
    double L0 = 0.0, low = INFINITY;
    int32_t lo = g->n, hi = -1;
    for (int32_t i = 0; i < g->n; i++) {
        if (c->reach[i] < low) low = c->reach[i];
        if (g->alpha[i] == 0.0) continue;
        if (c->reach[i] > L0) L0 = c->reach[i];
        if (lo == g->n) lo = i;
        hi = i;
    }
    if (!(L0 * c->t_max > MIN_TERMS) || !(low <= MIN_DROP * L0))
        return sweep_set_theta(&c->seg[0], g, theta);
    return start_segment(c, 0, 0.0, L0, g->alpha, NULL, lo <= hi ? lo : 0, hi, 0, 0.0);
}

/* Close the last segment: its end vector, the drop, the next segment. */
static int open_next(chain *c)
{
    const phase_graph *g = c->g;
    const int32_t J = c->n_seg - 1, b = J % 2;
    int st = grow_segments(c, J + 2); /* first: it may move the segments */
    if (st) return st;
    sweep *w = &c->seg[J];
    if ((st = sweep_ensure(w, g, c->end_n - 1))) return st;
    w->acc_n = 0; /* later terms of this segment (for its points) are not summed */
    const size_t d = c->mode == PHASE_GRADIENT_FORWARD ? (size_t)g->d : 0;
    double *v = c->acc_v[b], *dv = c->acc_dv[b];
    /* States by reach, fastest first; drop whole groups of equal reach while
     * their joint mass stays below DROP_REL tol of the total. */
    int32_t cnt = 0;
    double total = 0.0;
    for (int32_t i = w->acc_lo; i <= w->acc_hi; i++) {
        if (v[i] > 0.0) {
            c->drop[cnt++] = (struct chain_drop){c->reach[i], v[i], i};
            total += v[i];
        } else if (d) { /* no mass, no tangent: see reach_at */
            memset(dv + (size_t)i * d, 0, sizeof(double) * d);
        }
    }
    qsort(c->drop, (size_t)cnt, sizeof *c->drop, by_reach_desc);
    const double budget = c->opts.tol * DROP_REL * total;
    double dropped = 0.0;
    int32_t p = 0;
    while (p < cnt) {
        int32_t q = p;
        double mass = 0.0;
        while (q < cnt && c->drop[q].reach == c->drop[p].reach) mass += c->drop[q++].mass;
        if (dropped + mass > budget) break;
        dropped += mass;
        p = q;
    }
    for (int32_t x = 0; x < p; x++) {
        const int32_t i = c->drop[x].i;
        v[i] = 0.0;
        if (d) memset(dv + (size_t)i * d, 0, sizeof(double) * d);
    }
    double Lambda = p < cnt ? c->drop[p].reach : 0.0;
    int32_t lo = g->n, hi = -1;
    double kept = 0.0;
    for (int32_t x = p; x < cnt; x++) {
        const int32_t i = c->drop[x].i;
        lo = i < lo ? i : lo;
        hi = i > hi ? i : hi;
        kept += c->drop[x].mass;
    }
    /* Rescale the start vector to a sum in [1/2, 1). */
    int64_t e = w->acc_e;
    if (kept > 0.0) {
        const int sh = fast_ilogb(kept) + 1;
        const double f = ldexp(1.0, -sh);
        for (int32_t i = lo; i <= hi; i++) v[i] *= f;
        for (size_t x = (size_t)lo * d; d && x < ((size_t)hi + 1) * d; x++) dv[x] *= f;
        e += sh;
    }
    /* What this boundary loses: the dropped mass and the truncated tail
     * (twice: terms left out and the normalisation over those kept). */
    scaled lost = c->err_v[J];
    const scaled parts[2] = {{dropped, w->acc_e}, {2.0 * c->end_tail * w->bm[0], w->ex[0]}};
    for (int x = 0; x < 2; x++) {
        if (parts[x].m == 0.0) continue;
        if (lost.m == 0.0) {
            lost = parts[x];
        } else if (parts[x].e <= lost.e) {
            const int64_t de = parts[x].e - lost.e;
            lost.m += de > -1100 ? ldexp(parts[x].m, (int)de) : 0.0;
        } else {
            const int64_t de = lost.e - parts[x].e;
            lost.m = parts[x].m + (de > -1100 ? ldexp(lost.m, (int)de) : 0.0);
            lost.e = parts[x].e;
        }
    }
    double c0 = 0.0;
    for (int64_t k = 0; k < c->end_n; k++) c0 += c->end_w[k] * w->cm[k];
    const double tau = c->tau[J + 1];
    if (Lambda == 0.0) Lambda = 1.0; /* nothing left moves */
    const int more = Lambda <= KEEP_GOING * w->Lambda;
    c->err_v[J + 1] = lost;
    c->err_c[J + 1] = c->err_c[J] + 2.0 * c->end_tail * w->c_max;
    /* A start vector from the other buffer: the new segment sums into [b ^ 1]. */
    st = start_segment(c, J + 1, tau, Lambda, v, d ? dv : NULL, lo <= hi ? lo : 0, hi, e, c0);
    if (!st && !more) { /* the rate no longer falls: the new segment is the last */
        c->seg[J + 1].acc_n = 0;
        c->final = 1;
        c->tau[J + 2] = INFINITY;
    }
    return st;
}

int chain_segment(chain *c, double x, int32_t *j)
{
    while (!c->final && x >= c->tau[c->n_seg]) {
        int st = open_next(c);
        if (st) return st;
    }
    int32_t lo = 0, hi = c->n_seg - 1; /* the largest j with tau[j] <= x */
    while (lo < hi) {
        const int32_t mid = (lo + hi + 1) / 2;
        if (c->tau[mid] <= x) lo = mid;
        else hi = mid - 1;
    }
    *j = lo;
    return PHASE_OK;
}

void chain_check(chain *c, int32_t j, int which, scaled x)
{
    if (j == 0) return;
    const sweep *w = &c->seg[j];
    scaled bound = c->err_v[j];
    if (which == SEQ_A) bound.m *= w->smax;
    double rel;
    if (x.m > 0.0) {
        const int64_t de = bound.e - x.e;
        rel = bound.m > 0.0 ? (de < 1100 ? ldexp(bound.m / x.m, (int)(de > -1100 ? de : -1100))
                                         : INFINITY)
                            : 0.0;
        if (which == SEQ_C && x.e == 0) rel += c->err_c[j] / x.m;
    } else {
        rel = bound.m > 0.0 || (which == SEQ_C && c->err_c[j] > 0.0) ? INFINITY : 0.0;
    }
    if (rel > c->chain_err) c->chain_err = rel;
}

int chain_retry(const chain *c, int st)
{
    if (c->n_seg == 1 || st == PHASE_ENOMEM || st == PHASE_EINVAL) return 0;
    return st != PHASE_OK || c->chain_err > CHAIN_ERR_SHARE * c->opts.tol;
}

void chain_fold_c(chain *c)
{
    for (int32_t j = c->n_seg - 1; j >= 0; j--) {
        sweep *w = &c->seg[j];
        double adj_c0 = 0.0; /* c_k = c_0 + ...: d c_k / d c_0 = 1 */
        for (int64_t k = 0; k <= w->K; k++) adj_c0 += w->adj_c[k];
        sweep_fold_c(w);
        if (j == 0 || adj_c0 == 0.0) continue;
        sweep *prev = &c->seg[j - 1]; /* c_0 = sum_k end_w[k] c_k of prev, k < end_n */
        for (int64_t k = 0; k < c->end_n; k++) prev->adj_c[k] += c->end_w[k] * adj_c0;
    }
}
