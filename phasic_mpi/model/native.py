"""Thin cffi layer over libphase: compile a Graph once, evaluate it in batches.

Everything numerical happens in C (``libphase``); this module converts
arrays, keeps one compiled handle per :class:`~phasic_mpi.model.graph.Graph` and
turns status codes into Python exceptions or per-θ flags. cffi releases the
GIL for the duration of each call.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

import numpy as np

from phasic_mpi._libphase import ffi, lib
from phasic_mpi.model.data import Observations, as_observations

# Graph (phasic_mpi.model.graph) imports this module, so annotations name it
# without importing it, not even for type checkers: the imports run one way.
Graph = Any

__all__ = [
    "DEFAULT_TOL",
    "Status",
    "compiled",
    "evaluate",
    "is_acyclic",
    "LoglikCall",
    "loglik",
    "reward_moments",
]

DEFAULT_TOL = 1e-12

QUANTITIES = {
    "pdf": lib.PHASE_PDF,
    "logpdf": lib.PHASE_LOGPDF,
    "cdf": lib.PHASE_CDF,
    "survival": lib.PHASE_SURVIVAL,
    "logsurvival": lib.PHASE_LOGSURVIVAL,
}


INFO_FIELDS = (
    "uniformization_rate",
    "n_terms",
    "truncation_bound",
    "stored_vectors",
    "checkpoint_stride",
    "gradient_mode",
)

GRADIENT_MODES = {
    "auto": lib.PHASE_GRADIENT_AUTO,
    "reverse": lib.PHASE_GRADIENT_REVERSE,
    "forward": lib.PHASE_GRADIENT_FORWARD,
}


class Status:
    """Per-θ status codes returned by :func:`loglik` (mirrors ``phase_status``)."""

    OK = lib.PHASE_OK
    DOMAIN = lib.PHASE_EDOMAIN  # a negative rate (or probabilities > 1) at θ
    ZERO = lib.PHASE_EZERO  # an observation has probability zero at θ
    RANGE = lib.PHASE_ERANGE  # more terms than the memory limit allows
    INFINITE = lib.PHASE_EINFINITE  # a reachable state cannot be left: infinite moments


_handles: "weakref.WeakKeyDictionary[Graph, Any]" = weakref.WeakKeyDictionary()


def _last_error() -> str:
    return ffi.string(lib.phase_last_error()).decode()


def _raise(status: int, context: str) -> None:
    message = f"{context}: {_last_error()}"
    if status == lib.PHASE_ENOMEM:
        raise MemoryError(message)
    raise ValueError(message)


def _f64(arr: Any) -> np.ndarray:
    return np.ascontiguousarray(arr, dtype=np.float64)


def c_buffer(arr: np.ndarray | None, kind: str = "double[]") -> Any:
    """A C pointer to the memory of the C-contiguous ``arr`` (NULL for None).

    ``ffi.from_buffer``, not ``arr.ctypes.data``: numpy builds a ctypes helper
    object on every ``.ctypes`` access (~3 us), and the samplers' per-step C
    calls pass a dozen arrays. The caller keeps ``arr`` alive during the call.
    """
    return ffi.NULL if arr is None else ffi.from_buffer(kind, arr)


def compiled(graph: "Graph") -> Any:
    """The libphase handle of ``graph`` (built on first use, freed with it)."""
    handle = _handles.get(graph)
    if handle is not None:
        return handle
    n, d, n_edges = graph.n_states, graph.n_params, graph.n_edges
    alpha = _f64(graph.alpha)
    src = np.ascontiguousarray(graph.edge_src, dtype=np.int32)
    dst = np.ascontiguousarray(graph.edge_dst, dtype=np.int32)
    base = _f64(graph.edge_base)
    coef = _f64(graph.edge_coef).reshape(n_edges, d)
    out = ffi.new("phase_graph **")
    status = lib.phase_graph_new(
        out, n, d, c_buffer(alpha), n_edges, c_buffer(src, "int32_t[]"),
        c_buffer(dst, "int32_t[]"), c_buffer(base), c_buffer(coef) if d else ffi.NULL,
        int(graph.discrete),
    )
    if status != lib.PHASE_OK:
        _raise(status, "building the graph")
    handle = ffi.gc(out[0], lib.phase_graph_free)
    _handles[graph] = handle
    return handle


def _options(
    tol: float | None, memory_limit: int | None, gradient_mode: str = "auto",
    adaptive: bool = True,
) -> Any:
    """The ``phase_options`` of these settings (shared: see :func:`_options_struct`)."""
    return _options_struct(None if tol is None else float(tol),
                           None if memory_limit is None else int(memory_limit),
                           gradient_mode, bool(adaptive))


@functools.lru_cache(maxsize=64)
def _options_struct(
    tol: float | None, memory_limit: int | None, gradient_mode: str, adaptive: bool,
) -> Any:
    """The ``phase_options`` of these settings, built once per distinct settings.

    Shared between calls (and threads): libphase only reads it, and no caller
    may write to it.
    """
    opts = ffi.new("phase_options *")
    lib.phase_options_default(opts)
    opts.adaptive = int(adaptive)
    if tol is not None:
        opts.tol = tol
    if memory_limit is not None:
        opts.memory_limit = memory_limit
    try:
        opts.gradient_mode = GRADIENT_MODES[gradient_mode]
    except KeyError:
        raise ValueError(
            f"unknown gradient_mode {gradient_mode!r}; one of {sorted(GRADIENT_MODES)}"
        ) from None
    return opts


def _thetas(graph: "Graph", theta: Any) -> tuple[np.ndarray, bool]:
    """θ as a C-contiguous (P, d) array and whether a single θ was given."""
    d = graph.n_params
    if theta is None:
        if d:
            raise ValueError(f"theta is required: the graph has {d} parameters")
        return np.zeros((1, 0)), True
    arr = _f64(theta)
    single = arr.ndim <= 1
    arr = arr.reshape(1, -1) if single else arr
    if arr.ndim != 2 or arr.shape[1] != d:
        raise ValueError(
            f"theta must have shape ({d},) or (P, {d}); got {np.shape(theta)}"
        )
    return arr, single


def evaluate(
    graph: "Graph",
    theta: Any,
    points: Any,
    quantity: str,
    *,
    tol: float | None = None,
    memory_limit: int | None = None,
    adaptive: bool = True,
) -> np.ndarray:
    """Evaluate ``quantity`` at ``points`` for one θ (shape (m,)) or many (P, m).

    ``quantity`` is one of ``pdf`` (the pmf for discrete graphs), ``logpdf``,
    ``cdf``, ``survival``, ``logsurvival``. ``adaptive=False`` keeps one
    uniformization rate for all time (the path before adaptive
    uniformization; for comparisons). Raises ``ValueError`` if a rate is
    negative at some θ, naming the θ and the edge.
    """
    try:
        code = QUANTITIES[quantity]
    except KeyError:
        raise ValueError(f"unknown quantity {quantity!r}; one of {sorted(QUANTITIES)}") from None
    thetas, single = _thetas(graph, theta)
    pts = _f64(points)
    shape = pts.shape
    pts = pts.reshape(-1)
    n_theta = thetas.shape[0]
    out = np.empty((n_theta, pts.size))
    status = np.zeros(n_theta, dtype=np.intc)
    rc = lib.phase_eval(
        compiled(graph), _options(tol, memory_limit, adaptive=adaptive), n_theta,
        c_buffer(thetas), pts.size, c_buffer(pts), code, c_buffer(out),
        c_buffer(status, "int[]"), ffi.NULL,
    )
    if rc != lib.PHASE_OK:
        _raise(rc, f"evaluating {quantity}")
    if np.count_nonzero(status):  # ~0.4 us; flatnonzero alone costs ~2 us per call
        p = int(np.flatnonzero(status)[0])
        reason = _domain_reason(graph, thetas[p]) if status[p] == Status.DOMAIN else (
            "the recursion needs more terms than memory_limit allows"
        )
        raise ValueError(f"cannot evaluate {quantity} at theta[{p}] = {thetas[p].tolist()}: {reason}")
    return out.reshape(shape) if single else out.reshape((n_theta,) + shape)


def _domain_reason(graph: "Graph", theta: np.ndarray) -> str:
    rates = np.empty(graph.n_edges)
    lib.phase_graph_rates(compiled(graph), c_buffer(_f64(theta)), c_buffer(rates))
    message = _last_error()
    return message or "out-probabilities of a state sum to more than 1"


def _data_struct(obs: Observations, keep: list[np.ndarray]) -> Any:
    """The ``phase_data`` of ``obs``; the arrays it points into are appended to ``keep``."""

    def field(values: np.ndarray | None) -> Any:
        if values is None:
            return ffi.NULL
        arr_ = _f64(values)
        keep.append(arr_)
        return c_buffer(arr_)

    cdata = ffi.new("phase_data *")
    cdata.n_exact = obs.exact.size
    cdata.exact = field(obs.exact)
    cdata.exact_weight = field(obs.weights)
    cdata.n_right = obs.right_censored.size
    cdata.right = field(obs.right_censored)
    cdata.right_weight = field(obs.right_weights)
    cdata.n_interval = obs.interval_lo.size
    cdata.interval_lo = field(obs.interval_lo)
    cdata.interval_hi = field(obs.interval_hi)
    cdata.interval_weight = field(obs.interval_weights)
    return cdata


# The C struct of each Observations, built on its first likelihood call. Its
# arrays are read-only copies (model/data.py), so the pointers stay valid and
# the values checked. The values hold no reference to their key.
_structs: "weakref.WeakKeyDictionary[Observations, tuple[Any, list[np.ndarray]]]" = (
    weakref.WeakKeyDictionary())
# The last 1-D float64 array passed as data and its Observations: a notebook
# calls the likelihood with the same array again and again. Reused only while
# it is the same object holding the same bytes, so changes in place are seen.
_recent: tuple[Any, Observations] | None = None


def _prepared_data(data: Observations | Any) -> tuple[Any, list[np.ndarray]]:
    """The ``phase_data`` of ``data`` and the arrays that must outlive the C call.

    Checking and converting 100 observations cost ~25 us of Python per call,
    more than a small model's likelihood; each distinct data set now pays it
    once. The caller holds the returned list during the call: another thread
    may replace the cache entry meanwhile.
    """
    global _recent
    if type(data) is np.ndarray and data.dtype == np.float64 and data.ndim == 1:
        recent = _recent
        if (recent is not None and recent[0]() is data
                and recent[1].exact.tobytes() == data.tobytes()):
            obs = recent[1]
        else:
            obs = Observations(data)
            _recent = (weakref.ref(data), obs)
    else:
        obs = as_observations(data)
    entry = _structs.get(obs)
    if entry is None:
        keep: list[np.ndarray] = []
        entry = _structs[obs] = (_data_struct(obs, keep), keep)
    return entry


def loglik(
    graph: "Graph",
    data: Observations | Any,
    thetas: Any,
    grad: bool = False,
    *,
    tol: float | None = None,
    memory_limit: int | None = None,
    gradient_mode: str = "auto",
    adaptive: bool = True,
    info: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Log-likelihood of ``data`` at each θ, optionally with its exact gradient.

    ``gradient_mode`` is ``"auto"`` (tangents for one parameter, the adjoint
    sweep otherwise), ``"forward"`` (tangent sweep: cost grows with d, keeps
    nothing) or ``"reverse"`` (adjoint sweep: cost independent of d, keeps the
    state vectors under ``memory_limit``). ``adaptive`` (default) lets the
    uniformization rate follow the states that hold mass where that pays
    (stiff models; values and forward mode); ``False`` keeps one rate for all
    time, the path before adaptive uniformization. If ``info`` is a dict it receives
    per-θ diagnostics: ``uniformization_rate``, ``n_terms``,
    ``truncation_bound``, ``stored_vectors``, ``checkpoint_stride`` and
    ``gradient_mode`` (1 reverse, 2 forward, 0 none).

    Returns
    -------
    loglik : ndarray, shape (P,)
        ``-inf`` where θ is outside the domain or an observation is impossible.
    grad : ndarray, shape (P, d) or None
        Exact gradient (reverse sweep); zero rows where ``loglik`` is not finite.
    status : ndarray of int, shape (P,)
        :class:`Status` code per θ.
    """
    arr, _ = _thetas(graph, thetas)
    n_theta, d = arr.shape
    out = np.empty(n_theta)
    gout = np.empty((n_theta, d)) if grad else None
    status = np.zeros(n_theta, dtype=np.intc)
    cdata, _keep = _prepared_data(data)  # _keep: the arrays cdata points into, held
    cinfo = ffi.new("phase_info[]", n_theta) if info is not None else ffi.NULL
    rc = lib.phase_loglik(
        compiled(graph), _options(tol, memory_limit, gradient_mode, adaptive), cdata, n_theta,
        c_buffer(arr), c_buffer(out), c_buffer(gout), c_buffer(status, "int[]"), cinfo,
    )
    if rc != lib.PHASE_OK:
        _raise(rc, "log-likelihood")
    if info is not None:
        for name in INFO_FIELDS:
            info[name] = np.array([getattr(cinfo[p], name) for p in range(n_theta)])
    return out, gout, status


_acyclic: "weakref.WeakKeyDictionary[Graph, bool]" = weakref.WeakKeyDictionary()


def is_acyclic(graph: "Graph") -> bool:
    """Whether the transient states of ``graph`` have no cycle (cached per graph)."""
    known = _acyclic.get(graph)
    if known is None:
        order = np.empty(graph.n_states, dtype=np.int32)
        rc = lib.phase_topological_order(compiled(graph), c_buffer(order, "int32_t[]"))
        if rc not in (lib.PHASE_OK, lib.PHASE_ECYCLE):
            _raise(rc, "topological order")
        known = _acyclic[graph] = rc == lib.PHASE_OK
    return known


def reward_moments(
    graph: "Graph",
    thetas: Any,
    rewards: np.ndarray,
    pairs: Any = None,
    grad: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray]:
    """First moments and cross moments of rewards on an acyclic graph (libphase).

    Parameters
    ----------
    graph : Graph
        An acyclic graph (:func:`is_acyclic`).
    thetas : array_like, shape (P, d) or (d,)
    rewards : ndarray, shape (n, R)
    pairs : array_like of int, shape (Q, 2), optional
        Reward indices ``(a, b)`` of the cross moments ``E[Y_a Y_b]``.
    grad : bool
        Also return the exact gradients.

    Returns
    -------
    mean (P, R), mean_grad (P, R, d) or None, cross (P, Q) or None,
    cross_grad (P, Q, d) or None, status (P,) of :class:`Status` codes plus
    ``INFINITE`` (outputs NaN where the status is not OK).
    """
    arr, _ = _thetas(graph, thetas)
    n_theta, d = arr.shape
    r = _f64(rewards)
    n_rewards = r.shape[1]
    pair_arr = np.ascontiguousarray(np.zeros((0, 2)) if pairs is None else pairs,
                                    dtype=np.int64).reshape(-1, 2)
    n_pairs = pair_arr.shape[0]
    mean = np.empty((n_theta, n_rewards))
    mean_grad = np.empty((n_theta, n_rewards, d)) if grad else None
    cross = np.empty((n_theta, n_pairs)) if n_pairs else None
    cross_grad = np.empty((n_theta, n_pairs, d)) if grad and n_pairs else None
    status = np.zeros(n_theta, dtype=np.intc)
    rc = lib.phase_reward_moments(
        compiled(graph), n_theta, c_buffer(arr), n_rewards, c_buffer(r), n_pairs,
        c_buffer(pair_arr, "int64_t[]"), c_buffer(mean), c_buffer(mean_grad), c_buffer(cross),
        c_buffer(cross_grad), c_buffer(status, "int[]"))
    if rc != lib.PHASE_OK:
        _raise(rc, "reward moments")
    return mean, mean_grad, cross, cross_grad, status


class LoglikCall:
    """:func:`loglik` with its gradient for one graph, data set and tolerance, prepared once.

    The samplers call the likelihood with the same graph, data and options at
    every step; here the C structs (data, options, the graph handle) are
    looked up once, and a call skips :func:`loglik`'s checks of θ and its
    cache look-ups (~2 us). Same C call, so the same bits as
    ``loglik(graph, data, thetas, grad=True, tol=tol)``.

    Not picklable (it holds C structs): owners build it lazily.
    """

    def __init__(self, graph: "Graph", data: Observations | Any, tol: float | None = None) -> None:
        self._data, self._keep = _prepared_data(data)
        self._options = _options(tol, None)
        self._handle = compiled(graph)
        self.n_params = int(graph.n_params)

    def __call__(self, thetas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(loglik (P,), grad (P, d), status (P,))`` at ``thetas``, a C-contiguous
        float64 ``(P, d)`` array (not checked: the caller's hot path guarantees it)."""
        n_theta = thetas.shape[0]
        out = np.empty(n_theta)
        gout = np.empty((n_theta, self.n_params))
        status = np.zeros(n_theta, dtype=np.intc)
        if n_theta == 0:
            return out, gout, status
        rc = lib.phase_loglik(self._handle, self._options, self._data, n_theta,
                              ffi.from_buffer("double[]", thetas), ffi.from_buffer("double[]", out),
                              ffi.from_buffer("double[]", gout), ffi.from_buffer("int[]", status),
                              ffi.NULL)
        if rc != lib.PHASE_OK:
            _raise(rc, "log-likelihood")
        return out, gout, status
