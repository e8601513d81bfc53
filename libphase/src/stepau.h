/* Step-wise adaptive uniformization for log-likelihoods of stiff graphs
 * (stepau.c). Internal to libphase. */
#ifndef PHASE_STEPAU_H
#define PHASE_STEPAU_H

#include "internal.h"

typedef struct stepau stepau;

/* A workspace for the observations of one phase_loglik call, or *out = NULL
 * when the call is outside what step-wise uniformization handles (discrete
 * graphs, censored observations, an exact 0 with an atom, reverse-mode
 * gradients asked for explicitly, opts->adaptive = 0); mode as in
 * chain_init. Gradients are forward-mode tangents: also for the reverse
 * mode that PHASE_GRADIENT_AUTO picks when d <= AUTO_FORWARD_D. */
int stepau_new(stepau **out, const phase_graph *g, const phase_options *opts,
               const phase_data *data, int mode);
void stepau_free(stepau *sa);
/* The log-likelihood (and in forward mode its gradient, g->d entries) at
 * theta. *used = 0 when it declines this theta (it would not pay, or a
 * point's error bound exceeds its share of tol, or a value is too small or
 * zero): the caller evaluates it with the chain instead. The decision
 * depends on theta, the data and the options alone. */
int stepau_loglik(stepau *sa, const double *theta, double *ll, double *grad, phase_info *info,
                  int *used);

#endif
