/*
 * C tests of step-wise adaptive uniformization (stepau.c, stepbirth.c)
 * through phase_loglik and phase_eval: a stiff two-state chain against its
 * closed form (value and gradient), the block-counting coalescent against
 * the single-rate path (opts.adaptive = 0, an independent algorithm) and
 * central differences, one and two parameters, the same bits with and
 * without the gradient and whatever the batch, weights and repeated times,
 * right-censored data, densities from phase_eval, and the cases left to
 * the chain (Kingman's one-state levels, rates that differ within a level). info.n_terms shows which path ran:
 * step-wise uniformization takes one step per level of these graphs.
 * Prints "N passed, N failed".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phase.h"

#include "check.h"


static double loglik(const phase_graph *g, int adaptive, double theta, int n, const double *t,
                     double *grad, phase_info *info)
{
    phase_options opts;
    phase_options_default(&opts);
    opts.adaptive = adaptive;
    phase_data data;
    memset(&data, 0, sizeof data);
    data.n_exact = n;
    data.exact = t;
    double ll = NAN;
    int status = -1;
    CHECK(phase_loglik(g, &opts, &data, 1, &theta, &ll, grad, &status, info) == PHASE_OK,
          "%s", phase_last_error());
    CHECK(status == PHASE_OK, "status %d", status);
    return ll;
}

/* log f and d log f / d theta summed over t, from the closed form:
 * f = c (e^-bt - e^-at), a = FAST theta, b = theta, and the scale identity
 * d f / d theta = (f + t df/dt) / theta. */
static void fast_slow_exact(double theta, int n, const double *t, double *ll, double *grad)
{
    const double a = FAST * theta, b = theta, c = a * b / (a - b);
    *ll = 0.0, *grad = 0.0;
    for (int i = 0; i < n; i++) {
        const double f = c * (exp(-b * t[i]) - exp(-a * t[i]));
        const double df_dt = c * (-b * exp(-b * t[i]) + a * exp(-a * t[i]));
        *ll += log(f);
        *grad += (f + t[i] * df_dt) / theta / f;
    }
}

static void test_fast_slow(void)
{
    phase_graph *g = fast_slow();
    const double t[] = {0.002, 0.01, 0.5, 1.0, 3.0, 6.0};
    enum { N = sizeof t / sizeof t[0] };
    for (double theta = 0.7; theta < 2.0; theta += 0.6) {
        double grad = NAN, ll_exact, grad_exact, plain = NAN;
        phase_info info;
        const double ll = loglik(g, 1, theta, N, t, &grad, &info);
        fast_slow_exact(theta, N, t, &ll_exact, &grad_exact);
        CHECK(info.n_terms == 3, "step-wise path: 2 steps, got %lld terms", (long long)info.n_terms);
        CHECK_REL(ll, ll_exact, 1e-12);
        CHECK_REL(grad, grad_exact, 1e-10);
        plain = loglik(g, 1, theta, N, t, NULL, NULL);
        CHECK(plain == ll, "value %.17g differs from value with gradient %.17g", plain, ll);
    }
    phase_graph_free(g);
}

/* Block-counting coalescent of n samples (states: counts c_1..c_{n-1} of
 * lineages subtending i samples, found breadth-first from c_1 = n; classes
 * i <= j merge at theta c_i (c_i - 1) / 2 or theta c_i c_j). */
#define BC_MAX 14
#define BC_STATES 200
static int bc_find(int (*st)[BC_MAX], int *count, int n, const int *c)
{
    for (int s = 0; s < *count; s++)
        if (!memcmp(st[s], c, sizeof(int) * (size_t)n)) return s;
    memcpy(st[*count], c, sizeof(int) * (size_t)n);
    return (*count)++;
}

/* d = 2: a two-epoch version, mergers among at most `split` lineages at
 * theta_1 (every state of a level keeps one rate function); split < 0:
 * mergers of a singleton at theta_1, so that a level's states have
 * different rate functions. */
static phase_graph *block_counting2(int n, int d, int split)
{
    static int st[BC_STATES][BC_MAX];
    int count = 0, c[BC_MAX] = {0}, ne = 0;
    int32_t src[4 * BC_STATES * BC_MAX], dst[4 * BC_STATES * BC_MAX];
    double coef[2 * 4 * BC_STATES * BC_MAX] = {0};
    c[1] = n;
    bc_find(st, &count, n, c);
    for (int s = 0; s < count; s++)
        for (int i = 1; i < n; i++)
            for (int j = i; j < n; j++) {
                const double r = i == j ? st[s][i] * (st[s][i] - 1) / 2.0 : st[s][i] * st[s][j];
                if (r <= 0.0) continue;
                memcpy(c, st[s], sizeof c);
                c[i]--, c[j]--, c[i + j < n ? i + j : 0]++;
                int k = 0;
                for (int x = 1; x < n; x++) k += st[s][x];
                const int second = split < 0 ? i == 1 : k <= split; /* < 0: mixed levels */
                src[ne] = s, coef[ne * d + (d == 2 && second ? 1 : 0)] = r;
                dst[ne++] = i + j == n ? PHASE_ABSORBING : bc_find(st, &count, n, c);
            }
    double *alpha = calloc((size_t)count, sizeof(double)), *base = calloc((size_t)ne, sizeof(double));
    alpha[0] = 1.0;
    phase_graph *g = NULL;
    if (phase_graph_new(&g, count, d, alpha, ne, src, dst, base, coef, 0))
        printf("block_counting: %s\n", phase_last_error());
    free(alpha), free(base);
    return g;
}

static phase_graph *block_counting(int n) { return block_counting2(n, 1, 0); }

/* Block-counting(12), 11 levels: the step-wise path takes 11 steps (12
 * terms); against one rate, central differences, and its own value bits. */
static void test_block_counting(void)
{
    const int n = 12;
    phase_graph *g = block_counting(n);
    double t[40];
    for (int i = 0; i < 40; i++) t[i] = 0.3 + 0.2 * i; /* up to 8.1: far right tail too */
    for (double theta = 0.8; theta < 1.6; theta += 0.5) {
        double grad = NAN, grad1 = NAN, gp = NAN, gm = NAN;
        phase_info info, info1;
        const double ll = loglik(g, 1, theta, 40, t, &grad, &info);
        const double ll1 = loglik(g, 0, theta, 40, t, &grad1, &info1);
        CHECK(info.n_terms == n, "step-wise path: %d steps, got %lld terms", n - 1,
              (long long)info.n_terms);
        CHECK(info1.n_terms > 500, "single rate: %lld terms", (long long)info1.n_terms);
        CHECK_REL(ll, ll1, 1e-12);
        CHECK_REL(grad, grad1, 1e-10);
        const double h = 1e-5 * theta;
        const double fd = (loglik(g, 1, theta + h, 40, t, &gp, NULL) -
                           loglik(g, 1, theta - h, 40, t, &gm, NULL)) / (2.0 * h);
        CHECK_REL(grad, fd, 1e-6);
        CHECK(loglik(g, 1, theta, 40, t, NULL, NULL) == ll, "value bits differ without gradient");
    }
    phase_graph_free(g);
}

/* The two-parameter graph g at theta = (1.3, 0.6) on 30 exact times from 0.4,
 * with adaptive uniformization (info[0]: step-wise where it applies) and with
 * one rate (info[1]): values and gradients agree, and the adaptive gradient
 * matches central differences (step 1e-5 theta). */
static void both_paths(const phase_graph *g, phase_info info[2])
{
    double t[30];
    for (int i = 0; i < 30; i++) t[i] = 0.4 + 0.25 * i;
    phase_options opts;
    phase_options_default(&opts);
    phase_data data;
    memset(&data, 0, sizeof data);
    data.n_exact = 30, data.exact = t;
    const double theta[2] = {1.3, 0.6};
    double ll[2], gr[2][2];
    for (int a = 0; a < 2; a++) {
        opts.adaptive = 1 - a;
        CHECK(phase_loglik(g, &opts, &data, 1, theta, &ll[a], gr[a], NULL, &info[a]) == 0,
              "%s", phase_last_error());
    }
    opts.adaptive = 1;
    for (int m = 0; m < 2; m++) {
        double tp[2] = {theta[0], theta[1]}, tm[2] = {theta[0], theta[1]}, lp, lm;
        const double h = 1e-5 * theta[m];
        tp[m] += h, tm[m] -= h;
        CHECK(phase_loglik(g, &opts, &data, 1, tp, &lp, NULL, NULL, NULL) == 0, "fd +");
        CHECK(phase_loglik(g, &opts, &data, 1, tm, &lm, NULL, NULL, NULL) == 0, "fd -");
        CHECK_REL(gr[0][m], gr[1][m], 1e-10);
        CHECK_REL(gr[0][m], (lp - lm) / (2.0 * h), 1e-6);
    }
    CHECK_REL(ll[0], ll[1], 1e-12);
}

/* Two parameters: PHASE_GRADIENT_AUTO picks reverse mode, the step-wise path
 * runs forward tangents instead; against one rate and central differences. */
static void test_two_parameters(void)
{
    const int n = 12;
    phase_graph *g = block_counting2(n, 2, 4);
    phase_info info[2];
    both_paths(g, info);
    CHECK(info[0].n_terms == n && info[0].gradient_mode == PHASE_GRADIENT_FORWARD,
          "step-wise forward path expected: %lld terms, mode %d", (long long)info[0].n_terms,
          info[0].gradient_mode);
    CHECK(info[1].gradient_mode == PHASE_GRADIENT_REVERSE, "single rate: reverse mode");
    phase_graph_free(g);
}

/* The bits of a theta do not depend on the batch around it (the workspace
 * is reused across thetas): the property that keeps any MPI layout bitwise. */
static void test_batch_bits(void)
{
    phase_graph *g = block_counting(12);
    double t[25];
    for (int i = 0; i < 25; i++) t[i] = 0.5 + 0.3 * i;
    const double thetas[3] = {1.4, 0.7, 1.05}, rev[3] = {1.05, 0.7, 1.4};
    phase_options opts;
    phase_options_default(&opts);
    phase_data data;
    memset(&data, 0, sizeof data);
    data.n_exact = 25, data.exact = t;
    double ll[3], gr[3], llr[3], grr[3], l1, g1;
    CHECK(phase_loglik(g, &opts, &data, 3, thetas, ll, gr, NULL, NULL) == 0, "batch");
    CHECK(phase_loglik(g, &opts, &data, 3, rev, llr, grr, NULL, NULL) == 0, "reversed");
    for (int p = 0; p < 3; p++) {
        CHECK(phase_loglik(g, &opts, &data, 1, &thetas[p], &l1, &g1, NULL, NULL) == 0, "one");
        CHECK(l1 == ll[p] && g1 == gr[p], "theta %g alone differs from the batch", thetas[p]);
        CHECK(llr[2 - p] == ll[p] && grr[2 - p] == gr[p], "theta %g: order changes bits",
              thetas[p]);
    }
    phase_graph_free(g);
}

/* phase_eval: densities (PDF, LOGPDF) at unsorted, repeated points take the
 * step-wise path, in the points' order; the CDF stays on the chain. */
static void test_eval_points(void)
{
    const int n = 12;
    phase_graph *g = block_counting(n);
    const double t[] = {3.1, 0.6, 7.9, 3.1, 1.7, 0.6, 5.2};
    enum { N = sizeof t / sizeof t[0] };
    const double theta = 1.1;
    const phase_quantity qs[3] = {PHASE_PDF, PHASE_LOGPDF, PHASE_CDF};
    for (int q = 0; q < 3; q++) {
        double a[N], b[N];
        phase_info info[2];
        phase_options opts;
        phase_options_default(&opts);
        for (int k = 0; k < 2; k++) {
            opts.adaptive = 1 - k;
            CHECK(phase_eval(g, &opts, 1, &theta, N, t, qs[q], k ? b : a, NULL, &info[k]) == 0,
                  "%s", phase_last_error());
        }
        CHECK((info[0].n_terms == n) == (q < 2), "quantity %d: %lld terms", q,
              (long long)info[0].n_terms);
        for (int i = 0; i < N; i++) CHECK_REL(a[i], b[i], 1e-12);
        CHECK(a[0] == a[3] && a[1] == a[5], "repeated points differ");
    }
    phase_graph_free(g);
}

/* Repeated times and weights (merged by the step-wise path), and right-
 * censored observations, against the single-rate path and central
 * differences. */
/* The log-likelihood and gradient (one parameter) on the default path
 * (index 0) and the single-rate path (1), compared; returns info[0]'s terms. */
static int64_t compare_paths(const phase_graph *g, const phase_data *data, double theta)
{
    phase_options opts;
    phase_options_default(&opts);
    double ll[2], gr[2];
    phase_info info[2];
    for (int a = 0; a < 2; a++) {
        opts.adaptive = 1 - a;
        CHECK(phase_loglik(g, &opts, data, 1, &theta, &ll[a], &gr[a], NULL, &info[a]) == 0,
              "%s", phase_last_error());
    }
    CHECK_REL(ll[0], ll[1], 1e-12);
    CHECK_REL(gr[0], gr[1], 1e-10);
    const double h = 1e-5 * theta, tp = theta + h, tm = theta - h;
    double lp, lm;
    opts.adaptive = 1;
    CHECK(phase_loglik(g, &opts, data, 1, &tp, &lp, NULL, NULL, NULL) == 0, "fd +");
    CHECK(phase_loglik(g, &opts, data, 1, &tm, &lm, NULL, NULL, NULL) == 0, "fd -");
    CHECK_REL(gr[0], (lp - lm) / (2.0 * h), 1e-6);
    return info[0].n_terms;
}

static void test_weights_and_censoring(void)
{
    phase_graph *g = block_counting(12);
    const double t[] = {2.0, 0.7, 2.0, 4.5, 0.7, 5.0, 1.1}, w[] = {1, 2, 3, 0, 1, 1, 2};
    phase_data data;
    memset(&data, 0, sizeof data);
    data.n_exact = 7, data.exact = t, data.exact_weight = w;
    CHECK(compare_paths(g, &data, 1.2) == 12, "weighted: step-wise path expected");
    /* Right-censored: at times shared with exact ones or not, in the bulk,
     * far right, and early (P(T > c) near 1: taken from its complement). */
    const double cs[] = {3.0, 2.0, 7.5, 0.25, 0.05}, cw[] = {1, 2, 1, 1, 3};
    data.n_right = 5, data.right = cs, data.right_weight = cw;
    CHECK(compare_paths(g, &data, 1.2) == 12, "censored: step-wise path expected");
    data.n_exact = 0; /* censored observations only */
    CHECK(compare_paths(g, &data, 0.9) == 12, "censored only: step-wise path expected");
    phase_graph_free(g);
}

/* Rate functions that differ within a level: the fastest state of a level
 * empties alone, the support spreads, the step-wise path declines early and
 * the chain's result stands. */
static void test_mixed_levels_decline(void)
{
    phase_graph *g = block_counting2(12, 2, -1);
    phase_info info[2];
    both_paths(g, info);
    CHECK(info[0].n_terms > 100, "chain path expected, got %lld terms", (long long)info[0].n_terms);
    phase_graph_free(g);
}

/* Kingman(60): one state per level, so the birth chain would cost what the
 * chain costs; the step-wise path declines and the chain's result stands. */
static void test_kingman_declines(void)
{
    const int n = 60;
    phase_graph *g = kingman(n);
    double t[40];
    for (int i = 0; i < 40; i++) t[i] = 0.3 + 0.14 * i;
    const double theta = 1.15;
    double grad = NAN, grad1 = NAN;
    phase_info info, info1;
    const double ll = loglik(g, 1, theta, 40, t, &grad, &info);
    const double ll1 = loglik(g, 0, theta, 40, t, &grad1, &info1);
    CHECK(info.n_terms > n, "chain path expected, got %lld terms", (long long)info.n_terms);
    CHECK_REL(ll, ll1, 1e-11);
    CHECK_REL(grad, grad1, 1e-9);
    phase_graph_free(g);
}

int main(void)
{
    test_fast_slow();
    test_block_counting();
    test_two_parameters();
    test_batch_bits();
    test_eval_points();
    test_weights_and_censoring();
    test_kingman_declines();
    test_mixed_levels_decline();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
