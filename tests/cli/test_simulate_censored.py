"""phasic-mpi simulate --censor-*: censored data files, and their errors."""

from __future__ import annotations

import pytest

from phasic_mpi.cli import main
from phasic_mpi.io.datafile import read_data_file
from phasic_mpi.model.models import exponential
from phasic_mpi.model.simulate import censor


def test_fixed_and_random_censoring(tmp_path, capsys):
    out = tmp_path / "c.csv"
    args = ["simulate", "--model", "exponential", "--theta", "1.3", "--n", "500",
            "--seed", "3", "--out", str(out)]
    assert main([*args, "--censor-at", "0.8"]) == 0
    times = exponential().sample(500, [1.3], seed=3)
    n_censored = int((times > 0.8).sum())
    assert capsys.readouterr().out == f"wrote 500 times ({n_censored} right-censored) to {out}\n"
    obs = read_data_file(out)
    assert obs.exact.tobytes() == times[times <= 0.8].tobytes()
    assert obs.right_censored.tolist() == [0.8] * n_censored
    text = out.read_text()
    assert "# censoring fixed at 0.8\ntime,status\n" in text
    assert main([*args, "--censor-exponential", "0.5"]) == 0
    expected = censor(times, random=("exponential", 0.5), seed=3)
    back = read_data_file(out)
    assert back.right_censored.tobytes() == expected.right_censored.tobytes()
    assert back.exact.tobytes() == expected.exact.tobytes()


@pytest.mark.parametrize("flags, message", [
    (["--censor-exponential", "1", "--censor-uniform", "2"],
     "--censor-exponential, --censor-uniform: give one random censoring scheme, not both"),
    (["--censor-at", "-1"], "--censor-at: tau must be finite and > 0, got -1.0"),
    (["--censor-uniform", "0"],
     "--censor-uniform: the upper bound of uniform censoring must be finite and > 0, got 0.0"),
])
def test_errors(tmp_path, capsys, flags, message):
    out = tmp_path / "c.csv"
    assert main(["simulate", "--model", "exponential", "--theta", "1", "--n", "5",
                 "--out", str(out), *flags]) == 2
    assert capsys.readouterr().err == f"phasic-mpi: error: {message}\n"
    assert not out.exists()
