/* Parallel tempering's per-slot arithmetic (ptstep.c): the proposal against
 * x + L ((h^2/2) L^T g + h xi) with the keyed normals (and with the drift
 * truncated), the MALA acceptance
 * against the Gaussian proposal densities written out (log q(x | x') -
 * log q(x' | x) in whitened coordinates, y = L^-1 x solved by forward
 * substitution), decisions against the keyed uniforms, the swap rule against
 * its closed form, a swap phase's exchanges, decisions and statistics, round
 * trips, rows independent of the others, and the argument checks. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "internal.h"

enum { M = 3, D = 3 };

/* y = L^-1 v for a lower-triangular (dense), diagonal or unit factor. */
static void solve(int metric, const double *f, const double *v, double *y)
{
    for (int i = 0; i < D; i++) {
        if (metric == PHASE_PT_UNIT) y[i] = v[i];
        else if (metric == PHASE_PT_DIAGONAL) y[i] = v[i] / f[i];
        else {
            double s = v[i];
            for (int k = 0; k < i; k++) s -= f[i * D + k] * y[k];
            y[i] = s / f[i * D + i];
        }
    }
}

/* z-gradient -> y-gradient L^T g (plain loops over the whole matrix). */
static void lt(int metric, const double *f, const double *g, double *out)
{
    for (int i = 0; i < D; i++) {
        if (metric == PHASE_PT_UNIT) out[i] = g[i];
        else if (metric == PHASE_PT_DIAGONAL) out[i] = f[i] * g[i];
        else {
            out[i] = 0;
            for (int k = 0; k < D; k++) out[i] += f[k * D + i] * g[k];
        }
    }
}

/* The whitened drift (h^2/2) L^T g, shortened to the norm cap h sqrt(D) if cap > 0
 * and it is longer; returns whether it was. */
static int truncated_drift(int metric, const double *f, const double *g, double h, double cap, double *c)
{
    double norm = 0;
    lt(metric, f, g, c);
    for (int i = 0; i < D; i++) c[i] *= 0.5 * h * h, norm += c[i] * c[i];
    norm = sqrt(norm);
    if (cap <= 0 || norm <= cap * h * sqrt(D)) return 0;
    for (int i = 0; i < D; i++) c[i] *= cap * h * sqrt(D) / norm;
    return 1;
}

/* log N(to; from + drift(from), h^2 I) in y coordinates, without constants. */
static double log_q(int metric, const double *f, const double *to, const double *from, const double *g, double h,
                    double cap)
{
    double yt[D], yf[D], c[D], s = 0;
    solve(metric, f, to, yt), solve(metric, f, from, yf), truncated_drift(metric, f, g, h, cap, c);
    for (int i = 0; i < D; i++) {
        double r = yt[i] - yf[i] - c[i];
        s += r * r;
    }
    return -s / (2 * h * h);
}

static void test_mala(int metric, double cap)
{
    const double factor_dense[M * D * D] = {1.2, 0, 0, 0.3, 0.8, 0, -0.4, 0.2, 1.5,   /* row 0 */
                                            0.7, 0, 0, -0.1, 1.1, 0, 0.5, 0.6, 0.9,   /* row 1 */
                                            2.0, 0, 0, 0.0, 0.5, 0, 0.1, -0.3, 1.0};  /* row 2 */
    const double factor_diag[M * D] = {1.2, 0.8, 1.5, 0.7, 1.1, 0.9, 2.0, 0.5, 1.0};
    const double *factor = metric == PHASE_PT_DENSE ? factor_dense : metric == PHASE_PT_DIAGONAL ? factor_diag : NULL;
    const int fs = metric == PHASE_PT_DENSE ? D * D : D;
    const double step[M] = {0.4, 0.9, 1.7};
    double x[M * D] = {0.1, -0.2, 0.3, 1.0, 2.0, -1.0, 0.0, 0.5, 0.5};
    const double grad[M * D] = {0.5, -1.0, 0.2, -0.3, 0.1, 0.9, 1.5, 0.0, -0.7};
    const uint64_t ids[4 * M] = {0, 0, 7, 0, 0, 1, 7, 0, 1, 0, 7, UINT64_C(1) << 32};
    double jump[M * D], move[M * D], prop[M * D], xi[M * D];
    CHECK(phase_pt_propose(M, D, 1, cap, metric, factor, step, x, grad, 5, 12, ids, jump, move, prop) == PHASE_OK,
          "propose status");
    phase_random_normal(5, 12, M, ids, D, xi);
    int truncated = 0;
    for (int r = 0; r < M; r++) {
        const double *f = factor ? factor + r * fs : NULL;
        double c[D], mv[D];
        truncated += truncated_drift(metric, f, grad + r * D, step[r], cap, c);
        for (int i = 0; i < D; i++) mv[i] = c[i] + step[r] * xi[r * D + i];
        for (int i = 0; i < D; i++) {
            double lm = 0;
            for (int k = 0; k < D; k++)
                lm += (metric == PHASE_PT_DENSE ? f[i * D + k] : k != i ? 0 : metric == PHASE_PT_DIAGONAL ? f[i] : 1) * mv[k];
            CHECK_REL(prop[r * D + i], x[r * D + i] + lm, 1e-14);
            CHECK_REL(jump[r * D + i], step[r] * xi[r * D + i], 0);
        }
    }
    /* a made-up target at the proposals: values and gradients */
    const double logpi[M] = {-1.0, -2.0, -3.0}, logpi_new[M] = {-1.3, -1.5, -4.0};
    const double grad_new[M * D] = {0.2, 0.4, -0.6, 1.0, -1.0, 0.3, -0.2, 0.8, 0.1};
    const double ll_new[M] = {10, 20, 30}, lp_new[M] = {-10, -20, -30};
    const double gll_new[M * D] = {1, 1, 1, 2, 2, 2, 3, 3, 3}, glp_new[M * D] = {4, 4, 4, 5, 5, 5, 6, 6, 6};
    double ll[M] = {0}, lp[M] = {0}, gll[M * D] = {0}, glp[M * D] = {0}, p[M], x0[M * D];
    memcpy(x0, x, sizeof x);
    CHECK(cap <= 0 || truncated > 0, "cap %g truncates no drift", cap);
    CHECK(phase_pt_accept(M, D, 1, cap, metric, factor, step, logpi, logpi_new, grad_new, jump, move, 5, 15, ids, prop,
                          ll_new, lp_new, gll_new, glp_new, x, ll, lp, gll, glp, p) == PHASE_OK, "accept status");
    double u[M];
    phase_random_uniform(5, 15, M, ids, 1, u);
    int taken = 0;
    for (int r = 0; r < M; r++) {
        const double *f = factor ? factor + r * fs : NULL;
        double log_ratio = logpi_new[r] - logpi[r] +
                           log_q(metric, f, x0 + r * D, prop + r * D, grad_new + r * D, step[r], cap) -
                           log_q(metric, f, prop + r * D, x0 + r * D, grad + r * D, step[r], cap);
        CHECK_REL(p[r], fmin(1.0, exp(log_ratio)), 1e-12);
        const int take = u[r] < p[r];
        taken += take;
        CHECK(ll[r] == (take ? ll_new[r] : 0) && lp[r] == (take ? lp_new[r] : 0), "row %d scalars", r);
        for (int i = 0; i < D; i++)
            CHECK(x[r * D + i] == (take ? prop : x0)[r * D + i] && gll[r * D + i] == (take ? gll_new[r * D + i] : 0) &&
                      glp[r * D + i] == (take ? glp_new[r * D + i] : 0),
                  "row %d component %d", r, i);
    }
    CHECK((taken > 0 && taken < M) || metric != PHASE_PT_UNIT, "unit metric: both decisions (%d of %d taken)", taken, M);
    /* row 1 alone gives the same bits as in the batch */
    double p1, x1[D], ll1 = 0, lp1 = 0, g1[D] = {0}, h1[D] = {0}, j1[D], m1[D], q1[D];
    memcpy(x1, x0 + D, sizeof x1);
    phase_pt_propose(1, D, 1, cap, metric, factor ? factor + fs : NULL, step + 1, x1, grad + D, 5, 12, ids + 4, j1, m1, q1);
    CHECK(memcmp(q1, prop + D, sizeof q1) == 0, "row alone: proposal bits");
    phase_pt_accept(1, D, 1, cap, metric, factor ? factor + fs : NULL, step + 1, logpi + 1, logpi_new + 1, grad_new + D, j1,
                    m1, 5, 15, ids + 4, q1, ll_new + 1, lp_new + 1, gll_new + D, glp_new + D, x1, &ll1, &lp1, g1, h1,
                    &p1);
    CHECK(memcmp(&p1, p + 1, sizeof p1) == 0, "row alone: acceptance bits");
}

static void test_random_walk_and_non_finite(void)
{
    const double step[2] = {0.5, 0.5}, x[2] = {1.0, 2.0};
    const uint64_t ids[8] = {0, 0, 1, 0, 0, 1, 1, 0};
    double jump[2], move[2], prop[2];
    CHECK(phase_pt_propose(2, 1, 0, 0.0, PHASE_PT_UNIT, NULL, step, x, NULL, 1, 12, ids, jump, move, prop) == PHASE_OK,
          "random walk without gradients");
    CHECK(move[0] == jump[0] && prop[1] == x[1] + jump[1], "random walk: x + h xi");
    /* random walk: the ratio of the targets only, no proposal correction */
    const double logpi[2] = {-1.0, -INFINITY}, logpi_new[2] = {-1.5, -INFINITY};
    double xx[2] = {1.0, 2.0}, ll[2] = {0}, lp[2] = {0}, g[2] = {0}, h[2] = {0}, p[2];
    const double z2[2] = {0, 0};
    CHECK(phase_pt_accept(2, 1, 0, 0.0, PHASE_PT_UNIT, NULL, step, logpi, logpi_new, NULL, jump, move, 1, 15, ids, prop,
                          z2, z2, z2, z2, xx, ll, lp, g, h, p) == PHASE_OK, "random-walk accept");
    CHECK_REL(p[0], exp(-0.5), 1e-15);
    CHECK(p[1] == 0.0 && xx[1] == 2.0, "-inf - -inf (NaN) never accepts: %g", p[1]);
    const double nan_new[2] = {NAN, INFINITY};
    CHECK(phase_pt_accept(2, 1, 0, 0.0, PHASE_PT_UNIT, NULL, step, logpi, nan_new, NULL, jump, move, 1, 15, ids, prop,
                          z2, z2, z2, z2, xx, ll, lp, g, h, p) == PHASE_OK, "NaN target");
    CHECK(p[0] == 0.0 && p[1] == 1.0, "NaN ratio never, inf - (-inf) always: %g %g", p[0], p[1]);
}

static void test_swap(void)
{
    const double bl[5] = {1.0, 0.8, 0.5, 1.0, 1.0}, bh[5] = {0.6, 0.3, 0.0, 0.5, 0.5};
    const double vl[5] = {-10.0, -3.0, -1.0, -INFINITY, 0.0}, vh[5] = {-12.0, -2.0, -50.0, -INFINITY, -INFINITY};
    uint64_t ids[20] = {0};
    for (int k = 0; k < 5; k++) ids[4 * k + 1] = (uint64_t)k, ids[4 * k + 2] = 9;
    double alpha[5], u[5];
    uint8_t accepted[5];
    CHECK(phase_pt_swap(5, bl, bh, vl, vh, 2, 13, ids, alpha, accepted) == PHASE_OK, "swap status");
    phase_random_uniform(2, 13, 5, ids, 1, u);
    CHECK_REL(alpha[0], exp(-0.4 * 2.0), 1e-15);
    CHECK(alpha[1] == 1.0, "uphill swap: %g", alpha[1]);
    CHECK_REL(alpha[2], exp(-0.5 * 49.0), 1e-15);
    CHECK(alpha[3] == 0.0 && alpha[4] == 0.0, "outside the support: %g %g", alpha[3], alpha[4]);
    for (int k = 0; k < 5; k++) CHECK(accepted[k] == (u[k] < alpha[k]), "pair %d decision", k);
}

static void test_swap_phase(void)
{
    /* one chain of 4 levels on this process: pairs (0, 1) and (2, 3); then a
     * process holding slots 1..2 only: pair (0, 1) and (2, 3) are cross pairs */
    const double betas[4] = {1.0, 0.5, 0.2, 0.0};
    const int64_t g[2] = {0, 2}, low[2] = {0, 2}, high[2] = {1, 3};
    const double v_low[2] = {-1.0, -30.0}, v_high[2] = {-0.5, -31.0};
    double x[8] = {0, 0, 1, 1, 2, 2, 3, 3}, ll[4] = {-1, -0.5, -30, -31}, lp[4] = {0, 1, 2, 3};
    double gll[8] = {0, 0, 1, 1, 2, 2, 3, 3}, glp[8] = {0, 0, 1, 1, 2, 2, 3, 3}, dec[16] = {0}, stats[24] = {0};
    int64_t label[4] = {0, 1, 2, 3}, last_end[4] = {-1, 0, 1, -1};
    const int64_t ends0[4] = {-1, 0, 1, -1};
    double alpha[2], want_alpha[2];
    uint8_t acc[2], want_acc[2];
    CHECK(phase_pt_swap_phase(2, g, low, high, betas, 4, 6, v_low, v_high, 3, 13, 4, 2, x, ll, lp, gll, glp, label,
                              last_end, dec, stats, alpha, acc) == PHASE_OK, "swap phase status");
    const uint64_t ids[8] = {0, 0, 6, 0, 0, 2, 6, 0};
    phase_pt_swap(1, betas, betas + 1, v_low, v_high, 3, 13, ids, want_alpha, want_acc);
    phase_pt_swap(1, betas + 2, betas + 3, v_low + 1, v_high + 1, 3, 13, ids + 4, want_alpha + 1, want_acc + 1);
    for (int k = 0; k < 2; k++) {
        const int i = 2 * k, j = i + 1;
        CHECK(alpha[k] == want_alpha[k] && acc[k] == want_acc[k], "pair %d: the rule of phase_pt_swap", k);
        CHECK(label[i] == (acc[k] ? j : i) && label[j] == (acc[k] ? i : j), "pair %d: labels", k);
        CHECK(x[2 * i] == label[i] && ll[i] == (acc[k] ? v_high : v_low)[k] && lp[j] == label[j] &&
                  gll[2 * j + 1] == label[j] && glp[2 * i] == label[i],
              "pair %d: the states move with their labels", k);
        CHECK(last_end[i] == ends0[label[i]], "pair %d: last_end moves", k);
        CHECK(dec[4 * i + 2] == 6 && dec[4 * i + 3] == acc[k] && dec[4 * j] == 6 && dec[4 * j + 1] == acc[k],
              "pair %d: decisions on both ends", k);
        CHECK(stats[6 * i + 2] == 1.0 - alpha[k] && stats[6 * i + 3] == acc[k] && stats[6 * i + 4] == 1 &&
                  stats[6 * j + 4] == 0,
              "pair %d: statistics on the lower end", k);
    }
    CHECK(alpha[0] == 1 && acc[0] == 1 && alpha[1] < 1, "pair 0 swaps (uphill), pair 1 is a draw: %g", alpha[1]);
    /* the process holding slots 1 and 2: both pairs cross, nothing exchanged, the same decisions */
    const int64_t low2[2] = {-1, 1}, high2[2] = {0, -1};
    double x2[4] = {1, 1, 2, 2}, ll2[2] = {-0.5, -30}, d2[8] = {0}, s2[12] = {0}, a2[2];
    int64_t lab2[2] = {1, 2}, end2[2] = {0, 1};
    uint8_t c2[2];
    CHECK(phase_pt_swap_phase(2, g, low2, high2, betas, 4, 6, v_low, v_high, 3, 13, 2, 2, x2, ll2, ll2, x2, x2, lab2,
                              end2, d2, s2, a2, c2) == PHASE_OK, "cross pairs status");
    CHECK(memcmp(a2, alpha, sizeof a2) == 0 && memcmp(c2, acc, sizeof c2) == 0, "cross pairs: the same decisions");
    CHECK(lab2[0] == 1 && lab2[1] == 2 && d2[1] == acc[0] && d2[7] == acc[1] && s2[6 + 4] == 1 && s2[4] == 0,
          "cross pairs: no exchange, decisions on the local ends, statistics on the lower one");
    const int64_t bad[2] = {0, 3};
    CHECK(phase_pt_swap_phase(2, g, low, bad, betas, 4, 6, v_low, v_high, 3, 13, 4, 2, x, ll, lp, gll, glp, label,
                              last_end, dec, stats, alpha, acc) == PHASE_EINVAL, "ends not adjacent");
    const int64_t top[1] = {3}, l3[1] = {3}, h3[1] = {-1};
    CHECK(phase_pt_swap_phase(1, top, l3, h3, betas, 4, 6, v_low, v_high, 3, 13, 4, 2, x, ll, lp, gll, glp, label,
                              last_end, dec, stats, alpha, acc) == PHASE_EINVAL, "pair above the top level");

    /* round trips: levels 0..3 of two chains starting at slot 0 */
    int64_t ends[8] = {1, 0, 1, 0, -1, 1, -1, -1};
    double st[48] = {0};
    CHECK(phase_pt_round_trips(8, 0, 4, ends, st) == PHASE_OK, "round trips status");
    const int64_t want_ends[8] = {0, 0, 1, 1, 0, 1, -1, -1};
    for (int i = 0; i < 8; i++) CHECK(ends[i] == want_ends[i] && st[6 * i + 5] == (i == 0), "round trips slot %d", i);
    CHECK(phase_pt_round_trips(1, 0, 1, ends, st) == PHASE_EINVAL, "one level");
}

static void test_arguments(void)
{
    double a[4] = {0}, b[4];
    uint64_t ids[4] = {0};
    uint8_t c[1];
    CHECK(phase_pt_propose(-1, 1, 0, 0.0, PHASE_PT_UNIT, NULL, a, a, a, 0, 0, ids, b, b, b) == PHASE_EINVAL, "m < 0");
    CHECK(strstr(phase_last_error(), "phase_pt_propose") != NULL, "message names the function");
    CHECK(phase_pt_propose(1, 65, 0, 0.0, PHASE_PT_UNIT, NULL, a, a, a, 0, 0, ids, b, b, b) == PHASE_EINVAL, "d > 64");
    CHECK(phase_pt_propose(1, 1, 0, 0.0, 7, NULL, a, a, a, 0, 0, ids, b, b, b) == PHASE_EINVAL, "unknown metric");
    CHECK(phase_pt_propose(1, 1, 0, 0.0, PHASE_PT_DENSE, NULL, a, a, a, 0, 0, ids, b, b, b) == PHASE_EINVAL, "no factor");
    CHECK(phase_pt_propose(1, 1, 1, 0.0, PHASE_PT_UNIT, NULL, a, a, NULL, 0, 0, ids, b, b, b) == PHASE_EINVAL,
          "MALA without gradients");
    CHECK(phase_pt_accept(1, 1, 0, 0.0, PHASE_PT_UNIT, NULL, a, a, a, NULL, a, a, 0, 0, ids, a, a, a, a, a, b, b, b, b,
                          NULL, b) == PHASE_EINVAL, "NULL output");
    CHECK(phase_pt_accept(0, 1, 1, 0.0, PHASE_PT_UNIT, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL,
                          NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL) == PHASE_OK, "empty call");
    CHECK(phase_pt_swap(-1, a, a, a, a, 0, 0, ids, b, c) == PHASE_EINVAL, "swap n < 0");
    CHECK(phase_pt_swap(1, a, a, a, a, 0, 0, ids, b, NULL) == PHASE_EINVAL, "swap NULL decisions");
}

int main(void)
{
    for (int k = 0; k < 2; k++) { /* no truncation, then a cap that shortens some drifts */
        test_mala(PHASE_PT_UNIT, 0.3 * k);
        test_mala(PHASE_PT_DIAGONAL, 0.3 * k);
        test_mala(PHASE_PT_DENSE, 0.3 * k);
    }
    test_random_walk_and_non_finite();
    test_swap();
    test_swap_phase();
    test_arguments();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
