/*
 * libphase — exact phase-type densities, likelihoods and their gradients.
 *
 * A graph has n transient states, a fixed start distribution alpha
 * (sum(alpha) <= 1; the rest is a defect, an atom at time 0) and edges
 * i -> j whose rate at parameter vector theta is
 *
 *     w_e(theta) = base_e + sum_k coef_{e,k} theta_k .
 *
 * An edge with dst == PHASE_ABSORBING leads to absorption (an exit rate).
 * Continuous graphs: S is the sub-intensity matrix built from the rates,
 * f(t) = alpha exp(S t) s, F(t) = 1 - alpha exp(S t) 1. With a defect
 * (1 - sum(alpha) > 1e-12; less is taken as round-off) T has an atom at 0:
 * F(0) = defect, P(T > 0) = sum(alpha), and the "density" at 0 is the atom's
 * mass (density with respect to Lebesgue measure plus a unit mass at 0);
 * without a defect the density at 0 is alpha . s.
 * Discrete graphs: the edge "rates" are one-step probabilities; the
 * probability of staying is 1 - sum(out-probabilities), so
 * pmf(0) = defect, pmf(k) = alpha T^(k-1) t.
 *
 * Conventions: every function returns a phase_status; on failure a message
 * is available from phase_last_error() (thread-local). Outputs are allocated
 * by the caller. The library keeps no global mutable state, never prints and
 * never terminates the process.
 */
#ifndef PHASE_H
#define PHASE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PHASE_ABSORBING (-1)

typedef enum {
    PHASE_OK = 0,
    PHASE_EINVAL = 1,   /* invalid argument (shape, value, NULL pointer)    */
    PHASE_ENOMEM = 2,   /* allocation failed                                */
    PHASE_EDOMAIN = 3,  /* theta outside the model's domain (negative rate,
                           or out-probabilities above 1 in a discrete graph) */
    PHASE_EZERO = 4,    /* an observation has zero probability at theta      */
    PHASE_ERANGE = 5,   /* the recursion would need more terms than allowed
                           (rates times times too large for memory_limit)    */
    PHASE_EINFINITE = 6, /* a moment is infinite: a state reachable from the
                            start cannot be left at theta                    */
    PHASE_ECYCLE = 7    /* the function needs an acyclic graph               */
} phase_status;

/* What phase_eval computes at each point. */
typedef enum {
    PHASE_PDF = 0,      /* density (continuous) or pmf (discrete)      */
    PHASE_LOGPDF = 1,   /* log of the above, underflow-safe            */
    PHASE_CDF = 2,      /* P(T <= t), summed directly: accurate where small */
    PHASE_SURVIVAL = 3, /* P(T > t), accurate where CDF rounds to 1    */
    PHASE_LOGSURVIVAL = 4
} phase_quantity;

/* How phase_loglik differentiates the recursion. */
typedef enum {
    PHASE_GRADIENT_AUTO = 0,    /* forward for d <= PHASE_FORWARD_MAX_PARAMS, else reverse */
    PHASE_GRADIENT_REVERSE = 1, /* adjoint sweep: cost independent of d, keeps vectors */
    PHASE_GRADIENT_FORWARD = 2  /* tangent sweep: cost grows with d, keeps nothing */
} phase_gradient_mode;

#define PHASE_FORWARD_MAX_PARAMS 1

typedef struct {
    double tol;            /* Poisson truncation tolerance (relative), default 1e-12 */
    size_t memory_limit;   /* bytes the gradient sweep may keep per call before it
                              switches to checkpointed recomputation; default 256 MiB */
    int gradient_mode;     /* a phase_gradient_mode, default PHASE_GRADIENT_AUTO */
    int adaptive;          /* 1 (default): adaptive uniformization, the rate following
                              the states that hold mass, where that pays (continuous
                              graphs, values and forward-mode gradients); 0: one rate,
                              the largest out-rate, for all time */
} phase_options;

/* Per-theta diagnostics of one evaluation (optional output). */
typedef struct {
    double uniformization_rate; /* Lambda = max_i total out-rate (1 for discrete) */
    int64_t n_terms;            /* number of steps of the recursion (K + 1)       */
    double truncation_bound;    /* largest bound, over the points, on the relative
                                   error left by truncating the Poisson sums      */
    int64_t stored_vectors;     /* state vectors kept for the reverse sweep        */
    int64_t checkpoint_stride;  /* 1 = all kept; s > 1 = recomputed in blocks of s */
    int gradient_mode;          /* mode used (0 when no gradient was computed)     */
} phase_info;

/* Observations for a log-likelihood. Any weight pointer may be NULL (= 1).
 * Exact: log f(t); an exact 0 scores log(defect) when there is an atom at 0.
 * Right-censored at c >= 0: log P(T > c) (never includes the atom).
 * Interval-censored (lo, hi]: log P(lo < T <= hi) = log(F(hi) - F(lo)),
 * computed without cancellation; lo may be negative (-inf included), which
 * means T <= hi with the atom included, while (0, hi] excludes it. For
 * discrete graphs all points >= 0 must be integers. */
typedef struct {
    int64_t n_exact;
    const double *exact;
    const double *exact_weight;
    int64_t n_right;
    const double *right;
    const double *right_weight;
    int64_t n_interval;
    const double *interval_lo;
    const double *interval_hi;
    const double *interval_weight;
} phase_data;

typedef struct phase_graph phase_graph;

const char *phase_last_error(void);
const char *phase_status_name(int status);
void phase_options_default(phase_options *opts);

/* Build a graph. coef is row-major n_edges x n_params (may be NULL when
 * n_params == 0); zero coefficients are dropped. Self-loops, negative base,
 * out-of-range indices, sum(alpha) > 1 are rejected with PHASE_EINVAL. */
int phase_graph_new(phase_graph **out, int32_t n_states, int32_t n_params,
                    const double *alpha, int64_t n_edges, const int32_t *src,
                    const int32_t *dst, const double *base, const double *coef,
                    int discrete);
void phase_graph_free(phase_graph *g);
int32_t phase_graph_n_states(const phase_graph *g);
int32_t phase_graph_n_params(const phase_graph *g);
int64_t phase_graph_n_edges(const phase_graph *g);

/* Edge rates at one theta (n_edges outputs). PHASE_EDOMAIN if any is negative
 * (the rates are still written). */
int phase_graph_rates(const phase_graph *g, const double *theta, double *rates);

/* Evaluate a quantity at n_points points for each of n_theta parameter
 * vectors (thetas row-major n_theta x n_params). out is n_theta x n_points.
 * theta_status (n_theta, may be NULL) receives PHASE_OK or PHASE_EDOMAIN per
 * theta (NaN outputs for that theta); info (n_theta, may be NULL). The call
 * returns PHASE_OK unless an argument is invalid or memory runs out. */
int phase_eval(const phase_graph *g, const phase_options *opts, int64_t n_theta,
               const double *thetas, int64_t n_points, const double *points,
               phase_quantity quantity, double *out, int *theta_status,
               phase_info *info);

/* Log-likelihood (out n_theta) and, when grad != NULL, its exact gradient
 * with respect to theta (n_theta x n_params, reverse-mode sweep). Per theta:
 * PHASE_EDOMAIN -> loglik = -inf, PHASE_EZERO -> loglik = -inf, PHASE_ERANGE
 * -> loglik = NaN; in all three cases the gradient row is 0. */
int phase_loglik(const phase_graph *g, const phase_options *opts,
                 const phase_data *data, int64_t n_theta, const double *thetas,
                 double *loglik, double *grad, int *theta_status,
                 phase_info *info);

/* Topological order of the transient states (n entries; every transient
 * edge goes from an earlier to a later state). Deterministic: sources in
 * index order, then breadth-first. PHASE_ECYCLE if the graph has a cycle. */
int phase_topological_order(const phase_graph *g, int32_t *order);

/* Moments of the accumulated rewards Y_a = int r_a(X_t) dt (discrete graphs:
 * Y_a = sum_{k < T} r_a(X_k)) of an ACYCLIC graph, and their exact gradients,
 * at n_theta parameter vectors (thetas row-major n_theta x n_params).
 *   rewards  n_states x n_rewards, row-major (state-major), shared by all theta;
 *   pairs    n_pairs x 2 indices (a, b) into the reward vectors (a == b allowed);
 *   mean       n_theta x n_rewards               E[Y_a]
 *   mean_grad  n_theta x n_rewards x n_params    d E[Y_a] / d theta
 *   cross      n_theta x n_pairs                 E[Y_a Y_b] (raw, not centred)
 *   cross_grad n_theta x n_pairs x n_params      d E[Y_a Y_b] / d theta
 * Any output may be NULL. Per theta, theta_status (may be NULL) receives PHASE_OK,
 * PHASE_EDOMAIN (negative rate; discrete: out-probabilities above 1) or
 * PHASE_EINFINITE (a state reachable from the start cannot be left); that
 * theta's outputs are NaN and the first failure's message is kept.
 * Returns PHASE_ECYCLE for a cyclic graph (use a sparse LU there), else
 * PHASE_OK unless an argument is invalid or memory runs out.
 * Cost per theta: O(|E| (n_rewards + n_pairs)) for the values; the mean
 * gradients add O(|E| n_params + n_states n_params n_rewards) (adjoint rows
 * alpha U dS_k, dotted into the pass), the pair gradients O(|E| (n_rewards +
 * n_pairs)) more, independent of n_params. */
int phase_reward_moments(const phase_graph *g, int64_t n_theta, const double *thetas,
                         int64_t n_rewards, const double *rewards, int64_t n_pairs,
                         const int64_t *pairs, double *mean, double *mean_grad,
                         double *cross, double *cross_grad, int *theta_status);

/* Stein variational gradient direction with the RBF kernel
 * k(x, y) = exp(-|x - y|^2 / h), for the rows [start, stop) of n particles
 * z (row-major n x d) with scores (grad log p, n x d):
 *
 *     phi_i = (1/n) sum_j k(x_j, x_i) [ s_j + (2/h) (x_i - x_j) ]
 *
 * (the second term is the repulsive grad_{x_j} k(x_j, x_i)); phi is
 * (stop - start) x d, or NULL. ksd_rows (stop - start, or NULL) receives the
 * rows' sums over j of the Stein kernel
 *     u(x_i, x_j) = k [s_i.s_j + (2/h) s_i.(x_i - x_j) - (2/h) s_j.(x_i - x_j)
 *                      + 2d/h - 4 |x_i - x_j|^2 / h^2],
 * so that KSD^2 = sum_i ksd_rows_i / n^2 (V-statistic). Every sum runs over
 * j = 0..n-1 in order (and over the components in order), so a row's values
 * depend only on the global arrays, h and its index, never on the range.
 * PHASE_EINVAL for n < 1, d < 1, a range outside [0, n), h not positive and
 * finite, or NULL arrays. NaN inputs give NaN outputs. */
int phase_stein(int64_t n, int64_t d, const double *z, const double *scores, double h,
                int64_t start, int64_t stop, double *phi, double *ksd_rows);

/* SVGD's subset-median bandwidth: numpy's median of the squared distances
 * |z_i - z_j|^2 (summed over the components in order) of `pairs` pseudo-random
 * pairs of the n particles z (row-major n x d). Pair p takes word w = word
 * p mod 4 of the Philox4x64-10 counter (ids[0], ids[1], ids[2], ids[3] + p / 4)
 * under the key (seed, purpose) (see phase_philox4x64), and
 *     i = ((w >> 32) n) >> 32,  u = 1 + (((w & 0xFFFFFFFF) (n - 1)) >> 32),
 *     j = (i + u) mod n  (never i).
 * *median: the middle value of an odd count, (a + b) / 2 of the two middle
 * values of an even one, NaN if any value is NaN. work: `pairs` doubles of
 * scratch (caller-allocated; the values, reordered). Cost O(pairs d), not
 * O(n). PHASE_EINVAL for n < 2 or n > 2^32, d < 1, pairs < 1, NULL arrays. */
int phase_pair_median(int64_t n, int64_t d, const double *z, uint64_t seed, uint64_t purpose,
                      const uint64_t ids[4], int64_t pairs, double *work, double *median);

/* Counter-based random numbers (Philox4x64-10 of Salmon et al. 2011, the
 * generator of numpy's Philox): a draw is a pure function of its key and
 * counter, so samplers can key every draw by ids that do not depend on the
 * process layout, without generator objects or state.
 *
 * phase_philox4x64: the four output words of one counter under a key
 * (numpy's Philox with key `key` and counter ctr - 1 gives them as its first
 * four raw outputs).
 *
 * phase_random_uniform / phase_random_normal: n rows of per_row values into
 * out (row-major n x per_row), key (seed, purpose); row r uses the counters
 * (ids[4r], ids[4r+1], ids[4r+2], ids[4r+3] + b) for b = 0, 1, ..., four
 * words w per counter, in order. Uniform: (w >> 11) 2^-53 in [0, 1). Normal:
 * Box-Muller on word pairs, u1 = ((w0 >> 11) + 1) 2^-53, u2 = (w1 >> 11) 2^-53,
 * values sqrt(-2 log u1) cos(2 pi u2) then sqrt(-2 log u1) sin(2 pi u2)
 * (libm's log, cos, sin). PHASE_EINVAL for negative sizes or NULL arrays. */
int phase_philox4x64(const uint64_t ctr[4], const uint64_t key[2], uint64_t out[4]);
int phase_random_uniform(uint64_t seed, uint64_t purpose, int64_t n, const uint64_t *ids,
                         int64_t per_row, double *out);
int phase_random_normal(uint64_t seed, uint64_t purpose, int64_t n, const uint64_t *ids,
                        int64_t per_row, double *out);

/* Parallel tempering's per-slot arithmetic around the density (ptstep.c):
 * one MALA (mala = 1) or random-walk (mala = 0) move of m rows of d <= 64
 * parameters in whitened coordinates, split around the density evaluation.
 * metric: PHASE_PT_UNIT (factor unused, may be NULL), PHASE_PT_DIAGONAL
 * (factor m x d standard deviations), PHASE_PT_DENSE (factor m x d x d
 * lower Cholesky factors L, row-major, M^-1 = L L^T). step: m step sizes h.
 *
 * phase_pt_propose: jump = h xi with xi the normals of phase_random_normal
 * (seed, purpose, ids row r, d per row); move = c(grad) + jump (MALA; grad
 * the m x d path gradients, may be NULL for a random walk) or jump; proposal
 * = x + L move. All outputs m x d. The drift c(g) = (h^2/2) L^T g, scaled to
 * the norm drift_cap h sqrt(d) where it is longer (truncated MALA; drift_cap
 * <= 0: never).
 *
 * phase_pt_accept: log a = logpi_new - logpi, plus for MALA where that is
 * finite sum_i (jump_i^2 - back_i^2) / (2 h h) with back = move +
 * c(grad_new) (in component order); accept_prob = exp(min(0, log a)), 0 if
 * NaN; the row takes the proposal (proposal, ll_new, lp_new, gll_new,
 * glp_new into x, ll, lp, gll, glp) iff u < accept_prob, u the first value of
 * phase_random_uniform(seed, purpose, ids row r). A row's bits depend only
 * on its inputs. PHASE_EINVAL for m < 0, d outside [1, 64], an unknown
 * metric or NULL arrays. */
enum { PHASE_PT_UNIT = 0, PHASE_PT_DIAGONAL = 1, PHASE_PT_DENSE = 2 };
int phase_pt_propose(int64_t m, int64_t d, int mala, double drift_cap, int metric, const double *factor, const double *step,
                     const double *x, const double *grad, uint64_t seed, uint64_t purpose, const uint64_t *ids,
                     double *jump, double *move, double *proposal);
int phase_pt_accept(int64_t m, int64_t d, int mala, double drift_cap, int metric, const double *factor, const double *step,
                    const double *logpi, const double *logpi_new, const double *grad_new, const double *jump,
                    const double *move, uint64_t seed, uint64_t purpose, const uint64_t *ids,
                    const double *proposal, const double *ll_new, const double *lp_new, const double *gll_new,
                    const double *glp_new, double *x, double *ll, double *lp, double *gll, double *glp,
                    double *accept_prob);

/* Swap decisions of n pairs (levels j, j+1 with inverse temperatures
 * beta_low > beta_high and swap potentials v_low, v_high): alpha =
 * exp(min(0, (beta_low - beta_high)(v_high - v_low))), 0 where v_high - v_low
 * is NaN; accepted[k] = u < alpha[k], u the first value of
 * phase_random_uniform(seed, purpose, ids row k). PHASE_EINVAL for n < 0 or
 * NULL arrays. */
int phase_pt_swap(int64_t n, const double *beta_low, const double *beta_high, const double *v_low,
                  const double *v_high, uint64_t seed, uint64_t purpose, const uint64_t *ids, double *alpha,
                  uint8_t *accepted);

/* A whole swap phase on one process's slots [start, start + m) of the
 * replica array (row-major arrays of m rows: x, gll, glp m x d; ll, lp,
 * label, last_end m; decisions m x 4 = (scan, accepted) of the left pair then
 * the right pair; stats m x 6 with the PHASE_PT_STAT_* columns). Pair k joins
 * global slots g[k] and g[k] + 1 (levels g mod n_levels and the next, of
 * chain g / n_levels; never level n_levels - 1); low[k], high[k] are the local
 * rows of its ends, -1 for an end on another process (high = low + 1 when
 * both are here). Its decision is phase_pt_swap's on betas[g], betas[g + 1]
 * (betas: the chains' ladders, flat), v_low[k], v_high[k] and the counter
 * ids (chain, level, scan, 0); when both ends are here an accepted pair
 * exchanges their rows of x, ll, lp, gll, glp, label and last_end. Every
 * local end records (scan, accepted) in its decisions; the lower end adds
 * 1 - alpha, accepted and one attempt to its statistics. alpha and accepted
 * (n) are outputs. PHASE_EINVAL for bad sizes, ends or NULL arrays.
 *
 * phase_pt_round_trips: after a swap phase, slot i at level 0 counts a round
 * trip if its replica last visited the top level (last_end 1) and marks
 * last_end 0; at level n_levels - 1 a replica coming from the bottom (0) marks
 * 1 (-1: neither end visited yet). */
enum { PHASE_PT_STAT_LOCAL_ACCEPT = 0, PHASE_PT_STAT_LOCAL_MOVES = 1, PHASE_PT_STAT_REJECTION = 2,
       PHASE_PT_STAT_SWAP_ACCEPTED = 3, PHASE_PT_STAT_SWAP_ATTEMPTS = 4, PHASE_PT_STAT_ROUND_TRIPS = 5 };
int phase_pt_swap_phase(int64_t n, const int64_t *g, const int64_t *low, const int64_t *high, const double *betas,
                        int64_t n_levels, int64_t scan, const double *v_low, const double *v_high, uint64_t seed,
                        uint64_t purpose, int64_t m, int64_t d, double *x, double *ll, double *lp, double *gll,
                        double *glp, int64_t *label, int64_t *last_end, double *decisions, double *stats,
                        double *alpha, uint8_t *accepted);
int phase_pt_round_trips(int64_t m, int64_t start, int64_t n_levels, int64_t *last_end, double *stats);

/* phase_stein and phase_pair_median on particles (and scores) whose rows lie
 * z_stride (s_stride) doubles apart, >= d: SVGD passes the columns of its
 * gathered row buffer in place, without copying them out. Same values, bit
 * for bit, as the contiguous calls (which are these with strides d);
 * PHASE_EINVAL also for a stride below d. */
int phase_stein_strided(int64_t n, int64_t d, const double *z, int64_t z_stride, const double *scores,
                        int64_t s_stride, double h, int64_t start, int64_t stop, double *phi, double *ksd_rows);
int phase_pair_median_strided(int64_t n, int64_t d, const double *z, int64_t z_stride, uint64_t seed,
                              uint64_t purpose, const uint64_t ids[4], int64_t pairs, double *work,
                              double *median);

/* Sums over the rows of an n x d block whose rows lie stride (>= d) doubles
 * apart, in numpy's pairwise order (0 + numpy's pairwise sum): squares = 0,
 * out[c] = the sum of column c (np.sum of that column); squares = 1, out[0] =
 * the sum of all n d squares in row-major order (np.sum(x * x) of a
 * C-ordered copy). SVGD's per-iteration sums over its gathered row buffer,
 * without copying columns out. PHASE_EINVAL for n < 0, d < 1, stride < d or
 * NULL arrays; PHASE_ENOMEM. */
int phase_pairwise_sums(int64_t n, int64_t d, const double *x, int64_t stride, int squares, double *out);

/* numpy's median of |z_i - z_j|^2 over all n (n - 1) / 2 pairs i < j (the
 * exact median heuristic of a small ensemble on one process), rows z_stride
 * >= d doubles apart, the distances in work (n (n - 1) / 2 doubles); NaN if a
 * distance is NaN. The distances have the bits of phase_pair_median's.
 * PHASE_EINVAL for n < 2 or n > 2^31, d < 1, stride < d, NULL arrays. */
int phase_pair_median_all(int64_t n, int64_t d, const double *z, int64_t z_stride, double *work, double *median);

#ifdef __cplusplus
}
#endif
#endif
