/* The subset-median bandwidth (bandwidth.c): the pairs against the documented
 * formula on phase_philox4x64's words, the selection against qsort's median
 * (random values, many ties, odd and even counts), NaN, and argument checks. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "internal.h"

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

/* count xorshift values into z: continuous in [-0.5, 0.5), or 0/1/2 with tie
 * (many equal distances) */
static void fill(double *z, int count, int tie, uint64_t *x)
{
    for (int k = 0; k < count; k++) {
        *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
        z[k] = tie ? (double)(*x % 3) : (double)(*x >> 11) * 0x1p-53 - 0.5;
    }
}

static void test_against_sorting(void)
{
    enum { N = 97, D = 3, MAXP = 300 };
    double z[N * D], work[MAXP], sorted[MAXP];
    uint64_t x = UINT64_C(88172645463325252);
    for (int tie = 0; tie < 2; tie++) {
        fill(z, N * D, tie, &x);
        for (int64_t pairs = 1; pairs <= MAXP; pairs += (pairs < 12 ? 1 : 37)) {
            const uint64_t ids[4] = {(uint64_t)pairs, 0, 0, UINT64_MAX - 2}; /* word 3 wraps */
            double got = -1.0;
            CHECK(phase_pair_median(N, D, z, 7, 2, ids, pairs, work, &got) == PHASE_OK, "status");
            const double want = reference_median(N, D, z, 7, 2, ids, pairs, sorted);
            CHECK(got == want, "tie %d pairs %lld: %.17g, expected %.17g", tie, (long long)pairs, got, want);
            /* the particles as columns 1..D of rows of D + 2 (a row buffer, in place) */
            static double rows[N * (D + 2)];
            for (int i = 0; i < N; i++)
                for (int c = 0; c < D + 2; c++) rows[i * (D + 2) + c] = c >= 1 && c <= D ? z[i * D + c - 1] : NAN;
            double strided = -1.0;
            CHECK(phase_pair_median_strided(N, D, rows + 1, D + 2, 7, 2, ids, pairs, work, &strided) == PHASE_OK &&
                      memcmp(&strided, &got, sizeof got) == 0, "tie %d pairs %lld: strided %.17g", tie,
                  (long long)pairs, strided);
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

/* The sample-window selection (phase_select_median_pair) against sorting: random
 * values, massive ties (one value, two values), and values placed at the
 * sample's positions so that its window misses the median (the fallback to the
 * whole array); odd and even counts around the sampling threshold. */
static void test_selection_window_and_fallback(void)
{
    enum { MAXM = 9000 };
    static double a[MAXM], copy[MAXM], sorted[MAXM], scratch[MAXM];
    uint64_t x = UINT64_C(0x2545F4914F6CDD1D);
    const int64_t sizes[] = {1, 2, 3, 1023, 1024, 1025, 2047, 2048, 2049, 4096, 4097, 8999};
    for (int kind = 0; kind < 4; kind++) {
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
            const int64_t m = sizes[s];
            for (int64_t p = 0; p < m; p++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                const double u = (double)(x >> 11) * 0x1p-53;
                a[p] = kind == 0 ? u : kind == 1 ? 1.5 : kind == 2 ? (double)(x % 2) : u;
            }
            if (kind == 3) /* huge values exactly where the sample looks: its window misses */
                for (int64_t q = 0; q < 512 && m >= 1024; q++) a[(q * m) / 512] = 1e300 + (double)q;
            memcpy(copy, a, (size_t)m * sizeof *a);
            memcpy(sorted, a, (size_t)m * sizeof *a);
            qsort(sorted, (size_t)m, sizeof(double), by_value);
            const int64_t lo = (m - 1) / 2, hi = m / 2;
            double first = -1.0, second = -1.0;
            phase_select_median_pair(a, m, lo, hi, scratch, &first, &second);
            CHECK(first == sorted[lo] && second == sorted[hi], "kind %d m %lld: %.17g %.17g, expected %.17g %.17g",
                  kind, (long long)m, first, second, sorted[lo], sorted[hi]);
            CHECK(memcmp(a, copy, (size_t)m * sizeof *a) == 0, "kind %d m %lld: input changed", kind, (long long)m);
        }
    }
}

/* All pairs (phase_pair_median_all) against qsort's median of the pairs in a
 * plain loop: sizes around the sample threshold, ties, rows in a wider buffer. */
static void test_all_pairs(void)
{
    enum { MAXN = 120, D = 3, W = 5 };
    static double z[MAXN * W], work[MAXN * MAXN / 2], sorted[MAXN * MAXN / 2];
    uint64_t x = UINT64_C(0x853C49E6748FEA9B);
    for (int tie = 0; tie < 2; tie++) {
        fill(z, MAXN * W, tie, &x);
        for (int64_t n = 2; n <= MAXN; n += (n < 12 ? 1 : 17)) {
            int64_t m = 0;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = i + 1; j < n; j++) {
                    double s = 0.0;
                    for (int c = 0; c < D; c++) s += (z[i * W + c] - z[j * W + c]) * (z[i * W + c] - z[j * W + c]);
                    sorted[m++] = s;
                }
            qsort(sorted, (size_t)m, sizeof(double), by_value);
            const double want = m % 2 ? sorted[m / 2] : (sorted[m / 2 - 1] + sorted[m / 2]) / 2.0;
            double got = -1.0;
            CHECK(phase_pair_median_all(n, D, z, W, work, &got) == PHASE_OK && memcmp(&got, &want, sizeof got) == 0,
                  "tie %d n %lld: %.17g, expected %.17g", tie, (long long)n, got, want);
        }
    }
    double m = 0.0, nanz[4] = {0.0, NAN, 1.0, 2.0};
    CHECK(phase_pair_median_all(4, 1, nanz, 1, work, &m) == PHASE_OK && isnan(m), "NaN gives NaN");
    CHECK(phase_pair_median_all(1, 1, nanz, 1, work, &m) == PHASE_EINVAL, "n = 1");
    CHECK(phase_pair_median_all(4, 2, nanz, 1, work, &m) == PHASE_EINVAL, "stride < d");
    CHECK(phase_pair_median_all(4, 1, nanz, 1, NULL, &m) == PHASE_EINVAL, "NULL work");
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
    CHECK(phase_pair_median_strided(4, 2, z, 1, 1, 2, ids, 4, work, &m) == PHASE_EINVAL, "stride < d");
    CHECK(strlen(phase_last_error()) > 0, "message");
}

int main(void)
{
    test_against_sorting();
    test_wide_ranges_and_ties();
    test_selection_window_and_fallback();
    test_all_pairs();
    test_nan_and_arguments();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
