"""Crafted bad run files: every public reader raises the one
:class:`phasic_mpi.errors.RunFileError` (a :class:`~phasic_mpi.errors.UserError`),
with the message naming the file and what is wrong in it."""

from __future__ import annotations

import numpy as np
import pytest

from phasic_mpi.analysis.summary import summarize
from phasic_mpi.errors import RunFileError, RunFileWriteError, UserError
from phasic_mpi.io.h5 import atomic_write
from phasic_mpi.io.runfile import MODEL_GROUP, SHAPES_ATTR, read_run
from phasic_mpi.io.store import RunWriter


def _run_file(path, param_names=("a", "b")) -> None:
    """A small valid run file with a posterior (two chains of four draws)."""
    with RunWriter.create(path, algorithm="svgd", config={}, param_names=list(param_names)) as w:
        w.write_posterior({n: np.zeros((2, 4)) for n in param_names})


def test_the_one_class():
    import phasic_mpi.io.h5 as h5
    import phasic_mpi.io.store as store

    assert store.RunFileError is RunFileError and not hasattr(h5, "RunFileError")
    assert issubclass(RunFileError, UserError) and issubclass(RunFileError, ValueError)
    # a failed write is the environment's failure on the writing rank, not a user error:
    # the command line aborts at once (status 1) instead of waiting for agreement
    assert store.RunFileWriteError is RunFileWriteError and issubclass(RunFileWriteError, OSError)
    assert not issubclass(RunFileWriteError, UserError)


def test_an_hdf5_file_without_the_version_attribute(tmp_path):
    path = tmp_path / "other.h5"
    atomic_write(path, lambda f: f.create_dataset("x", data=[1]))
    with pytest.raises(RunFileError, match=f"^'{path}' is not a phasic_mpi run file$"):
        read_run(path)
    with pytest.raises(RunFileError, match=f"^'{path}' is not a phasic_mpi run file$"):
        RunWriter.reopen(path)
    with pytest.raises(RunFileError, match=f"^{path}: not a phasic_mpi run file "
                                           r"\(RunFileError: "):
        summarize(path)


def test_a_stored_model_that_is_not_a_graph(tmp_path):
    path = tmp_path / "run.h5"
    _run_file(path)
    with RunWriter.reopen(path) as w:  # an edge into a state that does not exist
        w.write_group(MODEL_GROUP, {"alpha": np.array([1.0]), "edge_src": np.array([0], np.int32),
                                    "edge_dst": np.array([5], np.int32),
                                    "edge_base": np.array([1.0]), "edge_coef": np.zeros((1, 2))})
    with pytest.raises(RunFileError, match=f"^{path}: the stored model is not a valid graph: "):
        read_run(path).model()


def test_stored_param_shapes_that_do_not_fit(tmp_path):
    path = tmp_path / "run.h5"
    _run_file(path, param_names=("h[0]", "h[1]"))
    with RunWriter.reopen(path) as w:  # three entries claimed, two stored
        w.set_attrs({SHAPES_ATTR: {"h": [3]}}, group=MODEL_GROUP)
    rf = read_run(path)
    with pytest.raises(RunFileError, match=f"^{path}: the stored param_shapes do not fit "):
        rf.param_layout()
    with pytest.raises(RunFileError, match=f"^{path}: the stored param_shapes do not fit "):
        rf.flat_posterior()
    with pytest.raises(RunFileError, match=f"^{path}: the stored param_shapes do not fit "):
        summarize(path)


def test_a_stored_term_of_unknown_kind(tmp_path):
    path = tmp_path / "run.h5"
    _run_file(path)
    with RunWriter.reopen(path) as w:
        w.write_group(f"{MODEL_GROUP}/terms/bad",
                      {"alpha": np.array([1.0]), "edge_src": np.array([0], np.int32),
                       "edge_dst": np.array([0], np.int32), "edge_base": np.array([1.0]),
                       "edge_coef": np.zeros((1, 0))},
                      {"variable": "bad", "index": 0, "term": "nonsense"})
    with pytest.raises(RunFileError, match=f"^{path}: the stored term 'model/terms/bad' is "
                                           "not valid: "):
        read_run(path).terms()

