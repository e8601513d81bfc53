/* Counter-based random numbers (random.c): Philox4x64-10 against the
 * known-answer vectors of Random123 (kat_vectors, also what numpy's Philox
 * gives), the portable 128-bit product against the compiler's, the
 * uniform and normal conversions against their formulas, and the argument
 * checks. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "internal.h"

static void test_known_answers(void)
{
    const uint64_t ones = UINT64_MAX;
    const uint64_t ctr[3][4] = {{0, 0, 0, 0}, {ones, ones, ones, ones},
                                {UINT64_C(0x243f6a8885a308d3), UINT64_C(0x13198a2e03707344),
                                 UINT64_C(0xa4093822299f31d0), UINT64_C(0x082efa98ec4e6c89)}};
    const uint64_t key[3][2] = {{0, 0}, {ones, ones},
                                {UINT64_C(0x452821e638d01377), UINT64_C(0xbe5466cf34e90c6c)}};
    const uint64_t want[3][4] = {
        {UINT64_C(0x16554d9eca36314c), UINT64_C(0xdb20fe9d672d0fdc), UINT64_C(0xd7e772cee186176b),
         UINT64_C(0x7e68b68aec7ba23b)},
        {UINT64_C(0x87b092c3013fe90b), UINT64_C(0x438c3c67be8d0224), UINT64_C(0x9cc7d7c69cd777b6),
         UINT64_C(0xa09caebf594f0ba0)},
        {UINT64_C(0xa528f45403e61d95), UINT64_C(0x38c72dbd566e9788), UINT64_C(0xa5a1610e72fd18b5),
         UINT64_C(0x57bd43b5e52b7fe6)}};
    for (int k = 0; k < 3; k++) {
        uint64_t out[4];
        CHECK(phase_philox4x64(ctr[k], key[k], out) == PHASE_OK, "philox status");
        for (int q = 0; q < 4; q++)
            CHECK(out[q] == want[k][q], "KAT %d word %d: %016llx, expected %016llx", k, q,
                  (unsigned long long)out[q], (unsigned long long)want[k][q]);
    }
}

static void test_portable_product(void)
{
#if defined(__SIZEOF_INT128__)
    uint64_t x = UINT64_C(0x9E3779B97F4A7C15);
    for (int k = 0; k < 1000; k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64: varied operands */
        uint64_t y = x * UINT64_C(0xD2E7470EE14C6C93) + (uint64_t)k, hi;
        uint64_t lo = phase_mulhilo_portable(x, y, &hi);
        __extension__ unsigned __int128 p = (unsigned __int128)x * y;
        CHECK(lo == (uint64_t)p && hi == (uint64_t)(p >> 64), "product %d", k);
    }
    uint64_t hi, lo = phase_mulhilo_portable(UINT64_MAX, UINT64_MAX, &hi);
    CHECK(lo == 1 && hi == UINT64_MAX - 1, "(2^64-1)^2");
#endif
}

static void test_conversions(void)
{
    /* 3 rows of 6 values: two counters per row, the second with word 3 + 1 */
    const uint64_t ids[12] = {1, 2, 3, 40, 7, 0, 0, UINT64_MAX, 0, 0, 0, 0};
    double u[18], z[18];
    CHECK(phase_random_uniform(5, 9, 3, ids, 6, u) == PHASE_OK, "uniform status");
    CHECK(phase_random_normal(5, 9, 3, ids, 6, z) == PHASE_OK, "normal status");
    const uint64_t key[2] = {5, 9};
    for (int r = 0; r < 3; r++) {
        for (int b = 0; b < 2; b++) {
            uint64_t ctr[4] = {ids[4 * r], ids[4 * r + 1], ids[4 * r + 2], ids[4 * r + 3] + (uint64_t)b}, w[4];
            phase_philox4x64(ctr, key, w);
            for (int q = 0; q < 4 && 4 * b + q < 6; q++) {
                double want = (double)(w[q] >> 11) / 9007199254740992.0;
                CHECK(u[6 * r + 4 * b + q] == want && want >= 0.0 && want < 1.0, "uniform %d %d %d", r, b, q);
            }
            for (int q = 0; q < 4 && 4 * b + q < 6; q += 2) {
                double u1 = (double)((w[q] >> 11) + 1) / 9007199254740992.0;
                double u2 = (double)(w[q + 1] >> 11) / 9007199254740992.0;
                double radius = sqrt(-2.0 * log(u1));
                CHECK(z[6 * r + 4 * b + q] == radius * cos(6.283185307179586 * u2), "normal %d %d %d", r, b, q);
                CHECK(z[6 * r + 4 * b + q + 1] == radius * sin(6.283185307179586 * u2), "normal' %d %d %d", r, b, q);
            }
        }
    }
    /* an odd count takes the cosine of the last pair; a row's values never
     * depend on per_row beyond their own index */
    double z5[5];
    CHECK(phase_random_normal(5, 9, 1, ids, 5, z5) == PHASE_OK, "normal 5");
    CHECK(memcmp(z5, z, sizeof z5) == 0, "prefix of a row");
    /* another seed or purpose changes every value */
    double other[6];
    phase_random_uniform(5, 10, 1, ids, 6, other);
    int same = 0;
    for (int q = 0; q < 6; q++) same += other[q] == u[q];
    CHECK(same == 0, "purpose changes the draws (%d equal)", same);
}

static void test_moments(void)
{
    /* 4 * 10^5 normals: mean 0 +- 5 se, variance 1 +- 5 se, P(U < 0.5) */
    enum { N = 100000 };
    static uint64_t ids[4 * N];
    static double z[4 * N], u[4 * N];
    for (int r = 0; r < N; r++) ids[4 * r] = 3, ids[4 * r + 1] = (uint64_t)r, ids[4 * r + 2] = 0, ids[4 * r + 3] = 0;
    phase_random_normal(11, 1, N, ids, 4, z);
    phase_random_uniform(11, 2, N, ids, 4, u);
    double s1 = 0, s2 = 0, s4 = 0, below = 0;
    for (int k = 0; k < 4 * N; k++) s1 += z[k], s2 += z[k] * z[k], s4 += z[k] * z[k] * z[k] * z[k], below += u[k] < 0.5;
    double n = 4.0 * N;
    CHECK(fabs(s1 / n) < 5 / sqrt(n), "normal mean %g", s1 / n);
    CHECK(fabs(s2 / n - 1) < 5 * sqrt(2 / n), "normal variance %g", s2 / n);
    CHECK(fabs(s4 / n - 3) < 5 * sqrt(96 / n), "normal 4th moment %g", s4 / n);
    CHECK(fabs(below / n - 0.5) < 5 * 0.5 / sqrt(n), "uniform median %g", below / n);
}

static void test_arguments(void)
{
    double out[4];
    uint64_t ids[4] = {0, 0, 0, 0};
    CHECK(phase_random_uniform(0, 0, -1, ids, 4, out) == PHASE_EINVAL, "negative n");
    CHECK(strstr(phase_last_error(), "phase_random_uniform") != NULL, "message names the function");
    CHECK(phase_random_normal(0, 0, 1, ids, -2, out) == PHASE_EINVAL, "negative per_row");
    CHECK(phase_random_normal(0, 0, 1, NULL, 4, out) == PHASE_EINVAL, "NULL ids");
    CHECK(phase_random_uniform(0, 0, 1, ids, 4, NULL) == PHASE_EINVAL, "NULL out");
    CHECK(phase_random_uniform(0, 0, 0, NULL, 4, NULL) == PHASE_OK, "empty call");
    CHECK(phase_philox4x64(NULL, NULL, NULL) == PHASE_EINVAL, "NULL philox");
}

int main(void)
{
    test_known_answers();
    test_portable_product();
    test_conversions();
    test_moments();
    test_arguments();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
