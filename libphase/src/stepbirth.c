/*
 * The birth chain of step-wise adaptive uniformization (stepau.c): the
 * weights p_k(t) = P(N(t) = k) of a pure-birth chain N with rates L_k,
 * a stiff one-dimensional problem (L_0 t_max is in the thousands), by
 * adaptive uniformization of the chain itself. Time is cut into segments
 * of SEG_JUMPS / Lambda_s, Lambda_s = the largest L_k over the birth states
 * still holding mass; between segments the leading states below DROP_Q are
 * dropped (which lowers Lambda), and within one the front grows only while
 * it holds DROP_Q (both counted). Every term of a segment is projected at
 * once onto a (and da, with the tangents dp: the L_k depend on theta), so
 * a point is a Poisson sum of scalars. Everything is a sum of non-negative
 * terms.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stepau.h"

/* Poisson(mu) weights of terms 0..J into pj (mu <= SEG_JUMPS: e^-mu is a
 * normal double, the recurrence runs forward; past the mode, terms below
 * the floor end it). Returns the last index filled. */
static int64_t point_weights(double *pj, int64_t J, double mu)
{
    double w = exp(-mu);
    pj[0] = w;
    int64_t j = 0;
    while (j < J) {
        w *= mu / (double)(j + 1);
        if (w < 1e-300 && (double)j > mu) break;
        pj[++j] = w;
    }
    return j;
}

/* Poisson(SEG_JUMPS) weights of terms 0..J (by point_weights: e^-64 is a
 * normal double), J the first index past the mode whose right tail, bounded
 * by the geometric series w_{J+1} / (1 - mu / (J + 2)), is below SEG_TAIL;
 * normalised over the terms kept. */
int stepau_segment_weights(stepau *sa)
{
    const double mu = SEG_JUMPS;
    const int64_t cap = (int64_t)mu + 64 + (int64_t)(40.0 * sqrt(mu));
    sa->pw = malloc(sizeof(double) * (size_t)(cap + 1));
    if (!sa->pw) return phase_fail(PHASE_ENOMEM, "out of memory for segment weights");
    const int64_t last = point_weights(sa->pw, cap, mu);
    int64_t J = (int64_t)mu;
    double total = 0.0, tail = 1.0;
    while (J < last) {
        tail = sa->pw[J + 1] / (1.0 - mu / (double)(J + 2));
        if (tail <= SEG_TAIL) break;
        J++;
    }
    for (int64_t j = 0; j <= J; j++) total += sa->pw[j];
    for (int64_t j = 0; j <= J; j++) sa->pw[j] /= total;
    sa->seg_tail = tail / total;
    sa->J = J;
    return PHASE_OK;
}

/* One uniformization term of the birth chain at rate Lam (inv = 1 / Lam):
 * y <- y (I + B / Lam) on [qlo, *yhi] (growing by one up to the absorbing
 * state K while the front holds DROP_Q or more), and in forward mode its
 * tangent dy (the L_k depend on theta). */
static void birth_term(stepau *sa, int64_t K, int64_t qlo, int64_t *yhi, double inv,
                       double *dropped)
{
    const int32_t d = sa->d;
    const double *L = sa->L, *dL = sa->dL;
    double *y = sa->y, *dy = sa->dy;
    if (*yhi < K && y[*yhi] >= DROP_Q) {
        y[++*yhi] = 0.0;
        for (int32_t m = 0; m < d; m++) dy[*yhi * d + m] = 0.0;
    } else if (*yhi < K) { /* the front is negligible: what leaves it is dropped */
        *dropped += y[*yhi] * L[*yhi] * inv;
    }
    if (*yhi == K) { /* the absorbing tail: P(N >= K), all of F where the support ends */
        y[K] += y[K - 1] * L[K - 1] * inv;
        for (int32_t m = 0; m < d; m++)
            dy[K * d + m] += (dy[(K - 1) * d + m] * L[K - 1] + y[K - 1] * dL[(K - 1) * d + m]) * inv;
    }
    for (int64_t k = (*yhi < K ? *yhi : K - 1); k >= qlo; k--) {
        const double stay = 1.0 - L[k] * inv, in = k > qlo ? L[k - 1] * inv : 0.0;
        for (int32_t m = 0; m < d; m++) {
            double x = dy[k * d + m] * stay - y[k] * dL[k * d + m] * inv;
            if (k > qlo) x += dy[(k - 1) * d + m] * in + y[k - 1] * dL[(k - 1) * d + m] * inv;
            dy[k * d + m] = x;
        }
        y[k] = y[k] * stay + (k > qlo ? y[k - 1] * in : 0.0);
    }
}

/* The birth chain's weights at every observation, projected: f[i], df[i],
 * tailp[i]; *ok = 0 when all its mass leaves before an observation. */
void stepau_birth_chain(stepau *sa, int64_t K, double *dropped, int64_t *n_segs, int *ok)
{
    const int32_t d = sa->d;
    const int64_t J = sa->J;
    sa->sufmax[K] = 0.0;
    for (int64_t k = K - 1; k >= 0; k--) sa->sufmax[k] = fmax(sa->L[k], sa->sufmax[k + 1]);
    memset(sa->q, 0, sizeof(double) * (size_t)(K + 1));
    memset(sa->dq, 0, sizeof(double) * (size_t)(K + 1) * (size_t)d);
    sa->q[0] = 1.0;
    int64_t qlo = 0, qhi = 0, i = 0;
    double tau = 0.0;
    *dropped = 0.0;
    *ok = 1;
    *n_segs = 0;
    while (i < sa->n_obs) {
        ++*n_segs;
        if (qlo >= K) {
            *ok = 0;
            return;
        }
        double *q = sa->q, *y = sa->y, *qn = sa->qn, *dq = sa->dq, *dy = sa->dy, *dqn = sa->dqn;
        const double Lam = sa->sufmax[qlo], end = tau + SEG_JUMPS / Lam, inv = 1.0 / Lam;
        const int last = sa->t[sa->n_obs - 1] < end;
        int64_t yhi = qhi;
        memcpy(y + qlo, q + qlo, sizeof(double) * (size_t)(qhi - qlo + 1));
        if (d) memcpy(dy + qlo * d, dq + qlo * d, sizeof(double) * (size_t)((qhi - qlo + 1) * d));
        if (!last) {
            memset(qn + qlo, 0, sizeof(double) * (size_t)(K + 1 - qlo));
            memset(dqn + qlo * d, 0, sizeof(double) * (size_t)((K + 1 - qlo) * d));
        }
        for (int64_t j = 0; j <= J; j++) {
            const int64_t top = yhi < K ? yhi : K - 1;
            double al = 0.0;
            for (int64_t k = qlo; k <= top; k++) al += y[k] * sa->a[k];
            sa->alpha_j[j] = al;
            sa->tail_j[j] = yhi == K ? y[K] : 0.0;
            for (int32_t m = 0; m < d; m++) {
                double be = 0.0;
                for (int64_t k = qlo; k <= top; k++)
                    be += y[k] * sa->da[k * d + m] + dy[k * d + m] * sa->a[k];
                sa->beta_j[j * d + m] = be;
            }
            if (sa->wr) { /* survival and absorbed mass for right-censored times */
                double sb = yhi == K ? y[K] * sa->b[K] : 0.0, sc = yhi == K ? y[K] * sa->c[K] : 0.0;
                for (int64_t k = qlo; k <= top; k++) sb += y[k] * sa->b[k], sc += y[k] * sa->c[k];
                sa->sb_j[j] = sb, sa->sc_j[j] = sc;
                for (int32_t m = 0; m < d; m++) {
                    double xb = 0.0, xc = 0.0;
                    if (yhi == K) {
                        xb = y[K] * sa->db[K * d + m] + dy[K * d + m] * sa->b[K];
                        xc = y[K] * sa->dc[K * d + m] + dy[K * d + m] * sa->c[K];
                    }
                    for (int64_t k = qlo; k <= top; k++) {
                        xb += y[k] * sa->db[k * d + m] + dy[k * d + m] * sa->b[k];
                        xc += y[k] * sa->dc[k * d + m] + dy[k * d + m] * sa->c[k];
                    }
                    sa->dsb_j[j * d + m] = xb, sa->dsc_j[j * d + m] = xc;
                }
            }
            if (!last) {
                for (int64_t k = qlo; k <= yhi; k++) qn[k] += sa->pw[j] * y[k];
                for (int64_t x = qlo * d; x < (yhi + 1) * d; x++) dqn[x] += sa->pw[j] * dy[x];
            }
            if (j < J) birth_term(sa, K, qlo, &yhi, inv, dropped);
        }
        for (; i < sa->n_obs && (last || sa->t[i] < end); i++) {
            const int64_t top = point_weights(sa->pj, J, Lam * (sa->t[i] - tau));
            double f = 0.0, tl = 0.0;
            for (int64_t j = 0; j <= top; j++) f += sa->pj[j] * sa->alpha_j[j];
            for (int64_t j = 0; j <= top; j++) tl += sa->pj[j] * sa->tail_j[j];
            for (int32_t m = 0; m < d; m++) {
                double x = 0.0;
                for (int64_t j = 0; j <= top; j++) x += sa->pj[j] * sa->beta_j[j * d + m];
                sa->df[i * d + m] = x;
            }
            sa->f[i] = f, sa->tailp[i] = tl;
            if (!sa->wr) continue;
            double S = 0.0, C = 0.0;
            for (int64_t j = 0; j <= top; j++) S += sa->pj[j] * sa->sb_j[j], C += sa->pj[j] * sa->sc_j[j];
            sa->S[i] = S, sa->C[i] = C;
            for (int32_t m = 0; m < d; m++) {
                double xs = 0.0, xc = 0.0;
                for (int64_t j = 0; j <= top; j++)
                    xs += sa->pj[j] * sa->dsb_j[j * d + m], xc += sa->pj[j] * sa->dsc_j[j * d + m];
                sa->dS[i * d + m] = xs, sa->dC[i * d + m] = xc;
            }
        }
        if (last) break;
        sa->q = qn, sa->qn = q, sa->dq = dqn, sa->dqn = dq; /* the end starts the next */
        qhi = yhi;
        tau = end;
        while (qlo < K && sa->q[qlo] < DROP_Q) {
            *dropped += sa->q[qlo];
            sa->q[qlo] = 0.0;
            for (int32_t m = 0; m < d; m++) sa->dq[qlo * d + m] = 0.0;
            qlo++;
        }
    }
}
