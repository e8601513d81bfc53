"""Files are never clobbered: exclusive temporary files, the run lock, verified
checkpoints and write failures (issue 12, items 2, 3, 5 and 7).

Every case plants or tampers something, then checks that the error is one
clear line and that every file in the directory is byte for byte as before
(except what the operation is documented to write).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from phasic_mpi.io import checkpoint as ckmod
from phasic_mpi.io import files
from phasic_mpi.io.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from phasic_mpi.io.files import RunLock, RunLockError, exclusive_temp
from phasic_mpi.io.store import RunWriter, atomic_write, is_complete, read_run


def snapshot(directory):
    """Every entry of ``directory``: symlinks by target, files by content hash."""
    out = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if os.path.islink(path):
            out[name] = ("link", os.readlink(path))
        else:
            with open(path, "rb") as fh:
                out[name] = ("file", hashlib.sha256(fh.read()).hexdigest())
    return out


@pytest.fixture
def fixed_tokens(monkeypatch):
    """Make the random part of temporary names predictable: 'a'*16, then 'b'*16, ..."""
    tokens = iter(c * 16 for c in "abcdef")
    monkeypatch.setattr(files.secrets, "token_hex", lambda n: next(tokens))
    return lambda path: f"{path}.tmp.{os.getpid()}.{'a' * 16}"


# -- temporary files ------------------------------------------------------------


def test_exclusive_temp_never_opens_a_planted_symlink(tmp_path, fixed_tokens):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "out.h5"
    os.symlink(victim, fixed_tokens(target))  # planted at the first name tried
    fh, tmp = exclusive_temp(target)
    fh.close()
    assert tmp.endswith("b" * 16) and not os.path.islink(tmp)
    assert victim.read_text() == "precious"
    assert os.readlink(fixed_tokens(target)) == str(victim)  # left alone, not removed


def test_atomic_write_with_planted_symlinks_leaves_the_victim(tmp_path, fixed_tokens):
    victim = tmp_path / "victim.h5"
    victim.write_bytes(b"not yours")
    out = tmp_path / "run.h5"
    os.symlink(victim, fixed_tokens(out))
    atomic_write(out, lambda f: f.create_dataset("x", data=[1.0, 2.0]))
    assert victim.read_bytes() == b"not yours"
    assert not os.path.islink(out)
    with h5py.File(out, "r") as f:
        assert f["x"][()].tolist() == [1.0, 2.0]
    leftovers = sorted(os.listdir(tmp_path))
    assert leftovers == sorted(["victim.h5", "run.h5", os.path.basename(fixed_tokens(out))])


def test_checkpoint_write_with_planted_symlink_leaves_the_victim(tmp_path, fixed_tokens):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    ckpt = str(tmp_path / "run.h5.ckpt.npz")
    os.symlink(victim, fixed_tokens(ckpt))
    write_checkpoint(ckpt, 3, {"particles": np.ones((4, 2))}, {}, {"a": 1})
    assert victim.read_text() == "precious" and not os.path.islink(ckpt)
    assert read_checkpoint(ckpt)[0] == 3


def test_run_writer_create_never_follows_a_symlinked_temp(tmp_path, fixed_tokens):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "run.h5"
    os.symlink(victim, fixed_tokens(out))
    with RunWriter.create(out, algorithm="svgd", config={}, param_names=["a"]) as w:
        w.append("svgd/x", np.zeros((2, 1)))
    assert victim.read_text() == "precious" and not os.path.islink(out)
    assert read_run(out).history("svgd/x").shape == (2, 1)


# -- the run lock -----------------------------------------------------------------


def test_second_lock_on_one_path_fails_at_once(tmp_path):
    out = tmp_path / "run.h5"
    with RunLock(out) as first:
        assert os.path.exists(first.lock_path)
        with pytest.raises(RunLockError, match="another run is writing this output") as info:
            RunLock(out).acquire()
        assert "\n" not in str(info.value) and f"pid {os.getpid()}" in str(info.value)
    assert not os.path.exists(str(out) + ".lock")
    with RunLock(out):  # free again
        pass


def test_lock_held_by_another_process(tmp_path):
    out = tmp_path / "run.h5"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from phasic_mpi.io.files import RunLock
            with RunLock({str(out)!r}):
                print("held", flush=True)
                sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockError, match="another run"):
            RunLock(out).acquire()
    finally:
        holder.communicate("\n", timeout=30)
    with RunLock(out):
        pass


def test_stale_lock_file_of_a_killed_run_is_taken_over(tmp_path):
    out = tmp_path / "run.h5"
    (tmp_path / "run.h5.lock").write_text("pid 1 on elsewhere\n")  # no process holds it
    with RunLock(out):
        pass


def test_symlinked_lock_file_is_refused(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.symlink(victim, tmp_path / "run.h5.lock")
    with pytest.raises(RunLockError, match="symlink"):
        RunLock(tmp_path / "run.h5").acquire()
    assert victim.read_text() == "precious"


def test_locking_disabled_follows_hdf5s_switch():
    assert files.locking_disabled({"HDF5_USE_FILE_LOCKING": "FALSE"})
    assert not files.locking_disabled({})


# -- checkpoints ------------------------------------------------------------------


def make_run(tmp_path, iteration=4, n=5, d=2):
    """A run file with ``iteration`` diagnostic rows and its checkpoint."""
    out = str(tmp_path / "run.h5")
    rng = np.random.default_rng(0)
    with RunWriter.create(out, algorithm="svgd", config={"svgd": {"iterations": 10}},
                          param_names=[f"p{i}" for i in range(d)]) as w:
        w.append_many({"svgd/diagnostics/step_norm": rng.random(iteration),
                       "svgd/particles": rng.random((2, n, d))})
        rows, run_id = w.rows(), w.run_id
    arrays = {"particles": rng.random((n, d)), "moment1": rng.random((n, d)),
              "moment2": rng.random((n, d))}
    ckpt = ckmod.checkpoint_path(out)
    write_checkpoint(ckpt, iteration, arrays, rows, {"svgd": {"iterations": 10}}, run_id)
    return out, ckpt


def rewrite(ckpt, meta_edit=None, array_edit=None, fix_checksum=True):
    """Tamper with a checkpoint: edit its metadata and arrays, optionally re-sign it."""
    with np.load(ckpt) as data:
        loaded = {k: data[k] for k in data.files}
    meta = json.loads(str(loaded.pop("__meta__")))
    digest = str(loaded.pop("__checksum__"))
    (meta_edit or (lambda m: None))(meta)
    (array_edit or (lambda a: None))(loaded)
    text = json.dumps(meta)
    if fix_checksum:
        digest = ckmod._digest(text, loaded)
    with open(ckpt, "wb") as fh:
        np.savez(fh, __meta__=np.array(text), __checksum__=np.array(digest), **loaded)


def test_checkpoint_round_trip(tmp_path):
    out, ckpt = make_run(tmp_path)
    iteration, arrays, rows, cfg = read_checkpoint(ckpt, n_iterations=10, run_file=out)
    assert iteration == 4 and rows["svgd/diagnostics/step_norm"] == 4
    assert set(arrays) == {"particles", "moment1", "moment2"} and cfg["svgd"]["iterations"] == 10


def _set(key, value):
    return lambda m: m.__setitem__(key, value)


def _nan_particles(arrays):
    arrays["particles"][1, 0] = np.nan


def _truncate(ckpt):
    with open(ckpt, "r+b") as fh:
        fh.truncate(os.path.getsize(ckpt) // 2)


def _flip_bytes(ckpt):
    size = os.path.getsize(ckpt)
    with open(ckpt, "r+b") as fh:
        fh.seek(size // 3)
        chunk = fh.read(16)
        fh.seek(size // 3)
        fh.write(bytes(b ^ 0xFF for b in chunk))


TAMPERED = {
    # name: (how, expected message)
    "iteration beyond the end, re-signed": (
        lambda c: rewrite(c, _set("iteration", 1080)), "outside"),
    "iteration beyond the end, naive edit": (
        lambda c: rewrite(c, _set("iteration", 1080), fix_checksum=False), "checksum"),
    "smaller iteration, re-signed": (
        lambda c: rewrite(c, _set("iteration", 2)), "disagrees with the history rows"),
    "negative iteration, re-signed": (lambda c: rewrite(c, _set("iteration", -1)), "outside"),
    "NaN particles, re-signed": (
        lambda c: rewrite(c, array_edit=_nan_particles), "NaN or infinite"),
    "NaN particles, naive edit": (
        lambda c: rewrite(c, array_edit=_nan_particles, fix_checksum=False), "checksum"),
    "rows beyond the run file, re-signed": (
        lambda c: rewrite(c, lambda m: m["rows"].__setitem__("svgd/particles", 7)),
        "fewer rows"),
    "another run's checkpoint": (lambda c: rewrite(c, _set("run_id", "0" * 32)), "another run"),
    "old format without checksum": (
        lambda c: np.savez(c, __meta__=np.array('{"iteration": 1}'), particles=np.ones(2)),
        "no metadata or checksum"),
    "malformed metadata, re-signed": (lambda c: rewrite(c, _set("rows", [1])), "malformed"),
    "truncated": (_truncate, "unreadable"),
    "corrupt bytes": (_flip_bytes, "unreadable|checksum"),
    "not a zip file": (lambda c: open(c, "wb").write(b"\x00" * 100), "unreadable"),
    "empty file": (lambda c: open(c, "wb").close(), "unreadable"),
    "a directory": (lambda c: (os.unlink(c), os.mkdir(c)), "unreadable"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_checkpoint_is_one_line_and_modifies_nothing(tmp_path, case):
    out, ckpt = make_run(tmp_path)
    how, message = TAMPERED[case]
    how(ckpt)
    before = snapshot(tmp_path) if not os.path.isdir(ckpt) else None
    with pytest.raises(CheckpointError, match=message) as info:
        read_checkpoint(ckpt, n_iterations=10, run_file=out)
    assert "\n" not in str(info.value) and ckpt in str(info.value)
    if before is not None:
        assert snapshot(tmp_path) == before


def test_checkpoint_of_a_missing_or_unreadable_run_file(tmp_path):
    out, ckpt = make_run(tmp_path)
    os.unlink(out)
    with pytest.raises(CheckpointError, match="cannot be read"):
        read_checkpoint(ckpt, run_file=out)


def test_minus_infinity_is_allowed_in_log_densities_only(tmp_path):
    ckpt = str(tmp_path / "c.npz")
    write_checkpoint(ckpt, 0, {"loglik": np.array([-np.inf, 1.0]), "x": np.ones(2)}, {}, {})
    assert np.isneginf(read_checkpoint(ckpt)[1]["loglik"][0])
    write_checkpoint(ckpt, 0, {"x": np.array([-np.inf, 1.0])}, {}, {})
    with pytest.raises(CheckpointError, match="'x' holds NaN"):
        read_checkpoint(ckpt)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(str(tmp_path / "none.npz"))


# -- full disks -------------------------------------------------------------------

WRITE_UNTIL_FULL = """
import os, resource, signal, sys
import numpy as np
from phasic_mpi.io.store import RunWriter
from phasic_mpi.io.checkpoint import write_checkpoint
out, limit = sys.argv[1], int(sys.argv[2])
w = RunWriter.create(out, algorithm="svgd", config={}, param_names=["a", "b"])
w.append_many({"svgd/particles": np.zeros((1, 100, 2)), "svgd/diagnostics/x": np.zeros(1)})
write_checkpoint(out + ".ckpt.npz", 1, {"particles": np.ones((100, 2))}, w.rows(), {}, w.run_id)
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
rng = np.random.default_rng(1)
for i in range(100000):
    w.append_many({"svgd/particles": rng.random((1, 100, 2)), "svgd/diagnostics/x": np.zeros(1)})
"""


def _check_after_full_disk(directory, out, done):
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0
    assert "Exception ignored" not in done.stderr  # no flood of failed-flush reports
    assert lines[-1].startswith("phasic_mpi.errors.RunFileWriteError: run file ")
    assert "write failed" in lines[-1]
    assert read_checkpoint(out + ".ckpt.npz")[0] == 1  # the checkpoint is intact
    if os.path.exists(out):  # kept only if valid so far
        assert "kept, valid up to its last complete append" in lines[-1]
        assert read_run(out).history("svgd/particles").shape[0] >= 1
    else:
        assert "the half-written file was removed" in lines[-1]
    assert not [n for n in os.listdir(directory) if ".tmp." in n]


def test_full_disk_by_file_size_limit(tmp_path):
    out = str(tmp_path / "run.h5")
    done = subprocess.run([sys.executable, "-c", WRITE_UNTIL_FULL, out, str(300_000)],
                          capture_output=True, text=True, timeout=120)
    _check_after_full_disk(tmp_path, out, done)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs (root only); skipped where mounting is not allowed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_on_a_small_tmpfs(small_tmpfs):
    out = str(small_tmpfs / "run.h5")
    done = subprocess.run([sys.executable, "-c", WRITE_UNTIL_FULL, out, "0"],
                          capture_output=True, text=True, timeout=120)
    _check_after_full_disk(small_tmpfs, out, done)
    # and a checkpoint write on the full disk leaves the previous checkpoint
    with pytest.raises(OSError):
        write_checkpoint(out + ".ckpt.npz", 2, {"particles": np.ones((20000, 20))}, {}, {})
    assert read_checkpoint(out + ".ckpt.npz")[0] == 1
    assert not [n for n in os.listdir(small_tmpfs) if ".tmp." in n]


def test_complete_flag(tmp_path):
    out = tmp_path / "run.h5"
    with RunWriter.create(out, algorithm="svgd", config={}, param_names=["a"]) as w:
        w.mark_complete()
    assert is_complete(out)
    RunWriter.reopen(out).close()  # a resumed run is incomplete until it finishes again
    assert not is_complete(out)
    assert not is_complete(tmp_path / "missing.h5")
