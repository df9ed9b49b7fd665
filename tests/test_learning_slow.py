"""A long learning run (minutes on a CPU), excluded from the README's command: ``pytest -m slow``
(CI's slow step runs it).

The code it exercises is covered by the fast tests (tests/test_trainer.py and test_schemes.py run every env family,
the GRU, every sharing mode and the MPE learning check); this one checks that MAPPO learns SMAX.
"""

import jax
import numpy as np
import pytest

from jaxseq.configure import make_config
from jaxseq.train import make_train

pytestmark = pytest.mark.slow


def _train(cfg):
    trainer = make_train(cfg)
    state = trainer.init(jax.random.PRNGKey(cfg.seed))
    metrics = []
    for _ in range(cfg.num_chunks):
        state, m = trainer.chunk(state)
        metrics.append(jax.device_get(m))
    return trainer, state, metrics


# Sized for CI's slow step (2 cores, beside the other slow tests); calibrated 2026-12-06 on this
# machine, quiet: MAPPO smax-fast, 2 seeds: training win rate 0.01 at the first chunk, 0.73 at 0.61M
# steps (0.68 at 0.33M, 0.74 at 0.82M), greedy test 0.81-0.88 from 0.33M to 0.66M (64 greedy
# episodes are noisy: 0.72-0.88 up to 1.2M), 87 s to 0.61M; at 0.8M it took 316-453 s of CI's
# slow step beside the other worker. The 3M-step budget of the issue's
# target (greedy 0.8) took over 20 minutes there; its result is in experiments/results/learning.md.
# MPE's learning check is tests/test_trainer.py::test_learns_mpe_spread_in_a_minute (MAPPO and A2PO,
# every seed up by more than 5 in 160k steps); a 4-seed 1M-step MAPPO run (+16.1 measured) took
# 578 s of the slow step for no more than that, and was dropped.


def test_mappo_smax_3m_wins_most_episodes_within_600k_steps():
    cfg = make_config("smax-fast", algo="mappo", num_seeds=2, total_steps=600_000)
    trainer, state, ms = _train(cfg)
    assert ms[0]["win_rate"].mean() < 0.2 and ms[-1]["win_rate"].mean() >= 0.6, (ms[0]["win_rate"], ms[-1]["win_rate"])
    win = jax.device_get(trainer.evaluate(state))["test_win_rate"]
    assert np.mean(win) >= 0.6, win
