/*
 * SVGD's subset-median bandwidth: the median of |z_i - z_j|^2 over a
 * pseudo-random subset of the pairs of particles.
 *
 * Every rank of a run computes it from the same global particles, so it is a
 * replicated cost per iteration: it must cost O(pairs d), never O(n). The
 * pairs come from the counter-based Philox4x64-10 (random.c), one 64-bit
 * word per pair: word p mod 4 of the counter (ids[0], ids[1], ids[2],
 * ids[3] + p / 4) under the key (seed, purpose), so they depend on the key
 * and ids alone (seed and iteration: any rank layout, and a resumed run,
 * draws the same pairs). The two 32-bit halves of the word give
 *
 *     i = (hi32 * n) >> 32            in 0 .. n - 1,
 *     u = 1 + ((lo32 * (n - 1)) >> 32) in 1 .. n - 1,   j = (i + u) mod n != i
 *
 * (Lemire's multiply-shift: each value's probability is off the uniform one
 * by less than n / 2^32 relative, harmless for a bandwidth heuristic).
 *
 * The median is numpy's: the middle order statistic of an odd count, the mean
 * (a + b) / 2 of the two middle ones of an even count, found by an in-place
 * selection (expected O(pairs) comparisons) and the minimum of the values
 * above it. Comparisons only: the result is exactly one of the values (or
 * the mean of two), with the same bits on every platform.
 */
#include <math.h>
#include <stdint.h>

#include "internal.h"

/* No contraction into FMA: a distance has the bits of numpy's (z_i - z_j)^2 sums. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* The k-th smallest (0-based) of a[0..m), m >= 1, no NaN: Hoare partitions
 * around a median of three until the window is one value or k falls among
 * values equal to the pivot. On return a[0..k) <= a[k] <= a[k+1..m). */
static double select_kth(double *a, int64_t m, int64_t k)
{
    int64_t lo = 0, hi = m - 1;
    while (hi > lo) {
        const int64_t mid = lo + (hi - lo) / 2;
        double t;
#define SWAP(x, y) (t = a[x], a[x] = a[y], a[y] = t)
        if (a[mid] < a[lo]) SWAP(mid, lo);
        if (a[hi] < a[lo]) SWAP(hi, lo);
        if (a[hi] < a[mid]) SWAP(hi, mid);
        /* a[lo] <= pivot <= a[hi]: the scans below stop at them at the latest */
        const double pivot = a[mid];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (pivot < a[j]) j--;
            if (i <= j) {
                SWAP(i, j);
                i++, j--;
            }
        }
#undef SWAP
        /* a[lo..j] <= pivot, a[i..hi] >= pivot, a[j+1..i-1] == pivot */
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return a[k];
    }
    return a[k];
}

int phase_pair_median(int64_t n, int64_t d, const double *z, uint64_t seed, uint64_t purpose,
                      const uint64_t ids[4], int64_t pairs, double *work, double *median)
{
    if (n < 2 || n > (INT64_C(1) << 32) || d < 1 || pairs < 1)
        return phase_fail(PHASE_EINVAL, "phase_pair_median: n = %lld (2 .. 2^32), d = %lld, pairs = %lld",
                          (long long)n, (long long)d, (long long)pairs);
    if (!z || !ids || !work || !median) return phase_fail(PHASE_EINVAL, "phase_pair_median: NULL array");
    const uint64_t key[2] = {seed, purpose};
    const uint64_t un = (uint64_t)n, lo_mask = UINT64_C(0xFFFFFFFF);
    int nan = 0;
    for (int64_t p = 0; p < pairs; p += 4) {
        const uint64_t ctr[4] = {ids[0], ids[1], ids[2], ids[3] + (uint64_t)(p / 4)};
        uint64_t w[4];
        phase_philox4x64(ctr, key, w);
        for (int64_t q = 0; q < 4 && p + q < pairs; q++) {
            const uint64_t i = ((w[q] >> 32) * un) >> 32;
            const uint64_t u = 1 + (((w[q] & lo_mask) * (un - 1)) >> 32);
            const uint64_t j = (i + u) % un;
            const double *zi = z + i * (uint64_t)d, *zj = z + j * (uint64_t)d;
            double s = 0.0;
            for (int64_t c = 0; c < d; c++) { /* in order of c: pair_sq_distances' bits */
                const double diff = zi[c] - zj[c];
                s += diff * diff;
            }
            nan |= isnan(s);
            work[p + q] = s;
        }
    }
    if (nan) { /* numpy's median of values with a NaN is NaN */
        *median = NAN;
        return PHASE_OK;
    }
    const int64_t lo = (pairs - 1) / 2, hi = pairs / 2;
    const double first = select_kth(work, pairs, lo);
    double second = first;
    if (hi > lo) { /* the next order statistic: the least value above position lo */
        second = work[hi];
        for (int64_t k = hi + 1; k < pairs; k++)
            if (work[k] < second) second = work[k];
    }
    *median = hi > lo ? (first + second) / 2.0 : first;
    return PHASE_OK;
}
