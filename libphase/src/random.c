/*
 * Counter-based random numbers for the samplers: Philox4x64-10 (Salmon,
 * Moraes, Dror and Shaw, SC 2011; the generator behind numpy's Philox).
 *
 * A draw is a pure function of its key (seed, purpose) and its counter (four
 * 64-bit words the caller builds from ids such as chain, level, scan and
 * step): no generator object, no state, nothing that depends on which
 * process or in which order the draws are made. Row r of a call uses the
 * counters (ids[4r], ids[4r+1], ids[4r+2], ids[4r+3] + b), b = 0, 1, ...,
 * each giving four words w in order.
 *
 *   uniform: (w >> 11) * 2^-53, in [0, 1) (numpy's conversion of a word);
 *   normal:  Box-Muller on consecutive word pairs (w0, w1):
 *            u1 = ((w0 >> 11) + 1) 2^-53 in (0, 1], u2 = (w1 >> 11) 2^-53,
 *            sqrt(-2 log u1) cos(2 pi u2), then sqrt(-2 log u1) sin(2 pi u2).
 *
 * The normals use libm's log, cos and sin: identical bits for every process
 * of a run on one platform.
 */
#include <math.h>
#include <stdint.h>

#include "internal.h"

#define PHILOX_M0 UINT64_C(0xD2E7470EE14C6C93)
#define PHILOX_M1 UINT64_C(0xCA5A826395121157)
#define PHILOX_W0 UINT64_C(0x9E3779B97F4A7C15)
#define PHILOX_W1 UINT64_C(0xBB67AE8584CAA73B)
#define TWO_M53 (1.0 / 9007199254740992.0)
#define TWO_PI 6.283185307179586476925286766559

/* 64 x 64 -> 128-bit product: the low word returned, the high in *hi.
 * Schoolbook on 32-bit halves where the compiler has no 128-bit integers
 * (always compiled, so the C test checks it against the native product). */
uint64_t phase_mulhilo_portable(uint64_t a, uint64_t b, uint64_t *hi)
{
    const uint64_t lo_mask = UINT64_C(0xFFFFFFFF);
    uint64_t a0 = a & lo_mask, a1 = a >> 32, b0 = b & lo_mask, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (p01 & lo_mask) + (p10 & lo_mask);
    *hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
    return a * b;
}

static inline uint64_t mulhilo(uint64_t a, uint64_t b, uint64_t *hi)
{
#if defined(__SIZEOF_INT128__)
    __extension__ unsigned __int128 p = (unsigned __int128)a * b;
    *hi = (uint64_t)(p >> 64);
    return (uint64_t)p;
#else
    return phase_mulhilo_portable(a, b, hi);
#endif
}

static void philox(const uint64_t ctr_in[4], const uint64_t key_in[2], uint64_t out[4])
{
    uint64_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
    uint64_t k0 = key_in[0], k1 = key_in[1];
    for (int round = 0; round < 10; round++) {
        uint64_t hi0, hi1;
        uint64_t lo0 = mulhilo(PHILOX_M0, c0, &hi0);
        uint64_t lo1 = mulhilo(PHILOX_M1, c2, &hi1);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

int phase_philox4x64(const uint64_t ctr[4], const uint64_t key[2], uint64_t out[4])
{
    if (!ctr || !key || !out) return phase_fail(PHASE_EINVAL, "phase_philox4x64: NULL argument");
    philox(ctr, key, out);
    return PHASE_OK;
}

/* Values [4b, 4b + 4) of a row (those below per_row) from the block's words. */
static void fill_block(const uint64_t w[4], int normal, int64_t b, int64_t per_row, double *row)
{
    for (int64_t q = 0; q < 4 && 4 * b + q < per_row; q += 2) {
        double *out = row + 4 * b + q;
        const int both = 4 * b + q + 1 < per_row;
        if (!normal) {
            out[0] = (double)(w[q] >> 11) * TWO_M53;
            if (both) out[1] = (double)(w[q + 1] >> 11) * TWO_M53;
            continue;
        }
        double u1 = (double)((w[q] >> 11) + 1) * TWO_M53, u2 = (double)(w[q + 1] >> 11) * TWO_M53;
        double radius = sqrt(-2.0 * log(u1)), angle = TWO_PI * u2;
        out[0] = radius * cos(angle);
        if (both) out[1] = radius * sin(angle);
    }
}

static int draw(const char *who, int normal, uint64_t seed, uint64_t purpose, int64_t n, const uint64_t *ids,
                int64_t per_row, double *out)
{
    if (n < 0 || per_row < 0)
        return phase_fail(PHASE_EINVAL, "%s: n = %lld, per_row = %lld", who, (long long)n, (long long)per_row);
    if (n > 0 && per_row > 0 && (!ids || !out)) return phase_fail(PHASE_EINVAL, "%s: NULL array", who);
    const uint64_t key[2] = {seed, purpose};
    for (int64_t r = 0; r < n; r++) {
        for (int64_t b = 0; 4 * b < per_row; b++) {
            const uint64_t *id = ids + 4 * r;
            const uint64_t ctr[4] = {id[0], id[1], id[2], id[3] + (uint64_t)b};
            uint64_t w[4];
            philox(ctr, key, w);
            fill_block(w, normal, b, per_row, out + r * per_row);
        }
    }
    return PHASE_OK;
}

int phase_random_uniform(uint64_t seed, uint64_t purpose, int64_t n, const uint64_t *ids, int64_t per_row,
                         double *out)
{
    return draw("phase_random_uniform", 0, seed, purpose, n, ids, per_row, out);
}

int phase_random_normal(uint64_t seed, uint64_t purpose, int64_t n, const uint64_t *ids, int64_t per_row,
                        double *out)
{
    return draw("phase_random_normal", 1, seed, purpose, n, ids, per_row, out);
}
