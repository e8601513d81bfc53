/*
 * C tests of the SVGD Stein kernel (stein.c): its exp against libm's, the
 * vectorised kernel bit for bit against plain scalar loops with the same
 * order of operations (so every vector width and clone gives the same bits),
 * against an independent double loop with libm's exp, row ranges that do not
 * change a bit, and the argument checks. Prints "N passed, N failed".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "phase.h"


#include "check.h"

/* deterministic uniform(-1, 1) numbers (xorshift64*) */
static double next_uniform(unsigned long long *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    unsigned long long r = *state * 2685821657736338717ULL;
    return (double)(r >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static double ulps(double got, double want)
{
    double spacing = nextafter(want, INFINITY) - want;
    return fabs(got - want) / spacing;
}

static void test_exp(void)
{
    double worst = 0.0;
    for (int q = 0; q <= 200000; q++) {
        double x = -708.0 * q / 200000.0;
        double u = ulps(phase_stein_exp(x), exp(x));
        if (u > worst) worst = u;
    }
    CHECK(worst <= 2.0, "exp on [-708, 0]: %.3g ulp (want <= 2)", worst);
    worst = 0.0;
    for (int q = 0; q <= 20000; q++) { /* small arguments: the kernel near a particle */
        double x = -1e-3 * q / 20000.0;
        double u = ulps(phase_stein_exp(x), exp(x));
        if (u > worst) worst = u;
    }
    CHECK(worst <= 1.0, "exp on [-1e-3, 0]: %.3g ulp (want <= 1)", worst);
    /* subnormal results: within one unit of the subnormal spacing 2^-1074 */
    double sub = 0.0;
    for (int q = 0; q <= 1000; q++) {
        double x = -708.5 - 36.0 * q / 1000.0;
        double e = fabs(phase_stein_exp(x) - exp(x)) / 0x1p-1074;
        if (e > sub) sub = e;
    }
    CHECK(sub <= 1.0, "exp on [-744.5, -708.5]: %.3g subnormal units", sub);
    CHECK(phase_stein_exp(0.0) == 1.0 && phase_stein_exp(-0.0) == 1.0, "exp(0) = 1");
    CHECK(phase_stein_exp(-746.0) == 0.0 && phase_stein_exp(-1e300) == 0.0 &&
              phase_stein_exp(-INFINITY) == 0.0, "exp underflows to 0");
    CHECK(isnan(phase_stein_exp(NAN)), "exp(NaN) is NaN");
}

/* The kernel as plain scalar loops in stein.c's order of operations (with
 * its exp): the vector code must give exactly these bits. */
static void scalar_reference(int64_t n, int64_t d, const double *z, const double *s, double h,
                             int64_t i, double *phi, double *ksd)
{
    const double neg_inv_h = -1.0 / h, two_h = 2.0 / h, ksd_const = 2.0 * (double)d / h,
                 four_h2 = 4.0 / (h * h);
    double *as = calloc((size_t)d, sizeof(double)), *ad = calloc((size_t)d, sizeof(double));
    double u = 0.0;
    for (int64_t j = 0; j < n; j++) {
        double r2 = 0.0;
        for (int64_t c = 0; c < d; c++) {
            double t = z[i * d + c] - z[j * d + c];
            r2 = r2 + t * t;
        }
        double k = phase_stein_exp(r2 * neg_inv_h);
        double ss = 0.0, sid = 0.0, sjd = 0.0;
        for (int64_t c = 0; c < d; c++) {
            double t = z[i * d + c] - z[j * d + c];
            as[c] = as[c] + k * s[j * d + c];
            ad[c] = ad[c] + k * t;
            ss = ss + s[j * d + c] * s[i * d + c];
            sid = sid + t * s[i * d + c];
            sjd = sjd + s[j * d + c] * t;
        }
        double term = ss + two_h * sid - two_h * sjd + ksd_const - four_h2 * r2;
        u = u + k * term;
    }
    for (int64_t c = 0; c < d; c++) phi[c] = (as[c] + two_h * ad[c]) / (double)n;
    *ksd = u;
    free(as);
    free(ad);
}

/* Independent oracle: the defining double sum with libm's exp, summed in
 * long double; |error| <= tol * (sum of |terms|). */
static int matches_definition(int64_t n, int64_t d, const double *z, const double *s, double h,
                              int64_t i, const double *phi, double ksd_row)
{
    int ok = 1;
    for (int64_t c = 0; c < d; c++) {
        long double sum = 0.0L, mag = 0.0L;
        for (int64_t j = 0; j < n; j++) {
            double r2 = 0.0;
            for (int64_t e = 0; e < d; e++) r2 += (z[i * d + e] - z[j * d + e]) * (z[i * d + e] - z[j * d + e]);
            double k = exp(-r2 / h);
            double term = k * s[j * d + c] + 2.0 / h * k * (z[i * d + c] - z[j * d + c]);
            sum += term;
            mag += fabs(term);
        }
        ok &= fabsl(phi[c] - sum / n) <= 1e-13L * mag / n + 1e-300L;
    }
    long double u = 0.0L, umag = 0.0L;
    for (int64_t j = 0; j < n; j++) {
        double r2 = 0.0, ss = 0.0, sid = 0.0, sjd = 0.0;
        for (int64_t e = 0; e < d; e++) {
            double t = z[i * d + e] - z[j * d + e];
            r2 += t * t;
            ss += s[i * d + e] * s[j * d + e];
            sid += s[i * d + e] * t;
            sjd += s[j * d + e] * t;
        }
        double k = exp(-r2 / h);
        double parts[5] = {ss, 2.0 / h * sid, -2.0 / h * sjd, 2.0 * d / h, -4.0 * r2 / (h * h)};
        for (int q = 0; q < 5; q++) {
            u += (long double)k * parts[q];
            umag += fabs(k * parts[q]);
        }
    }
    ok &= fabsl(ksd_row - u) <= 1e-13L * umag + 1e-300L;
    return ok;
}

static void test_kernel(void)
{
    unsigned long long state = 88172645463325252ULL;
    const int64_t sizes[] = {1, 2, 7, 8, 9, 17, 130, 257};
    for (int64_t d = 1; d <= 17; d += (d < 5 ? 1 : 4)) {
        for (size_t q = 0; q < sizeof sizes / sizeof sizes[0]; q++) {
            int64_t n = sizes[q];
            double *z = malloc(sizeof(double) * (size_t)(n * d));
            double *s = malloc(sizeof(double) * (size_t)(n * d));
            double *phi = malloc(sizeof(double) * (size_t)(n * d));
            double *part = malloc(sizeof(double) * (size_t)(n * d));
            double *ksd = malloc(sizeof(double) * (size_t)n), *ksd_part = malloc(sizeof(double) * (size_t)n);
            double *ref = malloc(sizeof(double) * (size_t)d);
            for (int64_t k = 0; k < n * d; k++) {
                z[k] = 2.0 * next_uniform(&state);
                s[k] = next_uniform(&state);
            }
            double h = 0.3 + (double)d * (1.0 + next_uniform(&state));
            CHECK(phase_stein(n, d, z, s, h, 0, n, phi, ksd) == PHASE_OK, "phase_stein: %s", phase_last_error());
            int bitwise = 1, definition = 1;
            for (int64_t i = 0; i < n; i++) {
                double ref_ksd;
                scalar_reference(n, d, z, s, h, i, ref, &ref_ksd);
                bitwise &= memcmp(ref, phi + i * d, sizeof(double) * (size_t)d) == 0 && ref_ksd == ksd[i];
                definition &= matches_definition(n, d, z, s, h, i, phi + i * d, ksd[i]);
            }
            CHECK(bitwise, "n = %lld, d = %lld: vector kernel != scalar loops bit for bit", (long long)n, (long long)d);
            CHECK(definition, "n = %lld, d = %lld: kernel != defining sums", (long long)n, (long long)d);
            /* row ranges (tiles cut anywhere), phi and ksd alone: the same bits */
            int64_t cuts[] = {0, n / 3, n / 3 + 1 < n ? n / 3 + 1 : n, n};
            int same = 1;
            for (int c = 0; c < 3; c++) {
                int64_t a = cuts[c], b = cuts[c + 1];
                CHECK(phase_stein(n, d, z, s, h, a, b, part + a * d, NULL) == PHASE_OK, "range phi");
                CHECK(phase_stein(n, d, z, s, h, a, b, NULL, ksd_part + a) == PHASE_OK, "range ksd");
            }
            same &= memcmp(part, phi, sizeof(double) * (size_t)(n * d)) == 0;
            same &= memcmp(ksd_part, ksd, sizeof(double) * (size_t)n) == 0;
            CHECK(same, "n = %lld, d = %lld: a row range changed bits", (long long)n, (long long)d);
            /* the same particles and scores as columns of one row buffer [z | s | pad]
             * (SVGD's gather, passed in place): the same bits */
            const int64_t w = 2 * d + 3;
            double *buf = malloc(sizeof(double) * (size_t)(n * w));
            for (int64_t i = 0; i < n; i++)
                for (int64_t c = 0; c < w; c++)
                    buf[i * w + c] = c < d ? z[i * d + c] : c < 2 * d ? s[i * d + c - d] : NAN;
            CHECK(phase_stein_strided(n, d, buf, w, buf + d, w, h, 0, n, part, ksd_part) == PHASE_OK, "strided");
            CHECK(memcmp(part, phi, sizeof(double) * (size_t)(n * d)) == 0 &&
                      memcmp(ksd_part, ksd, sizeof(double) * (size_t)n) == 0,
                  "n = %lld, d = %lld: row strides changed bits", (long long)n, (long long)d);
            free(buf);
            free(z), free(s), free(phi), free(part), free(ksd), free(ksd_part), free(ref);
        }
    }
}

static void test_repulsion(void)
{
    /* two particles, zero scores: pushed apart by (2/h) k (x_i - x_j) / n */
    double z[2] = {0.0, 1.0}, s[2] = {0.0, 0.0}, phi[2];
    CHECK(phase_stein(2, 1, z, s, 1.0, 0, 2, phi, NULL) == PHASE_OK, "repulsion call");
    CHECK(phi[0] < 0.0 && phi[1] > 0.0, "repulsive sign: phi = %g, %g", phi[0], phi[1]);
    CHECK(fabs(phi[1] - exp(-1.0)) <= 1e-15, "repulsion size: %.17g vs %.17g", phi[1], exp(-1.0));
}

static void test_arguments(void)
{
    double z[4] = {0, 1, 2, 3}, s[4] = {0}, phi[4], ksd[4];
    CHECK(phase_stein(0, 1, z, s, 1.0, 0, 0, phi, NULL) == PHASE_EINVAL, "n = 0");
    CHECK(phase_stein(4, 0, z, s, 1.0, 0, 4, phi, NULL) == PHASE_EINVAL, "d = 0");
    CHECK(phase_stein(4, 1, z, s, 1.0, 2, 5, phi, NULL) == PHASE_EINVAL &&
              strstr(phase_last_error(), "rows"), "range: %s", phase_last_error());
    CHECK(phase_stein(4, 1, z, s, 1.0, 3, 2, phi, NULL) == PHASE_EINVAL, "stop < start");
    CHECK(phase_stein(4, 1, z, s, 0.0, 0, 4, phi, NULL) == PHASE_EINVAL &&
              strstr(phase_last_error(), "bandwidth"), "h = 0: %s", phase_last_error());
    CHECK(phase_stein(4, 1, z, s, NAN, 0, 4, phi, NULL) == PHASE_EINVAL, "h = NaN");
    CHECK(phase_stein(4, 1, z, s, INFINITY, 0, 4, phi, NULL) == PHASE_EINVAL, "h = inf");
    CHECK(phase_stein(4, 1, NULL, s, 1.0, 0, 4, phi, NULL) == PHASE_EINVAL, "z NULL");
    CHECK(phase_stein_strided(2, 2, z, 1, s, 2, 1.0, 0, 2, phi, NULL) == PHASE_EINVAL &&
              strstr(phase_last_error(), "stride"), "stride < d: %s", phase_last_error());
    CHECK(phase_stein(4, 1, z, s, 1.0, 0, 4, NULL, NULL) == PHASE_EINVAL, "both outputs NULL");
    CHECK(phase_stein(4, 1, z, s, 1.0, 2, 2, NULL, NULL) == PHASE_OK, "empty range");
    CHECK(phase_stein(4, 1, z, s, 1.0, 0, 4, phi, ksd) == PHASE_OK && phase_last_error()[0] == '\0',
          "success clears the message");
    z[2] = NAN;
    CHECK(phase_stein(4, 1, z, s, 1.0, 0, 4, phi, ksd) == PHASE_OK && isnan(phi[2]) && isnan(ksd[0]),
          "NaN in, NaN out");
    double sums[2] = {-1.0, -1.0}, rows[6] = {1.0, 2.0, 9.0, 3.0, 4.0, 9.0};
    CHECK(phase_pairwise_sums(2, 2, rows, 3, 0, sums) == PHASE_OK && sums[0] == 4.0 && sums[1] == 6.0,
          "column sums of a strided block: %g %g", sums[0], sums[1]);
    CHECK(phase_pairwise_sums(2, 2, rows, 3, 1, sums) == PHASE_OK && sums[0] == 30.0, "sum of squares: %g", sums[0]);
    CHECK(phase_pairwise_sums(0, 2, NULL, 2, 0, sums) == PHASE_OK && sums[0] == 0.0 && sums[1] == 0.0, "no rows");
    CHECK(phase_pairwise_sums(2, 0, rows, 3, 0, sums) == PHASE_EINVAL, "d = 0");
    CHECK(phase_pairwise_sums(2, 2, rows, 1, 0, sums) == PHASE_EINVAL, "stride < d");
    CHECK(phase_pairwise_sums(2, 2, NULL, 3, 0, sums) == PHASE_EINVAL, "NULL rows");
}

int main(void)
{
    test_exp();
    test_kernel();
    test_repulsion();
    test_arguments();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
