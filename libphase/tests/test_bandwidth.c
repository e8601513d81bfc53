/* The subset-median bandwidth (bandwidth.c): the pairs against the documented
 * formula on phase_philox4x64's words, the selection against qsort's median
 * (random values, many ties, odd and even counts), NaN, and argument checks. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static int by_value(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The values of the documented pairs, sorted, and their median (numpy's). */
static double reference_median(int64_t n, int64_t d, const double *z, uint64_t seed, uint64_t purpose,
                               const uint64_t ids[4], int64_t pairs, double *values)
{
    const uint64_t key[2] = {seed, purpose};
    for (int64_t p = 0; p < pairs; p++) {
        const uint64_t ctr[4] = {ids[0], ids[1], ids[2], ids[3] + (uint64_t)(p / 4)};
        uint64_t w[4];
        phase_philox4x64(ctr, key, w);
        const uint64_t i = ((w[p % 4] >> 32) * (uint64_t)n) >> 32;
        const uint64_t j = (i + 1 + (((w[p % 4] & 0xFFFFFFFFu) * (uint64_t)(n - 1)) >> 32)) % (uint64_t)n;
        double s = 0.0;
        for (int64_t c = 0; c < d; c++) {
            const double t = z[i * (uint64_t)d + (uint64_t)c] - z[j * (uint64_t)d + (uint64_t)c];
            s += t * t;
        }
        values[p] = s;
    }
    qsort(values, (size_t)pairs, sizeof(double), by_value);
    return pairs % 2 ? values[pairs / 2] : (values[pairs / 2 - 1] + values[pairs / 2]) / 2.0;
}

static void test_against_sorting(void)
{
    enum { N = 97, D = 3, MAXP = 300 };
    double z[N * D], work[MAXP], sorted[MAXP];
    uint64_t x = UINT64_C(88172645463325252);
    for (int tie = 0; tie < 2; tie++) {
        for (int k = 0; k < N * D; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* continuous values, or 0/1/2 (many equal distances) */
            z[k] = tie ? (double)(x % 3) : (double)(x >> 11) * 0x1p-53 - 0.5;
        }
        for (int64_t pairs = 1; pairs <= MAXP; pairs += (pairs < 12 ? 1 : 37)) {
            const uint64_t ids[4] = {(uint64_t)pairs, 0, 0, UINT64_MAX - 2}; /* word 3 wraps */
            double got = -1.0;
            CHECK(phase_pair_median(N, D, z, 7, 2, ids, pairs, work, &got) == PHASE_OK, "status");
            const double want = reference_median(N, D, z, 7, 2, ids, pairs, sorted);
            CHECK(got == want, "tie %d pairs %lld: %.17g, expected %.17g", tie, (long long)pairs, got, want);
        }
    }
}

/* The radix selection on the values' bits: many pairs, values spanning the whole
 * exponent range (0, subnormal distances, 1e300 squared to +inf) and exact ties
 * (repeated particles), every count from 1 to a few thousand pairs in steps. */
static void test_wide_ranges_and_ties(void)
{
    enum { N = 211, D = 2, MAXP = 5000 };
    static double z[N * D], work[MAXP], sorted[MAXP];
    uint64_t x = UINT64_C(0x9E3779B97F4A7C15);
    for (int k = 0; k < N * D; k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const double scales[6] = {0.0, 1e-170, 1.0, 1e3, 1e-3, 1e300};
        z[k] = k % 7 == 0 ? z[(k + 2 * D) % (N * D)] /* repeats: zero distances, ties */
                          : scales[x % 6] * ((double)(x >> 11) * 0x1p-53 - 0.5);
    }
    for (int64_t pairs = 1; pairs <= MAXP; pairs += (pairs < 20 ? 1 : 311)) {
        const uint64_t ids[4] = {(uint64_t)pairs, 5, 0, 0};
        double got = -1.0;
        CHECK(phase_pair_median(N, D, z, 3, 2, ids, pairs, work, &got) == PHASE_OK, "status");
        const double want = reference_median(N, D, z, 3, 2, ids, pairs, sorted);
        CHECK(memcmp(&got, &want, sizeof got) == 0, "pairs %lld: %.17g, expected %.17g", (long long)pairs, got, want);
    }
}

static void test_nan_and_arguments(void)
{
    double z[8] = {0, 1, 2, NAN, 4, 5, 6, 7}, work[64], m = 0.0;
    const uint64_t ids[4] = {0, 0, 0, 0};
    CHECK(phase_pair_median(8, 1, z, 1, 2, ids, 64, work, &m) == PHASE_OK && isnan(m), "NaN gives NaN");
    CHECK(phase_pair_median(1, 1, z, 1, 2, ids, 4, work, &m) == PHASE_EINVAL, "n = 1");
    CHECK(phase_pair_median(8, 0, z, 1, 2, ids, 4, work, &m) == PHASE_EINVAL, "d = 0");
    CHECK(phase_pair_median(8, 1, z, 1, 2, ids, 0, work, &m) == PHASE_EINVAL, "pairs = 0");
    CHECK(phase_pair_median(8, 1, NULL, 1, 2, ids, 4, work, &m) == PHASE_EINVAL, "NULL z");
    CHECK(phase_pair_median(8, 1, z, 1, 2, ids, 4, NULL, &m) == PHASE_EINVAL, "NULL work");
    CHECK(strlen(phase_last_error()) > 0, "message");
}

int main(void)
{
    test_against_sorting();
    test_wide_ranges_and_ties();
    test_nan_and_arguments();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
