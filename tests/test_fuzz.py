"""Property-based fuzzing (Hypothesis) of the parsers that read user input:
configs, data files and model callbacks (issue 12).

The property of every parser: hostile input ends in the parser's documented
error type with a message, never another exception, a hang or a crash; and
well-formed input round-trips against an independent oracle (the written
values, a breadth-first search of the callback).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections import deque

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from phasic_mpi.config import validate_config  # noqa: E402
from phasic_mpi.config.validate import load_config  # noqa: E402
from phasic_mpi.errors import ConfigError  # noqa: E402
from phasic_mpi.io.datafile import read_data_file, write_data  # noqa: E402
from phasic_mpi.model.data import Observations  # noqa: E402
from phasic_mpi.model.graph import Graph  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# -- configs -------------------------------------------------------------------------

scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12).filter(lambda s: ":" not in s),  # never name importable code
    st.booleans(),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
KNOWN = {
    "model": st.fixed_dictionaries({"name": st.sampled_from(["rabbits", "kingman", "erlang",
                                                             "exponential", "nope", ""])},
                                   optional={"options": values}),
    "data": st.fixed_dictionaries({}, optional={
        "simulate": st.dictionaries(st.sampled_from(["theta", "n", "seed", "x"]), values,
                                    max_size=3),
        "file": st.sampled_from(["missing.csv", "", "/", "data.npy"])}),
    "prior": st.dictionaries(st.sampled_from(["default", "jump", "theta"]), values, max_size=2),
    "svgd": st.dictionaries(st.sampled_from(["particles", "iterations", "seed", "step_size",
                                             "bandwidth", "history_every", "zzz"]), values,
                            max_size=4),
    "pt": st.dictionaries(st.sampled_from(["replicas", "chains", "rounds", "seed",
                                           "local_move"]), values, max_size=3),
    "output": st.dictionaries(st.sampled_from(["path", "checkpoint_every", "progress"]), values,
                              max_size=2),
}
configs = st.fixed_dictionaries({}, optional={**KNOWN, "junk": values})


@FUZZ
@given(raw=configs)
def test_any_config_is_valid_or_a_config_error(raw, tmp_path):
    try:
        cfg = validate_config(raw, tmp_path)
    except ConfigError as exc:
        assert str(exc)
    else:
        assert isinstance(cfg, dict) and ("svgd" in cfg or "pt" in cfg)


@FUZZ
@given(data=st.binary(max_size=300))
def test_any_bytes_as_a_config_file_is_a_config_error(data, tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(data)
    with pytest.raises(ConfigError):
        load_config(path)


# -- data files ------------------------------------------------------------------------

lines = st.lists(st.one_of(
    st.text(alphabet="0123456789.,-+eEnaif# \t", max_size=20),
    st.sampled_from(["time,weight", "time,kind,upper", "time", "1,2,exact,3", "1,right",
                     "1,interval,2", "nan", "inf", "-1", "1e400"]),
    st.text(max_size=15)), max_size=8)


@FUZZ
@given(rows=lines, suffix=st.sampled_from([".csv", ".txt"]))
def test_any_text_data_file_is_observations_or_a_config_error(rows, suffix, tmp_path):
    path = tmp_path / f"d{suffix}"
    path.write_text("\n".join(rows), encoding="utf-8", errors="surrogatepass")
    try:
        obs = read_data_file(path)
    except ConfigError as exc:
        assert str(exc).startswith("data.")
    else:
        times = np.concatenate([obs.exact, obs.right_censored, obs.interval_lo])
        assert np.all(np.isfinite(times)) and np.all(times >= 0)


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".npy", ".h5", ".csv"]))
def test_any_bytes_as_a_data_file_is_a_config_error_or_observations(data, suffix, tmp_path):
    path = tmp_path / f"d{suffix}"
    path.write_bytes(data)
    try:
        read_data_file(path)
    except ConfigError as exc:
        assert str(exc).startswith("data.")


@FUZZ
@given(times=st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False,
                                allow_subnormal=False), min_size=1, max_size=20),
       suffix=st.sampled_from([".csv", ".txt", ".npy"]))
def test_written_data_reads_back_exactly(times, suffix):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, f"d{suffix}")
        write_data(path, Observations(np.array(times)))
        got = read_data_file(path)
    np.testing.assert_array_equal(got.exact, np.array(times))  # oracle: what was written


# -- model callbacks ------------------------------------------------------------------

rates = st.one_of(st.floats(min_value=0.01, max_value=10), st.just(-1.0), st.just(math.nan),
                  st.just(math.inf), st.just("x"), st.just(None), st.lists(st.floats(0, 1),
                                                                          max_size=3))


@st.composite
def callbacks(draw, hostile: bool):
    """A random model: state k -> list of (child, coef) over states 0..n-1 (n absorbing)."""
    n = draw(st.integers(1, 6))
    table = {}
    for k in range(n):
        children = draw(st.lists(st.integers(0, n), max_size=3, unique=True))
        coef = rates if hostile else st.floats(min_value=0.05, max_value=5)
        table[k] = [(c, draw(coef)) for c in children if hostile or c != k]
        if hostile and draw(st.booleans()):
            table[k].append(draw(st.sampled_from([(k,), "junk", (k, 1.0, 2.0, 3.0), 5])))
    return n, table


@FUZZ
@given(model=callbacks(hostile=True))
def test_hostile_callbacks_give_clean_errors(model):
    n, table = model
    try:
        Graph.from_callback(lambda s: table.get(s[0], []), (0,), 1)
    except (ValueError, TypeError) as exc:
        assert str(exc)


def oracle(table):
    """Breadth-first search: the reachable states with a way out, and whether each
    of them can reach a state without one (absorption)."""
    seen, queue, transient = {0}, deque([0]), set()
    while queue:
        k = queue.popleft()
        out = [c for c, r in table.get(k, []) if r > 0]
        if out:
            transient.add(k)
        for c in out:
            if c not in seen:
                seen.add(c)
                queue.append(c)
    absorbed = seen - transient
    changed = True
    while changed:  # grow the set of states that reach absorption
        changed = False
        for k in transient - absorbed:
            if any(c in absorbed for c, r in table.get(k, []) if r > 0):
                absorbed.add(k)
                changed = True
    return transient, transient <= absorbed


@FUZZ
@given(model=callbacks(hostile=False))
def test_valid_callbacks_give_the_reachable_transient_states(model):
    n, table = model
    expected, absorbable = oracle(table)
    try:
        g = Graph.from_callback(lambda s: table.get(s[0], []), (0,), 1)
    except ValueError as exc:  # refused: the start cannot be left, or a state is stuck
        assert not expected or not absorbable, exc
        return
    assert expected and absorbable
    assert sorted(s[0] for s in g.states) == sorted(expected)


def test_a_directory_as_a_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path)
