"""The communicator facade measures itself: seconds, bytes sent and calls per
operation (measurement only). Oracles: the array sizes handed to each call,
and hand-summed reports."""

import numpy as np
import pytest

from phasic_mpi.inference.comm import (OPERATIONS, MPICommunicator, SerialCommunicator, Traffic,
                                       traffic_report)
from phasic_mpi.inference.parallel import block_layout


def test_the_serial_communicator_reports_zeros_for_every_operation():
    comm = SerialCommunicator()
    comm.gather_rows(block_layout(3, 1, 0), np.ones((3, 2)))
    comm.allreduce_exact([1, 2], "sum")
    assert comm.traffic() == {op: Traffic(0.0, 0, 0) for op in OPERATIONS}


class TickingClock:
    """A ``time`` stand-in whose ``perf_counter`` advances 0.25 s per reading: a call read
    twice lasts exactly 0.25 s, so the reported seconds are exact, not measured."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        self.now += 0.25
        return self.now


def test_the_mpi_communicator_counts_each_call_with_its_array_size(monkeypatch):
    from mpi4py import MPI

    import phasic_mpi.inference.comm as comm_module

    monkeypatch.setattr(comm_module, "time", TickingClock())
    comm = MPICommunicator(MPI.COMM_SELF).dup()
    try:
        layout = block_layout(4, 1, 0)
        comm.gather_rows(layout, np.ones((4, 3)))
        comm.gather_rows(layout, local=np.ones((4, 1)))  # by keyword, too
        comm.allgather_rows(layout, np.ones((4, 2)))
        comm.allreduce_exact([7], "max")
        got = comm.sendrecv(np.arange(5.0), 0, 3)  # to itself: COMM_SELF has one rank
        np.testing.assert_array_equal(got, np.arange(5.0))
        comm.bcast({"a": 1})
        traffic = comm.traffic()
        assert set(traffic) == set(OPERATIONS)
        assert traffic["gather_rows"][1:] == (8 * (12 + 4), 2)
        assert traffic["allgather_rows"][1:] == (8 * 8, 1)
        assert traffic["allreduce_exact"][1:] == (8, 1)
        assert traffic["sendrecv"][1:] == (8 * 5, 1)
        assert traffic["bcast"][1:] == (0, 1)  # pickled objects: calls and time only
        assert traffic["barrier"] == Traffic(0.0, 0, 0)
        assert all(t.seconds == 0.25 * t.calls for t in traffic.values())  # one clock span per call
        fresh = comm.dup()  # a duplicate starts from zero
        assert fresh.traffic() == {op: Traffic(0.0, 0, 0) for op in OPERATIONS}
        fresh.free()
    finally:
        comm.free()


def test_traffic_report_sums_per_rank():
    ranks = [{op: Traffic(0.5, 10, 1) for op in OPERATIONS},
             {**{op: Traffic(0.0, 0, 0) for op in OPERATIONS}, "sendrecv": Traffic(0.25, 96, 1)}]
    assert traffic_report(ranks) == {"comm_time_s": [0.5 * len(OPERATIONS), 0.25],
                                     "comm_bytes_sent": [10 * len(OPERATIONS), 96]}
    assert traffic_report(ranks, "swap", ("sendrecv",)) == {"swap_time_s": [0.5, 0.25],
                                                            "swap_bytes_sent": [10, 96]}


@pytest.mark.parametrize("serial", [True, False])
def test_pt_reports_its_traffic_per_rank(serial):
    """One rank: no swap crosses ranks, so no byte is sent by Sendrecv; the
    old keys comm_time_s and swap_bytes_sent stay, as lists per rank."""
    from mpi4py import MPI

    from phasic_mpi.inference.pt import PTAlgorithm, PTSettings
    from phasic_mpi.run.driver import execute
    from phasic_mpi.run.settings import OutputSettings

    class Gaussian:
        n_params, param_names = 1, ("x",)

        def evaluate(self, z, rows=None):
            from phasic_mpi.inference.posterior import PosteriorEval

            z = np.asarray(z, float)
            return PosteriorEval(-0.5 * z[:, 0] ** 2, -z, -0.5 * z[:, 0] ** 2, -z,
                                 np.zeros(len(z), bool))

        def sample_prior_z(self, rng, n):
            return rng.standard_normal((n, 1))

        def to_theta(self, z):
            return np.asarray(z)

    comm = SerialCommunicator() if serial else MPI.COMM_SELF
    outcome = execute(PTAlgorithm(PTSettings(replicas=3, rounds=4, warmup_rounds=1)), Gaussian(),
                      comm=comm, output=OutputSettings(progress="none"))
    diag = outcome.final.diagnostics
    assert diag["swap_bytes_sent"] == [0] and diag["swap_time_s"] == [0.0]
    assert len(diag["comm_time_s"]) == len(diag["comm_bytes_sent"]) == 1
    if serial:
        assert diag["comm_time_s"] == [0.0] and diag["comm_bytes_sent"] == [0]
    else:  # the loop's stop-flag Allreduce every scan: 8 bytes each, at least
        assert diag["comm_bytes_sent"][0] >= 8 * 15 and diag["comm_time_s"][0] > 0.0


@pytest.mark.parametrize("make", [SerialCommunicator, lambda: MPICommunicator(__import__("mpi4py.MPI").MPI.COMM_SELF)])
def test_stop_request_reads_the_watched_source(make):
    """No source or a source saying None: 0; otherwise its signal number, read
    at each call; watch_stop(None) forgets the source."""
    comm = make()
    assert comm.stop_request() == 0
    said = [None]
    comm.watch_stop(lambda: said[0])
    assert comm.stop_request() == 0
    said[0] = 15
    assert comm.stop_request() == 15
    comm.watch_stop(None)
    assert comm.stop_request() == 0
    assert SerialCommunicator().stop_request() == 0  # a source is per communicator object
