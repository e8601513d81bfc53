/*
 * Forward-mode tangents of the uniformization sweep (sweep.c): with Lambda
 * held fixed (f does not depend on it), dv_{k+1} = dv_k P + v_k dS / Lambda
 * and ds / dtheta, propagated step by step beside the values. Split from
 * sweep.c so that each file does one job; the sweep calls these from its
 * recursion and from set_rates.
 */
#include <math.h>
#include <string.h>

#include "sweep.h"

/* Flush one state's value and tangent (d = 1; a -0 tangent becomes +0),
 * store them and add them to the sums. */
static inline void put_d1(double x, double dx, int32_t j, double *vn, double *dvn,
                          double *total, double *dsum)
{
    x = x < FLUSH_BELOW ? 0.0 : x; /* see FLUSH_BELOW */
    dx = fabs(dx) < FLUSH_BELOW ? 0.0 : dx;
    vn[j] = x;
    dvn[j] = dx;
    *total += x;
    *dsum += dx;
}

/* forward() with tangents: vn = v P and dvn = dv P + v dP (Lambda fixed).
 * The range covers the states where the value or a tangent is non-zero: a
 * tangent can be non-zero where the value is zero (an edge whose rate is 0
 * at theta but whose coefficient is not). */
double sweep_forward_tangent(const phase_graph *g, const sweep *w, const double *v,
                             const double *dv, int32_t lo, int32_t hi, double *vn, double *dvn,
                             int32_t *nlo, int32_t *nhi, double *dtotal)
{
    const int32_t d = g->d;
    const int64_t *ptr = g->in_ptr;
    const int32_t *from = g->in_src;
    const double *p = w->in_p, *diag = w->diag, *in_c = w->in_c, *diag_c = w->diag_c;
    if (lo > hi) {
        for (int32_t m = 0; m < d; m++) dtotal[m] = 0.0;
        sweep_clear(vn, *nlo, *nhi);
        sweep_clear_tangents(dvn, *nlo, *nhi, d);
        *nlo = 0;
        *nhi = -1;
        return 0.0;
    }
    const int32_t a = g->reach_lo[lo], b = g->reach_hi[hi];
    const int32_t left_end = *nhi < a - 1 ? *nhi : a - 1, right_start = *nlo > b + 1 ? *nlo : b + 1;
    sweep_clear(vn, *nlo, left_end);
    sweep_clear(vn, right_start, *nhi);
    sweep_clear_tangents(dvn, *nlo, left_end, d);
    sweep_clear_tangents(dvn, right_start, *nhi, d);
    double total = 0.0;
    if (d == 1 && w->one_c) { /* at most one in-edge each, as in forward() */
        const int32_t *src = w->one_src;
        const double *p1 = w->one_p, *c1 = w->one_c;
        double dsum = 0.0;
        for (int32_t j = a; j <= b; j++) {
            const double vj = v[j], vi = v[src[j]];
            double x = diag[j] * vj, dx = diag[j] * dv[j] + diag_c[j] * vj;
            x += p1[j] * vi;
            dx += p1[j] * dv[src[j]] + c1[j] * vi;
            put_d1(x, dx, j, vn, dvn, &total, &dsum);
        }
        dtotal[0] = dsum;
    } else if (d == 1) { /* the common case, without the inner loops over parameters */
        double dsum = 0.0;
        for (int32_t j = a; j <= b; j++) {
            const double vj = v[j];
            double x = diag[j] * vj, dx = diag[j] * dv[j] + diag_c[j] * vj;
            for (int64_t q = ptr[j]; q < ptr[j + 1]; q++) {
                const int32_t i = from[q];
                const double vi = v[i], pq = p[q];
                x += pq * vi;
                dx += pq * dv[i] + in_c[q] * vi;
            }
            put_d1(x, dx, j, vn, dvn, &total, &dsum);
        }
        dtotal[0] = dsum;
    } else {
        /* Zeroed here, not for every d: for d = 1 it was a memset call per step. */
        for (int32_t m = 0; m < d; m++) dtotal[m] = 0.0;
        for (int32_t j = a; j <= b; j++) {
            const double vj = v[j];
            double x = diag[j] * vj;
            double *dx = dvn + (size_t)j * d;
            const double *dvj = dv + (size_t)j * d, *cj = diag_c + (size_t)j * d;
            for (int32_t m = 0; m < d; m++) dx[m] = diag[j] * dvj[m] + cj[m] * vj;
            for (int64_t q = ptr[j]; q < ptr[j + 1]; q++) {
                const int32_t i = from[q];
                const double vi = v[i], pq = p[q];
                const double *dvi = dv + (size_t)i * d, *cq = in_c + (size_t)q * d;
                x += pq * vi;
                for (int32_t m = 0; m < d; m++) dx[m] += pq * dvi[m] + cq[m] * vi;
            }
            x = x < FLUSH_BELOW ? 0.0 : x;
            for (int32_t m = 0; m < d; m++) {
                if (fabs(dx[m]) < FLUSH_BELOW) dx[m] = 0.0;
                dtotal[m] += dx[m];
            }
            vn[j] = x;
            total += x;
        }
    }
    sweep_support(vn, dvn, d, a, b, nlo, nhi); /* from the ends, as in forward() */
    return total;
}

/* dP/dtheta (Lambda fixed) on the edges in target order and on the
 * diagonal, and ds/dtheta, from the sparse edge coefficients. */
void sweep_tangent_coefficients(sweep *w, const phase_graph *g, double L)
{
    const size_t d = (size_t)g->d;
    memset(w->in_c, 0, sizeof(double) * (size_t)(g->n_trans > 0 ? g->n_trans : 1) * d);
    memset(w->diag_c, 0, sizeof(double) * (size_t)g->n * d);
    memset(w->ds, 0, sizeof(double) * (size_t)g->n * d);
    for (int64_t q = 0; q < g->n_trans; q++) {
        const int64_t e = g->in_edge[q];
        for (int64_t c = g->coef_ptr[e]; c < g->coef_ptr[e + 1]; c++)
            w->in_c[(size_t)q * d + (size_t)g->coef_idx[c]] = g->coef_val[c] / L;
    }
    for (int32_t j = 0; w->one_c && j < g->n; j++)
        if (g->in_ptr[j + 1] > g->in_ptr[j]) w->one_c[j] = w->in_c[g->in_ptr[j]];
    for (int64_t e = 0; e < g->n_edges; e++) {
        const size_t i = (size_t)g->src[e];
        for (int64_t c = g->coef_ptr[e]; c < g->coef_ptr[e + 1]; c++) {
            const size_t m = (size_t)g->coef_idx[c];
            w->diag_c[i * d + m] -= g->coef_val[c] / L;
            if (g->dst[e] == PHASE_ABSORBING) w->ds[i * d + m] += g->coef_val[c];
        }
    }
}
