/*
 * The Stein kernel of SVGD with the RBF kernel k(x, y) = exp(-|x - y|^2 / h):
 * the update direction phi of a range of particles and the per-row sums of
 * the kernelized Stein discrepancy.
 *
 * Fixed summation order. Every per-row quantity is a sum over the particles
 * j = 0, 1, ..., n - 1 in that order, one accumulator per (row, component),
 * and the sums over the components c = 0..d-1 inside a pair are in order of c
 * too. A row's result is therefore a function of the global arrays and of
 * its index only: it does not depend on which other rows are computed in the
 * same call, so a rank layout never changes a bit.
 *
 * SIMD. Rows are processed in tiles of TILE = 8 rows, one vector lane per
 * row: every operation is applied to the 8 rows of a tile at once, and a
 * particle j is loaded once per tile and broadcast. The vectors are GCC/Clang
 * vector types (lowered to SSE2, AVX2 or AVX-512 by the compiler; the hot
 * function is cloned for AVX2 and AVX-512 on x86-64 Linux) or, with other
 * compilers, plain loops over the lanes. Auto-vectorisation was not used: it
 * turned the fixed-order sums into in-order reductions with shuffles and ran
 * 3-5x slower. Lanes never interact, nothing is reassociated and
 * floating-point contraction is off, so every lane computes the bits of the
 * plain scalar loops whatever the vector width (the C test compares the two
 * bit for bit). Particles j come in blocks of JBLOCK: their kernel values
 * are computed first, then the accumulators of 4 components at a time stay
 * in registers while j runs over the block.
 *
 * exp: a branch-free polynomial (stein_exp below, about 1 ulp) rather than
 * libm's exp, so that it vectorises and the bits do not depend on the C
 * library (phase_stein_exp, declared in internal.h for the tests).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* No contraction into FMA (it would make the bits depend on the target of
 * the clone), and no floating-point traps (nothing here inspects them). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off", "no-trapping-math")
#elif defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define TILE 8      /* rows per tile: the lanes of a vector */
#define JBLOCK 128  /* particles j per block of kernel values */
#define CHUNK 4     /* components whose accumulators stay in registers */

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define STEIN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define STEIN_CLONES
#endif
/* the helpers are inlined into each clone, so they are compiled for its target */
#if defined(__GNUC__)
#define STEIN_INLINE static inline __attribute__((always_inline))
#else
#define STEIN_INLINE static inline
#endif

/* ---- lanes: vd holds TILE doubles, vu TILE 64-bit masks or bit patterns --- */
#if defined(__GNUC__)
/* vectors are only passed between always-inline functions: no ABI concern */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef double vd __attribute__((vector_size(TILE * sizeof(double))));
typedef uint64_t vu __attribute__((vector_size(TILE * sizeof(double))));
/* through memory: GCC 12 turns a vector initialiser into 8 masked inserts
 * under AVX-512, but this into one (embedded) broadcast */
STEIN_INLINE vd v_set1(double x)
{
    const double lanes[TILE] = {x, x, x, x, x, x, x, x};
    vd r;
    memcpy(&r, lanes, sizeof r);
    return r;
}
STEIN_INLINE vd v_add(vd a, vd b) { return a + b; }
STEIN_INLINE vd v_sub(vd a, vd b) { return a - b; }
STEIN_INLINE vd v_mul(vd a, vd b) { return a * b; }
/* lanes of a where a < b (a NaN compares false), else c */
STEIN_INLINE vd v_lt_select(vd a, vd b, vd x, vd y)
{
    vu m = (vu)(a < b);
    return (vd)(((vu)x & m) | ((vu)y & ~m));
}
/* the double with biased exponent bits ((bits of a) + 1023) << 52 */
STEIN_INLINE vd v_pow2_bits(vd a) { return (vd)(((vu)a + 1023u) << 52); }
#define LANE(v, l) ((v)[l])
#else
typedef struct { double v[TILE]; } vd;
STEIN_INLINE vd v_set1(double x) { vd r; for (int l = 0; l < TILE; l++) r.v[l] = x; return r; }
STEIN_INLINE vd v_add(vd a, vd b) { for (int l = 0; l < TILE; l++) a.v[l] += b.v[l]; return a; }
STEIN_INLINE vd v_sub(vd a, vd b) { for (int l = 0; l < TILE; l++) a.v[l] -= b.v[l]; return a; }
STEIN_INLINE vd v_mul(vd a, vd b) { for (int l = 0; l < TILE; l++) a.v[l] *= b.v[l]; return a; }
STEIN_INLINE vd v_lt_select(vd a, vd b, vd x, vd y)
{
    for (int l = 0; l < TILE; l++) x.v[l] = a.v[l] < b.v[l] ? x.v[l] : y.v[l];
    return x;
}
STEIN_INLINE vd v_pow2_bits(vd a)
{
    for (int l = 0; l < TILE; l++) {
        uint64_t u;
        memcpy(&u, &a.v[l], sizeof u);
        u = (u + 1023u) << 52;
        memcpy(&a.v[l], &u, sizeof u);
    }
    return a;
}
#define LANE(v, l) ((v).v[l])
#endif

/* exp(x) lane-wise for x <= 0 (NaN -> NaN), without branches.
 *
 * x = k ln2 + r with k = round(x / ln2) and |r| <= ln2 / 2 (Cody-Waite
 * reduction with fdlibm's two-part ln2, exact for |k| < 2^11); exp(r) by its
 * Taylor polynomial of degree 13 (truncation below 5e-18); the result is
 * exp(r) 2^k, the power built in the exponent bits. Below 2^-1020 the scale
 * is applied in two factors (2^(k + 600), then 2^-600), so a subnormal
 * result rounds once; x < -746 gives 0. */
STEIN_INLINE vd stein_exp(vd x)
{
    const vd shift = v_set1(0x1.8p52); /* adding it rounds to an integer */
    x = v_lt_select(x, v_set1(-746.0), v_set1(-746.0), x);
    vd kd = v_sub(v_add(v_mul(x, v_set1(0x1.71547652b82fep0)), shift), shift);
    vd r = v_sub(v_sub(x, v_mul(kd, v_set1(0x1.62e42feep-1))), v_mul(kd, v_set1(0x1.a39ef35793c76p-33)));
    vd p = v_set1(1.0 / 6227020800.0); /* Horner from 1/13! down to 1/0! */
    p = v_add(v_mul(p, r), v_set1(1.0 / 479001600.0));
    p = v_add(v_mul(p, r), v_set1(1.0 / 39916800.0));
    p = v_add(v_mul(p, r), v_set1(1.0 / 3628800.0));
    p = v_add(v_mul(p, r), v_set1(1.0 / 362880.0));
    p = v_add(v_mul(p, r), v_set1(1.0 / 40320.0));
    p = v_add(v_mul(p, r), v_set1(1.0 / 5040.0));
    p = v_add(v_mul(p, r), v_set1(1.0 / 720.0));
    p = v_add(v_mul(p, r), v_set1(1.0 / 120.0));
    p = v_add(v_mul(p, r), v_set1(1.0 / 24.0));
    p = v_add(v_mul(p, r), v_set1(1.0 / 6.0));
    p = v_add(v_mul(p, r), v_set1(0.5));
    p = v_add(v_mul(p, r), v_set1(1.0));
    p = v_add(v_mul(p, r), v_set1(1.0));
    const vd limit = v_set1(-1020.0);
    vd k2 = v_add(kd, v_lt_select(kd, limit, v_set1(600.0), v_set1(0.0)));
    vd post = v_lt_select(kd, limit, v_set1(0x1p-600), v_set1(1.0));
    /* k2 + shift holds k2 in its low mantissa bits: ((bits + 1023) << 52)
     * keeps exactly the biased exponent of 2^k2 */
    return v_mul(v_mul(p, v_pow2_bits(v_add(k2, shift))), post);
}

double phase_stein_exp(double x)
{
    vd v = stein_exp(v_set1(x));
    return LANE(v, 0);
}

typedef struct {
    int64_t n, d, zs, ss; /* zs, ss: doubles between consecutive rows of z and s */
    const double *z, *s;
    double neg_inv_h, two_h, ksd_const, four_h2;
} stein_args;

/* Per-tile scratch (lane l of each vector is row l of the tile). */
typedef struct {
    vd *zi, *si;       /* d: the tile's particles and scores by component */
    vd *acc_s, *acc_d; /* d: sum_j k s_j and sum_j k (x_i - x_j) */
    vd *kval, *r2;     /* JBLOCK: kernel values, squared distances of a block */
    vd acc_u;          /* KSD row sums */
} stein_scratch;

/* Squared distances and kernel values of the block j0 .. j0 + nb - 1. */
STEIN_INLINE void block_kernel(const stein_args *a, stein_scratch *w, int64_t j0, int64_t nb)
{
    const int64_t d = a->d;
    for (int64_t jj = 0; jj < nb; jj++) {
        const double *zj = a->z + (j0 + jj) * a->zs;
        vd acc = v_set1(0.0);
        for (int64_t c = 0; c < d; c++) {
            vd t = v_sub(w->zi[c], v_set1(zj[c]));
            acc = v_add(acc, v_mul(t, t));
        }
        w->r2[jj] = acc;
    }
    const vd neg_inv_h = v_set1(a->neg_inv_h);
    for (int64_t jj = 0; jj < nb; jj++) w->kval[jj] = stein_exp(v_mul(w->r2[jj], neg_inv_h));
}

/* acc_s[c] += k s_jc and acc_d[c] += k (z_ic - z_jc) over the block for the
 * cb (<= CHUNK) components c0 .. c0 + cb - 1: 2 cb independent chains in
 * registers (one component alone would wait on the adder at every j). */
STEIN_INLINE void phi_chunk(const stein_args *a, stein_scratch *w, int64_t j0, int64_t nb,
                            int64_t c0, const int cb)
{
    vd as[CHUNK], ad[CHUNK], zic[CHUNK];
    for (int q = 0; q < cb; q++) {
        as[q] = w->acc_s[c0 + q];
        ad[q] = w->acc_d[c0 + q];
        zic[q] = w->zi[c0 + q];
    }
    for (int64_t jj = 0; jj < nb; jj++) {
        const vd k = w->kval[jj];
        const double *zj = a->z + (j0 + jj) * a->zs + c0, *sj = a->s + (j0 + jj) * a->ss + c0;
        for (int q = 0; q < cb; q++) {
            as[q] = v_add(as[q], v_mul(k, v_set1(sj[q])));
            ad[q] = v_add(ad[q], v_mul(k, v_sub(zic[q], v_set1(zj[q]))));
        }
    }
    for (int q = 0; q < cb; q++) {
        w->acc_s[c0 + q] = as[q];
        w->acc_d[c0 + q] = ad[q];
    }
}

STEIN_INLINE void block_phi(const stein_args *a, stein_scratch *w, int64_t j0, int64_t nb)
{
    int64_t c0 = 0;
    for (; c0 + CHUNK <= a->d; c0 += CHUNK) phi_chunk(a, w, j0, nb, c0, CHUNK);
    switch (a->d - c0) { /* constant sizes: the loops over q unroll */
    case 3: phi_chunk(a, w, j0, nb, c0, 3); break;
    case 2: phi_chunk(a, w, j0, nb, c0, 2); break;
    case 1: phi_chunk(a, w, j0, nb, c0, 1); break;
    default: break;
    }
}

/* KSD row sums over the block: u = k [s_i.s_j + (2/h) s_i.(x_i - x_j)
 * - (2/h) s_j.(x_i - x_j) + 2d/h - 4 r^2/h^2]. */
STEIN_INLINE void block_ksd(const stein_args *a, stein_scratch *w, int64_t j0, int64_t nb)
{
    const int64_t d = a->d;
    const vd two_h = v_set1(a->two_h), ksd_const = v_set1(a->ksd_const), four_h2 = v_set1(a->four_h2);
    for (int64_t jj = 0; jj < nb; jj++) {
        const double *zj = a->z + (j0 + jj) * a->zs, *sj = a->s + (j0 + jj) * a->ss;
        vd ss = v_set1(0.0), sid = v_set1(0.0), sjd = v_set1(0.0);
        for (int64_t c = 0; c < d; c++) {
            vd t = v_sub(w->zi[c], v_set1(zj[c])), sjc = v_set1(sj[c]);
            ss = v_add(ss, v_mul(sjc, w->si[c]));
            sid = v_add(sid, v_mul(t, w->si[c]));
            sjd = v_add(sjd, v_mul(sjc, t));
        }
        vd term = v_sub(v_add(v_sub(v_add(ss, v_mul(two_h, sid)), v_mul(two_h, sjd)), ksd_const),
                        v_mul(four_h2, w->r2[jj]));
        w->acc_u = v_add(w->acc_u, v_mul(w->kval[jj], term));
    }
}

/* One tile of rows [i0, i0 + rows), rows <= TILE; the unused lanes repeat
 * the last row (lanes never interact: their values are simply dropped). */
STEIN_INLINE void stein_tile(const stein_args *a, stein_scratch *w, int64_t i0, int rows,
                             double *phi, double *ksd_rows)
{
    const int64_t d = a->d, n = a->n;
    for (int64_t c = 0; c < d; c++) {
        for (int l = 0; l < TILE; l++) {
            int64_t i = i0 + (l < rows ? l : rows - 1);
            LANE(w->zi[c], l) = a->z[i * a->zs + c];
            LANE(w->si[c], l) = a->s[i * a->ss + c];
        }
        w->acc_s[c] = w->acc_d[c] = v_set1(0.0);
    }
    w->acc_u = v_set1(0.0);
    for (int64_t j0 = 0; j0 < n; j0 += JBLOCK) {
        int64_t nb = n - j0 < JBLOCK ? n - j0 : JBLOCK;
        block_kernel(a, w, j0, nb);
        if (phi) block_phi(a, w, j0, nb);
        if (ksd_rows) block_ksd(a, w, j0, nb);
    }
    for (int l = 0; l < rows; l++) {
        for (int64_t c = 0; phi && c < d; c++)
            phi[l * d + c] = (LANE(w->acc_s[c], l) + a->two_h * LANE(w->acc_d[c], l)) / (double)n;
        if (ksd_rows) ksd_rows[l] = LANE(w->acc_u, l);
    }
}

STEIN_CLONES
static void stein_rows(const stein_args *a, stein_scratch *w, int64_t start, int64_t stop,
                       double *phi, double *ksd_rows)
{
    for (int64_t i0 = start; i0 < stop; i0 += TILE) {
        int rows = stop - i0 < TILE ? (int)(stop - i0) : TILE;
        stein_tile(a, w, i0, rows, phi ? phi + (i0 - start) * a->d : NULL,
                   ksd_rows ? ksd_rows + (i0 - start) : NULL);
    }
}

int phase_stein_strided(int64_t n, int64_t d, const double *z, int64_t z_stride, const double *scores,
                        int64_t s_stride, double h, int64_t start, int64_t stop, double *phi, double *ksd_rows)
{
    phase_clear_error();
    if (n < 1 || d < 1)
        return phase_fail(PHASE_EINVAL, "phase_stein: need n >= 1 and d >= 1 (got n = %lld, d = %lld)",
                          (long long)n, (long long)d);
    if (z_stride < d || s_stride < d)
        return phase_fail(PHASE_EINVAL, "phase_stein: row strides %lld, %lld below d = %lld",
                          (long long)z_stride, (long long)s_stride, (long long)d);
    if (start < 0 || stop < start || stop > n)
        return phase_fail(PHASE_EINVAL, "phase_stein: rows [%lld, %lld) not within [0, %lld)",
                          (long long)start, (long long)stop, (long long)n);
    if (!(h > 0.0) || !isfinite(h))
        return phase_fail(PHASE_EINVAL, "phase_stein: bandwidth h = %g must be positive and finite", h);
    if (!z || !scores || (stop > start && !phi && !ksd_rows))
        return phase_fail(PHASE_EINVAL, "phase_stein: NULL array");
    if (stop == start) return PHASE_OK;
    if ((uint64_t)d > SIZE_MAX / (8 * sizeof(vd)))
        return phase_fail(PHASE_EINVAL, "phase_stein: d = %lld too large", (long long)d);
    /* aligned_alloc: vectors need their natural alignment (up to 64 bytes) */
    size_t count = 4 * (size_t)d + 2 * JBLOCK;
    vd *buf = aligned_alloc(sizeof(vd), count * sizeof(vd));
    if (!buf) return phase_fail(PHASE_ENOMEM, "phase_stein: out of memory (d = %lld)", (long long)d);
    stein_scratch w = {buf, buf + d, buf + 2 * d, buf + 3 * d, buf + 4 * d, buf + 4 * d + JBLOCK,
                       {0}};
    stein_args a = {n, d, z_stride, s_stride, z, scores, -1.0 / h, 2.0 / h, 2.0 * (double)d / h,
                    4.0 / (h * h)};
    stein_rows(&a, &w, start, stop, phi, ksd_rows);
    free(buf);
    return PHASE_OK;
}

int phase_stein(int64_t n, int64_t d, const double *z, const double *scores, double h,
                int64_t start, int64_t stop, double *phi, double *ksd_rows)
{
    return phase_stein_strided(n, d, z, d, scores, d, h, start, stop, phi, ksd_rows);
}

/* numpy's pairwise summation of n values a[0], a[stride], ... (numpy's
 * @TYPE@_pairwise_sum, PW_BLOCKSIZE 128): fewer than 8 values in order from
 * 0; up to 128 in eight interleaved partial sums combined as a tree, the rest
 * in order; more split at an even multiple of 8 below n / 2. A reduction of
 * numpy arrays with np.sum is 0 + this; here it serves SVGD's per-iteration
 * sums over the gathered row buffer, which numpy computed before (so the bits
 * stayed those of numpy's sums). */
static double pairwise_sum(const double *a, int64_t n, int64_t stride)
{
    if (n < 8) {
        double res = 0.0;
        for (int64_t i = 0; i < n; i++) res += a[i * stride];
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = a[j * stride];
        int64_t i = 8;
        for (; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[(i + j) * stride];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i * stride];
        return res;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum(a, n2, stride) + pairwise_sum(a + n2 * stride, n - n2, stride);
}

/* pairwise_sum of each of the d columns of n rows (stride doubles apart) into
 * res, row by row: every column gets the additions of pairwise_sum in the
 * same order (its bits), while the rows are read once, in memory order (a
 * column at a time read every row's cache line d times). r8: 8 d doubles of
 * scratch; tmp: d per level of the recursion (< 64 levels). */
static void pairwise_columns(const double *a, int64_t n, int64_t stride, int64_t d, double *res, double *r8,
                             double *tmp)
{
    if (n < 8) {
        for (int64_t c = 0; c < d; c++) res[c] = 0.0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t c = 0; c < d; c++) res[c] += a[i * stride + c];
        return;
    }
    if (n <= 128) {
        for (int j = 0; j < 8; j++)
            for (int64_t c = 0; c < d; c++) r8[j * d + c] = a[j * stride + c];
        int64_t i = 8;
        for (; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++)
                for (int64_t c = 0; c < d; c++) r8[j * d + c] += a[(i + j) * stride + c];
        for (int64_t c = 0; c < d; c++)
            res[c] = ((r8[c] + r8[d + c]) + (r8[2 * d + c] + r8[3 * d + c])) +
                     ((r8[4 * d + c] + r8[5 * d + c]) + (r8[6 * d + c] + r8[7 * d + c]));
        for (; i < n; i++)
            for (int64_t c = 0; c < d; c++) res[c] += a[i * stride + c];
        return;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    pairwise_columns(a, n2, stride, d, res, r8, tmp + d);
    pairwise_columns(a + n2 * stride, n - n2, stride, d, tmp, r8, tmp + d);
    for (int64_t c = 0; c < d; c++) res[c] += tmp[c];
}

int phase_pairwise_sums(int64_t n, int64_t d, const double *x, int64_t stride, int squares, double *out)
{
    phase_clear_error();
    if (n < 0 || d < 1 || stride < d)
        return phase_fail(PHASE_EINVAL, "phase_pairwise_sums: n = %lld, d = %lld, stride = %lld", (long long)n,
                          (long long)d, (long long)stride);
    if ((n && !x) || !out) return phase_fail(PHASE_EINVAL, "phase_pairwise_sums: NULL array");
    if (!squares) {
        double *scratch = malloc((size_t)(8 + 64) * (size_t)d * sizeof *scratch);
        if (!scratch) return phase_fail(PHASE_ENOMEM, "phase_pairwise_sums: out of memory (d = %lld)", (long long)d);
        pairwise_columns(x, n, stride, d, out, scratch, scratch + 8 * d);
        for (int64_t c = 0; c < d; c++) out[c] = 0.0 + out[c];
        free(scratch);
        return PHASE_OK;
    }
    double *sq = malloc(((size_t)n * (size_t)d + 1) * sizeof *sq);
    if (!sq) return phase_fail(PHASE_ENOMEM, "phase_pairwise_sums: out of memory (%lld values)", (long long)(n * d));
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < d; c++) sq[i * d + c] = x[i * stride + c] * x[i * stride + c];
    out[0] = 0.0 + pairwise_sum(sq, n * d, 1);
    free(sq);
    return PHASE_OK;
}
