/*
 * C tests of phase_reward_moments and phase_topological_order: closed forms
 * (Kingman, block-counting coalescent, geometric, oracles.md's defective
 * example), gradients against central finite differences of the library's
 * own values, statuses for cycles, stuck states and negative rates.
 * Prints "N passed, N failed".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phase.h"

#include "check.h"

enum { ABS = PHASE_ABSORBING };

static void test_kingman(void)
{
    const int n = 6;
    phase_graph *g = kingman(n);
    double theta = 1.7, ones[5] = {1, 1, 1, 1, 1}, mean, grad, cross, cross_grad;
    int64_t pair[2] = {0, 0};
    int status = -1;
    CHECK(phase_reward_moments(g, 1, &theta, 1, ones, 1, pair, &mean, &grad, &cross,
                               &cross_grad, &status) == PHASE_OK, "%s", phase_last_error());
    CHECK(status == PHASE_OK, "status %d", status);
    double var = 0.0;
    for (int k = 2; k <= n; k++) var += pow(2.0 / (theta * k * (k - 1)), 2);
    double e1 = 2.0 * (1.0 - 1.0 / n) / theta, e2 = var + e1 * e1;
    CHECK_REL(mean, e1, 1e-14);
    CHECK_REL(cross, e2, 1e-14);
    /* every rate is theta * const: E[T^k] scales as theta^-k */
    CHECK_REL(grad, -e1 / theta, 1e-14);
    CHECK_REL(cross_grad, -2.0 * e2 / theta, 1e-13);
    phase_graph_free(g);
}

/* Block-counting coalescent, n = 4: (4,0,0) (2,1,0) (0,2,0) (1,0,1); the
 * rewards c_1, c_2, c_3 give E[L_i] = 2 / (i theta). */
static void test_block_counting(void)
{
    double alpha[4] = {1, 0, 0, 0}, base[5] = {0}, coef[5] = {6, 1, 2, 1, 1};
    int32_t src[5] = {0, 1, 1, 2, 3}, dst[5] = {1, 2, 3, ABS, ABS};
    phase_graph *g = NULL;
    CHECK(phase_graph_new(&g, 4, 1, alpha, 5, src, dst, base, coef, 0) == PHASE_OK, "bc");
    double rewards[4][3] = {{4, 0, 0}, {2, 1, 0}, {0, 2, 0}, {1, 0, 1}};
    double thetas[2] = {1.0, 0.37}, mean[2][3], grad[2][3];
    int status[2];
    CHECK(phase_reward_moments(g, 2, thetas, 3, &rewards[0][0], 0, NULL, &mean[0][0],
                               &grad[0][0], NULL, NULL, status) == PHASE_OK, "call");
    for (int t = 0; t < 2; t++)
        for (int i = 1; i <= 3; i++) {
            CHECK_REL(mean[t][i - 1], 2.0 / (i * thetas[t]), 1e-15);
            CHECK_REL(grad[t][i - 1], -2.0 / (i * thetas[t] * thetas[t]), 1e-15);
        }
    phase_graph_free(g);
}

/* A DAG with base rates, two parameters, a defect, an exit from a middle
 * state and a state reachable only along one path: every gradient against
 * central differences, and the batch equal (bitwise) to single calls. */
static phase_graph *dag(void)
{
    double alpha[5] = {0.5, 0.2, 0, 0, 0.1};
    int32_t src[] = {0, 0, 1, 1, 2, 2, 3, 4, 4};
    int32_t dst[] = {1, 2, 3, ABS, 3, 4, ABS, 3, ABS};
    double base[] = {0.3, 0.0, 0.5, 0.2, 0.0, 0.4, 1.1, 0.0, 0.3};
    double coef[][2] = {{1, 0}, {0.5, 0.7}, {0, 1.3}, {0.2, 0}, {2, 0},
                        {0, 0}, {0, 0.6}, {0.8, 0.1}, {0, 0}};
    phase_graph *g = NULL;
    phase_graph_new(&g, 5, 2, alpha, 9, src, dst, base, &coef[0][0], 0);
    return g;
}

static void moments_at(const phase_graph *g, const double *theta, const double *r,
                       const int64_t *pairs, double *mean, double *cross)
{
    phase_reward_moments(g, 1, theta, 2, r, 3, pairs, mean, NULL, cross, NULL, NULL);
}

static void test_gradients_fd(void)
{
    phase_graph *g = dag();
    double r[5][2] = {{1, 0.5}, {0, 2}, {1.5, 0}, {0.3, 1}, {2, 0}};
    int64_t pairs[3][2] = {{0, 0}, {0, 1}, {1, 1}};
    double thetas[2][2] = {{0.8, 1.3}, {0.4, 2.2}};
    double mean[2][2], mgrad[2][2][2], cross[2][3], cgrad[2][3][2];
    int status[2];
    CHECK(phase_reward_moments(g, 2, &thetas[0][0], 2, &r[0][0], 3, &pairs[0][0], &mean[0][0],
                               &mgrad[0][0][0], &cross[0][0], &cgrad[0][0][0], status) == PHASE_OK,
          "%s", phase_last_error());
    for (int t = 0; t < 2; t++) {
        double m1[2], c1[3];
        moments_at(g, thetas[t], &r[0][0], &pairs[0][0], m1, c1);
        CHECK(memcmp(m1, mean[t], sizeof m1) == 0 && memcmp(c1, cross[t], sizeof c1) == 0,
              "batch equals single calls at theta %d", t);
        for (int k = 0; k < 2; k++) {
            double tp[2] = {thetas[t][0], thetas[t][1]}, tm[2] = {tp[0], tp[1]};
            double h = 1e-5, mp[2], mm[2], cp[3], cm[3];
            tp[k] += h, tm[k] -= h;
            moments_at(g, tp, &r[0][0], &pairs[0][0], mp, cp);
            moments_at(g, tm, &r[0][0], &pairs[0][0], mm, cm);
            for (int a = 0; a < 2; a++) CHECK_REL(mgrad[t][a][k], (mp[a] - mm[a]) / (2 * h), 1e-8);
            for (int p = 0; p < 3; p++) CHECK_REL(cgrad[t][p][k], (cp[p] - cm[p]) / (2 * h), 1e-8);
        }
    }
    /* E[Y_0 Y_1] is symmetric in the pair's order. */
    int64_t swapped[3][2] = {{1, 0}, {1, 0}, {1, 0}};
    double m2[2], c2[3];
    moments_at(g, thetas[0], &r[0][0], &swapped[0][0], m2, c2);
    CHECK_REL(c2[0], cross[0][1], 1e-15);
    phase_graph_free(g);
}

static void test_statuses(void)
{
    /* A cycle 0 <-> 1. */
    double alpha[3] = {1, 0, 0}, base[4] = {1, 1, 1, 1}, ones[3] = {1, 1, 1}, mean[3];
    int32_t src[4] = {0, 1, 1, 2}, dst[4] = {1, 0, ABS, ABS};
    phase_graph *g = NULL;
    phase_graph_new(&g, 3, 0, alpha, 4, src, dst, base, NULL, 0);
    int32_t order[3];
    CHECK(phase_topological_order(g, order) == PHASE_ECYCLE, "cycle detected");
    CHECK(phase_reward_moments(g, 1, NULL, 1, ones, 0, NULL, mean, NULL, NULL, NULL, NULL) ==
              PHASE_ECYCLE && strstr(phase_last_error(), "cycle"),
          "moments refuse a cycle: %s", phase_last_error());
    CHECK(strcmp(phase_status_name(PHASE_ECYCLE), "PHASE_ECYCLE") == 0, "name");
    phase_graph_free(g);

    /* 0 -> 1 (rate theta_0), 1 -> abs (theta_1), 2 -> abs (theta_1); state 2
     * is never entered. Edges go backwards in index order: 1 -> 0 -> abs. */
    double a2[3] = {0, 1, 0}, b2[3] = {0, 0, 0}, c2[3][2] = {{0, 1}, {1, 0}, {0, 1}};
    int32_t s2[3] = {0, 1, 2}, d2[3] = {ABS, 0, ABS};
    phase_graph_new(&g, 3, 2, a2, 3, s2, d2, b2, &c2[0][0], 0);
    CHECK(phase_topological_order(g, order) == PHASE_OK && order[0] == 1 && order[1] == 2 &&
              order[2] == 0, "order %d %d %d", order[0], order[1], order[2]);
    double thetas[3][2] = {{2, 0}, {2, 4}, {-1, 4}}, grad[3][1][2];
    int status[3];
    CHECK(phase_reward_moments(g, 3, &thetas[0][0], 1, ones, 0, NULL, mean, &grad[0][0][0],
                               NULL, NULL, status) == PHASE_OK, "call ok");
    CHECK(status[0] == PHASE_EINFINITE && isnan(mean[0]), "stuck: %d", status[0]);
    CHECK(strstr(phase_last_error(), "state 0 is reachable") != NULL, "%s", phase_last_error());
    CHECK(status[1] == PHASE_OK, "ok %d", status[1]);
    CHECK_REL(mean[1], 1.0 / 2 + 1.0 / 4, 1e-15);
    CHECK_REL(grad[1][0][0], -1.0 / 4, 1e-15);
    CHECK_REL(grad[1][0][1], -1.0 / 16, 1e-15);
    CHECK(status[2] == PHASE_EDOMAIN && isnan(mean[2]) && isnan(grad[2][0][1]), "domain");
    /* State 2 cannot be left at theta_1 = 0 but is unreachable: finite. */
    phase_graph_free(g);
    int32_t s3[2] = {1, 2}, d3[2] = {ABS, ABS};
    double c3[2][2] = {{1, 0}, {0, 1}}, b3[2] = {0, 0}, a3[3] = {0, 1, 0};
    phase_graph_new(&g, 3, 2, a3, 2, s3, d3, b3, &c3[0][0], 0);
    double th[2] = {2, 0}, zero[3] = {0, 0, 0};
    CHECK(phase_reward_moments(g, 1, th, 1, ones, 0, NULL, mean, NULL, NULL, NULL, status) ==
              PHASE_OK && status[0] == PHASE_OK, "unreachable stuck state: %d", status[0]);
    CHECK_REL(mean[0], 0.5, 1e-15);
    /* zero rewards: zero moments */
    int64_t pair[2] = {0, 0};
    double cross = -1;
    th[1] = 1.0;
    phase_reward_moments(g, 1, th, 1, zero, 1, pair, mean, NULL, &cross, NULL, status);
    CHECK(mean[0] == 0.0 && cross == 0.0, "zero rewards %g %g", mean[0], cross);
    double bad[3] = {1, NAN, 0};
    CHECK(phase_reward_moments(g, 1, th, 1, bad, 0, NULL, mean, NULL, NULL, NULL, NULL) ==
              PHASE_EINVAL, "non-finite reward rejected");
    pair[1] = 3;
    CHECK(phase_reward_moments(g, 1, th, 1, ones, 1, pair, mean, NULL, &cross, NULL, NULL) ==
              PHASE_EINVAL, "pair index out of range");
    phase_graph_free(g);
}

static void test_discrete(void)
{
    /* Geometric(p): E[T] = 1/p, dE/dp = -1/p^2. */
    double alpha = 1.0, base = 0.0, coef = 1.0, one = 1.0, p = 0.3, mean, grad;
    int32_t src = 0, dst = ABS;
    phase_graph *g = NULL;
    phase_graph_new(&g, 1, 1, &alpha, 1, &src, &dst, &base, &coef, 1);
    int status;
    phase_reward_moments(g, 1, &p, 1, &one, 0, NULL, &mean, &grad, NULL, NULL, &status);
    CHECK_REL(mean, 1 / p, 1e-15);
    CHECK_REL(grad, -1 / (p * p), 1e-15);
    double over = 1.5;
    phase_reward_moments(g, 1, &over, 1, &one, 0, NULL, &mean, NULL, NULL, NULL, &status);
    CHECK(status == PHASE_EDOMAIN, "probability above 1");
    /* E[T^2] = (2 - p) / p^2, d/dp = (p - 4) / p^3 */
    int64_t pair[2] = {0, 0};
    double cross, cross_grad;
    CHECK(phase_reward_moments(g, 1, &p, 1, &one, 1, pair, &mean, NULL, &cross, &cross_grad,
                               &status) == PHASE_OK && status == PHASE_OK,
          "discrete second moment: %d", status);
    CHECK_REL(cross, (2 - p) / (p * p), 1e-15);
    CHECK_REL(cross_grad, (p - 4) / (p * p * p), 1e-14);
    phase_graph_free(g);
    /* oracles.md: alpha = (0.75, 0), A -> B 0.8, B -> absorbing 0.7. With the
     * defect (0.25) Y = 0; else the visits N_A ~ Geometric(0.8) and N_B ~
     * Geometric(0.7) are independent, E[N] = 1/q, E[N^2] = (2 - q)/q^2. */
    double a2[2] = {0.75, 0}, b2[2] = {0.8, 0.7};
    double r2[2][3] = {{1, 1, 0}, {1, 0, 1}}; /* T, N_A, N_B as columns */
    int32_t s2[2] = {0, 1}, d2[2] = {1, ABS};
    phase_graph_new(&g, 2, 0, a2, 2, s2, d2, b2, NULL, 1);
    int64_t pairs2[3][2] = {{0, 0}, {1, 2}, {2, 2}};
    double means2[3], cross2[3];
    phase_reward_moments(g, 1, NULL, 3, &r2[0][0], 3, &pairs2[0][0], means2, NULL, cross2, NULL,
                         NULL);
    double ea = 1 / 0.8, eb = 1 / 0.7, ea2 = 1.2 / 0.64, eb2 = 1.3 / 0.49;
    CHECK_REL(means2[0], 0.75 * (ea + eb), 1e-15);
    CHECK_REL(cross2[0], 0.75 * (ea2 + eb2 + 2 * ea * eb), 1e-14);
    CHECK_REL(cross2[1], 0.75 * ea * eb, 1e-14);
    CHECK_REL(cross2[2], 0.75 * eb2, 1e-14);
    phase_graph_free(g);
}

int main(void)
{
    test_kingman();
    test_block_counting();
    test_gradients_fd();
    test_statuses();
    test_discrete();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
