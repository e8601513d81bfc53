/*
 * Moments of accumulated rewards on acyclic graphs, and their exact
 * gradients, by passes over the graph in topological order.
 *
 * With A = -S (continuous) or I - T (discrete) -- in both cases A has the
 * total out-rate (out-probability) lambda_i on the diagonal and minus the
 * edge rates off it -- and U = A^{-1}:
 *
 *   m_a = U r_a           (one pass in reverse topological order:
 *                          m_i = (r_i + sum_{i->j} w m_j) / lambda_i)
 *   u   = alpha U         (one pass in topological order)
 *   E[Y_a] = alpha . m_a
 *   E[Y_a Y_b] = alpha . z_ab,  z_ab = U (r_a o m_b + r_b o m_a)   (continuous)
 *                               z_ab = U (r_a o m_b + r_b o m_a - r_a o r_b)
 *                                                                  (discrete)
 *
 * (Discrete: Y_a = sum_{k < T} r_a(X_k); in E[sum_k sum_l r_a(X_k) r_b(X_l)]
 * the pairs k < l give alpha U D_a T U r_b = alpha U D_a (U - I) r_b, the
 * pairs k > l the same with a and b swapped, and k = l alpha U (r_a o r_b).)
 *
 * Gradients by the adjoint identity dU = U dA' U with dA' = dS (= -dA):
 *
 *   dE[Y_a]      = (u dS_k) m_a
 *   dE[Y_a Y_b]  = (u dS_k) z_ab + w_a dS_k m_b + w_b dS_k m_a,  w_a = (u o r_a) U
 *
 * (dS = dT for discrete graphs; the constant r_a o r_b only enters through
 * z_ab, so both kinds share every pass.)
 *
 * The adjoint rows u dS_k (n x d, O(|E| d) once per theta) turn the first
 * two terms into dot products accumulated inside the pass that computes
 * m_a or z_ab, so the gradient of every first moment costs O(n d) per
 * reward vector on top of the value -- the whole SFS gradient is almost
 * free. The pair terms y dS x = sum_e coef_e y_src (x_dst - x_src)
 * (x_absorbing = 0) are summed over the edges: one more left pass per
 * reward vector and O(|E|) per pair, whatever d. Every sum runs in an
 * order fixed by the graph, so results do not depend on anything else
 * (in particular not on the batch of theta).
 *
 * Edges whose rate is zero at theta are skipped in the passes, so a state
 * that cannot be left but is not reachable from the start along positive
 * rates does not poison the result (its own moments are +inf, which only a
 * gradient along such a zero-rate edge can see).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int phase_topological_order(const phase_graph *g, int32_t *order)
{
    phase_clear_error();
    if (!g || !order) return phase_fail(PHASE_EINVAL, "NULL argument to phase_topological_order");
    int32_t n = g->n;
    /* Models explored breadth-first (every coalescent) usually have all
     * edges pointing to later states: then the index order is topological,
     * and passes in that order read memory sequentially. */
    int forward = 1;
    for (int64_t e = 0; e < g->n_edges && forward; e++)
        forward = g->dst[e] == PHASE_ABSORBING || g->dst[e] > g->src[e];
    if (forward) {
        for (int32_t i = 0; i < n; i++) order[i] = i;
        return PHASE_OK;
    }
    int64_t *indeg = malloc(sizeof(int64_t) * (size_t)n);
    if (!indeg) return phase_fail(PHASE_ENOMEM, "out of memory");
    int32_t tail = 0;
    for (int32_t i = 0; i < n; i++) {
        indeg[i] = g->in_ptr[i + 1] - g->in_ptr[i];
        if (indeg[i] == 0) order[tail++] = i;
    }
    /* Kahn's algorithm with the output array as the queue: sources in index
     * order, then states as their last predecessor is placed. */
    for (int32_t head = 0; head < tail; head++) {
        int32_t i = order[head];
        for (int64_t q = g->out_ptr[i]; q < g->out_ptr[i + 1]; q++)
            if (--indeg[g->out_dst[q]] == 0) order[tail++] = g->out_dst[q];
    }
    int st = PHASE_OK;
    if (tail < n) {
        int32_t bad = 0;
        while (indeg[bad] == 0) bad++;
        st = phase_fail(PHASE_ECYCLE, "the graph has a cycle (state %d is on or after one)",
                        (int)bad);
    }
    free(indeg);
    return st;
}

typedef struct {
    int32_t *order;  /* n, topological */
    double *rate;    /* n_edges, at theta */
    double *out_rate; /* n_trans, rates of the transient edges in source order */
    double *lambda;  /* n, total out-rate */
    double *dlambda; /* n x d, its derivatives (the same at every theta) */
    double *ud;      /* n x d, adjoint rows u dS_k */
    char *reach;     /* n, reachable from the start along positive rates */
    double *u;       /* n, alpha U */
    double *m;       /* n x R, U r */
    double *z;       /* n x P, U (r_a o m_b + r_b o m_a) */
    double *w;       /* n x R, (u o r_a) U */
    double *acc;     /* d x max(R, P), gradient accumulator */
} moment_ws;

static void ws_free(moment_ws *s)
{
    free(s->order), free(s->rate), free(s->out_rate), free(s->lambda), free(s->dlambda), free(s->ud), free(s->reach), free(s->u);
    free(s->m), free(s->z), free(s->w), free(s->acc);
}

static double *alloc_doubles(int64_t count)
{
    return malloc(sizeof(double) * (size_t)(count > 0 ? count : 1));
}

/* Rates and lambda at theta; PHASE_EDOMAIN (message set once) if a rate is
 * negative or, for a discrete graph, out-probabilities exceed 1. */
static int set_rates(const phase_graph *g, const double *theta, moment_ws *s, int64_t t,
                     int *reported)
{
    int st = PHASE_OK;
    memset(s->lambda, 0, sizeof(double) * (size_t)g->n);
    for (int64_t e = 0; e < g->n_edges; e++) {
        double w = g->base[e];
        for (int64_t q = g->coef_ptr[e]; q < g->coef_ptr[e + 1]; q++)
            w += g->coef_val[q] * theta[g->coef_idx[q]];
        s->rate[e] = w;
        s->lambda[g->src[e]] += w;
        if (!(w >= 0.0) || !isfinite(w)) {
            if (!*reported)
                phase_fail(PHASE_EDOMAIN, "theta[%lld]: edge %lld (%d -> %d) has rate %g",
                           (long long)t, (long long)e, (int)g->src[e], (int)g->dst[e], w);
            *reported = 1;
            st = PHASE_EDOMAIN;
        }
    }
    /* The passes read rates in edge-list order, without indirection. */
    for (int64_t q = 0; q < g->n_trans; q++) s->out_rate[q] = s->rate[g->out_edge[q]];
    if (st == PHASE_OK && g->discrete)
        for (int32_t i = 0; i < g->n; i++)
            if (s->lambda[i] > 1.0 + 1e-12) {
                if (!*reported)
                    phase_fail(PHASE_EDOMAIN,
                               "theta[%lld]: out-probabilities of state %d sum to %g > 1",
                               (long long)t, (int)i, s->lambda[i]);
                *reported = 1;
                return PHASE_EDOMAIN;
            }
    return st;
}

/* Reachability from the start and u = alpha U, in topological order: once
 * all predecessors of j have pushed w u_i into u_j, divide by lambda_j and
 * push on (out-edges are stored by source, so this reads memory in order).
 * PHASE_EINFINITE if a reachable state cannot be left. */
static int start_pass(const phase_graph *g, moment_ws *s, int64_t t, int *reported)
{
    for (int32_t i = 0; i < g->n; i++) {
        s->u[i] = g->alpha[i];
        s->reach[i] = g->alpha[i] > 0.0;
    }
    for (int32_t p = 0; p < g->n; p++) {
        int32_t j = s->order[p];
        if (!s->reach[j]) {
            s->u[j] = 0.0;
            continue;
        }
        if (!(s->lambda[j] > 0.0)) {
            if (!*reported)
                phase_fail(PHASE_EINFINITE,
                           "theta[%lld]: state %d is reachable from the start but cannot "
                           "be left (its outgoing rates are zero), so the moments are infinite",
                           (long long)t, (int)j);
            *reported = 1;
            return PHASE_EINFINITE;
        }
        double uj = s->u[j] /= s->lambda[j];
        for (int64_t q = g->out_ptr[j]; q < g->out_ptr[j + 1]; q++) {
            double w = s->out_rate[q];
            if (w > 0.0) {
                s->u[g->out_dst[q]] += w * uj;
                s->reach[g->out_dst[q]] = 1;
            }
        }
    }
    return PHASE_OK;
}

/* X (n x K, row-major) := U B in reverse topological order, B = rhs (n x K)
 * or, if rhs is NULL, X itself. If acc is not NULL, also accumulate the
 * gradient acc[k * K + c] += (u dS_k) X[:, c] while row X[i] is in cache
 * (s->ud holds the row vectors u dS_k, see adjoint_rows). */
static void solve_right(const phase_graph *g, const moment_ws *s, const double *rhs,
                        double *X, int64_t K, double *acc)
{
    int32_t d = g->d;
    for (int32_t p = g->n - 1; p >= 0; p--) {
        int32_t i = s->order[p];
        double *restrict xi = X + (int64_t)i * K;
        if (rhs) memcpy(xi, rhs + (int64_t)i * K, sizeof(double) * (size_t)K);
        for (int64_t q = g->out_ptr[i]; q < g->out_ptr[i + 1]; q++) {
            double w = s->out_rate[q];
            if (w == 0.0) continue;
            /* no edge is a self-loop, so row j is never row i */
            const double *restrict xj = X + (int64_t)g->out_dst[q] * K;
            for (int64_t c = 0; c < K; c++) xi[c] += w * xj[c];
        }
        double lam = s->lambda[i];
        if (lam > 0.0)
            for (int64_t c = 0; c < K; c++) xi[c] /= lam;
        else /* cannot be left: infinite, and unreachable (checked before) */
            for (int64_t c = 0; c < K; c++) xi[c] = INFINITY;
        if (!acc) continue;
        for (int32_t k = 0; k < d; k++) {
            double f = s->ud[(int64_t)i * d + k];
            if (f == 0.0) continue; /* also keeps inf rows of unreachable states out */
            double *restrict a = acc + (int64_t)k * K;
            for (int64_t c = 0; c < K; c++) a[c] += f * xi[c];
        }
    }
}

/* ud[j * d + k] = (u dS_k)_j = sum_{e: i->j} coef_{e,k} u_i - u_j dlambda_{j,k}:
 * the adjoint rows, so that d(alpha U x)/dtheta_k = (u dS_k) (U x). O(|E| d). */
static void adjoint_rows(const phase_graph *g, moment_ws *s)
{
    int32_t d = g->d;
    for (int64_t j = 0; j < (int64_t)g->n * d; j++) s->ud[j] = -s->u[j / d] * s->dlambda[j];
    for (int64_t e = 0; e < g->n_edges; e++) {
        int32_t i = g->src[e], j = g->dst[e];
        if (j == PHASE_ABSORBING || s->u[i] == 0.0) continue;
        for (int64_t r = g->coef_ptr[e]; r < g->coef_ptr[e + 1]; r++)
            s->ud[(int64_t)j * d + g->coef_idx[r]] += g->coef_val[r] * s->u[i];
    }
}

/* Y (n x K) := (Y^T U)^T in place, pushing along out-edges in topological
 * order as start_pass does. Unreachable states are set to 0 (nothing
 * reachable flows into them). */
static void solve_left(const phase_graph *g, const moment_ws *s, double *Y, int64_t K)
{
    for (int32_t p = 0; p < g->n; p++) {
        int32_t j = s->order[p];
        double *restrict yj = Y + (int64_t)j * K;
        if (!s->reach[j]) {
            memset(yj, 0, sizeof(double) * (size_t)K);
            continue;
        }
        for (int64_t c = 0; c < K; c++) yj[c] /= s->lambda[j];
        for (int64_t q = g->out_ptr[j]; q < g->out_ptr[j + 1]; q++) {
            double w = s->out_rate[q];
            if (w == 0.0) continue;
            double *restrict yk = Y + (int64_t)g->out_dst[q] * K;
            for (int64_t c = 0; c < K; c++) yk[c] += w * yj[c];
        }
    }
}

/* acc[k * P + p] += sum_e coef_{e,k} Y[i, ycol[p]] (X[j, xcol[p]] - X[i, xcol[p]])
 * (Y and X are n x R): the w_a dS m_b terms of the pair gradients. */
static void contract_pairs(const phase_graph *g, const moment_ws *s, const double *Y,
                           const double *X, int64_t R, const int64_t *pairs, int first,
                           int64_t P, double *acc)
{
    for (int64_t e = 0; e < g->n_edges; e++) {
        int32_t i = g->src[e], j = g->dst[e];
        int64_t q0 = g->coef_ptr[e], q1 = g->coef_ptr[e + 1];
        if (q0 == q1 || !s->reach[i]) continue;
        const double *yi = Y + (int64_t)i * R, *xi = X + (int64_t)i * R;
        const double *xj = j == PHASE_ABSORBING ? NULL : X + (int64_t)j * R;
        for (int64_t p = 0; p < P; p++) {
            int64_t a = pairs[2 * p + (first ? 0 : 1)], b = pairs[2 * p + (first ? 1 : 0)];
            if (yi[a] == 0.0) continue;
            double diff = (xj ? xj[b] : 0.0) - xi[b];
            for (int64_t q = q0; q < q1; q++)
                acc[(int64_t)g->coef_idx[q] * P + p] += g->coef_val[q] * yi[a] * diff;
        }
    }
}

/* alpha . column c of X (n x K), over the start states only (others may be inf). */
static double alpha_dot(const phase_graph *g, const double *X, int64_t K, int64_t c)
{
    double sum = 0.0;
    for (int32_t i = 0; i < g->n; i++)
        if (g->alpha[i] > 0.0) sum += g->alpha[i] * X[(int64_t)i * K + c];
    return sum;
}

/* acc (d x K) -> out (K x d); acc is cleared for the next use. */
static void store_grad(double *acc, int32_t d, int64_t K, double *out)
{
    for (int64_t c = 0; c < K; c++)
        for (int32_t k = 0; k < d; k++) out[c * d + k] = acc[(int64_t)k * K + c];
    memset(acc, 0, sizeof(double) * (size_t)((int64_t)d * K));
}

static int check_moment_args(const phase_graph *g, int64_t n_theta, const double *thetas,
                             int64_t R, const double *rewards, int64_t P, const int64_t *pairs)
{
    if (!g) return phase_fail(PHASE_EINVAL, "graph is NULL");
    if (n_theta < 0 || (n_theta > 0 && g->d > 0 && !thetas))
        return phase_fail(PHASE_EINVAL, "n_theta must be >= 0 and thetas non-NULL");
    if (R < 1 || !rewards) return phase_fail(PHASE_EINVAL, "need n_rewards >= 1 reward vectors");
    if (P < 0 || (P > 0 && !pairs)) return phase_fail(PHASE_EINVAL, "pairs is NULL");
    for (int64_t i = 0; i < (int64_t)g->n * R; i++)
        if (!isfinite(rewards[i]))
            return phase_fail(PHASE_EINVAL, "reward of state %lld, vector %lld is not finite",
                              (long long)(i / R), (long long)(i % R));
    for (int64_t p = 0; p < 2 * P; p++)
        if (pairs[p] < 0 || pairs[p] >= R)
            return phase_fail(PHASE_EINVAL, "pair %lld: reward index %lld outside [0, %lld)",
                              (long long)(p / 2), (long long)pairs[p], (long long)R);
    return PHASE_OK;
}

static void fill_nan(double *out, int64_t count)
{
    if (out)
        for (int64_t k = 0; k < count; k++) out[k] = NAN;
}

/* Everything at one theta whose rates and start pass succeeded. */
static void moments_at(const phase_graph *g, moment_ws *s, int64_t R, const double *rewards,
                       int64_t P, const int64_t *pairs, double *mean, double *mean_grad,
                       double *cross, double *cross_grad)
{
    int32_t n = g->n, d = g->d;
    int grad = (mean_grad || cross_grad) && d > 0;
    if (grad) adjoint_rows(g, s);
    grad = mean_grad && d > 0;
    solve_right(g, s, rewards, s->m, R, grad ? s->acc : NULL);
    if (mean)
        for (int64_t a = 0; a < R; a++) mean[a] = alpha_dot(g, s->m, R, a);
    if (grad) store_grad(s->acc, d, R, mean_grad);
    if (P == 0 || !(cross || cross_grad)) return;
    for (int32_t i = 0; i < n; i++) {
        const double *ri = rewards + (int64_t)i * R, *mi = s->m + (int64_t)i * R;
        double *zi = s->z + (int64_t)i * P;
        for (int64_t p = 0; p < P; p++) {
            int64_t a = pairs[2 * p], b = pairs[2 * p + 1];
            /* unreachable states may hold inf moments; their z is never used.
             * Discrete: the k = l terms count r_a r_b once, not twice. */
            zi[p] = !s->reach[i] ? 0.0
                    : g->discrete ? ri[a] * mi[b] + ri[b] * mi[a] - ri[a] * ri[b]
                                  : ri[a] * mi[b] + ri[b] * mi[a];
        }
    }
    grad = cross_grad && d > 0;
    solve_right(g, s, NULL, s->z, P, grad ? s->acc : NULL);
    if (cross)
        for (int64_t p = 0; p < P; p++) cross[p] = alpha_dot(g, s->z, P, p);
    if (!grad) return;
    for (int32_t i = 0; i < n; i++)
        for (int64_t a = 0; a < R; a++)
            s->w[(int64_t)i * R + a] = s->u[i] * rewards[(int64_t)i * R + a];
    solve_left(g, s, s->w, R);
    contract_pairs(g, s, s->w, s->m, R, pairs, 1, P, s->acc);
    contract_pairs(g, s, s->w, s->m, R, pairs, 0, P, s->acc);
    store_grad(s->acc, d, P, cross_grad);
}

int phase_reward_moments(const phase_graph *g, int64_t n_theta, const double *thetas,
                         int64_t n_rewards, const double *rewards, int64_t n_pairs,
                         const int64_t *pairs, double *mean, double *mean_grad,
                         double *cross, double *cross_grad, int *theta_status)
{
    phase_clear_error();
    int st = check_moment_args(g, n_theta, thetas, n_rewards, rewards, n_pairs, pairs);
    if (st) return st;
    int64_t R = n_rewards, P = n_pairs, n = g->n, d = g->d;
    moment_ws s = {0};
    s.order = malloc(sizeof(int32_t) * (size_t)n);
    if (!s.order) return phase_fail(PHASE_ENOMEM, "out of memory");
    st = phase_topological_order(g, s.order);
    if (st) {
        free(s.order);
        return st;
    }
    int64_t width = R > P ? R : P;
    s.rate = alloc_doubles(g->n_edges);
    s.out_rate = alloc_doubles(g->n_trans);
    s.lambda = alloc_doubles(n);
    s.dlambda = calloc((size_t)(n * d > 0 ? n * d : 1), sizeof(double));
    s.ud = alloc_doubles(n * d);
    s.reach = malloc((size_t)n);
    s.u = alloc_doubles(n);
    s.m = alloc_doubles(n * R);
    s.z = alloc_doubles(P > 0 ? n * P : 0);
    s.w = alloc_doubles(P > 0 && cross_grad ? n * R : 0);
    s.acc = calloc((size_t)(d * width > 0 ? d * width : 1), sizeof(double));
    if (!s.rate || !s.out_rate || !s.lambda || !s.dlambda || !s.ud || !s.reach || !s.u || !s.m || !s.z || !s.w || !s.acc) {
        ws_free(&s);
        return phase_fail(PHASE_ENOMEM, "out of memory for moments of %lld states x %lld "
                          "vectors", (long long)n, (long long)width);
    }
    for (int64_t e = 0; e < g->n_edges; e++)
        for (int64_t q = g->coef_ptr[e]; q < g->coef_ptr[e + 1]; q++)
            s.dlambda[(int64_t)g->src[e] * d + g->coef_idx[q]] += g->coef_val[q];
    int reported = 0;
    for (int64_t t = 0; t < n_theta; t++) {
        double *mt = mean ? mean + t * R : NULL, *mg = mean_grad ? mean_grad + t * R * d : NULL;
        double *ct = cross ? cross + t * P : NULL, *cg = cross_grad ? cross_grad + t * P * d : NULL;
        int ts = set_rates(g, thetas ? thetas + t * d : NULL, &s, t, &reported);
        if (ts == PHASE_OK) ts = start_pass(g, &s, t, &reported);
        if (ts == PHASE_OK) {
            moments_at(g, &s, R, rewards, P, pairs, mt, mg, ct, cg);
        } else {
            fill_nan(mt, R), fill_nan(mg, R * d), fill_nan(ct, P), fill_nan(cg, P * d);
        }
        if (theta_status) theta_status[t] = ts;
    }
    ws_free(&s);
    return PHASE_OK;
}
