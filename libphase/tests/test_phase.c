/*
 * C unit tests for libphase, against closed forms and the reference values
 * of shared/oracles.md. Gradients are checked against central finite
 * differences of the library's own (exact) values. Prints "N passed, N failed".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phase.h"

#include "check.h"

/* ---- model builders ---------------------------------------------------- */

/* Parameterized rabbits, n = 2, theta = [jump per rabbit, flood_left,
 * flood_right]: states (2,0) (1,1) (0,2) (1,0) (0,1); (0,0) absorbs. */
static phase_graph *rabbits2(void)
{
    enum { S20, S11, S02, S10, S01, ABS = PHASE_ABSORBING };
    double alpha[5] = {1, 0, 0, 0, 0};
    int32_t src[] = {S20, S20, S11, S11, S11, S11, S02, S02, S10, S10, S01, S01};
    int32_t dst[] = {S11, ABS, S02, S01, S20, S10, S11, ABS, S01, ABS, S10, ABS};
    double coef[12][3] = {
        {2, 0, 0}, {0, 1, 0},                       /* (2,0) */
        {1, 0, 0}, {0, 1, 0}, {1, 0, 0}, {0, 0, 1}, /* (1,1) */
        {2, 0, 0}, {0, 0, 1},                       /* (0,2) */
        {1, 0, 0}, {0, 1, 0},                       /* (1,0) */
        {1, 0, 0}, {0, 0, 1},                       /* (0,1) */
    };
    double base[12] = {0};
    phase_graph *g = NULL;
    int st = phase_graph_new(&g, 5, 3, alpha, 12, src, dst, base, &coef[0][0], 0);
    if (st) printf("rabbits: %s\n", phase_last_error());
    return g;
}

/* One state exiting at rate (discrete: probability) theta: Exponential or Geometric. */
static phase_graph *one_state(int discrete)
{
    double alpha = 1.0, base = 0.0, coef = 1.0;
    int32_t src = 0, dst = PHASE_ABSORBING;
    phase_graph *g = NULL;
    if (phase_graph_new(&g, 1, 1, &alpha, 1, &src, &dst, &base, &coef, discrete))
        printf("one_state: %s\n", phase_last_error());
    return g;
}

static double eval1(const phase_graph *g, const double *theta, double t, phase_quantity q)
{
    double out = NAN;
    int status = -1;
    int st = phase_eval(g, NULL, 1, theta, 1, &t, q, &out, &status, NULL);
    if (st || status) printf("eval failed: %d %d %s\n", st, status, phase_last_error());
    return out;
}

/* ---- tests --------------------------------------------------------------- */

static void test_exponential(void)
{
    double alpha = 1.0, base = 0.0, coef = 1.0;
    int32_t src = 0, dst = PHASE_ABSORBING;
    phase_graph *g = NULL;
    CHECK(phase_graph_new(&g, 1, 1, &alpha, 1, &src, &dst, &base, &coef, 0) == PHASE_OK,
          "%s", phase_last_error());
    double theta = 2.5;
    double ts[] = {0.0, 0.1, 1.0, 3.0, 10.0};
    for (int i = 0; i < 5; i++) {
        CHECK_REL(eval1(g, &theta, ts[i], PHASE_PDF), theta * exp(-theta * ts[i]), 1e-12);
        CHECK_REL(eval1(g, &theta, ts[i], PHASE_SURVIVAL), exp(-theta * ts[i]), 1e-12);
    }
    /* Far tail: f = 2.5 e^{-2.5 * 300} ~ 1e-326 is below doubles, log f is not. */
    double t = 300.0;
    CHECK_REL(eval1(g, &theta, t, PHASE_LOGPDF), log(theta) - theta * t, 1e-12);
    CHECK_REL(eval1(g, &theta, t, PHASE_LOGSURVIVAL), -theta * t, 1e-12);
    /* loglik gradient: d/dtheta sum log f = n / theta - sum t. */
    double times[] = {0.2, 0.7, 1.9, 4.0};
    double wts[] = {1, 2, 1, 3};
    phase_data data = {0};
    data.n_exact = 4;
    data.exact = times;
    data.exact_weight = wts;
    double ll, grad;
    int status;
    CHECK(phase_loglik(g, NULL, &data, 1, &theta, &ll, &grad, &status, NULL) == PHASE_OK, "loglik");
    double want = 0, dwant = 0;
    for (int i = 0; i < 4; i++) {
        want += wts[i] * (log(theta) - theta * times[i]);
        dwant += wts[i] * (1.0 / theta - times[i]);
    }
    CHECK_REL(ll, want, 1e-12);
    CHECK_REL(grad, dwant, 1e-10);
    /* Right-censored: log S = -theta c, gradient -c. */
    phase_data cens = {0};
    double c = 1.3;
    cens.n_right = 1;
    cens.right = &c;
    CHECK(phase_loglik(g, NULL, &cens, 1, &theta, &ll, &grad, &status, NULL) == PHASE_OK, "cens");
    CHECK_REL(ll, -theta * c, 1e-12);
    CHECK_REL(grad, -c, 1e-10);
    /* Negative rate: domain error per theta, loglik -inf. */
    double bad = -1.0;
    CHECK(phase_loglik(g, NULL, &data, 1, &bad, &ll, &grad, &status, NULL) == PHASE_OK, "call ok");
    CHECK(status == PHASE_EDOMAIN && isinf(ll) && ll < 0 && grad == 0.0, "domain: %d %g", status, ll);
    phase_graph_free(g);
}

static void test_kingman_oracle(void)
{
    /* oracles.md: f(0.5), f(1), f(1.5) at theta = 1. */
    const int ns[] = {2, 3, 4, 5, 10};
    const double f[5][3] = {{0.6065306597, 0.3678794412, 0.2231301601},
                            {0.5751007493, 0.4771385592, 0.3180317454},
                            {0.4821091891, 0.5157962916, 0.3684553904},
                            {0.4013375903, 0.5297895602, 0.3990203460},
                            {0.2047220851, 0.5256929185, 0.4583102081}};
    const double ts[3] = {0.5, 1.0, 1.5};
    double theta = 1.0;
    for (int a = 0; a < 5; a++) {
        phase_graph *g = kingman(ns[a]);
        double out[3];
        int st = phase_eval(g, NULL, 1, &theta, 3, ts, PHASE_PDF, out, NULL, NULL);
        CHECK(st == PHASE_OK, "eval");
        for (int i = 0; i < 3; i++) /* the table has 10 decimals */
            CHECK(fabs(out[i] - f[a][i]) <= 5e-11, "n=%d f(%g) = %.12f vs %.10f", ns[a], ts[i], out[i], f[a][i]);
        /* n = 2 is Exponential(1): f = e^-t exactly. */
        if (ns[a] == 2)
            for (int i = 0; i < 3; i++) CHECK_REL(out[i], exp(-ts[i]), 1e-14);
        phase_graph_free(g);
    }
    /* n = 4: d f / d theta via loglik gradient: d log f = f'/f. */
    phase_graph *g = kingman(4);
    const double df[3] = {0.761083869881, 0.283849897147, -0.085357414601};
    for (int i = 0; i < 3; i++) {
        phase_data data = {0};
        data.n_exact = 1;
        data.exact = &ts[i];
        double ll, grad;
        phase_loglik(g, NULL, &data, 1, &theta, &ll, &grad, NULL, NULL);
        CHECK(fabs(exp(ll) - f[2][i]) <= 5e-11, "f = %.12f", exp(ll));
        CHECK_REL(grad * exp(ll), df[i], 1e-10);
    }
    phase_graph_free(g);
}

static void test_rabbits_oracle(void)
{
    phase_graph *g = rabbits2();
    CHECK(g != NULL, "rabbits graph");
    if (!g) return;
    double theta[3] = {1, 2, 4};
    const double ts[3] = {0.5, 1.0, 2.0};
    const double f[3] = {0.792306495213, 0.308695694599, 0.030444025387};
    const double df[3][3] = {{0.075533616751, -0.008049328629, 0.026039258804},
                             {0.005808255173, -0.141433031031, -0.016641301735},
                             {-0.009622084039, -0.040721615094, -0.006776705730}};
    for (int i = 0; i < 3; i++) {
        phase_data data = {0};
        data.n_exact = 1;
        data.exact = &ts[i];
        double ll, grad[3];
        phase_loglik(g, NULL, &data, 1, theta, &ll, grad, NULL, NULL);
        CHECK_REL(exp(ll), f[i], 1e-10);
        for (int m = 0; m < 3; m++) CHECK_REL(grad[m] * exp(ll), df[i][m], 1e-9);
    }
    phase_graph_free(g);
}

/* Gradient of a mixed data set (exact, right- and interval-censored, weights)
 * against central differences of the library's own log-likelihood, in
 * forward mode, reverse mode with all vectors kept, and reverse mode with
 * checkpointed recomputation; the two modes must also agree closely. */
static void test_gradient_fd(int mode, int store_limit_small)
{
    phase_graph *g = rabbits2();
    double theta[3] = {1.3, 0.7, 2.1};
    double ex[] = {0.05, 0.4, 1.1, 2.5, 6.0};
    double exw[] = {1, 3, 1, 2, 1};
    double rc[] = {0.8, 3.0};
    double lo[] = {0.0, 0.3, 1.0}, hi[] = {0.2, 0.9, INFINITY};
    phase_data data = {5, ex, exw, 2, rc, NULL, 3, lo, hi, NULL};
    phase_options opts;
    phase_options_default(&opts);
    opts.gradient_mode = mode;
    if (store_limit_small) opts.memory_limit = 5 * 8 * 3; /* forces checkpoint recomputation */
    double ll, grad[3];
    int status;
    phase_info info;
    CHECK(phase_loglik(g, &opts, &data, 1, theta, &ll, grad, &status, &info) == PHASE_OK, "%s",
          phase_last_error());
    CHECK(status == PHASE_OK, "status %d", status);
    CHECK(info.gradient_mode == mode, "mode used %d", info.gradient_mode);
    if (store_limit_small) CHECK(info.checkpoint_stride > 1, "stride %lld", (long long)info.checkpoint_stride);
    for (int m = 0; m < 3; m++) {
        double h = 1e-5 * theta[m], tp[3], tm[3], lp, lm;
        memcpy(tp, theta, sizeof tp);
        memcpy(tm, theta, sizeof tm);
        tp[m] += h;
        tm[m] -= h;
        phase_loglik(g, NULL, &data, 1, tp, &lp, NULL, NULL, NULL);
        phase_loglik(g, NULL, &data, 1, tm, &lm, NULL, NULL, NULL);
        CHECK_REL(grad[m], (lp - lm) / (2 * h), 1e-6);
    }
    double other[3];
    opts.gradient_mode = mode == PHASE_GRADIENT_FORWARD ? PHASE_GRADIENT_REVERSE : PHASE_GRADIENT_FORWARD;
    phase_loglik(g, &opts, &data, 1, theta, &ll, other, NULL, NULL);
    for (int m = 0; m < 3; m++) CHECK_REL(grad[m], other[m], 1e-11);
    phase_graph_free(g);
}

static void test_discrete(void)
{
    /* Geometric(0.5): one state, exit probability theta. */
    phase_graph *g = one_state(1);
    CHECK(g != NULL, "geom");
    double p = 0.5, ks[] = {0, 1, 2, 3, 4}, out[5];
    const double want[] = {0, 0.5, 0.25, 0.125, 0.0625};
    phase_eval(g, NULL, 1, &p, 5, ks, PHASE_PDF, out, NULL, NULL);
    for (int i = 0; i < 5; i++) CHECK(fabs(out[i] - want[i]) < 1e-15, "pmf(%d) = %g", i, out[i]);
    /* d/dp log pmf(k) = 1/p - (k-1)/(1-p) */
    double k = 3, ll, grad;
    phase_data data = {0};
    data.n_exact = 1;
    data.exact = &k;
    phase_loglik(g, NULL, &data, 1, &p, &ll, &grad, NULL, NULL);
    CHECK_REL(grad, 1 / p - 2 / (1 - p), 1e-12);
    double bad = 1.5;
    int status;
    phase_loglik(g, NULL, &data, 1, &bad, &ll, &grad, &status, NULL);
    CHECK(status == PHASE_EDOMAIN, "probability above 1 is a domain error");
    double frac = 1.5;
    data.exact = &frac;
    CHECK(phase_loglik(g, NULL, &data, 1, &p, &ll, &grad, NULL, NULL) == PHASE_EINVAL,
          "non-integer discrete point rejected");
    phase_graph_free(g);

    /* Defective example of oracles.md: pmf(0..3) = 0.25, 0, 0.42, 0.21. */
    double alpha2[2] = {0.75, 0.0}, base2[2] = {0.8, 0.7};
    int32_t src2[2] = {0, 1}, dst2[2] = {1, PHASE_ABSORBING};
    CHECK(phase_graph_new(&g, 2, 0, alpha2, 2, src2, dst2, base2, NULL, 1) == PHASE_OK, "defective");
    const double want2[] = {0.25, 0, 0.42, 0.21};
    phase_eval(g, NULL, 1, NULL, 4, ks, PHASE_PDF, out, NULL, NULL);
    for (int i = 0; i < 4; i++) CHECK(fabs(out[i] - want2[i]) < 1e-15, "pmf(%d) = %.17g", i, out[i]);
    phase_eval(g, NULL, 1, NULL, 4, ks, PHASE_CDF, out, NULL, NULL);
    CHECK(fabs(out[3] - 0.88) < 1e-15, "cdf(3) = %.17g", out[3]);
    phase_graph_free(g);
}

/* Erlang(k, 1): log f(t) = (k-1) log t - t - lgamma(k), also where f is
 * far below tol * max f. k = 100 makes the sweep grow its arrays while a
 * Poisson window is being summed. */
static void check_erlang_tails(int K, const double *ts, int nt)
{
    double *alpha = calloc((size_t)K, sizeof(double)), *base = calloc((size_t)K, sizeof(double));
    double *coef = malloc(sizeof(double) * (size_t)K);
    int32_t *src = malloc(sizeof(int32_t) * (size_t)K), *dst = malloc(sizeof(int32_t) * (size_t)K);
    alpha[0] = 1.0;
    for (int i = 0; i < K; i++) {
        src[i] = i;
        dst[i] = i + 1 < K ? i + 1 : PHASE_ABSORBING;
        coef[i] = 1;
    }
    phase_graph *g = NULL;
    phase_graph_new(&g, K, 1, alpha, K, src, dst, base, coef, 0);
    double theta = 1.0;
    for (int i = 0; i < nt; i++) {
        double t = ts[i];
        double want = (K - 1) * log(t) - t - lgamma((double)K);
        CHECK_REL(eval1(g, &theta, t, PHASE_LOGPDF), want, 1e-11);
    }
    phase_graph_free(g);
    free(alpha), free(base), free(coef), free(src), free(dst);
}

static void test_tails(void)
{
    const double t20[] = {1e-3, 0.05, 1.0, 20.0, 400.0};
    check_erlang_tails(20, t20, 5);
    const double t100[] = {1e-2, 3.0, 100.0, 900.0};
    check_erlang_tails(100, t100, 4);
}

/* ---- the atom at zero and small probabilities ------------------------- */

/* log-likelihood and d/dtheta of one data set at one theta, in one mode. */
static void loglik1(const phase_graph *g, const phase_data *data, double theta, int mode,
                    double *ll, double *grad, int *status)
{
    phase_options opts;
    phase_options_default(&opts);
    opts.gradient_mode = mode;
    int st = phase_loglik(g, &opts, data, 1, &theta, ll, grad, status, NULL);
    if (st) printf("loglik failed: %d %s\n", st, phase_last_error());
}

/* The issue-11 chain: alpha = (0.7, 0), 0 -> 1 -> out at rate theta each:
 * an atom of 0.3 at 0 and 0.7 Erlang(2, theta). */
static void test_atom_at_zero(void)
{
    double alpha[2] = {0.7, 0.0}, base[2] = {0, 0}, coef[2] = {1, 1};
    int32_t src[2] = {0, 1}, dst[2] = {1, PHASE_ABSORBING};
    phase_graph *g = NULL;
    CHECK(phase_graph_new(&g, 2, 1, alpha, 2, src, dst, base, coef, 0) == PHASE_OK, "chain");
    const double th = 1.5, t = 1.2;
    const double erl_F = 1.0 - exp(-th * t) * (1.0 + th * t);
    CHECK_REL(eval1(g, &th, 0.0, PHASE_PDF), 0.3, 1e-15);
    CHECK_REL(eval1(g, &th, 0.0, PHASE_LOGPDF), log(0.3), 1e-15);
    CHECK_REL(eval1(g, &th, 0.0, PHASE_CDF), 0.3, 1e-15);
    CHECK_REL(eval1(g, &th, 0.0, PHASE_SURVIVAL), 0.7, 1e-15);
    CHECK_REL(eval1(g, &th, t, PHASE_PDF), 0.7 * th * th * t * exp(-th * t), 1e-12);
    CHECK_REL(eval1(g, &th, t, PHASE_CDF), 0.3 + 0.7 * erl_F, 1e-12);
    for (int mode = PHASE_GRADIENT_REVERSE; mode <= PHASE_GRADIENT_FORWARD; mode++) {
        /* Exact: two zeros (log 0.3 each, no gradient) and t. */
        double exact[3] = {0.0, t, 0.0}, ll, grad;
        int status;
        phase_data data = {0};
        data.n_exact = 3;
        data.exact = exact;
        loglik1(g, &data, th, mode, &ll, &grad, &status);
        CHECK(status == PHASE_OK, "status %d", status);
        CHECK_REL(ll, 2 * log(0.3) + log(0.7 * th * th * t) - th * t, 1e-12);
        CHECK_REL(grad, 2.0 / th - t, 1e-10);
        /* Right-censored at 0: P(T > 0) = 0.7, gradient 0. */
        double zero = 0.0;
        phase_data right = {0};
        right.n_right = 1;
        right.right = &zero;
        loglik1(g, &right, th, mode, &ll, &grad, &status);
        CHECK_REL(ll, log(0.7), 1e-15);
        CHECK(fabs(grad) < 1e-15, "grad %g", grad);
        /* Intervals: (-1, t] and (-inf, t] include the atom, (0, t] does not,
         * (-inf, inf] is certain. dF_erlang/dtheta = theta t^2 e^{-theta t}. */
        double lo[4] = {-1.0, -INFINITY, 0.0, -INFINITY}, hi[4] = {t, t, t, INFINITY};
        const double dF = th * t * t * exp(-th * t);
        const double want[4] = {log(0.3 + 0.7 * erl_F), log(0.3 + 0.7 * erl_F), log(0.7 * erl_F), 0};
        const double dwant[4] = {0.7 * dF / (0.3 + 0.7 * erl_F), 0.7 * dF / (0.3 + 0.7 * erl_F),
                                 dF / erl_F, 0};
        for (int i = 0; i < 4; i++) {
            phase_data iv = {0};
            iv.n_interval = 1;
            iv.interval_lo = lo + i;
            iv.interval_hi = hi + i;
            loglik1(g, &iv, th, mode, &ll, &grad, &status);
            CHECK(status == PHASE_OK && fabs(ll - want[i]) <= 1e-12 * fabs(want[i]) + 1e-15,
                  "interval %d (mode %d): %.17g vs %.17g", i, mode, ll, want[i]);
            CHECK(fabs(grad - dwant[i]) <= 1e-10 * fabs(dwant[i]) + 1e-15,
                  "interval %d gradient (mode %d): %.17g vs %.17g", i, mode, grad, dwant[i]);
        }
    }
    /* A NaN or +inf lower bound is an argument error. */
    double bad_lo = NAN, one = 1.0, ll;
    phase_data iv = {0};
    iv.n_interval = 1;
    iv.interval_lo = &bad_lo;
    iv.interval_hi = &one;
    CHECK(phase_loglik(g, NULL, &iv, 1, &th, &ll, NULL, NULL, NULL) == PHASE_EINVAL,
          "NaN lower bound rejected");
    phase_graph_free(g);

    /* No defect: an exact 0 is the density alpha . s (exponential: theta). */
    g = one_state(0);
    CHECK_REL(eval1(g, &th, 0.0, PHASE_PDF), th, 1e-15);
    CHECK(eval1(g, &th, 0.0, PHASE_CDF) == 0.0, "cdf(0) = 0 without a defect");
    phase_graph_free(g);

    /* Discrete, oracles.md defective example: (-1, 2] includes pmf(0). */
    double alpha2[2] = {0.75, 0.0}, base2[2] = {0.8, 0.7};
    int32_t src2[2] = {0, 1}, dst2[2] = {1, PHASE_ABSORBING};
    CHECK(phase_graph_new(&g, 2, 0, alpha2, 2, src2, dst2, base2, NULL, 1) == PHASE_OK, "dph");
    double lo2[2] = {-1.0, 0.0}, hi2[2] = {2.0, 2.0};
    iv.interval_lo = lo2;
    iv.interval_hi = hi2;
    iv.n_interval = 2;
    CHECK(phase_loglik(g, NULL, &iv, 1, NULL, &ll, NULL, NULL, NULL) == PHASE_OK, "dph iv");
    CHECK_REL(ll, log(0.67) + log(0.42), 1e-14);
    phase_graph_free(g);
}

/* Exponential(theta): P(T <= t) = -expm1(-theta t) keeps its digits at any
 * size, and so does the detection-limit interval (0, t]. */
static void test_small_probabilities(void)
{
    phase_graph *g = one_state(0);
    CHECK(g != NULL, "exp");
    const double th = 1.0, ts[] = {1e-300, 1e-20, 1e-9, 1e-3, 0.5, 30.0};
    for (int i = 0; i < 6; i++) {
        CHECK_REL(eval1(g, &th, ts[i], PHASE_CDF), -expm1(-th * ts[i]), 1e-13);
        CHECK_REL(eval1(g, &th, ts[i], PHASE_SURVIVAL), exp(-th * ts[i]), 1e-13);
        CHECK_REL(eval1(g, &th, ts[i], PHASE_LOGSURVIVAL), -th * ts[i], 1e-13);
    }
    for (int mode = PHASE_GRADIENT_REVERSE; mode <= PHASE_GRADIENT_FORWARD; mode++) {
        double lo = 0.0, hi = 1e-12, ll, grad;
        int status;
        phase_data iv = {0};
        iv.n_interval = 1;
        iv.interval_lo = &lo;
        iv.interval_hi = &hi;
        loglik1(g, &iv, th, mode, &ll, &grad, &status);
        const double mass = -expm1(-th * hi);
        CHECK_REL(ll, log(mass), 1e-13);
        CHECK_REL(grad, hi * exp(-th * hi) / mass, 1e-11);
        /* Right-censored at a tiny c: log S = -theta c, gradient -c (not 0). */
        phase_data right = {0};
        double c = 1e-200;
        right.n_right = 1;
        right.right = &c;
        loglik1(g, &right, th, mode, &ll, &grad, &status);
        CHECK_REL(ll, -th * c, 1e-13);
        CHECK_REL(grad, -c, 1e-11);
        /* A narrow interval far out: (20, 20.5], mass e^-20 (1 - e^-0.5). */
        lo = 20.0, hi = 20.5;
        loglik1(g, &iv, th, mode, &ll, &grad, &status);
        CHECK_REL(ll, -20.0 + log(-expm1(-0.5)), 1e-13);
        CHECK_REL(grad, (20.5 * exp(-20.5) - 20.0 * exp(-20.0)) / (exp(-20.0) - exp(-20.5)), 1e-10);
    }
    phase_graph_free(g);
}

static void test_errors(void)
{
    phase_graph *g = NULL;
    double alpha[2] = {0.7, 0.6}, base[1] = {1.0}, coef[1] = {0};
    int32_t src[1] = {0}, dst[1] = {PHASE_ABSORBING};
    CHECK(phase_graph_new(&g, 2, 1, alpha, 1, src, dst, base, coef, 0) == PHASE_EINVAL &&
              strstr(phase_last_error(), "sums to"),
          "start mass above 1: %s", phase_last_error());
    alpha[1] = 0.1;
    int32_t self[1] = {0};
    CHECK(phase_graph_new(&g, 2, 1, alpha, 1, src, self, base, coef, 0) == PHASE_EINVAL &&
              strstr(phase_last_error(), "self-loop"),
          "self-loop: %s", phase_last_error());
    base[0] = -1.0;
    CHECK(phase_graph_new(&g, 2, 1, alpha, 1, src, dst, base, coef, 0) == PHASE_EINVAL &&
              strstr(phase_last_error(), "base rate"),
          "negative base: %s", phase_last_error());
    base[0] = 1.0;
    int32_t far[1] = {7};
    CHECK(phase_graph_new(&g, 2, 1, alpha, 1, src, far, base, coef, 0) == PHASE_EINVAL,
          "target out of range");
    CHECK(g == NULL, "no graph on failure");
    CHECK(strcmp(phase_status_name(PHASE_EDOMAIN), "PHASE_EDOMAIN") == 0, "status name");
}

/* A point evaluated after others gives the bits it gives alone: the Poisson
 * workspace (weights, their exponents, the cached core window) carries
 * nothing over. Kingman(50) needs 48 jumps to absorb, so at t = 1e-5
 * (Lambda t = 0.012) the density's window widens to the right far beyond
 * its core, into weights below 2^-400 that carry exponents; the later points'
 * core windows (Lambda t = 43 ... 61) cover those places and must see zero
 * exponents there. */
static void test_workspace_reuse(void)
{
    phase_graph *g = kingman(50);
    const double theta = 1.0;
    const double t[] = {1e-5, 0.008, 0.01, 0.012, 0.014, 0.04, 2e-5, 0.01, 1e-5, 0.035};
    enum { N = sizeof t / sizeof t[0] };
    const phase_quantity q[] = {PHASE_LOGPDF, PHASE_LOGSURVIVAL, PHASE_CDF};
    for (int a = 0; a < 3; a++) {
        double all[N], alone;
        CHECK(phase_eval(g, NULL, 1, &theta, N, t, q[a], all, NULL, NULL) == PHASE_OK, "%s",
              phase_last_error());
        for (int i = 0; i < N; i++) {
            CHECK(phase_eval(g, NULL, 1, &theta, 1, &t[i], q[a], &alone, NULL, NULL) == PHASE_OK,
                  "%s", phase_last_error());
            CHECK(all[i] == alone && !isnan(alone), "quantity %d at t = %g: %.17g after the "
                  "others, %.17g alone", (int)q[a], t[i], all[i], alone);
        }
    }
    phase_graph_free(g);
}

int main(void)
{
    test_exponential();
    test_kingman_oracle();
    test_rabbits_oracle();
    test_gradient_fd(PHASE_GRADIENT_REVERSE, 0);
    test_gradient_fd(PHASE_GRADIENT_REVERSE, 1);
    test_gradient_fd(PHASE_GRADIENT_FORWARD, 0);
    test_discrete();
    test_tails();
    test_atom_at_zero();
    test_small_probabilities();
    test_errors();
    test_workspace_reuse();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
