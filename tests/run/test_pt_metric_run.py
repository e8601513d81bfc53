"""``phasic-mpi run`` with PT's adapted metric and cold-only moves: the same
file at 1-3 ranks, and a SIGTERM after the metric's first update then a
resume at another rank count equals an uninterrupted run (the metric and its
accumulators travel in the checkpoint); the same with ``cold_steps = "auto"``,
stopped in its probe round and after it."""

import h5py
import numpy as np
import pytest

from test_run import PT_CONFIG, assert_resume_equals_uninterrupted, run_at_rank_counts


def write_metric_config(tmp_path, rounds, checkpoint_every, cold_steps="1"):
    text = PT_CONFIG.format(rounds=rounds, checkpoint_every=checkpoint_every)
    text = text.replace("warmup_rounds = 3\n", "warmup_rounds = 6\n")  # metric updates after rounds 3, 4
    text = text.replace('local_move = "mala"\n',
                        f'local_move = "mala"\nmass_matrix = "dense"\ncold_steps = {cold_steps}\n')
    assert "mass_matrix" in text and "warmup_rounds = 6" in text
    path = tmp_path / "pt_metric.toml"
    path.write_text(text)
    return path


def test_pt_metric_run_is_bitwise_identical_for_1_to_3_ranks(tmp_path):
    cfg = write_metric_config(tmp_path, rounds=7, checkpoint_every=0)
    outputs = run_at_rank_counts(cfg, tmp_path, "ptm", (1, 2, 3))
    with h5py.File(outputs[0], "r") as fh:
        assert fh["posterior/jump"].shape == (2, 2**7 - 2**6)
        assert np.all(np.isfinite(fh["posterior/jump"][()]))


def test_pt_metric_resume_after_sigterm_equals_an_uninterrupted_run(tmp_path):
    # first checkpoint (scan 16) after the metric's first update (scan 15)
    assert_resume_equals_uninterrupted(write_metric_config(tmp_path, rounds=11, checkpoint_every=16), tmp_path)


def test_pt_auto_cold_steps_run_is_bitwise_identical_for_1_and_3_ranks(tmp_path):
    cfg = write_metric_config(tmp_path, rounds=7, checkpoint_every=0, cold_steps='"auto"')
    outputs = run_at_rank_counts(cfg, tmp_path, "pta", (1, 3))
    with h5py.File(outputs[0], "r") as fh:
        counts = fh["pt/cold_steps"][()]  # per round: 0, then the probe's 4 in round 5, then the choice
        assert counts[:5].tolist() == [0] * 5 and counts[5] == 4 and 0 <= counts[6] <= 4
        assert np.all(fh["pt/cold_tau"][-1] >= 1) and np.all(fh["pt/cold_tau"][4] == 0)  # estimated after round 5


@pytest.mark.parametrize("checkpoint_every", [64, 160])
def test_pt_auto_cold_steps_resume_in_and_after_the_probe_equals_an_uninterrupted_run(tmp_path, checkpoint_every):
    # warm-up rounds 0..6: round 6 (scans 63..126) probes; the first checkpoint is inside it
    # (scan 64: the probe sums travel) or after the count was chosen (scan 160: the count travels)
    cfg = write_metric_config(tmp_path, rounds=8, checkpoint_every=checkpoint_every, cold_steps='"auto"')
    cfg.write_text(cfg.read_text().replace("warmup_rounds = 6\n", "warmup_rounds = 7\n"))
    assert_resume_equals_uninterrupted(cfg, tmp_path)
