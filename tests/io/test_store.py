"""Run files: ArviZ/xarray layout, round trips, appends and resume, atomic writes."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest

from phasic_mpi import Observations
from phasic_mpi.io.h5 import CHUNK_BYTES
from phasic_mpi.io.store import RunWriter, atomic_write, read_run

PARAMS = ["jump", "flood_left", "flood_right"]
CONFIG = {"model": {"name": "rabbits", "n": 2}, "svgd": {"n_particles": 64, "lr": 0.01},
          "seed": 7}


def _obs() -> Observations:
    return Observations([0.31, 0.52, 1.7], weights=[2, 1, 1], right_censored=[3.0, 4.5],
                        interval=[[0.2, 0.4], [1.0, np.inf]])


def _blocks(seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"svgd/particles": rng.normal(size=(k, 64, 3)),
             "svgd/diagnostics/step_norm": rng.random(k),
             "svgd/diagnostics/n_invalid": rng.integers(0, 3, k)} for k in (4, 4, 3)]


def _posterior(seed: int = 1) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    draws = {n: rng.normal(size=(1, 64)) for n in PARAMS}
    return draws, {"lp": rng.normal(size=(1, 64)), "grad_norm": rng.random((1, 64, 3))}


def _write(path, attrs=None, blocks=None) -> None:
    attrs = {"n_ranks": 4, "mpi_library": "MPICH 4.2", "hostname": "node1",
             "timings": {"total": 12.5, "per_iteration": [0.1, 0.2]}, "resumed": False,
             **(attrs or {})}
    with RunWriter.create(path, algorithm="svgd", config=CONFIG, param_names=PARAMS,
                          observations=_obs(), seed=7, attrs=attrs) as w:
        for block in blocks or _blocks():
            w.append_many(block)
        draws, stats = _posterior()
        w.write_posterior(draws, stats, draws_are_independent=True)
        w.write_group("svgd/final", {"particles": draws["jump"].T, "bandwidth": np.float64(0.7)})
        w.set_attrs({"step_norm": 1e-4, "ksd": 0.02, "n_invalid": 0, "converged": True},
                    group="svgd/diagnostics")


def _datasets(path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.update({n: o[()]}) if isinstance(o, h5py.Dataset) else None)
    return out


@pytest.fixture
def run_path(tmp_path):
    path = tmp_path / "run.h5"
    _write(path)
    return path


@pytest.fixture
def az():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # ArviZ's refactor notice
        arviz = pytest.importorskip("arviz")
    with arviz.rc_context({"data.load": "eager"}):
        yield arviz


def test_arviz_opens_run_file(run_path, az):
    idata = az.from_netcdf(run_path)
    draws, stats = _posterior()
    post = idata.posterior
    assert list(post.data_vars) == PARAMS
    for name in PARAMS:
        assert post[name].dims == ("chain", "draw")
        np.testing.assert_array_equal(post[name].values, draws[name])
    np.testing.assert_array_equal(post["chain"].values, [0])
    np.testing.assert_array_equal(post["draw"].values, np.arange(64))
    assert idata.sample_stats["grad_norm"].dims == ("chain", "draw", "grad_norm_dim_0")
    np.testing.assert_array_equal(idata.sample_stats["lp"].values, stats["lp"])
    obs = idata.observed_data
    assert obs["exact"].dims == obs["weights"].dims == ("exact_obs",)
    assert obs["right_censored"].dims == ("right_censored_obs",)
    assert obs["interval_lo"].dims == obs["interval_hi"].dims == ("interval_obs",)
    np.testing.assert_array_equal(obs["interval_hi"].values, [0.4, np.inf])
    assert "right_weights" not in obs  # None stays None
    assert idata.attrs["algorithm"] == "svgd"
    # the algorithm group is a valid netCDF group too: its history shows up
    assert idata.svgd["particles"].shape == (11, 64, 3)


def test_every_group_opens_with_xarray(run_path):
    xr = pytest.importorskip("xarray")
    with xr.open_dataset(run_path, group="posterior", engine="h5netcdf") as ds:
        assert list(ds.data_vars) == PARAMS
        assert dict(ds.sizes) == {"chain": 1, "draw": 64}
    for group in read_run(run_path).groups:
        with xr.open_dataset(run_path, group=group, engine="h5netcdf") as ds:
            ds.load()
    with xr.open_dataset(run_path, group="svgd/diagnostics", engine="h5netcdf") as ds:
        assert ds["step_norm"].dims == ("step_norm_dim_0",)
        assert ds.attrs["ksd"] == 0.02


def test_read_run_round_trip(run_path):
    run = read_run(run_path)
    assert run.param_names == tuple(PARAMS)
    assert run.algorithm == "svgd"
    assert run.config == CONFIG
    assert run.attrs["seed"] == 7 and run.attrs["n_ranks"] == 4
    assert run.attrs["timings"] == {"total": 12.5, "per_iteration": [0.1, 0.2]}
    assert run.attrs["resumed"] is False
    assert run.attrs["phasic_mpi_version"]
    assert set(run.groups) >= {"posterior", "sample_stats", "observed_data", "svgd",
                               "svgd/diagnostics", "svgd/final"}
    draws, stats = _posterior()
    post = run.posterior()
    assert list(post) == PARAMS
    for name in PARAMS:
        assert post[name].tobytes() == draws[name].tobytes()
    got_stats = run.sample_stats()
    for name in stats:
        assert got_stats[name].dtype == stats[name].dtype
        assert got_stats[name].tobytes() == stats[name].tobytes()
    assert run.group_attrs("posterior")["draws_are_independent"] is True
    blocks = _blocks()
    for name in blocks[0]:
        want = np.concatenate([b[name] for b in blocks])
        got = run.history(name)
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    assert run.rows() == {name: 11 for name in blocks[0]}
    assert run.diagnostics() == {"step_norm": 1e-4, "ksd": 0.02, "n_invalid": 0,
                                 "converged": True}
    final = run.read_group("svgd/final")
    assert final["particles"].tobytes() == draws["jump"].T.tobytes()
    assert final["bandwidth"] == 0.7
    obs, want = run.observations(), _obs()
    for field in ("exact", "weights", "right_censored", "right_weights", "interval_lo",
                  "interval_hi", "interval_weights"):
        a, b = getattr(obs, field), getattr(want, field)
        assert (a is None and b is None) or a.tobytes() == b.tobytes(), field
    with pytest.raises(KeyError, match="no history dataset"):
        run.history("svgd/nope")


def test_history_layout(run_path):
    with h5py.File(run_path, "r") as f:
        for name in ("svgd/particles", "svgd/diagnostics/step_norm"):
            ds = f[name]
            assert ds.maxshape[0] is None and ds.maxshape[1:] == ds.shape[1:]
            assert ds.chunks is not None and ds.attrs["rows"] == ds.shape[0] == 11
            assert 8 <= np.prod(ds.chunks) * ds.dtype.itemsize <= CHUNK_BYTES
            assert ds.chunks[1:] == ds.shape[1:]
        # a row bigger than a chunk is split along its largest axis
    with RunWriter.reopen(run_path) as w:
        w.append("svgd/big", np.zeros((1, 300, 200)))
    with h5py.File(run_path, "r") as f:
        chunks = f["svgd/big"].chunks
        assert chunks[0] == 1 and np.prod(chunks) * 8 <= CHUNK_BYTES


def test_datasets_do_not_depend_on_run_attributes(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    _write(a)
    _write(b, attrs={"n_ranks": 1, "hostname": "laptop", "timings": {"total": 99.0}})
    da, db = _datasets(a), _datasets(b)
    assert da.keys() == db.keys()
    for name in da:
        assert da[name].tobytes() == db[name].tobytes(), name


def test_resume_truncates_and_continues(tmp_path):
    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    blocks = _blocks() + _blocks(5)
    _write(full, blocks=blocks)
    with RunWriter.create(part, algorithm="svgd", config=CONFIG, param_names=PARAMS,
                          observations=_obs(), seed=7) as w:
        for block in blocks[:3]:
            w.append_many(block)
        checkpoint = w.rows()
        for block in blocks[3:5]:  # written after the checkpoint, then "killed"
            w.append_many(block)
        w.append("svgd/late", np.ones(3))  # created after the checkpoint
    assert read_run(part).rows()["svgd/particles"] == 19
    with RunWriter.reopen(part, checkpoint) as w:
        assert w.rows() == checkpoint
    with h5py.File(part, "r") as f:
        assert f["svgd/particles"].shape[0] == 11 and "svgd/late" not in f
        assert f["svgd/particles_dim_0"].shape == (11,)
    with RunWriter.reopen(part) as w:
        for block in blocks[3:]:
            w.append_many(block)
        draws, stats = _posterior()
        w.write_posterior(draws, stats, draws_are_independent=True)
        w.write_group("svgd/final", {"particles": draws["jump"].T, "bandwidth": np.float64(0.7)})
    da, db = _datasets(full), _datasets(part)
    assert da.keys() == db.keys()
    for name in da:
        assert da[name].tobytes() == db[name].tobytes(), name


def test_valid_row_counter_is_honoured(run_path):
    with h5py.File(run_path, "r+") as f:  # an append that crashed before its counter update
        ds = f["svgd/diagnostics/step_norm"]
        ds.resize(15, axis=0)
        ds[11:] = -1.0
    run = read_run(run_path)
    assert run.history("svgd/diagnostics/step_norm").shape == (11,)
    assert run.rows()["svgd/diagnostics/step_norm"] == 11
    with RunWriter.reopen(run_path) as w:  # no checkpoint: trust the counters
        w.append("svgd/diagnostics/step_norm", np.array([5.0]))
    got = read_run(run_path).history("svgd/diagnostics/step_norm")
    assert got.shape == (12,) and got[-1] == 5.0 and (got[:11] >= 0).all()


def test_reopen_errors(run_path, tmp_path):
    rows = read_run(run_path).rows()
    with pytest.raises(ValueError, match="cannot resume at row 12"):
        RunWriter.reopen(run_path, {**rows, "svgd/particles": 12})
    with pytest.raises(ValueError, match="no history datasets"):
        RunWriter.reopen(run_path, {**rows, "svgd/ghost": 1})
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        RunWriter.reopen(tmp_path / "missing.h5")
    other = tmp_path / "other.h5"
    atomic_write(other, lambda f: f.create_dataset("x", data=[1]))
    with pytest.raises(ValueError, match="not a phasic_mpi run file"):
        RunWriter.reopen(other)
    with RunWriter.reopen(run_path, rows) as w:  # the failures above changed nothing
        assert w.rows() == rows


def test_append_and_write_errors(run_path):
    with RunWriter.reopen(run_path) as w:
        with pytest.raises(ValueError, match="expected"):
            w.append("svgd/particles", np.zeros((1, 64, 2)))
        with pytest.raises(TypeError, match="cannot append"):
            w.append("svgd/diagnostics/n_invalid", np.zeros(2))  # float into int
        with pytest.raises(ValueError, match="scalar"):
            w.append("svgd/x", 1.0)
        with pytest.raises(ValueError, match="must lie in a group"):
            w.append("toplevel", np.zeros(2))
        with pytest.raises(ValueError, match="must lie in a group"):
            w.append("posterior/x", np.zeros(2))
        with pytest.raises(ValueError, match="missing for parameters"):
            w.write_posterior({"jump": np.zeros((1, 4))})
        with pytest.raises(ValueError, match="differ"):
            w.write_posterior({n: np.zeros((1, 4)) for n in PARAMS}, {"lp": np.zeros((1, 5))})
        with pytest.raises(ValueError, match="not a plain variable"):
            w.write_group("svgd", {"particles": np.zeros(3)})
        assert w.rows()["svgd/particles"] == 11


def test_write_posterior_replaces(run_path):
    with RunWriter.reopen(run_path) as w:
        w.write_posterior({n: np.full((4, 10), i, float) for i, n in enumerate(PARAMS)})
    run = read_run(run_path)
    assert {k: v.shape for k, v in run.posterior().items()} == {n: (4, 10) for n in PARAMS}
    assert run.sample_stats() == {}
    assert run.group_attrs("posterior")["draws_are_independent"] is False


def test_create_errors(tmp_path, run_path):
    kw = dict(algorithm="svgd", config=CONFIG, param_names=PARAMS)
    with pytest.raises(FileNotFoundError, match="no/such/dir"):
        RunWriter.create(tmp_path / "no/such/dir/run.h5", **kw)
    with pytest.raises(FileExistsError, match="run.h5"):
        RunWriter.create(run_path, **kw)
    for bad in (["a", "a"], ["chain"], ["a/b"], [""]):
        with pytest.raises(ValueError):
            RunWriter.create(tmp_path / "x.h5", **{**kw, "param_names": bad})
    with pytest.raises(ValueError, match="must not set"):
        RunWriter.create(tmp_path / "x.h5", attrs={"algorithm": "pt"}, **kw)
    with pytest.raises(TypeError, match="'obj'"):
        RunWriter.create(tmp_path / "x.h5", attrs={"obj": object()}, **kw)
    assert sorted(os.listdir(tmp_path)) == ["run.h5"]  # nothing half-written left behind
    with RunWriter.create(run_path, overwrite=True, **kw) as w:
        assert w.rows() == {}


def test_attribute_encoding(tmp_path):
    attrs = {"big_seed": 2**100, "none": None, "flag": np.bool_(True), "arr": np.arange(3.0),
             "path": tmp_path, "f32": np.float32(1.5), "tuple": (1, "a"), "text": "[not json",
             "big": np.linspace(0, 1, 10000), "names": np.array(["x", "y"])}
    with RunWriter.create(tmp_path / "r.h5", algorithm="pt", config={}, param_names=["a"],
                          seed=2**64 + 1, attrs=attrs):
        pass
    got = read_run(tmp_path / "r.h5").attrs
    assert got["seed"] == 2**64 + 1 and got["big_seed"] == 2**100
    assert got["none"] is None and got["flag"] is True and got["tuple"] == [1, "a"]
    np.testing.assert_array_equal(got["arr"], [0.0, 1.0, 2.0])
    assert got["path"] == str(tmp_path) and got["f32"] == 1.5 and got["text"] == "[not json"
    assert got["big"] == np.linspace(0, 1, 10000).tolist() and got["names"] == ["x", "y"]


def test_empty_observations_open_in_arviz(tmp_path, az):
    path = tmp_path / "e.h5"
    with RunWriter.create(path, algorithm="pt", config={}, param_names=["a"],
                          observations=Observations()) as w:
        w.append("pt/diagnostics/acceptance", np.zeros((0, 3)))
        w.write_posterior({"a": np.zeros((2, 8))})
    idata = az.from_netcdf(path)
    assert idata.observed_data["exact"].shape == (0,)
    assert read_run(path).observations().n_observations == 0
    assert read_run(path).history("pt/diagnostics/acceptance").shape == (0, 3)


def test_atomic_write(tmp_path):
    path = tmp_path / "ckpt.h5"

    def boom(f):
        f.create_dataset("x", data=[1, 2])
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(path, boom)
    assert os.listdir(tmp_path) == []
    assert atomic_write(path, lambda f: f.create_dataset("x", data=[1]).shape) == (1,)
    with pytest.raises(RuntimeError):
        atomic_write(path, boom)
    assert os.listdir(tmp_path) == ["ckpt.h5"]
    with h5py.File(path, "r") as f:
        assert f["x"][()].tolist() == [1]
    atomic_write(path, lambda f: f.create_dataset("y", data=[3]))
    with h5py.File(path, "r") as f:
        assert list(f) == ["y"]
    with pytest.raises(FileNotFoundError, match="missing"):
        atomic_write(tmp_path / "missing" / "c.h5", lambda f: None)


def test_import_and_read_without_mpi(run_path):
    code = ("import sys; sys.modules['mpi4py'] = None\n"  # any MPI import would fail
            "from phasic_mpi.io.store import read_run\n"
            "from phasic_mpi.analysis.summary import summarize, format_summary\n"
            f"print(format_summary(summarize(read_run({str(run_path)!r}))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "flood_left" in out.stdout
