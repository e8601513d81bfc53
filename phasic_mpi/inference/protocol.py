"""The one interface every inference algorithm implements, and its typed records.

The run loop (:mod:`phasic_mpi.run.driver`) drives any object of this shape:
it owns files, checkpoints, signals, progress and timing; an algorithm owns
pure steps over its state. An algorithm never opens a file, reads a clock
for a result or imports mpi4py: it communicates through ``ctx.comm``, a
:class:`~phasic_mpi.inference.comm.Communicator`, and hands back plain
records whose names are relative to its own group of the run file (the
store decides where they go). Register a new algorithm in
:mod:`phasic_mpi.inference.registry`.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple, Protocol

import numpy as np

__all__ = ["Algorithm", "ArraySpec", "FinalRecord", "Resources"]

# What a checkpoint array must look like: (shape, dtype kinds), e.g.
# ``((n, d), "f")``; None in the shape is an axis of any length (it grows with
# the iterations), kinds are numpy's dtype kind letters that may hold it.
ArraySpec = tuple[tuple[int | None, ...], str]


class FinalRecord(NamedTuple):
    """What an algorithm returns at the end of a run (on rank 0; None elsewhere)."""

    draws: dict[str, np.ndarray]  # parameter name -> (chain, draw) values in parameter space
    sample_stats: dict[str, np.ndarray]  # name -> (chain, draw) values
    arrays: dict[str, np.ndarray]  # further arrays, named relative to the algorithm's group
    diagnostics: dict[str, Any]  # attributes of the algorithm's diagnostics group
    independent: bool  # True: draws are not a Markov chain (no R-hat; ESS = count)
    final_z: np.ndarray  # (k, d) unconstrained end points: a warm start for another run
    warnings: tuple[str, ...] = ()  # said at the end of the run (did not converge, stranded modes)


class Resources(NamedTuple):
    """What a run will need per rank (an algorithm's optional ``resources(n_params,
    n_ranks, kept_iterations)``; the run loop adds the density's measured cost
    per row and refuses a run that cannot fit before it starts:
    :mod:`phasic_mpi.run.feasibility`)."""

    bytes_per_rank: float  # the largest arrays a rank holds at once
    min_seconds: float  # a lower bound of one rank's time besides the density's
    what: str  # the sizes that drive them, for messages ("200000 particles x 3 parameters")
    rows_per_iteration: float = 0.0  # density rows one rank evaluates per iteration
    iterations: float = 0.0  # iterations of the run (scans for PT)
    row_cost_factor: float = 1.0  # a row's cost relative to a prior draw's (PT: proposals)


class Algorithm(Protocol):
    """A plug-in of the run loop; see :mod:`phasic_mpi.inference.svgd` and ``pt``.

    ``context``, ``start``, ``step``, ``history``, ``checkpoint``, ``restore``
    and ``finish`` are collective calls (every rank calls them in the same
    order); their results depend only on the state, never on the rank count.

    Optional: ``converged(state, diag) -> bool``, asked after every step;
    True ends the loop there (then ``finish`` as usual). It must depend only
    on the state and the step's diagnostics (equal on every rank), with any
    window of past values kept in the state and its checkpoint, so that every
    rank, at any rank count and after a resume, stops at the same iteration.

    Optional: ``agreed_stop(state) -> int | None``, asked after every step: the
    run loop's stop request (a signal number, 0 for none) agreed by all ranks
    inside the step's own collective (each rank packs
    ``ctx.comm.stop_request()`` into it, the maximum is read from what was
    gathered), so the loop needs no collective of its own; None: the loop
    agrees with an ``allreduce_exact`` as without it.

    Optional: ``drain(state, ctx) -> (state, rows)`` for results that grow
    with the run (PT's cold-chain draws): the rows made since the last drain
    (rank 0; None elsewhere or when there are none), named like history rows,
    and the state without them. The loop calls it after every ``history``
    call, before every checkpoint and before ``finish``, and appends the rows
    to the history: a checkpoint never holds them, and no row is lost or
    written twice on resume. An algorithm with ``drain`` is finished with
    ``finish(state, ctx, history)``: ``history`` (rank 0, None elsewhere) is
    a read-only mapping of every history row of its group, names relative to
    the group, read back from the run file or, without one, from memory.
    """

    name: ClassVar[str]  # group of the run file and config section
    Settings: ClassVar[type]  # frozen settings dataclass (the config section's schema)
    settings: Any
    n_iterations: int  # iterations of a complete run ("scans" for PT)
    iteration_label: ClassVar[str]  # what one step is called in progress lines
    # Optional: names of the algorithm's own figures, drawn besides the posterior
    # ones by functions that plotting owns (phasic_mpi.plotting.FIGURES, more with
    # plotting.register_figure); the run file stores them (attribute algorithm_figures).
    figures: ClassVar[tuple[str, ...]]

    def context(self, density: Any, comm: Any) -> Any:
        """Everything a step needs besides the state (density, layout, comm)."""

    def start(self, ctx: Any, init: np.ndarray | None = None) -> Any:
        """The initial state: prior draws, or the rows of ``init`` (k, d) in z."""

    def step(self, state: Any, ctx: Any) -> tuple[Any, Any]:
        """One iteration: ``(new state, diagnostics)``; diagnostics equal on every rank."""

    def describe(self, diag: Any) -> str:
        """One progress-line summary of an iteration's diagnostics."""

    def history_due(self, iteration: int) -> bool:
        """Whether :meth:`history` has rows after ``iteration`` iterations."""

    def history(self, state: Any, ctx: Any) -> dict[str, np.ndarray] | None:
        """Rows to append to the run file's history (rank 0; None elsewhere)."""

    def checkpoint(self, state: Any, ctx: Any) -> dict[str, np.ndarray] | None:
        """The global state as arrays (rank 0; None elsewhere)."""

    def checkpoint_layout(self, ctx: Any) -> dict[str, ArraySpec]:
        """Every array :meth:`checkpoint` writes, with its shape and dtype kinds.

        The run loop checks a checkpoint against it before :meth:`restore`
        (:func:`phasic_mpi.io.checkpoint.check_layout`): a missing, surplus,
        misshapen or mistyped array is a one-line error, never a state.
        """

    def restore(self, arrays: dict[str, np.ndarray], iteration: int, ctx: Any) -> Any:
        """This rank's state from :meth:`checkpoint`'s arrays (any rank count), after
        :meth:`checkpoint_layout` was checked."""

    def finish(self, state: Any, ctx: Any) -> FinalRecord | None:
        """The result (rank 0; None elsewhere); with ``drain``, also given the history."""
