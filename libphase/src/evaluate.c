/*
 * Public evaluations: densities and distribution functions (phase_eval) and
 * log-likelihoods with their exact gradients (phase_loglik).
 *
 * Gradient. The observations leave adjoint weights A_k, B_k (the derivative
 * of the log-likelihood with respect to a_k and b_k, from the Poisson
 * weights and the values of pass 1) in every segment's sequences; forward
 * mode dots them with the tangents d a_k, d b_k, reverse mode turns them
 * into a gradient by the adjoint sweep of reverse.c. Everything is carried
 * in the scaled variables vt_k = v_k 2^-ex[k].
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "stepau.h"

#define LN2 0.69314718055994530942

static double scaled_log(scaled x) { return x.m > 0.0 ? log(x.m) + (double)x.e * LN2 : -INFINITY; }

static double scaled_value(scaled x)
{
    if (x.m == 0.0) return 0.0;
    if (x.e > 4000) return INFINITY;
    if (x.e < -4000) return 0.0;
    return ldexp(x.m, (int)x.e);
}

/* P(T = 0) = 1 - sum(alpha); below DEFECT_TOL it is round-off of a
 * normalised alpha, not an atom (the same slack phase_graph_new allows above 1). */
#define DEFECT_TOL 1e-12

static double defect(const phase_graph *g)
{
    double mass = 0.0;
    for (int32_t i = 0; i < g->n; i++) mass += g->alpha[i];
    return mass < 1.0 - DEFECT_TOL ? 1.0 - mass : 0.0;
}

static int check_point(const phase_graph *g, double x, int allow_inf, const char *what, int64_t i)
{
    if (isnan(x) || x < 0.0 || (!allow_inf && isinf(x)))
        return phase_fail(PHASE_EINVAL, "%s[%lld] = %g must be finite and >= 0", what,
                          (long long)i, x);
    if (g->discrete && isfinite(x) && (x != floor(x) || x > 9.0e15))
        return phase_fail(PHASE_EINVAL, "%s[%lld] = %g must be a non-negative integer "
                          "(discrete graph)", what, (long long)i, x);
    return PHASE_OK;
}

/* f(x) (which = SEQ_A; discrete: pmf for x >= 1), P(T > x) (SEQ_B) or
 * P(0 < T <= x) (SEQ_C: the CDF without the defect). */
static int point_value(chain *c, const phase_graph *g, double x, int which, scaled *out)
{
    if (isinf(x)) { /* only survival at +inf reaches here */
        out->m = 0.0;
        out->e = 0;
        return PHASE_OK;
    }
    sweep *w = &c->seg[0];
    int st;
    if (!g->discrete) {
        int32_t j;
        if ((st = chain_segment(c, x, &j))) return st;
        w = &c->seg[j];
        if ((st = sweep_poisson(w, g, w->Lambda * (x - c->tau[j]), which, out))) return st;
        chain_check(c, j, which, *out);
        return PHASE_OK;
    }
    int64_t k = (int64_t)x - (which == SEQ_A ? 1 : 0);
    if ((st = sweep_ensure(w, g, k))) return st;
    out->m = which == SEQ_A ? w->am[k] : which == SEQ_B ? w->bm[k] : w->cm[k];
    out->e = which == SEQ_C ? 0 : w->ex[k];
    return PHASE_OK;
}

/* Add coef x d(value)/d(sequence) of the point just evaluated by point_value
 * (its Poisson window is still in w) to the adjoint weights. */
static void point_adjoint(chain *c, const phase_graph *g, double x, int which, double coef_m,
                          int64_t coef_e)
{
    if (isinf(x)) return;
    sweep *w = &c->seg[0];
    if (!g->discrete) {
        int32_t j = 0;
        chain_segment(c, x, &j); /* exists: point_value opened it */
        sweep_adjoint(&c->seg[j], which, coef_m, coef_e);
        return;
    }
    int64_t k = (int64_t)x - (which == SEQ_A ? 1 : 0);
    int64_t e = coef_e + (which == SEQ_C ? 0 : w->ex[k]);
    double *adj = which == SEQ_A ? w->adj_a : which == SEQ_B ? w->adj_b : w->adj_c;
    if (e > -1100) adj[k] += ldexp(coef_m, (int)(e < 1100 ? e : 1100));
}

static void fill_info(phase_info *info, const chain *c)
{
    if (!info) return;
    const sweep *w = &c->seg[0];
    info->uniformization_rate = w->Lambda;
    info->n_terms = 0;
    info->truncation_bound = c->chain_err;
    for (int32_t j = 0; j < c->n_seg; j++) {
        info->n_terms += c->seg[j].K + 1;
        if (c->seg[j].trunc > info->truncation_bound) info->truncation_bound = c->seg[j].trunc;
    }
    info->stored_vectors = 0;
    info->checkpoint_stride = 0;
    for (int32_t j = 0; j < c->n_seg; j++) { /* reverse mode keeps each segment's */
        const sweep *x = &c->seg[j];
        info->stored_vectors += x->n_stored;
        if (x->mode == PHASE_GRADIENT_REVERSE && x->stride > info->checkpoint_stride)
            info->checkpoint_stride = x->stride;
    }
    info->gradient_mode = w->mode;
}

static int check_common(const phase_graph *g, const phase_options *opts, int64_t n_theta,
                        const double *thetas)
{
    if (!g) return phase_fail(PHASE_EINVAL, "graph is NULL");
    if (opts && !(opts->tol > 0.0 && opts->tol < 1.0))
        return phase_fail(PHASE_EINVAL, "tol = %g must lie in (0, 1)", opts->tol);
    if (n_theta < 0) return phase_fail(PHASE_EINVAL, "n_theta = %lld < 0", (long long)n_theta);
    if (n_theta > 0 && g->d > 0 && !thetas) return phase_fail(PHASE_EINVAL, "thetas is NULL");
    return PHASE_OK;
}

static int censored_term(chain *c, const phase_graph *g, double a, double b, double wt,
                         double atom, double *term);

/* The quantity at every point for the chain's theta (row: n_points). */
static int eval_points(chain *c, const phase_graph *g, int64_t n_points, const double *points,
                       phase_quantity quantity, double atom, double *row)
{
    const int which = quantity <= PHASE_LOGPDF ? SEQ_A : quantity == PHASE_CDF ? SEQ_C : SEQ_B;
    int st;
    for (int64_t i = 0; i < n_points; i++) {
        scaled x;
        if (quantity == PHASE_LOGSURVIVAL) { /* as a right-censored term: log1p near 1 */
            st = censored_term(c, g, points[i], INFINITY, 1.0, atom, &row[i]);
            if (st == PHASE_EZERO) row[i] = -INFINITY, st = PHASE_OK;
            if (st) return st;
            continue;
        }
        if (which == SEQ_A && points[i] == 0.0 && (g->discrete || atom > 0.0)) {
            x.m = atom; /* the atom's mass: see "The atom at zero" in docs/likelihood.md */
            x.e = 0;
        } else if ((st = point_value(c, g, points[i], which, &x))) {
            return st;
        }
        switch (quantity) {
        case PHASE_PDF:
        case PHASE_SURVIVAL: row[i] = scaled_value(x); break;
        case PHASE_LOGPDF:
        case PHASE_LOGSURVIVAL: row[i] = scaled_log(x); break;
        case PHASE_CDF: row[i] = fmin(1.0, atom + scaled_value(x)); break;
        }
    }
    return PHASE_OK;
}

int phase_eval(const phase_graph *g, const phase_options *opts, int64_t n_theta,
               const double *thetas, int64_t n_points, const double *points,
               phase_quantity quantity, double *out, int *theta_status, phase_info *info)
{
    phase_clear_error();
    int st = check_common(g, opts, n_theta, thetas);
    if (st) return st;
    if (quantity < PHASE_PDF || quantity > PHASE_LOGSURVIVAL)
        return phase_fail(PHASE_EINVAL, "unknown quantity %d", (int)quantity);
    if (n_points < 0 || (n_points > 0 && (!points || !out)))
        return phase_fail(PHASE_EINVAL, "points/out missing for %lld points", (long long)n_points);
    for (int64_t i = 0; i < n_points; i++)
        if ((st = check_point(g, points[i], 0, "points", i))) return st;
    phase_options defaults;
    if (!opts) phase_options_default(&defaults), opts = &defaults;

    double t_max = 0.0;
    for (int64_t i = 0; i < n_points; i++) t_max = fmax(t_max, points[i]);
    chain c;
    if ((st = chain_init(&c, g, opts, 0, t_max))) {
        chain_free(&c);
        return st;
    }
    const double atom = defect(g);
    stepau *sa = NULL; /* densities of stiff graphs: one rate per step */
    if (quantity == PHASE_PDF || quantity == PHASE_LOGPDF) {
        phase_data as_data = {.n_exact = n_points, .exact = points};
        if ((st = stepau_new(&sa, g, opts, &as_data, 0))) n_theta = 0;
    }
    for (int64_t p = 0; p < n_theta; p++) {
        double *row = out + p * n_points;
        const double *theta = thetas ? thetas + p * g->d : NULL;
        int stepped = 0;
        st = sa ? stepau_points(sa, theta, quantity == PHASE_LOGPDF, row, info ? info + p : NULL,
                                &stepped)
                : PHASE_OK;
        if (!st && !stepped && !(st = chain_set_theta(&c, theta, 1)))
            st = eval_points(&c, g, n_points, points, quantity, atom, row);
        if (!stepped && chain_retry(&c, st) && !(st = chain_set_theta(&c, theta, 0)))
            st = eval_points(&c, g, n_points, points, quantity, atom, row);
        if (st == PHASE_ENOMEM || st == PHASE_EINVAL) break;
        if (st != PHASE_OK)
            for (int64_t i = 0; i < n_points; i++) row[i] = NAN;
        if (theta_status) theta_status[p] = st;
        if (info && !stepped) fill_info(info + p, &c);
        st = PHASE_OK;
    }
    stepau_free(sa);
    chain_free(&c);
    if (st == PHASE_OK) phase_clear_error();
    return st;
}

/* ---- log-likelihood --------------------------------------------------- */

static double weight_of(const double *wts, int64_t i) { return wts ? wts[i] : 1.0; }

static int check_data(const phase_graph *g, const phase_data *data)
{
    if (!data) return phase_fail(PHASE_EINVAL, "data is NULL");
    if (data->n_exact < 0 || data->n_right < 0 || data->n_interval < 0)
        return phase_fail(PHASE_EINVAL, "negative observation count");
    if ((data->n_exact && !data->exact) || (data->n_right && !data->right) ||
        (data->n_interval && (!data->interval_lo || !data->interval_hi)))
        return phase_fail(PHASE_EINVAL, "observation array is NULL");
    int st;
    const struct {
        int64_t n;
        const double *w;
        const char *name;
    } groups[3] = {{data->n_exact, data->exact_weight, "exact_weight"},
                   {data->n_right, data->right_weight, "right_weight"},
                   {data->n_interval, data->interval_weight, "interval_weight"}};
    for (int gi = 0; gi < 3; gi++)
        for (int64_t i = 0; groups[gi].w && i < groups[gi].n; i++)
            if (!(groups[gi].w[i] >= 0.0) || !isfinite(groups[gi].w[i]))
                return phase_fail(PHASE_EINVAL, "%s[%lld] = %g must be finite and >= 0",
                                  groups[gi].name, (long long)i, groups[gi].w[i]);
    for (int64_t i = 0; i < data->n_exact; i++)
        if ((st = check_point(g, data->exact[i], 0, "exact", i))) return st;
    for (int64_t i = 0; i < data->n_right; i++)
        if ((st = check_point(g, data->right[i], 0, "right", i))) return st;
    for (int64_t i = 0; i < data->n_interval; i++) {
        /* lo < 0 (-inf included) means "T <= hi", the atom at 0 included. */
        const double lo = data->interval_lo[i];
        if (isnan(lo) || lo == INFINITY)
            return phase_fail(PHASE_EINVAL, "interval_lo[%lld] = %g must be a number < hi",
                              (long long)i, lo);
        if (lo >= 0.0 && (st = check_point(g, lo, 0, "interval_lo", i))) return st;
        if ((st = check_point(g, data->interval_hi[i], 1, "interval_hi", i))) return st;
        if (!(data->interval_lo[i] < data->interval_hi[i]))
            return phase_fail(PHASE_EINVAL, "interval %lld: lo = %g must be < hi = %g",
                              (long long)i, data->interval_lo[i], data->interval_hi[i]);
    }
    return PHASE_OK;
}

/* S(lo) - S(hi) as a scaled number (m <= 0 when it rounds to nothing). */
static scaled scaled_diff(scaled a, scaled b)
{
    if (b.m == 0.0) return a;
    if (a.m == 0.0) return (scaled){-b.m, b.e};
    if (a.e >= b.e) {
        int64_t d = b.e - a.e;
        return (scaled){a.m - (d > -1100 ? ldexp(b.m, (int)d) : 0.0), a.e};
    }
    int64_t d = a.e - b.e;
    return (scaled){(d > -1100 ? ldexp(a.m, (int)d) : 0.0) - b.m, b.e};
}

/* Forward mode: the tangents already hold d a_k / d theta and d b_k / d theta. */
static void tangent_gradient(const chain *c, const phase_graph *g, double *grad)
{
    const int32_t d = g->d;
    for (int32_t m = 0; m < d; m++) grad[m] = 0.0;
    for (int32_t j = 0; j < c->n_seg; j++) { /* each segment's tangents include its start's */
        const sweep *w = &c->seg[j];
        for (int64_t k = 0; k <= w->K; k++) {
            const double A = w->adj_a[k], B = w->adj_b[k];
            if (A == 0.0 && B == 0.0) continue;
            for (int32_t m = 0; m < d; m++)
                grad[m] += A * w->da[k * d + m] + B * w->db[k * d + m];
        }
    }
}

/* log P(lo < T <= hi) (wt times it in *term) for lo < hi, lo < 0 meaning
 * "T <= hi" (atom included) and hi = inf "T > lo"; in gradient mode also
 * its adjoint. Every probability is taken from sums of non-negative terms.
 * S(lo) and S(hi) first (each 0 when its bound is negative or infinite
 * ... S(lo) = 1 then); with q = 1 - mass = F(lo) + S(hi):
 *   q < 2^-10: log1p(-q), q summed from 1 - b_0, c(lo) and S(hi), so a
 *            mass near 1 keeps its digits (log S(c) of a small c is -F(c),
 *            not 0; above 2^-10, log(mass) loses at most 2^10 eps relative);
 *   else the mass comes from the smaller tail: F(hi) =
 *   atom + c(hi) for lo < 0, S(lo) for hi = inf, otherwise c(hi) - c(lo)
 *   when c(lo) <= S(hi) and S(lo) - S(hi) when not, so the rounding error
 *   is at most about eps * min(c(hi), S(lo)) / mass.
 * The common cases cost what 1 - S did: one sum for a right-censored term
 * in the tail, two for an interval away from 0. */
#define Q_SMALL 0x1p-10

static int censored_term(chain *c, const phase_graph *g, double a, double b, double wt,
                         double atom, double *term)
{
    const int grad = c->mode != 0, lo_in = a >= 0.0, hi_in = !isinf(b);
    scaled sa = {0.0, 0}, sb = {0.0, 0}, ca = {0.0, 0}, x, diff;
    int st;
    *term = 0.0;
    if (!lo_in && !hi_in) return PHASE_OK; /* certain */
    if (lo_in && (st = point_value(c, g, a, SEQ_B, &sa))) return st;
    if (hi_in && (st = point_value(c, g, b, SEQ_B, &sb))) return st;
    /* The last point evaluated has the current Poisson window. */
    const double b0 = c->seg[0].bm[0], S_b = scaled_value(sb);
    if ((lo_in ? 1.0 - scaled_value(sa) : 0.0) + S_b < Q_SMALL) { /* q, roughly */
        double q = S_b;
        if (lo_in) {
            if ((st = point_value(c, g, a, SEQ_C, &ca))) return st;
            q += (1.0 - b0) + scaled_value(ca);
        }
        const double mass = 1.0 - q;
        *term = wt * log1p(-q);
        if (!grad) return PHASE_OK;
        if (lo_in) point_adjoint(c, g, a, SEQ_C, -wt / mass, 0);
        if (lo_in && hi_in && (st = point_value(c, g, b, SEQ_B, &sb))) return st;
        if (hi_in) point_adjoint(c, g, b, SEQ_B, -wt / mass, 0);
        return PHASE_OK;
    }
    if (!lo_in) { /* F(hi) = atom + c(hi) */
        if ((st = point_value(c, g, b, SEQ_C, &x))) return st;
        if (atom > 0.0) { /* a plain double: the atom keeps it >= defect */
            const double mass = atom + scaled_value(x);
            *term = wt * log(mass);
            if (grad) point_adjoint(c, g, b, SEQ_C, wt / mass, 0);
            return PHASE_OK;
        }
        if (!(x.m > 0.0)) return PHASE_EZERO;
        *term = wt * scaled_log(x);
        if (grad) point_adjoint(c, g, b, SEQ_C, wt / x.m, -x.e);
        return PHASE_OK;
    }
    if (!hi_in) { /* S(lo), whose window is current */
        if (!(sa.m > 0.0)) return PHASE_EZERO;
        *term = wt * scaled_log(sa);
        if (grad) point_adjoint(c, g, a, SEQ_B, wt / sa.m, -sa.e);
        return PHASE_OK;
    }
    /* c(hi) = c(lo) + mass and S(lo) = S(hi) + mass: subtract the smaller
     * pair (b_0 - S(lo) is c(lo) closely enough to choose). */
    const int which = b0 - scaled_value(sa) <= S_b ? SEQ_C : SEQ_B;
    if (which == SEQ_C) {
        if ((st = point_value(c, g, a, SEQ_C, &ca))) return st;
        if ((st = point_value(c, g, b, SEQ_C, &x))) return st;
        diff = scaled_diff(x, ca);
    } else {
        diff = scaled_diff(sa, sb);
    }
    if (!(diff.m > 0.0)) return PHASE_EZERO;
    *term = wt * scaled_log(diff);
    if (!grad) return PHASE_OK;
    /* hi's window is current in both orders; lo's is recomputed. The mass
     * is c(hi) - c(lo) or S(lo) - S(hi): hi's sign is +1 or -1. */
    const double sign = which == SEQ_C ? 1.0 : -1.0;
    point_adjoint(c, g, b, which, sign * wt / diff.m, -diff.e);
    if ((st = point_value(c, g, a, which, &x))) return st;
    point_adjoint(c, g, a, which, -sign * wt / diff.m, -diff.e);
    return PHASE_OK;
}

/* The log-likelihood at the current theta; in gradient mode also the
 * adjoint weights d loglik / d a_k and d b_k (scaled by 2^ex[k]).
 * An exact 0 scores the atom's mass log(defect) when there is an atom
 * (discrete graphs always: pmf(0) = defect), else the density f(0). */
static int observations_pass(chain *c, const phase_graph *g, const phase_data *data, double *ll)
{
    int st;
    const int grad = c->mode != 0;
    const double atom = defect(g);
    double total = 0.0;
    scaled x;
    for (int64_t i = 0; i < data->n_exact; i++) {
        const double wt = weight_of(data->exact_weight, i), t = data->exact[i];
        if (wt == 0.0) continue;
        if (t == 0.0 && (g->discrete || atom > 0.0)) {
            if (atom <= 0.0) return PHASE_EZERO;
            total += wt * log(atom); /* alpha is fixed: no gradient */
            continue;
        }
        if ((st = point_value(c, g, t, SEQ_A, &x))) return st;
        if (!(x.m > 0.0)) return PHASE_EZERO;
        total += wt * scaled_log(x);
        if (grad) point_adjoint(c, g, t, SEQ_A, wt / x.m, -x.e);
    }
    double term;
    for (int64_t i = 0; i < data->n_right; i++) { /* (c, inf] */
        const double wt = weight_of(data->right_weight, i);
        if (wt == 0.0) continue;
        if ((st = censored_term(c, g, data->right[i], INFINITY, wt, atom, &term))) return st;
        total += term;
    }
    for (int64_t i = 0; i < data->n_interval; i++) {
        const double wt = weight_of(data->interval_weight, i);
        if (wt == 0.0) continue;
        st = censored_term(c, g, data->interval_lo[i], data->interval_hi[i], wt, atom, &term);
        if (st) return st;
        total += term;
    }
    if (grad) chain_fold_c(c);
    *ll = total;
    return PHASE_OK;
}

int phase_loglik(const phase_graph *g, const phase_options *opts, const phase_data *data,
                 int64_t n_theta, const double *thetas, double *loglik, double *grad,
                 int *theta_status, phase_info *info)
{
    phase_clear_error();
    int st = check_common(g, opts, n_theta, thetas);
    if (st) return st;
    if (n_theta > 0 && !loglik) return phase_fail(PHASE_EINVAL, "loglik is NULL");
    if ((st = check_data(g, data))) return st;
    phase_options defaults;
    if (!opts) phase_options_default(&defaults), opts = &defaults;

    if (opts->gradient_mode < PHASE_GRADIENT_AUTO || opts->gradient_mode > PHASE_GRADIENT_FORWARD)
        return phase_fail(PHASE_EINVAL, "unknown gradient_mode %d", opts->gradient_mode);
    int mode = 0;
    if (grad)
        mode = opts->gradient_mode != PHASE_GRADIENT_AUTO ? opts->gradient_mode
               : g->d <= PHASE_FORWARD_MAX_PARAMS        ? PHASE_GRADIENT_FORWARD
                                                         : PHASE_GRADIENT_REVERSE;
    double t_max = 0.0;
    for (int64_t i = 0; i < data->n_exact; i++) t_max = fmax(t_max, data->exact[i]);
    for (int64_t i = 0; i < data->n_right; i++) t_max = fmax(t_max, data->right[i]);
    for (int64_t i = 0; i < data->n_interval; i++) {
        t_max = fmax(t_max, data->interval_lo[i]);
        if (isfinite(data->interval_hi[i])) t_max = fmax(t_max, data->interval_hi[i]);
    }
    chain c;
    reverse_ws r;
    memset(&r, 0, sizeof r);
    if ((st = chain_init(&c, g, opts, mode, t_max)) ||
        (mode == PHASE_GRADIENT_REVERSE && (st = reverse_init(&r, g)))) {
        chain_free(&c);
        reverse_free(&r);
        return st;
    }
    stepau *sa = NULL;
    if ((st = stepau_new(&sa, g, opts, data, mode))) n_theta = 0;
    for (int64_t p = 0; p < n_theta; p++) {
        double *grow_p = grad ? grad + p * g->d : NULL;
        const double *theta = thetas ? thetas + p * g->d : NULL;
        double ll = 0.0;
        int stepped = 0;
        st = sa ? stepau_loglik(sa, theta, &ll, grow_p, info ? info + p : NULL, &stepped) : 0;
        if (st == PHASE_OK && !stepped && (st = chain_set_theta(&c, theta, 1)) == PHASE_OK)
            st = observations_pass(&c, g, data, &ll);
        if (!stepped && chain_retry(&c, st) && !(st = chain_set_theta(&c, theta, 0)))
            st = observations_pass(&c, g, data, &ll);
        if (!stepped && st == PHASE_OK && mode == PHASE_GRADIENT_REVERSE)
            st = chain_reverse(&c, &r, grow_p);
        if (!stepped && st == PHASE_OK && mode == PHASE_GRADIENT_FORWARD)
            tangent_gradient(&c, g, grow_p);
        if (st == PHASE_ENOMEM || st == PHASE_EINVAL) break;
        if (st != PHASE_OK) {
            ll = st == PHASE_ERANGE ? NAN : -INFINITY;
            if (grow_p)
                for (int32_t m = 0; m < g->d; m++) grow_p[m] = 0.0;
        }
        loglik[p] = ll;
        if (theta_status) theta_status[p] = st;
        if (info && !stepped) fill_info(info + p, &c);
        st = PHASE_OK;
    }
    stepau_free(sa);
    chain_free(&c);
    reverse_free(&r);
    if (st == PHASE_OK) phase_clear_error();
    return st;
}
