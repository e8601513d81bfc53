"""Families of parameters (vector- and matrix-valued) as ArviZ variables with dims.

Oracle: the flat draws themselves. A family's variable must equal the flat
draws of its entries stacked in row-major order and reshaped, exactly, in
memory (``Result.to_inference_data``) and from the run file
(``az.from_netcdf``); ArviZ's and phasic_mpi's summaries must give the
numpy mean of the flat draws of each entry.
"""

from __future__ import annotations

import numpy as np
import pytest

import phasic_mpi as pm
from phasic_mpi.analysis.summary import summarize
from phasic_mpi.inference.posterior import FunctionDensity
from phasic_mpi.io.store import read_run
from phasic_mpi.model.params import member_name, param_layout
from phasic_mpi.plotting.run import load_view

az = pytest.importorskip("arviz")

SHAPE = (2, 3)
MU = np.arange(6.0).reshape(SHAPE) / 4.0  # the Gaussian likelihood's centres of w


def _density(style: str) -> FunctionDensity:
    """Independent Gaussians: w (2, 3) around MU and a scalar s around -1."""
    names = ["s0"] + [member_name("w", idx, style) for idx in np.ndindex(*SHAPE)] + ["s"]
    centre = np.concatenate([[0.5], MU.ravel(), [-1.0]])

    def loglik(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = theta - centre
        return -0.5 * np.sum(r * r, axis=1), -r

    shapes = {"w": SHAPE} if style == "_" else None  # bracket names declare themselves
    prior = {"dist": "normal", "mu": 0.0, "sigma": 3.0}
    return FunctionDensity(loglik, names, priors=[prior] * len(names), transforms="identity",
                           param_shapes=shapes)


@pytest.fixture(scope="module", params=["_", "["])
def run(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("families") / "run.h5"
    density = _density(request.param)
    result = pm.pt(density, out=path, replicas=2, chains=2, rounds=4, warmup_rounds=2,
                   seed=5, progress="none")
    return density, result, path


def _expected(density: FunctionDensity, draws: dict) -> dict[str, np.ndarray]:
    names = density.param_names
    w = np.stack([draws[n] for n in names[1:7]], axis=-1)
    return {"s0": draws["s0"], "w": w.reshape(*w.shape[:2], *SHAPE), "s": draws["s"]}


def _check_posterior(posterior, expected: dict[str, np.ndarray]) -> None:
    assert list(posterior.data_vars) == ["s0", "w", "s"]
    assert posterior["w"].dims == ("chain", "draw", "w_dim_0", "w_dim_1")
    assert posterior["s"].dims == ("chain", "draw")
    for name, value in expected.items():
        np.testing.assert_array_equal(posterior[name].values, value)


def test_in_memory_inference_data(run):
    density, result, _ = run
    assert set(result.draws) == set(density.param_names)  # Result.draws stays flat
    _check_posterior(result.to_inference_data().posterior, _expected(density, result.draws))


def test_run_file_round_trip(run):
    density, result, path = run
    rf = read_run(path)
    assert rf.param_layout().shapes == {"w": SHAPE}
    flat = rf.flat_posterior()
    assert set(flat) == set(density.param_names)
    for name in density.param_names:
        np.testing.assert_array_equal(flat[name], result.draws[name])
    _check_posterior(az.from_netcdf(path).posterior, _expected(density, result.draws))


def test_summaries_of_a_family(run):
    density, result, path = run
    table = az.summary(az.from_netcdf(path), kind="stats")
    for k, idx in enumerate(np.ndindex(*SHAPE)):
        flat = result.draws[density.param_names[1 + k]]
        row = f"w[{idx[0]}, {idx[1]}]"
        assert table.loc[row, "mean"] == pytest.approx(np.mean(flat), abs=1e-3)  # rounds to 3
    s = summarize(path)
    means = {p.name: p.mean for p in s.parameters}
    assert list(means) == ["s0", *(f"w[{i},{j}]" for i, j in np.ndindex(*SHAPE)), "s"]
    for k, (i, j) in enumerate(np.ndindex(*SHAPE)):
        assert means[f"w[{i},{j}]"] == pytest.approx(
            float(np.mean(result.draws[density.param_names[1 + k]])), rel=1e-12)


def test_plots_see_every_entry(run):
    density, result, path = run
    view = load_view(read_run(path))
    assert view.param_names == density.param_names
    np.testing.assert_array_equal(view.draws[..., 3], result.draws[density.param_names[3]])


def test_layout_pack_unpack_and_errors():
    names = ["a", "b_0", "b_1", "c[1]", "c[0]", "d"]
    layout = param_layout(names, {"b": [2]})
    assert layout.shapes == {"b": (2,), "c": (2,)}
    assert [(v, s) for v, s, _ in layout.variables] == [("a", ()), ("b", (2,)), ("c", (2,)),
                                                       ("d", ())]
    draws = {n: np.full((1, 3), float(m)) for m, n in enumerate(names)}
    packed = layout.pack(draws)
    np.testing.assert_array_equal(packed["c"][0, 0], [4.0, 3.0])  # c[0] is column 4
    unpacked = layout.unpack(packed)
    assert set(unpacked) == set(names)
    for n in names:
        np.testing.assert_array_equal(unpacked[n], draws[n])
    assert param_layout(names, detect=False).shapes == {}
    for bad, match in [({"b": [3]}, "needs a parameter b_2"), ({"b": [0]}, "positive"),
                       ({"a": [1]}, "differ from every parameter"), ({"z": [1]}, "no parameter"),
                       ({"b": 2}, "sequence")]:
        with pytest.raises(ValueError, match=match):
            param_layout(names, bad)
    with pytest.raises(ValueError, match="fill a grid"):
        param_layout(["c[0]", "c[2]"])


def test_a_reopened_file_keeps_its_families(tmp_path):
    """--resume reopens the file: the stored shapes (data, not code) still pack the draws."""
    from phasic_mpi.io.store import RunWriter

    names = ["s", *(member_name("w", idx, "_") for idx in np.ndindex(*SHAPE))]
    path = tmp_path / "r.h5"
    RunWriter.create(path, algorithm="pt", config={}, param_names=names,
                     param_shapes={"w": SHAPE}).close()
    draws = {n: np.full((2, 4), float(m)) for m, n in enumerate(names)}
    with RunWriter.reopen(path) as w:
        w.write_posterior(draws)
    rf = read_run(path)
    assert rf.group_attrs("model") == {"param_shapes": {"w": list(SHAPE)}}
    assert rf.model() is None  # shapes alone are no graph
    post = rf.posterior()
    assert list(post) == ["s", "w"] and post["w"].shape == (2, 4, *SHAPE)
    np.testing.assert_array_equal(post["w"][1, 2], np.arange(1.0, 7.0).reshape(SHAPE))
    with pytest.raises(ValueError, match="needs a parameter w_1_2"):
        RunWriter.create(tmp_path / "bad.h5", algorithm="pt", config={}, param_names=names[:-1],
                         param_shapes={"w": SHAPE})


def test_laplace_inference_data_has_the_families():
    """MAP's Laplace draws (in memory) show the density's families as array variables."""
    density = _density("_")
    fit = pm.fit_map(density, starts=2, seed=1)
    idata = fit.to_inference_data(n_draws=50, seed=2, chains=2)
    post = idata.posterior
    assert list(post.data_vars) == ["s0", "w", "s"]
    assert post["w"].dims == ("chain", "draw", "w_dim_0", "w_dim_1")
    flat = fit.sample_theta(100, 2).reshape(2, 50, -1)
    np.testing.assert_array_equal(post["w"].values, flat[:, :, 1:7].reshape(2, 50, *SHAPE))
