/* Driver for benchmarks/profile_small.py: reads a graph, observations and a
 * batch of theta from a binary file (profile_small.py: write_case), calls
 * phase_loglik reps times on the whole batch, and prints the first
 * log-likelihood and gradient entry (to compare bits), the terms per theta
 * and the best time per theta. Usage: driver FILE GRAD REPS. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "phase.h"

static void *read_array(FILE *f, size_t size, size_t count)
{
    void *p = malloc(size * (count ? count : 1));
    if (!p || fread(p, size, count, f) != count) {
        fprintf(stderr, "short input\n");
        exit(1);
    }
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s FILE GRAD REPS\n", argv[0]);
        return 1;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) return 1;
    const int grad = atoi(argv[2]), reps = atoi(argv[3]);
    /* header: states, params, edges, discrete, observations, thetas */
    int64_t *h = read_array(f, sizeof(int64_t), 6);
    const int32_t n = (int32_t)h[0], d = (int32_t)h[1];
    const int64_t ne = h[2], n_obs = h[4], n_theta = h[5];
    double *alpha = read_array(f, sizeof(double), (size_t)n);
    int32_t *src = read_array(f, sizeof(int32_t), (size_t)ne);
    int32_t *dst = read_array(f, sizeof(int32_t), (size_t)ne);
    double *base = read_array(f, sizeof(double), (size_t)ne);
    double *coef = read_array(f, sizeof(double), (size_t)(ne * d));
    double *obs = read_array(f, sizeof(double), (size_t)n_obs);
    double *theta = read_array(f, sizeof(double), (size_t)(n_theta * d));
    fclose(f);
    phase_graph *g;
    if (phase_graph_new(&g, n, d, alpha, ne, src, dst, base, coef, (int)h[3])) return 2;
    phase_options opts;
    phase_options_default(&opts);
    phase_data data;
    memset(&data, 0, sizeof data);
    data.n_exact = n_obs;
    data.exact = obs;
    double *ll = malloc(sizeof(double) * (size_t)n_theta);
    double *gr = malloc(sizeof(double) * (size_t)(n_theta * d));
    int *status = malloc(sizeof(int) * (size_t)n_theta);
    phase_info *info = malloc(sizeof(phase_info) * (size_t)n_theta);
    double best = 1e300;
    for (int r = 0; r < reps; r++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (phase_loglik(g, &opts, &data, n_theta, theta, ll, grad ? gr : NULL, status,
                         r == 0 ? info : NULL))
            return 3;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        const double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (s < best) best = s;
    }
    double terms = 0.0;
    for (int64_t p = 0; p < n_theta; p++) terms += (double)info[p].n_terms;
    printf("ll0=%.17g g0=%.17g terms/theta=%.1f best_us_per_theta=%.3f\n", ll[0],
           grad && d ? gr[0] : 0.0, terms / (double)n_theta, 1e6 * best / (double)n_theta);
    phase_graph_free(g);
    return 0;
}
