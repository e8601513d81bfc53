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
 * (a + b) / 2 of the two middle ones of an even count, found by a selection
 * inside a window that a sample of the values brackets (expected O(pairs)
 * comparisons, few of them data-dependent branches; select_median_pair). Comparisons only: the result is exactly one of the values (or
 * the mean of two), with the same bits on every platform.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* No contraction into FMA: a distance has the bits of numpy's (z_i - z_j)^2 sums. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define PREFETCH 16 /* pairs ahead whose particles are prefetched */

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

#define SAMPLE 512 /* values in the selection's sample (sample_median below) */

/* The order statistics lo and hi = lo or lo + 1 (0-based) of a[0..m), no NaN,
 * into *first and *second; a is left as it was; scratch holds m doubles.
 *
 * Why not select_kth alone: its branches depend on the data, and the pairs
 * change every iteration, so they mispredict (76 us for 4096 values; 40 us
 * only when the same values come again, which is how an earlier benchmark
 * measured it). Here: the order statistics lo - delta and lo + 1 + delta of
 * a sample of SAMPLE values at evenly spaced positions (delta = three
 * standard deviations of the sample rank of a[lo]) bracket the answer in
 * [lo_v, hi_v]; one branch-free pass copies the values in that window to
 * scratch and counts those below it; select_kth then works on the window's
 * few hundred values. Should the window miss (the sample is not
 * representative; values arranged against the sample positions), the whole
 * array is selected in scratch instead. Comparisons only: the values are
 * exactly the order statistics, whichever way they were found. */
static void select_median_pair(const double *a, int64_t m, int64_t lo, int64_t hi, double *scratch,
                               double *first, double *second)
{
    int64_t base = 0, count = m; /* scratch[0..count) holds the order statistics base.. */
    if (m >= 2 * SAMPLE) {
        double sample[SAMPLE];
        for (int64_t q = 0; q < SAMPLE; q++) sample[q] = a[(q * m) / SAMPLE];
        const int64_t centre = (lo * SAMPLE) / m, delta = 3 * (int64_t)(sqrt(SAMPLE * 0.25) + 1.0);
        const int64_t r0 = centre - delta < 0 ? 0 : centre - delta;
        const int64_t r1 = centre + 1 + delta > SAMPLE - 1 ? SAMPLE - 1 : centre + 1 + delta;
        const double lo_v = select_kth(sample, SAMPLE, r0);
        const double hi_v = select_kth(sample + r0, SAMPLE - r0, r1 - r0);
        int64_t below = 0, inside = 0;
        for (int64_t p = 0; p < m; p++) { /* branch-free: store always, advance if inside */
            const double v = a[p];
            scratch[inside] = v;
            inside += (v >= lo_v) & (v <= hi_v);
            below += v < lo_v;
        }
        if (below <= lo && hi < below + inside) {
            base = below, count = inside;
        }
    }
    if (count == m) memcpy(scratch, a, (size_t)m * sizeof *a);
    const int64_t k = lo - base;
    *first = select_kth(scratch, count, k);
    *second = *first;
    if (hi > lo) { /* the next order statistic: the least value above position k */
        *second = scratch[k + 1];
        for (int64_t q = k + 2; q < count; q++)
            if (scratch[q] < *second) *second = scratch[q];
    }
}

/* numpy's median of values[0..m) (m >= 1) into *median: NaN if nan (a value
 * is NaN), else the middle order statistic, or the mean of the two middle
 * ones for an even m. values is left as it was. */
static int median_of(const double *values, int64_t m, int nan, double *median)
{
    if (nan) {
        *median = NAN;
        return PHASE_OK;
    }
    const int64_t lo = (m - 1) / 2, hi = m / 2;
    double *scratch = malloc((size_t)m * sizeof *scratch);
    if (!scratch) return phase_fail(PHASE_ENOMEM, "median of the pairs: out of memory (%lld pairs)", (long long)m);
    double first, second;
    select_median_pair(values, m, lo, hi, scratch, &first, &second);
    free(scratch);
    *median = hi > lo ? (first + second) / 2.0 : first;
    return PHASE_OK;
}

void phase_select_median_pair(const double *a, int64_t m, int64_t lo, int64_t hi, double *scratch,
                              double *first, double *second)
{
    select_median_pair(a, m, lo, hi, scratch, first, second);
}

int phase_pair_median_strided(int64_t n, int64_t d, const double *z, int64_t z_stride, uint64_t seed,
                              uint64_t purpose, const uint64_t ids[4], int64_t pairs, double *work,
                              double *median)
{
    if (n < 2 || n > (INT64_C(1) << 32) || d < 1 || pairs < 1)
        return phase_fail(PHASE_EINVAL, "phase_pair_median: n = %lld (2 .. 2^32), d = %lld, pairs = %lld",
                          (long long)n, (long long)d, (long long)pairs);
    if (!z || !ids || !work || !median) return phase_fail(PHASE_EINVAL, "phase_pair_median: NULL array");
    if (z_stride < d)
        return phase_fail(PHASE_EINVAL, "phase_pair_median: row stride %lld below d = %lld", (long long)z_stride,
                          (long long)d);
    const uint64_t zs = (uint64_t)z_stride;
    const uint64_t key[2] = {seed, purpose};
    const uint64_t un = (uint64_t)n, lo_mask = UINT64_C(0xFFFFFFFF);
    /* Two passes. The pairs index the particles at random: each is a cache
     * miss once z has left the cache (every rank gathers new particles each
     * iteration, and other processes share the caches), and with the Philox
     * rounds in between, the out-of-order core overlaps few of them: 120 us
     * instead of 41 us at n = 4096, d = 3, pairs = 4096 with a cold z. So the
     * first pass only draws the pairs (packed i << 32 | j into work), and the
     * second computes the distances, prefetching PREFETCH pairs ahead, with
     * loads that do not wait on each other. */
    for (int64_t p = 0; p < pairs; p += 4) {
        const uint64_t ctr[4] = {ids[0], ids[1], ids[2], ids[3] + (uint64_t)(p / 4)};
        uint64_t w[4];
        phase_philox4x64(ctr, key, w);
        for (int64_t q = 0; q < 4 && p + q < pairs; q++) {
            const uint64_t i = ((w[q] >> 32) * un) >> 32;
            const uint64_t u = 1 + (((w[q] & lo_mask) * (un - 1)) >> 32);
            const uint64_t packed = (i << 32) | ((i + u) % un);
            memcpy(&work[p + q], &packed, sizeof packed); /* no aliasing of the double */
        }
    }
    int nan = 0;
    for (int64_t p = 0; p < pairs; p++) {
#if defined(__GNUC__)
        if (p + PREFETCH < pairs) {
            uint64_t ahead;
            memcpy(&ahead, &work[p + PREFETCH], sizeof ahead);
            const double *ai = z + (ahead >> 32) * zs, *aj = z + (ahead & lo_mask) * zs;
            __builtin_prefetch(ai), __builtin_prefetch(ai + d - 1);
            __builtin_prefetch(aj), __builtin_prefetch(aj + d - 1);
        }
#endif
        uint64_t packed;
        memcpy(&packed, &work[p], sizeof packed);
        const double *zi = z + (packed >> 32) * zs, *zj = z + (packed & lo_mask) * zs;
        double s = 0.0;
        for (int64_t c = 0; c < d; c++) { /* in order of c: pair_sq_distances' bits */
            const double diff = zi[c] - zj[c];
            s += diff * diff;
        }
        nan |= isnan(s);
        work[p] = s;
    }
    return median_of(work, pairs, nan, median);
}

int phase_pair_median(int64_t n, int64_t d, const double *z, uint64_t seed, uint64_t purpose,
                      const uint64_t ids[4], int64_t pairs, double *work, double *median)
{
    return phase_pair_median_strided(n, d, z, d, seed, purpose, ids, pairs, work, median);
}

int phase_pair_median_all(int64_t n, int64_t d, const double *z, int64_t z_stride, double *work, double *median)
{
    if (n < 2 || n > (INT64_C(1) << 31) || d < 1 || z_stride < d) /* n (n - 1) / 2 fits an int64_t */
        return phase_fail(PHASE_EINVAL, "phase_pair_median_all: n = %lld (2 .. 2^31), d = %lld, stride = %lld",
                          (long long)n, (long long)d, (long long)z_stride);
    if (!z || !work || !median) return phase_fail(PHASE_EINVAL, "phase_pair_median_all: NULL array");
    const int64_t pairs = n * (n - 1) / 2;
    int64_t p = 0;
    int nan = 0;
    for (int64_t i = 0; i < n; i++) { /* scipy's pdist order; the order does not matter to a median */
        const double *zi = z + i * z_stride;
        for (int64_t j = i + 1; j < n; j++) {
            const double *zj = z + j * z_stride;
            double s = 0.0;
            for (int64_t c = 0; c < d; c++) { /* in order of c: pair_sq_distances' bits */
                const double diff = zi[c] - zj[c];
                s += diff * diff;
            }
            nan |= isnan(s);
            work[p++] = s;
        }
    }
    return median_of(work, pairs, nan, median);
}
