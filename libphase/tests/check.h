/* The CHECK macros and model builders shared by the C tests (one test
 * program per file). */
#ifndef PHASE_TEST_CHECK_H
#define PHASE_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "phase.h"

static int passed, failed;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (cond) {                                                        \
            passed++;                                                      \
        } else {                                                           \
            failed++;                                                      \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                    \
            printf(__VA_ARGS__);                                           \
            printf("\n");                                                  \
        }                                                                  \
    } while (0)

static inline int close_rel(double a, double b, double rtol)
{
    return fabs(a - b) <= rtol * fabs(b) || (a == b);
}

#define CHECK_REL(a, b, rtol) \
    CHECK(close_rel((a), (b), (rtol)), "%s = %.15g, expected %.15g (rtol %g)", #a, (double)(a), (double)(b), (double)(rtol))

/* Kingman coalescent TMRCA: states k = n..2 (index n - k), rate theta k(k-1)/2. */
static inline phase_graph *kingman(int n)
{
    int m = n - 1;
    double *alpha = calloc((size_t)m, sizeof(double));
    int32_t *src = malloc(sizeof(int32_t) * (size_t)m), *dst = malloc(sizeof(int32_t) * (size_t)m);
    double *base = calloc((size_t)m, sizeof(double)), *coef = malloc(sizeof(double) * (size_t)m);
    alpha[0] = 1.0;
    for (int i = 0; i < m; i++) {
        int k = n - i;
        src[i] = i;
        dst[i] = k == 2 ? PHASE_ABSORBING : i + 1;
        coef[i] = k * (k - 1) / 2.0;
    }
    phase_graph *g = NULL;
    int st = phase_graph_new(&g, m, 1, alpha, m, src, dst, base, coef, 0);
    if (st) printf("kingman: %s\n", phase_last_error());
    free(alpha), free(src), free(dst), free(base), free(coef);
    return g;
}

#define FAST 1000.0

/* 0 -> 1 at FAST theta, 1 -> out at theta: hypoexponential(FAST theta, theta). */
static inline phase_graph *fast_slow(void)
{
    double alpha[2] = {1.0, 0.0}, base[2] = {0.0, 0.0}, coef[2] = {FAST, 1.0};
    int32_t src[2] = {0, 1}, dst[2] = {1, PHASE_ABSORBING};
    phase_graph *g = NULL;
    if (phase_graph_new(&g, 2, 1, alpha, 2, src, dst, base, coef, 0))
        printf("fast_slow: %s\n", phase_last_error());
    return g;
}

#endif
