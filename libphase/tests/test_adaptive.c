/*
 * C tests of adaptive uniformization (chain.c): a stiff two-state chain
 * against its closed form, Kingman's coalescent against the single-rate
 * path (opts.adaptive = 0), far-tail points that must fall back to one
 * rate, and a cyclic graph that must not be cut at all. Prints
 * "N passed, N failed".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phase.h"

#include "check.h"


/* Closed forms of fast_slow at theta: density, its t-derivative, survival. */
static void fast_slow_exact(double theta, double t, double *f, double *df_dt, double *surv)
{
    const double a = FAST * theta, b = theta, c = a * b / (a - b);
    *f = c * (exp(-b * t) - exp(-a * t));
    *df_dt = c * (-b * exp(-b * t) + a * exp(-a * t));
    *surv = (a * exp(-b * t) - b * exp(-a * t)) / (a - b);
}

static void eval_both(const phase_graph *g, double theta, int n, const double *t,
                      phase_quantity q, double *adaptive, double *single, int64_t *terms)
{
    phase_options opts;
    phase_options_default(&opts);
    phase_info info[2];
    int status[2] = {-1, -1};
    CHECK(phase_eval(g, &opts, 1, &theta, n, t, q, adaptive, status, &info[0]) == PHASE_OK,
          "%s", phase_last_error());
    opts.adaptive = 0;
    CHECK(phase_eval(g, &opts, 1, &theta, n, t, q, single, status + 1, &info[1]) == PHASE_OK,
          "%s", phase_last_error());
    CHECK(status[0] == PHASE_OK && status[1] == PHASE_OK, "status %d %d", status[0], status[1]);
    terms[0] = info[0].n_terms;
    terms[1] = info[1].n_terms;
}

static void test_fast_slow_closed_form(void)
{
    phase_graph *g = fast_slow();
    const double theta = 1.3, t[] = {0.001, 0.01, 0.5, 1.0, 3.0, 6.0};
    enum { N = sizeof t / sizeof t[0] };
    double ad[N], one[N];
    int64_t terms[2];
    eval_both(g, theta, N, t, PHASE_PDF, ad, one, terms);
    for (int i = 0; i < N; i++) {
        double f, df, s;
        fast_slow_exact(theta, t[i], &f, &df, &s);
        CHECK_REL(ad[i], f, 1e-10);
    }
    /* Lambda t_max = 7800 terms at one rate; a handful of segments here. */
    CHECK(terms[0] * 10 < terms[1], "adaptive %lld terms, single rate %lld", (long long)terms[0],
          (long long)terms[1]);
    eval_both(g, theta, N, t, PHASE_SURVIVAL, ad, one, terms);
    for (int i = 0; i < N; i++) {
        double f, df, s;
        fast_slow_exact(theta, t[i], &f, &df, &s);
        CHECK_REL(ad[i], s, 1e-10);
    }
    eval_both(g, theta, N, t, PHASE_CDF, ad, one, terms);
    for (int i = 0; i < N; i++) {
        double f, df, s;
        fast_slow_exact(theta, t[i], &f, &df, &s);
        CHECK_REL(ad[i], 1.0 - s, 1e-10);
    }
    /* Log-likelihood of exact times and its gradient (tangents through the
     * segments), by the scale identity d f / d theta = (f + t df/dt) / theta. */
    const double obs[] = {0.5, 1.0, 3.0, 6.0};
    phase_data data;
    memset(&data, 0, sizeof data);
    data.n_exact = 4;
    data.exact = obs;
    double want_ll = 0.0, want_grad = 0.0;
    for (int i = 0; i < 4; i++) {
        double f, df, s;
        fast_slow_exact(theta, obs[i], &f, &df, &s);
        want_ll += log(f);
        want_grad += (f + obs[i] * df) / theta / f;
    }
    /* Tangents through the segments, and the adjoint back through them. */
    const int modes[] = {PHASE_GRADIENT_FORWARD, PHASE_GRADIENT_REVERSE};
    for (int m = 0; m < 2; m++) {
        double ll, grad;
        int status = -1;
        phase_info info;
        phase_options opts;
        phase_options_default(&opts);
        opts.gradient_mode = modes[m];
        CHECK(phase_loglik(g, &opts, &data, 1, &theta, &ll, &grad, &status, &info) == PHASE_OK &&
                  status == PHASE_OK,
              "%s", phase_last_error());
        CHECK(info.gradient_mode == modes[m] && info.n_terms < 1000, "mode %d: %lld terms",
              info.gradient_mode, (long long)info.n_terms);
        CHECK_REL(ll, want_ll, 1e-10);
        CHECK_REL(grad, want_grad, 1e-10);
    }
    phase_graph_free(g);
}

/* Kingman n = 100 (Lambda = 4950): adaptive against the single rate on
 * every quantity, and log-likelihoods with censored terms and gradients
 * (points off the far left tail, where the bound would send it back to one
 * rate: test_far_tail_falls_back). */
static void test_kingman_against_single_rate(void)
{
    phase_graph *g = kingman(100);
    const double theta = 0.9, t[] = {0.3, 0.7, 1.5, 3.0, 5.0, 8.0};
    enum { N = sizeof t / sizeof t[0] };
    double ad[N], one[N];
    int64_t terms[2];
    const phase_quantity qs[] = {PHASE_PDF, PHASE_LOGPDF, PHASE_CDF, PHASE_SURVIVAL,
                                 PHASE_LOGSURVIVAL};
    for (int q = 0; q < 5; q++) {
        eval_both(g, theta, N, t, qs[q], ad, one, terms);
        for (int i = 0; i < N; i++) CHECK_REL(ad[i], one[i], 1e-10);
        CHECK(terms[0] * 10 < terms[1], "quantity %d: %lld terms vs %lld", (int)qs[q],
              (long long)terms[0], (long long)terms[1]);
    }
    const double exact[] = {0.4, 1.1, 2.5, 6.0}, right[] = {1.7, 7.5};
    const double lo[] = {0.3, 2.0, -1.0}, hi[] = {0.9, 4.0, 0.6};
    phase_data data = {4, exact, NULL, 2, right, NULL, 3, lo, hi, NULL};
    /* Forward, reverse, and reverse with the kept vectors thinned
     * (memory_limit small: checkpointed recomputation inside segments). */
    const int modes[] = {PHASE_GRADIENT_FORWARD, PHASE_GRADIENT_REVERSE, PHASE_GRADIENT_REVERSE};
    for (int m = 0; m < 3; m++) {
        double ll[2], grad[2];
        int status[2];
        phase_info info[2];
        phase_options opts;
        phase_options_default(&opts);
        opts.gradient_mode = modes[m];
        if (m == 2) opts.memory_limit = 4096;
        for (int a = 0; a < 2; a++) {
            opts.adaptive = 1 - a;
            CHECK(phase_loglik(g, &opts, &data, 1, &theta, &ll[a], &grad[a], &status[a],
                               &info[a]) == PHASE_OK && status[a] == PHASE_OK,
                  "%s", phase_last_error());
        }
        CHECK_REL(ll[0], ll[1], 1e-12);
        CHECK_REL(grad[0], grad[1], 1e-10);
        CHECK(info[0].n_terms * 10 < info[1].n_terms, "loglik: %lld terms vs %lld",
              (long long)info[0].n_terms, (long long)info[1].n_terms);
        if (m == 2) CHECK(info[0].checkpoint_stride > 1, "stride %lld",
                          (long long)info[0].checkpoint_stride);
    }
    phase_graph_free(g);
}

/* A point whose value is far below what the boundaries' bound allows
 * (f(200) ~ e^-180, f(300) ~ e^-280) sends the theta back to one rate: the
 * same bits. */
static void test_far_tail_falls_back(void)
{
    phase_graph *g = kingman(60);
    const double theta = 1.0, ts[2][2] = {{0.5, 200.0}, {300.0, 3.0}};
    for (int c = 0; c < 2; c++) {
        const double *t = ts[c];
        double ad[2], one[2];
        int64_t terms[2];
        eval_both(g, theta, 2, t, PHASE_LOGPDF, ad, one, terms);
        CHECK(ad[0] == one[0] && ad[1] == one[1], "fallback %.17g %.17g vs %.17g %.17g", ad[0],
              ad[1], one[0], one[1]);
        CHECK(terms[0] == terms[1], "fallback terms %lld vs %lld", (long long)terms[0],
              (long long)terms[1]);
        CHECK(isfinite(ad[0]) && isfinite(ad[1]), "log f = %g %g", ad[0], ad[1]);
    }
    phase_graph_free(g);
}

/* Every state of the rabbits reaches the fastest: one segment, same bits. */
static void test_cyclic_graph_is_not_cut(void)
{
    enum { S20, S11, S02, S10, S01, ABS = PHASE_ABSORBING };
    double alpha[5] = {1, 0, 0, 0, 0}, base[12] = {0};
    int32_t src[] = {S20, S20, S11, S11, S11, S11, S02, S02, S10, S10, S01, S01};
    int32_t dst[] = {S11, ABS, S02, S01, S20, S10, S11, ABS, S01, ABS, S10, ABS};
    double coef[12] = {2000, 1, 1000, 1, 1000, 1, 2000, 1, 1000, 1, 1000, 1};
    phase_graph *g = NULL;
    CHECK(phase_graph_new(&g, 5, 1, alpha, 12, src, dst, base, coef, 0) == PHASE_OK, "%s",
          phase_last_error());
    const double theta = 1.0, t[] = {0.5, 2.0, 4.0};
    double ad[3], one[3];
    int64_t terms[2];
    eval_both(g, theta, 3, t, PHASE_PDF, ad, one, terms);
    for (int i = 0; i < 3; i++) CHECK(ad[i] == one[i], "%d: %.17g vs %.17g", i, ad[i], one[i]);
    CHECK(terms[0] == terms[1], "terms %lld vs %lld", (long long)terms[0], (long long)terms[1]);
    phase_graph_free(g);
}

int main(void)
{
    test_fast_slow_closed_form();
    test_kingman_against_single_rate();
    test_far_tail_falls_back();
    test_cyclic_graph_is_not_cut();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
