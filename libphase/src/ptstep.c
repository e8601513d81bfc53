/*
 * Parallel tempering's per-slot arithmetic around the density
 * (phasic_mpi.inference.ptscan): the two halves of a MALA or random-walk
 * move in whitened coordinates, and the swap decisions of a phase.
 *
 * A move of row r (step h, factor L with M^-1 = L L^T, path gradient g):
 *   jump  = h xi,                  xi = normals keyed by (seed, purpose, ids row r)
 *   move  = (h^2 / 2) L^T g + jump  (MALA)   or   jump   (random walk)
 *   proposal = x + L move.
 * Accepting it (g' the path gradient at the proposal):
 *   log a = logpi' - logpi
 *         + [MALA, log a finite] sum_i (jump_i^2 - back_i^2) / (2 h h),
 *           back = move + (h^2 / 2) L^T g'
 *   p = exp(min(0, log a)) (0 if NaN); accepted iff u < p, u the first
 *   uniform keyed by (seed, accept purpose, ids row r).
 *
 * Every row is computed by the same code whatever m is, sums and products
 * with L run over the components in increasing order: a row's bits depend on
 * its own inputs only, never on how many rows a rank holds.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

#define MAX_STACK_D 64 /* the dense metric's limit in ptmoves.MAX_DENSE_PARAMS */

/* out = L^T g (transposed) or L v, for a row's factor. */
static void apply(int metric, int transposed, int64_t d, const double *f, const double *v, double *out)
{
    if (metric == PHASE_PT_UNIT) {
        memcpy(out, v, (size_t)d * sizeof(double));
        return;
    }
    if (metric == PHASE_PT_DIAGONAL) {
        for (int64_t i = 0; i < d; i++) out[i] = f[i] * v[i];
        return;
    }
    for (int64_t i = 0; i < d; i++) {
        double acc = (transposed ? f[i] : f[i * d]) * v[0];
        for (int64_t k = 1; k < d; k++) acc = acc + (transposed ? f[k * d + i] : f[i * d + k]) * v[k];
        out[i] = acc;
    }
}

static int check_move(const char *who, int64_t m, int64_t d, int metric, const double *factor)
{
    if (m < 0 || d < 1 || d > MAX_STACK_D)
        return phase_fail(PHASE_EINVAL, "%s: m = %lld, d = %lld (1 <= d <= %d)", who, (long long)m,
                          (long long)d, MAX_STACK_D);
    if (metric != PHASE_PT_UNIT && metric != PHASE_PT_DIAGONAL && metric != PHASE_PT_DENSE)
        return phase_fail(PHASE_EINVAL, "%s: unknown metric %d", who, metric);
    if (metric != PHASE_PT_UNIT && m > 0 && !factor) return phase_fail(PHASE_EINVAL, "%s: NULL factor", who);
    return PHASE_OK;
}

static int64_t factor_size(int metric, int64_t d)
{
    return metric == PHASE_PT_DENSE ? d * d : metric == PHASE_PT_DIAGONAL ? d : 0;
}

int phase_pt_propose(int64_t m, int64_t d, int mala, int metric, const double *factor, const double *step,
                     const double *x, const double *grad, uint64_t seed, uint64_t purpose, const uint64_t *ids,
                     double *jump, double *move, double *proposal)
{
    int status = check_move("phase_pt_propose", m, d, metric, factor);
    if (status != PHASE_OK) return status;
    if (m > 0 && (!step || !x || !ids || !jump || !move || !proposal || (mala && !grad)))
        return phase_fail(PHASE_EINVAL, "phase_pt_propose: NULL array");
    status = phase_random_normal(seed, purpose, m, ids, d, jump);
    if (status != PHASE_OK) return status;
    const int64_t fs = factor_size(metric, d);
    double tmp[MAX_STACK_D];
    for (int64_t r = 0; r < m; r++) {
        const double h = step[r], half_var = 0.5 * h * h;
        const double *f = factor ? factor + r * fs : NULL;
        double *jr = jump + r * d, *mr = move + r * d;
        for (int64_t i = 0; i < d; i++) jr[i] = h * jr[i];
        if (mala) {
            apply(metric, 1, d, f, grad + r * d, tmp);
            for (int64_t i = 0; i < d; i++) mr[i] = half_var * tmp[i] + jr[i];
        } else {
            memcpy(mr, jr, (size_t)d * sizeof(double));
        }
        apply(metric, 0, d, f, mr, tmp);
        for (int64_t i = 0; i < d; i++) proposal[r * d + i] = x[r * d + i] + tmp[i];
    }
    return PHASE_OK;
}

static void copy_if(int take, int64_t n, const double *from, double *to)
{
    if (take) memcpy(to, from, (size_t)n * sizeof(double));
}

int phase_pt_accept(int64_t m, int64_t d, int mala, int metric, const double *factor, const double *step,
                    const double *logpi, const double *logpi_new, const double *grad_new, const double *jump,
                    const double *move, uint64_t seed, uint64_t purpose, const uint64_t *ids,
                    const double *proposal, const double *ll_new, const double *lp_new, const double *gll_new,
                    const double *glp_new, double *x, double *ll, double *lp, double *gll, double *glp,
                    double *accept_prob)
{
    int status = check_move("phase_pt_accept", m, d, metric, factor);
    if (status != PHASE_OK) return status;
    if (m > 0 && (!step || !logpi || !logpi_new || !jump || !move || !ids || !proposal || !ll_new || !lp_new ||
                  !gll_new || !glp_new || !x || !ll || !lp || !gll || !glp || !accept_prob || (mala && !grad_new)))
        return phase_fail(PHASE_EINVAL, "phase_pt_accept: NULL array");
    const int64_t fs = factor_size(metric, d);
    double tmp[MAX_STACK_D];
    for (int64_t r = 0; r < m; r++) {
        double log_alpha = logpi_new[r] - logpi[r];
        if (mala && isfinite(log_alpha)) {
            const double h = step[r], half_var = 0.5 * h * h;
            const double *jr = jump + r * d, *mr = move + r * d;
            apply(metric, 1, d, factor ? factor + r * fs : NULL, grad_new + r * d, tmp);
            double sum = 0.0;
            for (int64_t i = 0; i < d; i++) {
                const double back = mr[i] + half_var * tmp[i];
                sum = sum + (jr[i] * jr[i] - back * back);
            }
            log_alpha = log_alpha + sum / (2.0 * h * h);
        }
        /* NaN (e.g. -inf - -inf) never accepts; the comparison keeps it NaN */
        const double p = isnan(log_alpha) ? 0.0 : exp(log_alpha < 0.0 ? log_alpha : 0.0);
        double u;
        status = phase_random_uniform(seed, purpose, 1, ids + 4 * r, 1, &u);
        if (status != PHASE_OK) return status;
        const int take = u < p;
        accept_prob[r] = p;
        copy_if(take, d, proposal + r * d, x + r * d);
        copy_if(take, 1, ll_new + r, ll + r);
        copy_if(take, 1, lp_new + r, lp + r);
        copy_if(take, d, gll_new + r * d, gll + r * d);
        copy_if(take, d, glp_new + r * d, glp + r * d);
    }
    return PHASE_OK;
}

int phase_pt_swap(int64_t n, const double *beta_low, const double *beta_high, const double *v_low,
                  const double *v_high, uint64_t seed, uint64_t purpose, const uint64_t *ids, double *alpha,
                  uint8_t *accepted)
{
    if (n < 0) return phase_fail(PHASE_EINVAL, "phase_pt_swap: n = %lld", (long long)n);
    if (n > 0 && (!beta_low || !beta_high || !v_low || !v_high || !ids || !alpha || !accepted))
        return phase_fail(PHASE_EINVAL, "phase_pt_swap: NULL array");
    for (int64_t k = 0; k < n; k++) {
        const double diff = v_high[k] - v_low[k];
        /* both potentials -inf: NaN, never swapped (a state outside the support stays at b = 0) */
        double log_alpha = (beta_low[k] - beta_high[k]) * diff;
        if (isnan(diff)) log_alpha = -INFINITY;
        const double a = isnan(log_alpha) ? 0.0 : exp(log_alpha < 0.0 ? log_alpha : 0.0);
        double u;
        int status = phase_random_uniform(seed, purpose, 1, ids + 4 * k, 1, &u);
        if (status != PHASE_OK) return status;
        alpha[k] = a;
        accepted[k] = (uint8_t)(u < a);
    }
    return PHASE_OK;
}
