"""Observations (model/data.py): every bad value is refused with its group and index.

The checks take one min/max pass when all is well and name the first bad
entry otherwise; these cases hold both branches to the rule "finite and
>= 0" (interval upper bounds may be +inf, lower bounds any number below +inf).
"""

import numpy as np
import pytest

from phasic_mpi import Observations

BAD_TIMES = [np.nan, -1.0, -np.inf, np.inf]


@pytest.mark.parametrize("bad", BAD_TIMES)
@pytest.mark.parametrize("group, make", [
    ("exact", lambda t: Observations(t)),
    ("right_censored", lambda t: Observations(right_censored=t)),
    ("weights", lambda t: Observations([1.0, 2.0, 3.0], t)),
    ("right_weights", lambda t: Observations(right_censored=[1.0, 2.0, 3.0], right_weights=t)),
    ("interval_weights", lambda t: Observations(interval=[[0, 1]] * 3, interval_weights=t)),
])
def test_bad_values_name_their_group_and_first_index(group, make, bad):
    values = [0.5, bad, bad]
    what = "weights" if group.endswith("weights") else "times"
    with pytest.raises(ValueError, match=rf"^{group}\[1\] = {bad}: {what} must be finite and >= 0"):
        make(values)


@pytest.mark.parametrize("bad", [np.nan, -1.0, -np.inf])
def test_bad_interval_upper_bounds(bad):
    with pytest.raises(ValueError, match=rf"^interval upper bound\[1\] = {bad}: times must be"):
        Observations(interval=[[0.0, 1.0], [0.0, bad]])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_bad_interval_lower_bounds(bad):
    with pytest.raises(ValueError, match=rf"^interval lower bound\[1\] = {bad}: must be a number"):
        Observations(interval=[[0.0, 1.0], [bad, 2.0]])


def test_edge_values_that_are_allowed():
    obs = Observations([-0.0, 0.0, 3.0], [0.0, 1.0, 2.0], right_censored=[0.0],
                       interval=[[-np.inf, 1.0], [0.5, np.inf]])
    assert obs.n_observations == 6 and obs.total_weight == 6.0
    assert obs.interval_hi.tolist() == [1.0, np.inf]


def test_arrays_are_read_only_copies_in_c_order():
    times = np.arange(6.0).reshape(2, 3)
    obs = Observations(times.T)  # not C-contiguous: flattened in C order, as numpy ravels
    assert obs.exact.tolist() == times.T.ravel().tolist() and obs.exact.flags.c_contiguous
    times[0, 0] = 9.0
    assert obs.exact[0] == 0.0
    with pytest.raises(ValueError, match="read-only"):
        obs.exact[0] = 1.0
    empty = Observations([1.0])
    assert empty.right_censored.size == 0 and not empty.right_censored.flags.writeable


def test_shapes_and_types():
    with pytest.raises(ValueError, match=r"weights has 1 entries for 2 observations"):
        Observations([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match=r"interval must have shape \(m, 2\), got \(3,\)"):
        Observations(interval=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="could not convert"):
        Observations(["a"])
    assert Observations(np.array([1, 2], dtype=np.int32)).exact.dtype == np.float64
