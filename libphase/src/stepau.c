/*
 * Step-wise adaptive uniformization (van Moorsel and Sanders, 1994) for the
 * log-likelihood of exact and right-censored observations of a stiff
 * continuous graph, and for its densities (phase_eval).
 *
 * With any positive rates L_0, L_1, ... and v_{k+1} = v_k (I + S / L_k),
 * V(t) = sum_k p_k(t) v_k, where p(t) is the distribution of a pure-birth
 * chain N(t) (k -> k + 1 at rate L_k, N(0) = 0), satisfies V' = V S and
 * V(0) = alpha: V(t) = alpha e^{St}, an identity that needs no property of
 * the L_k. So f(t) = sum_k p_k(t) a_k with a_k = v_k . s, and P(T > c) =
 * sum_k p_k(c) b_k with b_k = v_k . 1 = b_0 - c_k, c_{k+1} = c_k + a_k / L_k
 * the mass absorbed: near 1 it is taken from its complement, a sum of
 * non-negative terms (as evaluate.c's censored terms).
 *
 * The rates. U_k is the support of step k, found from the graph: U_0 =
 * supp(alpha), U_{k+1} = out(U_k) + {i in U_k : P_k,ii != 0}; L_k is the
 * largest out-rate over U_k, as a function of theta: the out-rate of the
 * state that attains it (ties: the first). P_k = I + S / L_k is then
 * non-negative on every row that can carry mass or tangent, so no term is
 * negative and the tangents cannot grow. A state whose out-rate equals
 * L_k's as a function of theta (the same coefficients up to a common
 * factor) and at theta up to SNAP (the rounding of the rates' sums) gets
 * P_ii = 0 for every theta near: its mass and its tangent leave in one
 * step, and the support moves on. (With L_k held constant instead, its
 * tangent would stay behind on a state faster than every later L_k and
 * grow without bound.) In models whose fastest states empty in one jump
 * (coalescents: the out-rate depends on the number of lineages alone) the
 * support is the embedded jump chain's, one level per step, and the steps
 * touch each nonzero about once. Where they cannot, L_k stays high, the
 * support spreads over the layers of the graph's longest paths, and the
 * steps are declined once it spans MAX_SPAN more than one or they cost
 * MAX_SWEEPS full-graph steps (the chain's segments then do better); graphs
 * with a cycle (its states never leave the support) or with few nonzeros
 * per level (Kingman's one state: the birth chain would cost what the
 * chain's sweep costs) are left to the chain at once.
 * Between steps, states whose mass is below DROP_V tol / n of the total
 * (and was before) are dropped with their tangents; the mass is counted.
 *
 * Gradients (forward mode). v_k depends on theta through P_k = I + S / L_k
 * with L_k = lambda_top(theta): dv_{k+1} = dv_k P_k + v_k dP_k, dP_k =
 * (dS - S dL_k / L_k) / L_k; and the weights p_k(t) through the birth
 * rates: their tangents run through the same uniformization of the birth
 * chain (below), so df = sum_k dp_k a_k + p_k da_k.
 *
 * The weights p_k(t) are a stiff one-dimensional problem, solved by
 * adaptive uniformization of the birth chain itself (stepbirth.c).
 *
 * Error control. K steps are taken once the support is empty (exact) or a
 * Chernoff bound on P(N(t_max) >= K) is below TAIL_REL tol; the birth
 * chain's state K collects that tail. Per point, an absolute bound
 * smax * (tail(t) b_K + dropped + truncated)
 * on the error of f(t) must stay below ERR_SHARE tol f(t), or the theta is
 * declined and evaluated by the chain (as chain_retry does).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stepau.h"

#define SNAP 0x1p-48        /* lambda_i >= L (1 - SNAP): P_ii = 0 (16 ulps: rounding of the rates) */
#define TAIL_REL 0x1p-20    /* stop once P(N(t_max) >= K) <= TAIL_REL tol (Chernoff) */
#define DROP_V 0x1p-30     /* a step drops states whose mass is below DROP_V tol / n of the total */
#define ERR_SHARE 0.25      /* a point's relative bound may use this share of tol */
#define MAX_SPAN 3          /* decline once the support spans this many more layers, */
#define MAX_SWEEPS 4.0      /* or the steps cost this many full-graph steps, */
#define MIN_STEP_NNZ 0.5    /* or average fewer than this many nonzeros per step and */
#define SEG_WIDTH 64        /* birth state a segment term updates (at most this many) */
#define MIN_TERMS 256.0     /* not tried below Lambda t_max = MIN_TERMS (one rate is cheap) */
#define STEPAU_MAX_D 64     /* forward-mode tangents: parameters at most */
#define AUTO_FORWARD_D 8    /* PHASE_GRADIENT_AUTO: forward tangents up to this many */
#define CHECK_EVERY 16      /* steps between two tail checks */
#define MAX_STEPS ((int64_t)1 << 22)
#define TINY_F 1e-290       /* smaller densities are left to the chain's scaled path */
#define Q_SMALL 0x1p-10     /* log P(T > c) from its complement below this (as evaluate.c) */

struct obs {
    double t, w;
    int64_t i; /* exact: its index; right-censored: -1 */
};

static int by_time(const void *x, const void *y) /* ties in input order: deterministic */
{
    const struct obs *a = x, *b = y;
    if (a->t != b->t) return a->t < b->t ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

/* Whether the graph can pay at all: acyclic (a cycle keeps its states in
 * the support), with enough nonzeros per layer of its longest paths (the
 * steps, when every level empties in one) that the steps outweigh the
 * birth chain; 0 also when the scratch cannot be had (the chain runs). */
static int layered(const phase_graph *g, int32_t **layer_out)
{
    const int32_t n = g->n;
    int32_t *indeg = malloc(sizeof(int32_t) * (size_t)n), *queue = malloc(sizeof(int32_t) * (size_t)n);
    int32_t *layer = calloc((size_t)n, sizeof(int32_t));
    int32_t head = 0, tail = 0, depth = 0;
    if (indeg && queue && layer) {
        for (int32_t j = 0; j < n; j++) {
            indeg[j] = (int32_t)(g->in_ptr[j + 1] - g->in_ptr[j]);
            if (!indeg[j]) queue[tail++] = j;
        }
        while (head < tail) { /* Kahn's order; layer = longest path to the state */
            const int32_t i = queue[head++];
            depth = layer[i] > depth ? layer[i] : depth;
            for (int64_t q = g->out_ptr[i]; q < g->out_ptr[i + 1]; q++) {
                const int32_t j = g->out_dst[q];
                if (layer[i] + 1 > layer[j]) layer[j] = layer[i] + 1;
                if (!--indeg[j]) queue[tail++] = j;
            }
        }
    }
    free(indeg), free(queue);
    const double steps = (double)depth + 1.0, width = steps < SEG_WIDTH ? steps : SEG_WIDTH;
    const int ok = layer && tail == n && ((double)g->n_trans + n) / steps >= MIN_STEP_NNZ * width;
    if (ok) *layer_out = layer;
    else free(layer);
    return ok;
}

int stepau_new(stepau **out, const phase_graph *g, const phase_options *opts,
               const phase_data *data, int mode)
{
    *out = NULL;
    /* Forward tangents cost (1 + d) times the values, over a few steps: they
     * stand in for reverse mode when reverse was only the default's choice. */
    const int tangents = mode == PHASE_GRADIENT_FORWARD ||
                         (mode == PHASE_GRADIENT_REVERSE &&
                          opts->gradient_mode == PHASE_GRADIENT_AUTO && g->d <= AUTO_FORWARD_D);
    if (!opts->adaptive || g->discrete || g->n == 0 || data->n_interval ||
        (mode && !tangents) || g->d > STEPAU_MAX_D)
        return PHASE_OK;
    int32_t *layer = NULL;
    if (!layered(g, &layer)) return PHASE_OK;
    double mass = 0.0;
    for (int32_t i = 0; i < g->n; i++) mass += g->alpha[i];
    for (int64_t i = 0; i < data->n_exact; i++)
        if (data->exact[i] == 0.0 && mass < 1.0 - 1e-12) { /* the atom */
            free(layer);
            return PHASE_OK;
        }
    stepau *sa = calloc(1, sizeof *sa);
    if (!sa) {
        free(layer);
        return phase_fail(PHASE_ENOMEM, "out of memory for the step-wise workspace");
    }
    *out = sa;
    sa->layer = layer;
    sa->g = g;
    sa->tol = opts->tol;
    sa->d = tangents ? g->d : 0;
    const size_t n = (size_t)g->n, d = (size_t)sa->d, ne = (size_t)(g->n_edges ? g->n_edges : 1);
    sa->t = malloc(sizeof(double) * (size_t)(data->n_exact + 1));
    sa->wt = malloc(sizeof(double) * (size_t)(data->n_exact + 1));
    sa->rate = malloc(sizeof(double) * ne);
    sa->lam = malloc(sizeof(double) * n);
    sa->s = malloc(sizeof(double) * n);
    const size_t gd = (size_t)g->d;
    sa->dlam = calloc(n * gd + 1, sizeof(double));
    sa->ds = calloc(n * gd + 1, sizeof(double));
    for (int b = 0; b < 2; b++) {
        sa->v[b] = calloc(n, sizeof(double));
        sa->dv[b] = calloc(n * d + 1, sizeof(double));
        sa->fl[b] = calloc(n, 1);
    }
    if (!sa->t || !sa->wt || !sa->rate || !sa->lam || !sa->s || !sa->dlam || !sa->ds ||
        !sa->v[0] || !sa->v[1] || !sa->dv[0] || !sa->dv[1] || !sa->fl[0] || !sa->fl[1])
        return phase_fail(PHASE_ENOMEM, "out of memory for the step-wise workspace");
    /* Observations sorted by time, equal times merged (weights added);
     * slot[i]: the merged time of observation i (-1: weight 0). */
    const int64_t n_all = data->n_exact + data->n_right;
    struct obs *rec = malloc(sizeof(struct obs) * (size_t)(n_all + 1));
    sa->slot = malloc(sizeof(int64_t) * (size_t)(data->n_exact + 1));
    if (data->n_right) { /* reallocated below to the merged length */
        free(sa->t), free(sa->wt);
        sa->t = malloc(sizeof(double) * (size_t)(n_all + 1));
        sa->wt = malloc(sizeof(double) * (size_t)(n_all + 1));
        sa->wr = malloc(sizeof(double) * (size_t)(n_all + 1));
        if (!sa->t || !sa->wt || !sa->wr) {
            free(rec);
            return phase_fail(PHASE_ENOMEM, "out of memory for the observations");
        }
    }
    if (!rec || !sa->slot) {
        free(rec);
        return phase_fail(PHASE_ENOMEM, "out of memory for the observations");
    }
    int64_t m = 0;
    for (int64_t i = 0; i < data->n_exact; i++) {
        const double w = data->exact_weight ? data->exact_weight[i] : 1.0;
        sa->slot[i] = -1;
        if (w != 0.0) rec[m++] = (struct obs){data->exact[i], w, i};
    }
    for (int64_t i = 0; i < data->n_right; i++) {
        const double w = data->right_weight ? data->right_weight[i] : 1.0;
        if (w != 0.0) rec[m++] = (struct obs){data->right[i], w, -1 - i};
    }
    qsort(rec, (size_t)m, sizeof *rec, by_time);
    sa->n_obs = 0;
    for (int64_t i = 0; i < m; i++) {
        if (!sa->n_obs || sa->t[sa->n_obs - 1] != rec[i].t) {
            sa->t[sa->n_obs] = rec[i].t, sa->wt[sa->n_obs] = 0.0;
            if (sa->wr) sa->wr[sa->n_obs] = 0.0;
            sa->n_obs++;
        }
        if (rec[i].i < 0) {
            sa->wr[sa->n_obs - 1] += rec[i].w;
            continue;
        }
        sa->wt[sa->n_obs - 1] += rec[i].w;
        sa->slot[rec[i].i] = sa->n_obs - 1;
    }
    free(rec);
    sa->t_max = sa->n_obs ? sa->t[sa->n_obs - 1] : 0.0;
    sa->n_points = data->n_exact;
    for (int64_t e = 0; e < g->n_edges; e++) /* rates are linear in theta */
        for (int64_t q = g->coef_ptr[e]; q < g->coef_ptr[e + 1]; q++) {
            const size_t x = (size_t)g->src[e] * gd + (size_t)g->coef_idx[q];
            sa->dlam[x] += g->coef_val[q];
            if (g->dst[e] < 0) sa->ds[x] += g->coef_val[q];
        }
    sa->nnz = (double)g->n_trans + (double)g->n;
    int st = stepau_segment_weights(sa);
    const size_t J1 = (size_t)sa->J + 1, no = (size_t)sa->n_obs + 1;
    sa->pj = malloc(sizeof(double) * J1);
    sa->alpha_j = malloc(sizeof(double) * J1);
    sa->tail_j = malloc(sizeof(double) * J1);
    sa->beta_j = malloc(sizeof(double) * (J1 * d + 1));
    sa->f = malloc(sizeof(double) * no);
    sa->tailp = malloc(sizeof(double) * no);
    sa->df = malloc(sizeof(double) * (no * d + 1));
    if (!st && (!sa->pj || !sa->alpha_j || !sa->tail_j || !sa->beta_j || !sa->f || !sa->tailp ||
                !sa->df))
        st = phase_fail(PHASE_ENOMEM, "out of memory for the step-wise workspace");
    if (!st && sa->wr) {
        double **arr[] = {&sa->sb_j, &sa->sc_j, &sa->dsb_j, &sa->dsc_j,
                          &sa->S, &sa->C, &sa->dS, &sa->dC};
        const size_t len[] = {J1, J1, J1 * d + 1, J1 * d + 1, no, no, no * d + 1, no * d + 1};
        for (size_t i = 0; i < 8; i++)
            if (!(*arr[i] = malloc(sizeof(double) * len[i])))
                st = phase_fail(PHASE_ENOMEM, "out of memory for the step-wise workspace");
    }
    return st;
}

void stepau_free(stepau *sa)
{
    if (!sa) return;
    void *p[] = {sa->t, sa->wt, sa->dlam, sa->ds, sa->rate, sa->lam, sa->s, sa->v[0], sa->v[1],
                 sa->dv[0], sa->dv[1], sa->fl[0], sa->fl[1], sa->L, sa->a, sa->da, sa->sufmax,
                 sa->dL, sa->q, sa->y, sa->qn, sa->dq, sa->dy, sa->dqn, sa->pw, sa->pj, sa->alpha_j, sa->tail_j, sa->beta_j,
                 sa->f, sa->df, sa->tailp, sa->slot, sa->layer, sa->wr, sa->b, sa->c,
                 sa->db, sa->dc, sa->sb_j, sa->sc_j, sa->dsb_j, sa->dsc_j, sa->S, sa->C,
                 sa->dS, sa->dC};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
    free(sa);
}

/* Room for sequence index k (and the birth chain's K + 1 entries). */
static int grow_sequences(stepau *sa, int64_t k)
{
    if (k + 2 <= sa->cap) return PHASE_OK;
    int64_t cap = sa->cap ? sa->cap : 256;
    while (cap < k + 2) cap *= 2;
    const size_t c = (size_t)cap, d = (size_t)sa->d;
    double **arr[] = {&sa->L, &sa->a, &sa->sufmax, &sa->q, &sa->y, &sa->qn, &sa->b, &sa->c};
    for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++) {
        double *p = realloc(*arr[i], sizeof(double) * c);
        if (!p) return phase_fail(PHASE_ENOMEM, "out of memory for the step sequences");
        *arr[i] = p;
    }
    double **tan[] = {&sa->da, &sa->dq, &sa->dy, &sa->dqn, &sa->db, &sa->dc};
    for (size_t i = 0; i < sizeof tan / sizeof tan[0]; i++) {
        double *p = realloc(*tan[i], sizeof(double) * (c * d + 1));
        if (!p) return phase_fail(PHASE_ENOMEM, "out of memory for the step sequences");
        *tan[i] = p;
    }
    double *p = realloc(sa->dL, sizeof(double) * (c * (size_t)sa->g->d + 1));
    if (!p) return phase_fail(PHASE_ENOMEM, "out of memory for the step sequences");
    sa->dL = p;
    sa->cap = cap;
    return PHASE_OK;
}

/* Chernoff bound on P(N(t) >= K) = P(sum_{k<K} Exp(L_k) <= t):
 * min over s > 0 of exp(s t) prod_k L_k / (L_k + s), s by Newton steps on
 * the convex exponent from s = 0 (they approach the minimum from below;
 * any s gives a valid bound). */
static double birth_tail_bound(const double *L, int64_t K, double t)
{
    double s = 0.0, h = -t;
    for (int64_t k = 0; k < K; k++) h += 1.0 / L[k];
    if (!(h > 0.0)) return 1.0; /* the mean time to K is not past t */
    for (int it = 0; it < 40; it++) {
        double g = -t, gp = 0.0;
        for (int64_t k = 0; k < K; k++) {
            const double r = 1.0 / (L[k] + s);
            g += r, gp += r * r;
        }
        if (!(g > 1e-12 * t)) break;
        s += g / gp;
    }
    double expo = s * t;
    for (int64_t k = 0; k < K; k++) expo -= log1p(s / L[k]);
    return expo < 0.0 ? exp(expo) : 1.0;
}

/* Whether state j's out-rate is L_k's as a function of theta (the same
 * multiple of every parameter's coefficient sum) and equal to it at theta
 * up to SNAP: then P_jj = 0 for every theta near, and its tangent is 0. */
static int snaps(const stepau *sa, int32_t j, double L, const double *dL)
{
    const int32_t gd = sa->g->d;
    const double lj = sa->lam[j];
    if (lj < L * (1.0 - SNAP)) return 0;
    for (int32_t m = 0; m < gd; m++)
        if (fabs(sa->dlam[(size_t)j * gd + m] * L - lj * dL[m]) > SNAP * (fabs(lj * dL[m]) + 1e-300))
            return 0;
    return 1;
}

/* One step v_{k+1} = v_k P_k (and its tangents and support) from buffer c
 * into c ^ 1 at rate L = L_k(theta), dL its derivative; entries below thr
 * (mass) are dropped. Returns the work done, adds the snapped sliver and
 * the dropped mass to *lost. */
static double step(stepau *sa, int c, double L, const double *dL, double thr, double *lost)
{
    const phase_graph *g = sa->g;
    const int32_t d = sa->d, lo = sa->lo[c], hi = sa->hi[c], nb = c ^ 1;
    const double *v = sa->v[c], *dv = sa->dv[c];
    const uint8_t *fl = sa->fl[c];
    double *vn = sa->v[nb], *dvn = sa->dv[nb];
    uint8_t *fn = sa->fl[nb];
    if (sa->lo[nb] <= sa->hi[nb]) { /* the buffer holds v_{k-1}: clear its range */
        const size_t a = (size_t)sa->lo[nb], w = (size_t)(sa->hi[nb] - sa->lo[nb] + 1);
        memset(vn + a, 0, sizeof(double) * w);
        memset(fn + a, 0, w);
        if (d) memset(dvn + a * (size_t)d, 0, sizeof(double) * w * (size_t)d);
    }
    const int32_t nlo = g->reach_lo[lo], nhi = g->reach_hi[hi];
    const double invL = 1.0 / L;
    double cL[STEPAU_MAX_D]; /* dL / L */
    for (int32_t m = 0; m < d; m++) cL[m] = dL[m] * invL;
    for (int32_t j = nlo; j <= nhi; j++) {
        double x = 0.0, dj = 1.0;
        uint8_t in_any = 0, fj = 0, snapped = 0;
        if (j >= lo && j <= hi && fl[j]) {
            fj = 1;
            if ((snapped = (uint8_t)snaps(sa, j, L, dL))) {
                dj = 0.0;
            } else {
                dj = 1.0 - sa->lam[j] * invL;
            }
        }
        double *dx = dvn + (size_t)j * d;
        for (int32_t m = 0; m < d; m++) /* d P_jj = -(d lam_j - lam_j dL / L) / L */
            dx[m] = dj * dv[(size_t)j * d + m] -
                    (snapped ? 0.0 : v[j] * (sa->dlam[(size_t)j * d + m] - sa->lam[j] * cL[m]) * invL);
        for (int64_t q = g->in_ptr[j]; q < g->in_ptr[j + 1]; q++) {
            const int32_t i = g->in_src[q];
            if (i < lo || i > hi || !fl[i]) continue;
            const int64_t e = g->in_edge[q];
            const double r = sa->rate[e] * invL;
            x += v[i] * r;
            in_any = 1;
            if (!d) continue;
            for (int32_t m = 0; m < d; m++) dx[m] += (dv[(size_t)i * d + m] - v[i] * cL[m]) * r;
            for (int64_t p = g->coef_ptr[e]; p < g->coef_ptr[e + 1]; p++)
                dx[g->coef_idx[p]] += v[i] * g->coef_val[p] * invL;
        }
        vn[j] = v[j] * dj + x;
        if (vn[j] > 0.0 && vn[j] < thr && v[j] < thr) { /* negligible: drop */
            *lost += vn[j];
            vn[j] = 0.0;
            for (int32_t m = 0; m < d; m++) dx[m] = 0.0;
            continue;
        }
        fn[j] = (uint8_t)((fj && !snapped) || in_any);
    }
    int32_t a = nlo, b = nhi;
    while (a <= b && !fn[a]) a++;
    while (b >= a && !fn[b]) b--;
    sa->lo[nb] = a, sa->hi[nb] = b;
    return (double)(nhi - nlo + 1) + (double)(g->in_ptr[nhi + 1] - g->in_ptr[nlo]);
}

/* The steps: L_k, dL_k, a_k, da_k for k < K, and b_K; *K = 0 when declined. */
static int run_steps(stepau *sa, int64_t *K_out, double *bK, double *lost)
{
    const phase_graph *g = sa->g;
    const int32_t d = sa->d, gd = g->d;
    int c = 0;
    int32_t lo = g->n, hi = -1;
    for (int b = 0; b < 2; b++) { /* buffers zero: clear what the last theta left */
        if (sa->lo[b] <= sa->hi[b]) {
            const size_t x = (size_t)sa->lo[b], w = (size_t)(sa->hi[b] - sa->lo[b] + 1);
            memset(sa->v[b] + x, 0, sizeof(double) * w);
            memset(sa->fl[b] + x, 0, w);
            if (d) memset(sa->dv[b] + x * (size_t)d, 0, sizeof(double) * w * (size_t)d);
        }
        sa->lo[b] = 0, sa->hi[b] = -1;
    }
    for (int32_t i = 0; i < g->n; i++)
        if (g->alpha[i] > 0.0) {
            sa->v[0][i] = g->alpha[i], sa->fl[0][i] = 1;
            lo = i < lo ? i : lo, hi = i;
        }
    sa->lo[0] = lo, sa->hi[0] = hi;
    double work = 0.0;
    *lost = 0.0;
    for (int64_t k = 0;; k++) {
        int st = grow_sequences(sa, k);
        if (st) return st;
        const double *v = sa->v[c], *dv = sa->dv[c];
        double ak = 0.0, bk = 0.0, Lk = 0.0;
        int32_t top = -1, first = INT32_MAX, last = -1;
        for (int32_t m = 0; m < d; m++) sa->da[k * d + m] = sa->db[k * d + m] = 0.0;
        for (int32_t i = sa->lo[c]; i <= sa->hi[c]; i++) {
            if (!sa->fl[c][i]) continue;
            if (sa->lam[i] > Lk) Lk = sa->lam[i], top = i;
            first = sa->layer[i] < first ? sa->layer[i] : first;
            last = sa->layer[i] > last ? sa->layer[i] : last;
            ak += v[i] * sa->s[i], bk += v[i];
            for (int32_t m = 0; m < d; m++) {
                sa->da[k * d + m] += dv[(size_t)i * d + m] * sa->s[i] +
                                     v[i] * sa->ds[(size_t)i * d + m];
                sa->db[k * d + m] += dv[(size_t)i * d + m];
            }
        }
        sa->a[k] = ak, sa->b[k] = bk;
        if (k == 0) { /* c_k: absorbed by step k, c_{k+1} = c_k + a_k / L_k */
            sa->c[0] = 0.0;
            for (int32_t m = 0; m < d; m++) sa->dc[m] = 0.0;
        }
        if (last - first >= MAX_SPAN) break; /* the support spreads over levels */
        /* Few nonzeros per step (a chain of single states, as Kingman's):
         * the birth chain would cost what the chain's sweep costs. */
        const int64_t width = k + 1 < SEG_WIDTH ? k + 1 : SEG_WIDTH;
        const int thin = work < MIN_STEP_NNZ * (double)k * (double)width;
        if ((top < 0 || k % CHECK_EVERY == 0) && k > 0 && thin) break;
        if (top < 0 || (k > 0 && k % CHECK_EVERY == 0 &&
                        birth_tail_bound(sa->L, k, sa->t_max) <= TAIL_REL * sa->tol)) {
            *K_out = k;
            *bK = top < 0 ? 0.0 : bk; /* no support left: exact */
            return PHASE_OK;
        }
        double *dLk = sa->dL + k * gd;
        sa->L[k] = Lk;
        for (int32_t m = 0; m < gd; m++) dLk[m] = sa->dlam[(size_t)top * gd + m];
        sa->c[k + 1] = sa->c[k] + ak / Lk; /* grow_sequences left room for k + 1 */
        for (int32_t m = 0; m < d; m++)
            sa->dc[(k + 1) * d + m] =
                sa->dc[k * d + m] + (sa->da[k * d + m] - ak * dLk[m] / Lk) / Lk;
        work += step(sa, c, Lk, dLk, DROP_V * sa->tol * bk / (double)g->n, lost);
        c ^= 1;
        /* Where every level empties in one step the steps touch each
         * nonzero about once; MAX_SWEEPS times that means the support is not
         * moving on (rates that differ within a level), and the chain, whose
         * segments follow the mass, will do better. */
        if (work > MAX_SWEEPS * sa->nnz || k + 1 >= MAX_STEPS) break;
    }
    *K_out = 0;
    return PHASE_OK;
}

/* The densities f and their tangents df at every merged time for theta,
 * with the per-point checks; *used = 0 when declined. */
static int densities(stepau *sa, const double *theta, int *used, phase_info *info)
{
    const phase_graph *g = sa->g;
    *used = 0;
    if (sa->n_obs == 0 || phase_graph_rates(g, theta, sa->rate)) return PHASE_OK;
    memset(sa->lam, 0, sizeof(double) * (size_t)g->n);
    memset(sa->s, 0, sizeof(double) * (size_t)g->n);
    for (int64_t e = 0; e < g->n_edges; e++) {
        /* A zero rate with a coefficient: its tangent can flow from a state
         * whose mass never moves, past the step where the support ends. */
        if (sa->rate[e] == 0.0 && g->coef_ptr[e + 1] > g->coef_ptr[e]) return PHASE_OK;
        sa->lam[g->src[e]] += sa->rate[e];
        if (g->dst[e] < 0) sa->s[g->src[e]] += sa->rate[e];
    }
    double smax = 0.0, Lam = 0.0;
    for (int32_t i = 0; i < g->n; i++) smax = fmax(smax, sa->s[i]), Lam = fmax(Lam, sa->lam[i]);
    if (!(Lam * sa->t_max >= MIN_TERMS)) return PHASE_OK;
    int64_t K = 0, segs = 0;
    double bK = 0.0, lost = 0.0, dropped = 0.0;
    int st = run_steps(sa, &K, &bK, &lost), ok = 0;
    if (st || K == 0) return st;
    if ((st = grow_sequences(sa, K))) return st;
    stepau_birth_chain(sa, K, &dropped, &segs, &ok);
    if (!ok) return PHASE_OK;
    /* dropped birth mass, truncated segment ends (twice: the terms left out
     * and the normalisation over those kept), a point's own truncation. */
    const double shared = dropped + lost + (2.0 * (double)segs + 1.0) * sa->seg_tail;
    double worst = 0.0;
    for (int64_t i = 0; i < sa->n_obs; i++) {
        const double f = sa->f[i], err = shared + sa->tailp[i] * bK;
        double rel = 0.0;
        if (sa->wt[i] != 0.0) {
            if (!(f > TINY_F)) return PHASE_OK;
            rel = smax * err / f;
        }
        if (sa->wr && sa->wr[i] != 0.0) { /* log S, or log1p(-q) near S = 1 */
            const double q = (1.0 - sa->b[0]) + sa->C[i], S = sa->S[i];
            if (!(S > TINY_F)) return PHASE_OK;
            rel = fmax(rel, err / (q < Q_SMALL ? q : S));
        }
        if (!(rel <= ERR_SHARE * sa->tol)) return PHASE_OK;
        worst = fmax(worst, rel);
    }
    *used = 1;
    if (info) {
        info->uniformization_rate = sa->L[0];
        info->n_terms = K + 1;
        info->truncation_bound = worst;
        info->stored_vectors = 0;
        info->checkpoint_stride = 0;
        info->gradient_mode = sa->d ? PHASE_GRADIENT_FORWARD : 0;
    }
    return PHASE_OK;
}

int stepau_loglik(stepau *sa, const double *theta, double *ll, double *grad, phase_info *info,
                  int *used)
{
    const int32_t d = sa->d;
    int st = densities(sa, theta, used, info);
    if (st || !*used) return st;
    double total = 0.0;
    if (grad)
        for (int32_t m = 0; m < sa->g->d; m++) grad[m] = 0.0;
    for (int64_t i = 0; i < sa->n_obs; i++) {
        if (sa->wt[i] != 0.0) {
            total += sa->wt[i] * log(sa->f[i]);
            for (int32_t m = 0; grad && m < d; m++)
                grad[m] += sa->wt[i] * sa->df[i * d + m] / sa->f[i];
        }
        if (!sa->wr || sa->wr[i] == 0.0) continue;
        /* P(T > c) = b_0 - sum_k p_k c_k: near 1, from its complement q
         * (summed from non-negative terms) so that log S keeps its digits. */
        const double q = (1.0 - sa->b[0]) + sa->C[i], w = sa->wr[i];
        if (q < Q_SMALL) {
            total += w * log1p(-q);
            for (int32_t m = 0; grad && m < d; m++) grad[m] -= w * sa->dC[i * d + m] / (1.0 - q);
        } else {
            total += w * log(sa->S[i]);
            for (int32_t m = 0; grad && m < d; m++) grad[m] += w * sa->dS[i * d + m] / sa->S[i];
        }
    }
    *ll = total;
    return PHASE_OK;
}

int stepau_points(stepau *sa, const double *theta, int log_scale, double *row, phase_info *info,
                  int *used)
{
    int st = densities(sa, theta, used, info);
    if (st || !*used) return st;
    for (int64_t i = 0; i < sa->n_points; i++) {
        const double f = sa->f[sa->slot[i]];
        row[i] = log_scale ? log(f) : f;
    }
    return PHASE_OK;
}
