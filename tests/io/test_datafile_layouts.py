"""Data files in the forms users have: survival (time,status / time,event),
intervals (lower,upper), weights; line-numbered errors; write/read round trips."""

from __future__ import annotations

import numpy as np
import pytest

from phasic_mpi.errors import ConfigError
from phasic_mpi.io.datafile import read_data_file, write_data
from phasic_mpi.model.data import Observations


def read(tmp_path, text: str, name: str = "d.csv") -> Observations:
    path = tmp_path / name
    path.write_text(text)
    return read_data_file(path)


@pytest.mark.parametrize("text", [
    "time,status\n0.5,1\n2.0,0\n1.0,1\n",
    "# survival data\nTime,Event\n0.5,1\n2.0,0\n\n1.0,1\n",
    "status time\n1 0.5\n0 2.0\ntrue 1.0\n",
])
def test_survival(tmp_path, text):
    obs = read(tmp_path, text)
    assert obs.exact.tolist() == [0.5, 1.0] and obs.right_censored.tolist() == [2.0]
    assert obs.weights is None and obs.interval_lo.size == 0


def test_survival_with_weights(tmp_path):
    obs = read(tmp_path, "time,status,weight\n0.5,1,2\n2.0,0,\n1.0,1,3\n")
    assert obs.weights.tolist() == [2.0, 3.0] and obs.right_weights.tolist() == [1.0]


def test_bounds(tmp_path):
    obs = read(tmp_path, "lower,upper,weight\n0.5,0.5,1\n2.0,,2\n,3.0,1\n1.0,2.0,4\n3,inf,1\n")
    assert obs.exact.tolist() == [0.5] and obs.right_censored.tolist() == [2.0, 3.0]
    assert obs.right_weights.tolist() == [2.0, 1.0]
    assert obs.interval_lo.tolist() == [-np.inf, 1.0] and obs.interval_hi.tolist() == [3.0, 2.0]
    assert obs.interval_weights.tolist() == [1.0, 4.0]


@pytest.mark.parametrize("text, message", [
    ("time,status\n1,1\n\n2,2\n", ":4: status must be 1 \\(absorbed at time\\) or 0 "
                                  "\\(censored: not absorbed by time\\), got '2'"),
    ("time,status\n1,1\nx,0\n", ":3: could not convert string to float: 'x'"),
    ("time,status\n1,1\n,0\n", ":3: time is missing"),
    ("lower,upper\n1,2\n# c\n3,2\n", ":4: need lower <= upper, got \\(3.0, 2.0\\)"),
    ("lower,upper\n1,2\n,\n", ":3: lower and upper are both missing"),
    ("time,status,kind\n1,1,exact\n", ": survival columns are time and status"),
    ("time,status,event\n1,1,1\n", ": survival columns are time and status"),
    ("lower,time\n1,2\n", ": interval columns are lower and upper"),
    ("time,kind\n1,left\n", ":2: kind must be one of exact, right, interval, got 'left'"),
    ("status\n1\n", ":1: a one-column file holds times, not 'status'"),
])
def test_errors_name_file_and_line(tmp_path, text, message):
    with pytest.raises(ConfigError, match=f"^data.file: .*d.csv{message}"):
        read(tmp_path, text)


def test_write_survival_and_intervals_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    obs = Observations(rng.exponential(size=20), right_censored=rng.exponential(size=5))
    write_data(tmp_path / "s.csv", obs, comment="censored at random")
    text = (tmp_path / "s.csv").read_text()
    assert text.splitlines()[1] == "time,status" and text.count(",0\n") == 5
    back = read_data_file(tmp_path / "s.csv")
    assert back.exact.tobytes() == obs.exact.tobytes()
    assert back.right_censored.tobytes() == obs.right_censored.tobytes()
    weighted = Observations([1.0, 2.0], [3.0, 1.0], right_censored=[4.0], right_weights=[2.0])
    write_data(tmp_path / "w.csv", weighted)
    assert (tmp_path / "w.csv").read_text() == \
        "time,status,weight\n1.0,1,3.0\n2.0,1,1.0\n4.0,0,2.0\n"
    iv = Observations([0.5], interval=[[-np.inf, 1.0], [2.0, np.inf]])
    write_data(tmp_path / "i.csv", iv)
    back = read_data_file(tmp_path / "i.csv")
    assert back.interval_lo.tolist() == [-np.inf, 2.0]
    assert back.interval_hi.tolist() == [1.0, np.inf]
