"""The run file's model groups (graph and likelihood terms as data), and the writers' failure guard.

Split from :mod:`phasic_mpi.io.store` (which keeps the history, chains and
file-safety logic): :class:`ModelGroups` is a mixin of
:class:`~phasic_mpi.io.store.RunWriter` and uses its low-level helpers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import h5py

from phasic_mpi.errors import RunFileWriteError
from phasic_mpi.io.h5 import _require_group
from phasic_mpi.io.runfile import MODEL_GROUP
from phasic_mpi.model.graph import Graph
from phasic_mpi.model.termdata import observed_arrays, term_to_arrays, term_variables

__all__ = ["ModelGroups", "guarded"]

F = TypeVar("F", bound=Callable[..., Any])


def guarded(method: F) -> F:
    """Turn an I/O failure inside a writing method into one ``RunFileWriteError``.

    The file is closed; it is kept if it still reads completely (valid up to
    its last complete append) and removed otherwise, and the message says
    which. Argument errors (ValueError, TypeError) pass unchanged.
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except RunFileWriteError:
            raise
        except (OSError, RuntimeError) as exc:
            raise self._write_failed(exc) from None

    return wrapper  # type: ignore[return-value]


class ModelGroups:
    """Writing the model and its likelihood terms as data (mixin of ``RunWriter``)."""

    def write_model(self, graph: Graph) -> None:
        """Store the compiled phase-type graph as data, in group ``model``.

        Variables ``alpha``, ``edge_src``, ``edge_dst``, ``edge_base`` and
        ``edge_coef`` (see :meth:`Graph.to_arrays`); attributes ``discrete``
        and ``param_names``. Readers rebuild the graph from these numbers
        alone (:meth:`RunFile.model`), never from the config, which names code.
        """
        arrays = graph.to_arrays()
        meta = {k: arrays.pop(k) for k in ("discrete", "param_names")}
        self.write_group(MODEL_GROUP, arrays, {"discrete": meta["discrete"],
                                               "param_names": list(meta["param_names"])})

    @guarded
    def write_terms(self, terms: Sequence[Any]) -> None:
        """Store a posterior's likelihood terms (SFS, moments) as data.

        Their observations go into ``observed_data`` on named dimensions
        (``sfs`` on ``sfs_class``; ``moment``/``moment_se`` on ``moment_obs``)
        and each term, as arrays and attributes
        (:func:`~phasic_mpi.model.termdata.term_to_arrays`), into
        ``model/terms/<variable>``, replacing what an earlier call wrote.
        Terms without a data form are skipped.
        """
        variables = term_variables(terms)
        arrays, dims = observed_arrays(variables)
        g = _require_group(self._f, "observed_data")
        for name in arrays:  # a resumed run writes them again
            if name in g:
                self._delete(g[name])
        for dim in set(dims.values()):
            if dim in g:
                del g[dim]
        made: dict[str, h5py.Dataset] = {}
        for name, arr in arrays.items():
            if dims[name] not in made:
                made[dims[name]] = self._dim(g, dims[name], arr.shape[0])
            self._write_variable(g, name, arr, [made[dims[name]]])
        if f"{MODEL_GROUP}/terms" in self._f:
            del self._f[f"{MODEL_GROUP}/terms"]
        self._f.flush()
        for variable in variables:
            term_arrays, attrs = term_to_arrays(variable)
            self.write_group(f"{MODEL_GROUP}/terms/{variable.name}", term_arrays, attrs)
