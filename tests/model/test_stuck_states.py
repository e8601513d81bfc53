"""States with no way out at some theta: only those reachable from the start matter.

The issue-11 graph: 0 -> out at 1, 0 -> 1 at theta, 1 -> out at theta. At
theta = 0 state 1 is stuck but cannot be entered, so T ~ Exp(1) exactly
(E = 1, Var = 1, E[T^3] = 6); for theta > 0, E[T] = 2 / (1 + theta).
"""

import numpy as np
import pytest

from phasic_mpi import Graph


def unreachable_stuck():
    return Graph([1.0, 0.0], [0, 0, 1], [-1, 1, -1], [1.0, 0.0, 0.0], [[0.0], [1.0], [1.0]],
                 states=[(0,), (1,)])


def reachable_stuck():
    """0 -> out at 1, 0 -> 1 at 1, 1 -> out at theta: at theta = 0, 1 is entered and stuck."""
    return Graph([1.0, 0.0], [0, 0, 1], [-1, 1, -1], [1.0, 1.0, 0.0], [[0.0], [0.0], [1.0]],
                 states=[(0,), (1,)])


def test_unreachable_stuck_state_is_ignored():
    g = unreachable_stuck()
    assert g.expectation([0.0]) == pytest.approx(1.0, rel=1e-15)
    assert g.variance([0.0]) == pytest.approx(1.0, rel=1e-15)
    np.testing.assert_allclose(g.moments([0.0], 3), [1.0, 2.0, 6.0], rtol=1e-15)
    np.testing.assert_allclose(g.expectation([0.0], rewards=[2.0, 5.0]), 2.0, rtol=1e-15)
    # away from the edge the closed form, and the gradient -2 / (1 + theta)^2
    assert g.expectation([0.5]) == pytest.approx(2 / 1.5, rel=1e-14)
    assert g.expectation_grad([0.5])[0] == pytest.approx(-2 / 1.5**2, rel=1e-13)
    # Exp(1) samples: the mean of 20000 is within 4 sd (0.028) of 1 unless a
    # 6e-5-probability draw happened (fixed seed: deterministic).
    x = g.sample(20000, [0.0], seed=5)
    assert abs(x.mean() - 1.0) < 4 / np.sqrt(x.size)
    # the density is defined there too
    assert g.pdf([0.7], [0.0])[0] == pytest.approx(np.exp(-0.7), rel=1e-13)


def test_gradient_at_an_entrance_to_a_stuck_state_is_refused():
    # E[T] = 2 / (1 + theta) for theta > 0 but 1 at theta = 0: no derivative.
    with pytest.raises(ValueError, match=r"state \(1,\) is reachable .* not differentiable"):
        unreachable_stuck().expectation_grad([0.0])


def test_reachable_stuck_state_is_named():
    g = reachable_stuck()
    assert g.expectation([2.0]) == pytest.approx(1 / 2 + 1 / 2 * 1 / 2, rel=1e-14)
    message = r"state \(1,\) is reachable from the start but cannot reach absorption"
    for call in (lambda: g.expectation([0.0]), lambda: g.variance([0.0]),
                 lambda: g.moments([0.0], 2), lambda: g.expectation_grad([0.0])):
        with pytest.raises(ValueError, match=message + r".*moments are infinite"):
            call()
    with pytest.raises(ValueError, match=message + r".*walkers would never stop"):
        g.sample(10, [0.0])


def test_discrete_unreachable_stuck_state_is_ignored():
    # 0 exits with 0.5, moves to 1 with theta; 1 exits with theta. Geometric(0.5) at 0.
    g = Graph([1.0, 0.0], [0, 0, 1], [-1, 1, -1], [0.5, 0.0, 0.0], [[0.0], [1.0], [1.0]],
              discrete=True)
    assert g.expectation([0.0]) == pytest.approx(2.0, rel=1e-15)
    assert g.variance([0.0]) == pytest.approx(2.0, rel=1e-15)  # (1 - p) / p^2
    assert g.sample(5000, [0.0], seed=2).min() >= 1
