/*
 * C tests of step-wise adaptive uniformization (stepau.c) through
 * phase_loglik: a stiff two-state chain against its closed form (value and
 * gradient), Kingman's coalescent against the single-rate path
 * (opts.adaptive = 0, an independent algorithm) and against central
 * differences, and the same log-likelihood bits with and without the
 * gradient. info.n_terms shows which path ran: step-wise uniformization
 * takes one step per level of these graphs. Prints "N passed, N failed".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phase.h"

#include "check.h"

#define FAST 1000.0

/* 0 -> 1 at FAST theta, 1 -> out at theta: hypoexponential(FAST theta, theta). */
static phase_graph *fast_slow(void)
{
    double alpha[2] = {1.0, 0.0}, base[2] = {0.0, 0.0}, coef[2] = {FAST, 1.0};
    int32_t src[2] = {0, 1}, dst[2] = {1, PHASE_ABSORBING};
    phase_graph *g = NULL;
    if (phase_graph_new(&g, 2, 1, alpha, 2, src, dst, base, coef, 0))
        printf("fast_slow: %s\n", phase_last_error());
    return g;
}

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

static void test_kingman(void)
{
    const int n = 60;
    phase_graph *g = kingman(n);
    double t[40];
    for (int i = 0; i < 40; i++) t[i] = 0.3 + 0.14 * i; /* up to 5.8: far right tail too */
    for (double theta = 0.8; theta < 1.6; theta += 0.35) {
        double grad = NAN, grad1 = NAN, gp = NAN, gm = NAN;
        phase_info info, info1;
        const double ll = loglik(g, 1, theta, 40, t, &grad, &info);
        const double ll1 = loglik(g, 0, theta, 40, t, &grad1, &info1);
        CHECK(info.n_terms == n, "step-wise path: %d steps, got %lld terms", n - 1,
              (long long)info.n_terms);
        CHECK(info1.n_terms > 1000, "single rate: %lld terms", (long long)info1.n_terms);
        CHECK_REL(ll, ll1, 1e-11);
        CHECK_REL(grad, grad1, 1e-9);
        const double h = 1e-5 * theta;
        const double fd = (loglik(g, 1, theta + h, 40, t, &gp, NULL) -
                           loglik(g, 1, theta - h, 40, t, &gm, NULL)) / (2.0 * h);
        CHECK_REL(grad, fd, 1e-6);
        CHECK(loglik(g, 1, theta, 40, t, NULL, NULL) == ll, "value bits differ without gradient");
    }
    phase_graph_free(g);
}

int main(void)
{
    test_fast_slow();
    test_kingman();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
