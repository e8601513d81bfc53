/*
 * Poisson-weighted sums over the sweep's sequences, and their adjoints.
 *
 * The weights Pois(k; mu) are computed relative to the mode (Fox-Glynn
 * style: w_M = 1, w_{k+1} = w_k mu / (k+1), w_{k-1} = w_k k / mu) and
 * normalised by their sum W over a core window whose outside mass is below
 * 1e-4 tol. The window is then widened while the data could matter: the
 * terms beyond it are bounded by (Poisson tail) x (a bound on x there) and
 * the window stops once that is below tol x the sum, or below anything a
 * double can hold. Widening matters in the tails: far left of the mode when
 * a_k decays fast (f(t) far in the right tail), far right when a_k is still
 * zero at the mode (f(t) near t = 0 for a long chain).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sweep.h"

#define WEIGHT_RESCALE 400      /* keep extended weights in [2^-400, 1] */
#define UNREPRESENTABLE (-1100) /* log2 below every double */
/* A window whose sum is still zero widens until the remaining terms are
 * below 2^-20000 (log f < -13800): far below any double, so log f stays
 * finite wherever it is of any use, and a sum that is zero for good (no
 * exit reachable) stops after a few thousand terms. */
#define FLOOR_LOG2 (-20000)

static inline void acc_add(scaled *acc, double x, int64_t e)
{
    if (x == 0.0) return;
    if (acc->m == 0.0) {
        acc->m = x;
        acc->e = e;
    } else if (e == acc->e) {
        acc->m += x;
    } else if (e < acc->e) {
        int64_t d = e - acc->e;
        if (d > UNREPRESENTABLE) acc->m += ldexp(x, (int)d);
    } else {
        int64_t d = acc->e - e;
        acc->m = (d > UNREPRESENTABLE ? ldexp(acc->m, (int)d) : 0.0) + x;
        acc->e = e;
    }
}


static int grow_weights(sweep *w, int64_t need)
{
    int64_t cap = w->wcap;
    SWEEP_GROW(w->wm, w->wcap, need, cap, "Poisson weights");
    SWEEP_GROW(w->we, w->wcap, need, cap, "Poisson weights");
    SWEEP_GROW(w->inv_k, w->wcap, need, cap, "Poisson weights");
    for (int64_t k = w->wcap > 1 ? w->wcap : 1; k < cap; k++) w->inv_k[k] = 1.0 / (double)k;
    /* New exponents are zero: core windows only clear what widening wrote. */
    memset(w->we + w->wcap, 0, sizeof(int64_t) * (size_t)(cap - w->wcap));
    w->wcap = cap;
    return PHASE_OK;
}

/* Room for need weights; inline, as every point asks (a call per point was
 * about 5 % of a small model's instructions). */
static inline int weights_room(sweep *w, int64_t need)
{
    return need <= w->wcap ? PHASE_OK : grow_weights(w, need);
}

/* Note a non-zero exponent written at we[k] (outside a core window). */
static inline void we_dirty(sweep *w, int64_t k)
{
    if (k < w->we_lo) w->we_lo = k;
    if (k > w->we_hi) w->we_hi = k;
}

static inline int64_t log2_ceil(double x) { return x > 0.0 ? (int64_t)fast_ilogb(x) + 1 : NEG_INF_LOG2; }

/* log2 bound of x_j for every j >= k1: b is non-increasing, a_j <= smax b_j,
 * c_j <= sum(alpha) <= 1. */
static int64_t right_bound_x(const sweep *w, int which, int64_t k1)
{
    if (which == SEQ_C) return sweep_log2_bound(w->c_max, 0);
    int64_t lb = sweep_log2_bound(w->bm[k1], w->ex[k1]);
    if (which == SEQ_A) {
        if (w->smax == 0.0) return NEG_INF_LOG2;
        lb += log2_ceil(w->smax);
    }
    return lb;
}

/* Where the remaining terms may stop: below tol x the sum, or unrepresentable. */
static int64_t needed_log2(scaled acc, int64_t log2_tol, int64_t floor_log2)
{
    int64_t need = acc.m > 0.0 ? sweep_log2_bound(acc.m, acc.e) + log2_tol : floor_log2;
    return need < floor_log2 ? floor_log2 : need;
}

/* sum_k a[k] b[k] over k < n in four interleaved partial sums (a fixed
 * order: the same bits on every call), so that the additions do not wait on
 * each other; kept out of line so that the sums stay in registers. With GCC
 * the partial sums are two lanes of two vectors (SSE2, the x86-64 baseline):
 * each lane does the scalar loop's operations in its order, so the bits are
 * the same, at half the instructions (the dot was a fifth of a point's). */
#if defined(__GNUC__)
typedef double pois_v2 __attribute__((vector_size(2 * sizeof(double))));
#endif
__attribute__((noinline)) static double dot(const double *a, const double *b, int64_t n)
{
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int64_t k = 0;
#if defined(__GNUC__)
    pois_v2 s01 = {0.0, 0.0}, s23 = {0.0, 0.0};
    for (; k + 4 <= n; k += 4) {
        pois_v2 a01, a23, b01, b23;
        memcpy(&a01, a + k, sizeof a01);
        memcpy(&a23, a + k + 2, sizeof a23);
        memcpy(&b01, b + k, sizeof b01);
        memcpy(&b23, b + k + 2, sizeof b23);
        s01 += a01 * b01;
        s23 += a23 * b23;
    }
    s0 = s01[0];
    s1 = s01[1];
    s2 = s23[0];
    s3 = s23[1];
#else
    for (; k + 4 <= n; k += 4) {
        s0 += a[k] * b[k];
        s1 += a[k + 1] * b[k + 1];
        s2 += a[k + 2] * b[k + 2];
        s3 += a[k + 3] * b[k + 3];
    }
#endif
    for (; k < n; k++) s0 += a[k] * b[k];
    return (s0 + s1) + (s2 + s3);
}

/* The core window of Poisson(mu) weights relative to the mode M (w_M = 1):
 * [*L, *R] with sum *W, outside mass below 1e-4 tol (tighter than tol: W
 * normalises every value, so its own truncation is a relative error of the
 * result); w->core_rel gets that outside mass relative to W. The
 * recurrences multiply by factors computed off the dependency chain (a
 * division per step on the chain would dominate the cost of small models):
 * mu / (k + 1) as mu * inv_k[k + 1], the same bits as mu * (1.0 / (k + 1)).
 * The exponents we are zero on the core, set in one pass at the end. */
static int core_window(sweep *w, double mu, int64_t *L_out, int64_t *R_out, double *W_out)
{
    int st;
    if (mu == w->core_mu) { /* the last call's core is intact (see sweep.h) */
        *L_out = w->core_lo;
        *R_out = w->core_hi;
        *W_out = w->core_w;
        return PHASE_OK;
    }
    const int64_t M = (int64_t)floor(mu);
    int64_t R = M, L = M;
    /* Room for the core window (about +-9 sqrt(mu) at 1e-16): no checks in
     * the loops below unless it is exceeded. */
    if ((st = weights_room(w, M + 64 + (int64_t)(20.0 * sqrt(mu + 1.0))))) return st;
    double *wm = w->wm;
    const double *inv = w->inv_k;
    int64_t cap = w->wcap;
    wm[M] = 1.0;
    double W = 1.0;
    const double core_tol = w->tol * 1e-4, inv_mu = 1.0 / mu;
    double wk = 1.0;
    /* Blocks of four steps first, without a long dependency chain: the four
     * weights are wk times prefix products of the factors (computed off the
     * chain), and the sum gains the block's pairwise sum, so the chain is one
     * product and one addition per block instead of four of each (this loop
     * set the cost of small models). On this side the factors are <= 1 (k + 1
     * > mu), so the weights fall and the block's last weight is its smallest:
     * if it is above core_tol times the sum after the block, no weight of the
     * block would have stopped the scalar loop below, which finishes the
     * window from the first block that may stop. */
    for (;;) {
        if (R + 6 >= cap) {
            if ((st = weights_room(w, R + 7))) return st;
            wm = w->wm;
            inv = w->inv_k;
            cap = w->wcap;
        }
        const double r1 = mu * inv[R + 1], r2 = mu * inv[R + 2];
        const double r3 = mu * inv[R + 3], r4 = mu * inv[R + 4];
        const double r12 = r1 * r2, r123 = r12 * r3, r1234 = r12 * (r3 * r4);
        const double n1 = wk * r1, n2 = wk * r12, n3 = wk * r123, n4 = wk * r1234;
        const double W4 = W + ((n1 + n2) + (n3 + n4));
        if (!(n4 > core_tol * W4)) break;
        wm[R + 1] = n1;
        wm[R + 2] = n2;
        wm[R + 3] = n3;
        wm[R + 4] = wk = n4;
        W = W4;
        R += 4;
    }
    for (;;) {
        const double next = wk * (mu * inv[R + 1]);
        if (next <= core_tol * W && next / (1.0 - mu / (double)(R + 2)) <= core_tol * W) break;
        if (R + 2 >= cap) {
            if ((st = weights_room(w, R + 3))) return st;
            wm = w->wm;
            inv = w->inv_k;
            cap = w->wcap;
        }
        R++;
        wm[R] = wk = next;
        W += next;
    }
    const double right_tail = wk * (mu / (double)(R + 1)) / (1.0 - mu / (double)(R + 2));
    double left_tail = 0.0;
    wk = 1.0;
    double Ld = (double)L; /* exact: L < 2^53 */
    while (L > 4) { /* blocks of four, as on the right (factors L / mu <= 1) */
        const double r1 = Ld * inv_mu, r2 = (Ld - 1.0) * inv_mu;
        const double r3 = (Ld - 2.0) * inv_mu, r4 = (Ld - 3.0) * inv_mu;
        const double r12 = r1 * r2, r123 = r12 * r3, r1234 = r12 * (r3 * r4);
        const double p1 = wk * r1, p2 = wk * r12, p3 = wk * r123, p4 = wk * r1234;
        const double W4 = W + ((p1 + p2) + (p3 + p4));
        if (!(p4 > core_tol * W4)) break;
        wm[L - 1] = p1;
        wm[L - 2] = p2;
        wm[L - 3] = p3;
        wm[L - 4] = wk = p4;
        W = W4;
        L -= 4;
        Ld -= 4.0;
    }
    while (L > 0) {
        const double prev = wk * ((double)L * inv_mu);
        if (prev <= core_tol * W) {
            const double tail = prev / (1.0 - (double)(L - 1) * inv_mu);
            if (tail <= core_tol * W) {
                left_tail = tail;
                break;
            }
        }
        L--;
        wm[L] = wk = prev;
        W += prev;
    }
    /* The exponents are zero on the core: clear only what widening wrote. */
    const int64_t c_lo = w->we_lo > L ? w->we_lo : L, c_hi = w->we_hi < R ? w->we_hi : R;
    if (c_lo <= c_hi) memset(w->we + c_lo, 0, sizeof(int64_t) * (size_t)(c_hi - c_lo + 1));
    if (c_lo <= w->we_lo && c_hi >= w->we_hi) w->we_lo = INT64_MAX, w->we_hi = -1;
    w->core_rel = (right_tail + left_tail) / W;
    w->core_mu = mu;
    w->core_lo = *L_out = L;
    w->core_hi = *R_out = R;
    w->core_w = *W_out = W;
    return PHASE_OK;
}

int sweep_poisson(sweep *w, const phase_graph *g, double mu, int which, scaled *result)
{
    const double tol = w->tol;
    int st;
    result->m = 0.0;
    result->e = 0;
    if ((st = weights_room(w, 2))) return st;
    if (mu == 0.0) {
        w->core_mu = 0.0; /* wm[0] may have been a cached core's */
        w->wm[0] = 1.0;
        w->we[0] = 0;
        w->win_lo = w->win_hi = 0;
        w->wcore_lo = 1; /* no core: sweep_adjoint takes its general loop */
        w->wcore_hi = 0;
        w->win_norm = 1.0;
        result->m = which == SEQ_A ? w->am[0] : which == SEQ_B ? w->bm[0] : w->cm[0];
        result->e = which == SEQ_C ? 0 : w->ex[0];
        return PHASE_OK;
    }
    if (!(mu < 9.0e15) || (int64_t)mu + 1 >= w->max_terms)
        return phase_fail(PHASE_ERANGE,
                          "Lambda * t = %g needs more than %lld terms; raise memory_limit or "
                          "rescale time",
                          mu, (long long)w->max_terms);
    int64_t L, R;
    double W;
    if ((st = core_window(w, mu, &L, &R, &W))) return st;
    w->wcore_lo = L;
    w->wcore_hi = R;
    if ((st = sweep_ensure(w, g, R))) return st;
    /* The sequences move when the sweep grows: always read them through w. */
    /* c is unscaled (exponent 0) and non-decreasing (its prefix maximum is
     * itself); a and b carry the exponents ex[k]. */
    const int is_c = which == SEQ_C;
#define X_AT(k) ((which == SEQ_A ? w->am : which == SEQ_B ? w->bm : w->cm)[k])
#define EX_AT(k) (is_c ? 0 : w->ex[k])
#define PMAX_AT(k)                                                                   \
    (which == SEQ_A ? w->pmax_a[k] : which == SEQ_B ? w->pmax_b[k] \
                                                    : sweep_log2_bound(w->cm[k], 0))
    scaled acc = {0.0, 0};
    if (EX_AT(L) == EX_AT(R)) { /* ex is non-increasing: one scale on [L, R] */
        const double *x = which == SEQ_A ? w->am : which == SEQ_B ? w->bm : w->cm;
        const double sum = dot(w->wm + L, x + L, R - L + 1);
        acc.m = sum;
        acc.e = sum != 0.0 ? EX_AT(L) : 0;
    } else {
        for (int64_t k = R; k >= L; k--) acc_add(&acc, w->wm[k] * X_AT(k), EX_AT(k));
    }

    const int64_t log2_tol = log2_ceil(tol) - 1;
    const int64_t floor_log2 = FLOOR_LOG2 + log2_ceil(W);
    for (;;) { /* widen to the right */
        double next = w->wm[R] * mu / (double)(R + 1);
        int64_t ne = w->we[R];
        double tail = next / (1.0 - mu / (double)(R + 2));
        if ((st = sweep_ensure(w, g, R + 1))) return st;
        int64_t bound = log2_ceil(tail) + ne + right_bound_x(w, which, R + 1);
        if (bound <= needed_log2(acc, log2_tol, floor_log2)) {
            if (acc.m > 0.0) {
                double rel = ldexp(1.0, (int)(bound - sweep_log2_bound(acc.m, acc.e)));
                if (rel > w->trunc) w->trunc = rel;
            }
            break;
        }
        if ((st = weights_room(w, R + 2))) return st;
        if (next < ldexp(1.0, -WEIGHT_RESCALE)) {
            next = ldexp(next, WEIGHT_RESCALE);
            ne -= WEIGHT_RESCALE;
        }
        R++;
        w->wm[R] = next;
        w->we[R] = ne;
        we_dirty(w, R);
        acc_add(&acc, next * X_AT(R), ne + EX_AT(R));
    }
    while (L > 0) { /* widen to the left */
        double prev = w->wm[L] * (double)L / mu;
        int64_t pe = w->we[L];
        double tail = prev / (1.0 - (double)(L - 1) / mu);
        int64_t bound = log2_ceil(tail) + pe + PMAX_AT(L - 1);
        if (bound <= needed_log2(acc, log2_tol, floor_log2)) break;
        if (prev < ldexp(1.0, -WEIGHT_RESCALE)) {
            prev = ldexp(prev, WEIGHT_RESCALE);
            pe -= WEIGHT_RESCALE;
        }
        L--;
        w->wm[L] = prev;
        w->we[L] = pe;
        we_dirty(w, L);
        acc_add(&acc, prev * X_AT(L), pe + EX_AT(L));
    }
#undef X_AT
#undef EX_AT
#undef PMAX_AT
    if (w->core_rel > w->trunc) w->trunc = w->core_rel;
    w->win_lo = L;
    w->win_hi = R;
    w->win_norm = W;
    result->m = acc.m / W;
    result->e = acc.e;
    return PHASE_OK;
}

void sweep_adjoint(sweep *w, int which, double coef_m, int64_t coef_e)
{
    double *adj = which == SEQ_A ? w->adj_a : which == SEQ_B ? w->adj_b : w->adj_c;
    const int is_c = which == SEQ_C;
    const double c = coef_m / w->win_norm;
    /* The exponent is constant over long runs of k: cache its factor. */
    int64_t last_e = INT64_MIN;
    double factor = 0.0;
    int64_t k = w->win_lo;
    /* On the core window the weights' exponents are zero; where ex is
     * constant there too (it is non-increasing), one factor serves the
     * whole core, in a loop without tests (the same products as below). */
    const int64_t clo = w->wcore_lo, chi = w->wcore_hi;
    const int flat = clo <= chi && (is_c || w->ex[clo] == w->ex[chi]);
    for (int part = 0; part < 3; part++) {
        const int64_t end = part == 0 && flat ? clo - 1 : part == 1 && flat ? chi : w->win_hi;
        if (part == 1 && flat) {
            const int64_t e = (is_c ? 0 : w->ex[clo]) + coef_e;
            const double f = e <= UNREPRESENTABLE ? 0.0 : ldexp(c, (int)(e < 1100 ? e : 1100));
            for (; k <= end; k++) adj[k] += f * w->wm[k];
            continue;
        }
        for (; k <= end; k++) {
            int64_t e = w->we[k] + (is_c ? 0 : w->ex[k]) + coef_e;
            if (e != last_e) {
                last_e = e;
                factor = e <= UNREPRESENTABLE ? 0.0 : ldexp(c, (int)(e < 1100 ? e : 1100));
            }
            adj[k] += factor * w->wm[k];
        }
    }
}

void sweep_fold_c(sweep *w)
{
    /* d c_k / d a_j = 1 / Lambda for j < k: adj_a[j] gains the suffix sum of
     * adj_c beyond j, scaled like a_j (adj_a holds d loglik / d am[j]). */
    double suffix = 0.0;
    const double inv = 1.0 / w->Lambda;
    for (int64_t k = w->K; k >= 0; k--) {
        if (suffix != 0.0 && w->ex[k] > -1100)
            w->adj_a[k] += ldexp(suffix * inv, (int)w->ex[k]);
        suffix += w->adj_c[k];
        w->adj_c[k] = 0.0;
    }
}
