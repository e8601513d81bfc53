"""No silent empty success (issue 12.6): runs that produce nothing fail loudly.

Each case of the issue: an all-NaN likelihood under PT and under SVGD (every
final draw invalid: exit 2 with one line, the run file kept as the record),
a prior whose support reaches negative rates (refused at validation, naming
``prior.<name>``, in the config and in the Python API), and data with no
observations. Oracles: the run file's own draws (counted independently of
the algorithm's diagnostics) and, for the domain rule, every vertex of the
parameter box checked by ``Graph.checked_rates``.
"""

import itertools
import math

import h5py
import numpy as np
import pytest

import phasic_mpi as pm
from phasic_mpi.cli.main import main
from phasic_mpi.errors import EmptyResultError
from phasic_mpi.inference.posterior import FunctionDensity, Posterior
from phasic_mpi.inference.priors import Gamma, Normal, Uniform
from phasic_mpi.model import models
from phasic_mpi.model.graph import Graph

NAN_MODEL = '''
import numpy as np
from phasic_mpi.inference.posterior import FunctionDensity

def make(cut=None):
    def fn(theta):
        value = np.full(len(theta), np.nan) if cut is None else np.where(
            theta[:, 0] > cut, np.nan, -0.5 * theta[:, 0] ** 2)
        return value, np.where(np.isfinite(value)[:, None], -theta, 0.0)
    return FunctionDensity(fn, ["a"], priors={"a": {"dist": "normal", "mu": 0, "sigma": 1}})
'''

ALGORITHMS = {"pt": "[pt]\nreplicas = 4\nrounds = 4\nwarmup_rounds = 2\n",
              "svgd": "[svgd]\nparticles = 16\niterations = 5\n"}


def run_cli(tmp_path, capsys, text, name="run"):
    (tmp_path / f"{name}.toml").write_text(text)
    code = main(["run", str(tmp_path / f"{name}.toml"), "--out", str(tmp_path / f"{name}.h5")])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


@pytest.mark.parametrize("algorithm, count, what", [("pt", 48, "cold-chain draws"),
                                                    ("svgd", 16, "final particles")])
def test_all_invalid_fails_with_one_line_and_keeps_the_file(tmp_path, capsys, algorithm, count,
                                                            what):
    (tmp_path / "nanll.py").write_text(NAN_MODEL)
    code, err = run_cli(tmp_path, capsys, '[model]\ndensity = "nanll.py:make"\n'
                        + ALGORITHMS[algorithm] + '[output]\nprogress = "none"\n')
    assert code == 2
    assert err[-1] == (f"phasic-mpi: error: {algorithm}: all {count} {what} have an invalid "
                       f"likelihood (-inf or NaN), so the run holds no posterior; "
                       f"{tmp_path / 'run.h5'} records them; check the model, the data and "
                       "the priors")
    with h5py.File(tmp_path / "run.h5") as f:
        loglik = f["sample_stats/log_likelihood_total"][()]
        assert loglik.size == count and not np.isfinite(loglik).any()  # independent count
        assert f[f"{algorithm}/diagnostics"].attrs["n_invalid_final"] == count


@pytest.mark.parametrize("algorithm", ["pt", "svgd"])
def test_all_invalid_raises_in_the_api(algorithm):
    density = FunctionDensity(lambda th: (np.full(len(th), np.nan), np.zeros_like(th)), ["a"],
                              priors=[Normal(0, 1)])
    settings = ({"replicas": 4, "rounds": 3, "warmup_rounds": 1} if algorithm == "pt"
                else {"particles": 8, "iterations": 3})
    with pytest.raises(EmptyResultError, match=rf"^{algorithm}: all \d+ .* have an invalid"):
        pm.sample(density, algorithm=algorithm, progress="none", **settings)


def test_some_invalid_warns_and_records_the_count(tmp_path):
    # log-likelihood NaN for a > 0.5: the prior draws beyond stay invalid (zero score)
    namespace = {}
    exec(NAN_MODEL, namespace)
    density = namespace["make"](cut=0.5)
    with pytest.warns(RuntimeWarning, match=r"svgd: (\d+) of 32 final particles have an invalid"):
        result = pm.svgd(density, particles=32, iterations=2, progress="none")
    invalid = int((result.theta[:, 0] > 0.5).sum())  # the oracle: the draws themselves
    assert 0 < invalid < 32
    assert result.diagnostics["n_invalid_final"] == invalid


# ------------------------------------------------------ priors outside the domain
EXPONENTIAL = '''[model]
name = "exponential"
[data]
simulate = {{ theta = [2.0], n = 20, seed = 4 }}
[prior]
rate = {prior}
{transform}[svgd]
particles = 8
iterations = 2
[output]
progress = "none"
'''


@pytest.mark.parametrize("prior, transform, message", [
    ('{ dist = "uniform", low = -5.0, high = 5.0 }', "",
     "prior.rate: its support (-5, 5) (transform logit) leaves the model's domain: edge "
     "state (1,) -> absorption has rate 1·rate, which is negative at rate = -5"),
    ('{ dist = "normal", mu = 1.0, sigma = 1.0 }', "",
     "prior.rate: its support (-inf, inf) (transform identity) leaves the model's domain"),
    ('{ dist = "normal", mu = 1.0, sigma = 1.0 }', '[transform]\nrate = "identity"\n',
     "prior.rate: its support (-inf, inf) (transform identity) leaves the model's domain"),
])
def test_config_refuses_priors_reaching_negative_rates(tmp_path, capsys, prior, transform,
                                                       message):
    code, err = run_cli(tmp_path, capsys, EXPONENTIAL.format(prior=prior, transform=transform))
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"phasic-mpi: error: {message}")
    assert not (tmp_path / "run.h5").exists()  # refused before any work


def test_config_accepts_priors_inside_the_domain(tmp_path, capsys):
    code, _ = run_cli(tmp_path, capsys, EXPONENTIAL.format(
        prior='{ dist = "uniform", low = 0.0, high = 5.0 }', transform=""))
    assert code == 0


def test_api_refuses_priors_reaching_negative_rates():
    graph = models.rabbits(2)
    data = graph.sample(20, [1.0, 2.0, 4.0], seed=1)
    with pytest.raises(ValueError, match=r"^prior\.rate: its support \(-5, 5\)"):
        pm.svgd(models.exponential(), [1.0, 2.0], priors={"rate": Uniform(-5, 5)})
    with pytest.raises(ValueError, match=r"^prior\.flood_right: its support \(-inf, inf\) "
                                         r"\(transform identity\)"):
        Posterior(graph, data, {"jump": Gamma(2, 1), "flood_left": Gamma(2, 1),
                                "flood_right": Normal(4, 1)})
    ok = Posterior(graph, data, [Gamma(2, 1), Uniform(0, 10), Gamma(2, 1)])  # (0, 10): fine
    assert ok.transforms[1].image == (0.0, 10.0)
    unchecked = Posterior(graph, data, [Normal(1, 1)] * 3, check_domain=False)
    assert unchecked.evaluate([[-1.0, 2.0, 4.0]]).invalid[0]  # the likelihood's -inf


def test_discrete_out_probabilities_above_one_are_refused():
    geometric = Graph.from_callback(lambda s: [((0,), [1.0])] if s == (1,) else [], (1,), 1,
                                    discrete=True, param_names=["p"])
    Posterior(geometric, [1, 2, 3], [Uniform(0, 1)])  # p in (0, 1): a probability
    with pytest.raises(ValueError, match=r"^prior\.p: .*the out-probabilities of state \(1,\) "
                                         r"can sum to more than 1"):
        Posterior(geometric, [1, 2, 3], [Uniform(0, 2)])


def _vertices_ok(graph, low, high):
    """The oracle: a linear rate's minimum over a box is at a vertex."""
    for corner in itertools.product(*zip(low, high)):
        try:
            graph.checked_rates(np.array(corner))
        except ValueError:
            return False
    return True


def test_box_violation_agrees_with_the_vertices_of_random_boxes():
    rng = np.random.default_rng(3)
    agree = {True: 0, False: 0}
    for _ in range(300):
        n, d = 4, 3
        src = np.repeat(np.arange(n), 2)
        dst = np.array([1, -1, 2, -1, 3, -1, 0, -1])
        coef = rng.choice([-1.0, 0.0, 0.5, 1.0, 2.0], size=(src.size, d),
                          p=[0.05, 0.35, 0.2, 0.2, 0.2])
        base = rng.choice([0.0, 0.5, 3.0], size=src.size)
        base[1::2] += 0.5  # exits never identically zero: every state can be absorbed
        graph = Graph(np.eye(n)[0], src, dst, base, coef)
        low = rng.uniform(-0.3, 1.0, d)
        high = low + rng.uniform(0.1, 2.0, d)
        expected = _vertices_ok(graph, low, high)
        assert (graph.box_violation(low, high) is None) == expected
        agree[expected] += 1
    assert min(agree.values()) > 30  # both outcomes exercised


def test_box_violation_with_infinite_ends():
    graph = models.rabbits(2)
    assert graph.box_violation([0.0] * 3, [math.inf] * 3) is None
    k, why = graph.box_violation([0.0, -math.inf, 0.0], [math.inf] * 3)
    assert graph.param_names[k] == "flood_left" and "negative at flood_left = -inf" in why


# ----------------------------------------------------------- no observations
def test_header_only_data_file_is_refused(tmp_path, capsys):
    (tmp_path / "empty.csv").write_text("time\n")
    code, err = run_cli(tmp_path, capsys, '[model]\nname = "exponential"\n[data]\n'
                        'file = "empty.csv"\n[svgd]\nparticles = 8\niterations = 2\n')
    assert code == 2
    assert err == [f"phasic-mpi: error: data.file: {tmp_path / 'empty.csv'}: no observations "
                   "(the file holds no data rows)"]


def test_api_refuses_no_observations():
    with pytest.raises(ValueError, match=r"^data: no observations \(the posterior would be "
                                         r"the prior\)$"):
        pm.svgd(models.exponential(), [], priors={"rate": Gamma(2, 1)})
