/*
 * Parallel tempering's per-slot arithmetic around the density
 * (phasic_mpi.inference.ptscan): the two halves of a MALA or random-walk
 * move in whitened coordinates, and the swap decisions of a phase.
 *
 * A move of row r (step h, factor L with M^-1 = L L^T, path gradient g):
 *   jump  = h xi,                  xi = normals keyed by (seed, purpose, ids row r)
 *   move  = c(g) + jump  (MALA)   or   jump   (random walk)
 *   proposal = x + L move,
 * with the drift c(g) = (h^2 / 2) L^T g, scaled down to the norm D = cap h sqrt(d)
 * where it is longer (MALTA, Roberts & Tweedie 1996: a drift truncated alike
 * in both directions keeps the chain exact; cap <= 0 truncates nothing).
 * Accepting it (g' the path gradient at the proposal):
 *   log a = logpi' - logpi
 *         + [MALA, log a finite] sum_i (jump_i^2 - back_i^2) / (2 h h),
 *           back = move + c(g')
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

/* c = (h^2 / 2) L^T g, truncated to the norm cap h sqrt(d) (cap > 0). */
static void drift(int metric, int64_t d, const double *f, const double *g, double h, double cap, double *c)
{
    const double half_var = 0.5 * h * h;
    double tmp[MAX_STACK_D], norm2 = 0.0;
    apply(metric, 1, d, f, g, tmp);
    for (int64_t i = 0; i < d; i++) c[i] = half_var * tmp[i], norm2 = norm2 + c[i] * c[i];
    const double limit = cap * h * sqrt((double)d);
    if (cap > 0.0 && norm2 > limit * limit) {
        const double scale = limit / sqrt(norm2);
        for (int64_t i = 0; i < d; i++) c[i] = c[i] * scale;
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

int phase_pt_propose(int64_t m, int64_t d, int mala, double drift_cap, int metric, const double *factor, const double *step,
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
        const double h = step[r];
        const double *f = factor ? factor + r * fs : NULL;
        double *jr = jump + r * d, *mr = move + r * d;
        for (int64_t i = 0; i < d; i++) jr[i] = h * jr[i];
        if (mala) {
            drift(metric, d, f, grad + r * d, h, drift_cap, tmp);
            for (int64_t i = 0; i < d; i++) mr[i] = tmp[i] + jr[i];
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

int phase_pt_accept(int64_t m, int64_t d, int mala, double drift_cap, int metric, const double *factor, const double *step,
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
            const double h = step[r];
            const double *jr = jump + r * d, *mr = move + r * d;
            drift(metric, d, factor ? factor + r * fs : NULL, grad_new + r * d, h, drift_cap, tmp);
            double sum = 0.0;
            for (int64_t i = 0; i < d; i++) {
                const double back = mr[i] + tmp[i];
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

static void swap_rows(double *a, int64_t width, int64_t i, int64_t j)
{
    for (int64_t k = 0; k < width; k++) {
        double t = a[i * width + k];
        a[i * width + k] = a[j * width + k], a[j * width + k] = t;
    }
}

static void swap_ints(int64_t *a, int64_t i, int64_t j)
{
    int64_t t = a[i];
    a[i] = a[j], a[j] = t;
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

int phase_pt_swap_phase(int64_t n, const int64_t *g, const int64_t *low, const int64_t *high, const double *betas,
                        int64_t n_levels, int64_t scan, const double *v_low, const double *v_high, uint64_t seed,
                        uint64_t purpose, int64_t m, int64_t d, double *x, double *ll, double *lp, double *gll,
                        double *glp, int64_t *label, int64_t *last_end, double *decisions, double *stats,
                        double *alpha, uint8_t *accepted)
{
    if (n < 0 || m < 0 || d < 1 || n_levels < 2 || scan < 0)
        return phase_fail(PHASE_EINVAL, "phase_pt_swap_phase: n = %lld, m = %lld, d = %lld, n_levels = %lld, scan = %lld",
                          (long long)n, (long long)m, (long long)d, (long long)n_levels, (long long)scan);
    if (n > 0 && (!g || !low || !high || !betas || !v_low || !v_high || !x || !ll || !lp || !gll || !glp || !label ||
                  !last_end || !decisions || !stats || !alpha || !accepted))
        return phase_fail(PHASE_EINVAL, "phase_pt_swap_phase: NULL array");
    for (int64_t k = 0; k < n; k++) {
        const int64_t i = low[k], j = high[k];
        if (g[k] < 0 || g[k] % n_levels == n_levels - 1 || i < -1 || i >= m || j < -1 || j >= m ||
            (i < 0 && j < 0) || (i >= 0 && j >= 0 && j != i + 1))
            return phase_fail(PHASE_EINVAL, "phase_pt_swap_phase: pair %lld: g = %lld, ends %lld, %lld", (long long)k,
                              (long long)g[k], (long long)i, (long long)j);
    }
    for (int64_t k = 0; k < n; k++) {
        /* the counter ids of the pair: (chain, level, scan, 0) */
        const uint64_t ids[4] = {(uint64_t)(g[k] / n_levels), (uint64_t)(g[k] % n_levels), (uint64_t)scan, 0};
        int status = phase_pt_swap(1, betas + g[k], betas + g[k] + 1, v_low + k, v_high + k, seed, purpose, ids,
                                   alpha + k, accepted + k);
        if (status != PHASE_OK) return status;
        const int64_t i = low[k], j = high[k];
        if (i >= 0 && j >= 0 && accepted[k]) {
            swap_rows(x, d, i, j), swap_rows(ll, 1, i, j), swap_rows(lp, 1, i, j);
            swap_rows(gll, d, i, j), swap_rows(glp, d, i, j);
            swap_ints(label, i, j), swap_ints(last_end, i, j);
        }
        if (i >= 0) { /* the pair is the right pair of its lower end, whose row holds its statistics */
            decisions[4 * i + 2] = (double)scan, decisions[4 * i + 3] = accepted[k];
            stats[6 * i + PHASE_PT_STAT_REJECTION] += 1.0 - alpha[k];
            stats[6 * i + PHASE_PT_STAT_SWAP_ACCEPTED] += accepted[k];
            stats[6 * i + PHASE_PT_STAT_SWAP_ATTEMPTS] += 1;
        }
        if (j >= 0) decisions[4 * j] = (double)scan, decisions[4 * j + 1] = accepted[k];
    }
    return PHASE_OK;
}

int phase_pt_round_trips(int64_t m, int64_t start, int64_t n_levels, int64_t *last_end, double *stats)
{
    if (m < 0 || start < 0 || n_levels < 2)
        return phase_fail(PHASE_EINVAL, "phase_pt_round_trips: m = %lld, start = %lld, n_levels = %lld",
                          (long long)m, (long long)start, (long long)n_levels);
    if (m > 0 && (!last_end || !stats)) return phase_fail(PHASE_EINVAL, "phase_pt_round_trips: NULL array");
    for (int64_t i = 0; i < m; i++) {
        const int64_t level = (start + i) % n_levels;
        if (level == 0) {
            if (last_end[i] == 1) stats[6 * i + PHASE_PT_STAT_ROUND_TRIPS] += 1;
            last_end[i] = 0;
        } else if (level == n_levels - 1 && last_end[i] == 0) {
            last_end[i] = 1;
        }
    }
    return PHASE_OK;
}
