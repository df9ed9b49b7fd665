"""Long learning runs (minutes on a CPU), excluded by default: ``pytest -m slow``.

The code they exercise is covered by the fast tests (tests/test_train.py runs every env family,
the GRU, every sharing mode and the MPE learning check); these pin the issue's learning targets.
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


def test_mappo_mpe_spread_4_seeds_2m_steps():
    cfg = make_config("mpe-fast", algo="mappo", num_seeds=4, total_steps=2_000_000)
    _, _, ms = _train(cfg)
    first, last = ms[0]["return_mean"].mean(), ms[-1]["return_mean"].mean()
    assert last > first + 15.0, (first, last)


def test_mappo_smax_3m_reaches_a_greedy_win_rate_of_0_8_within_3m_steps():
    cfg = make_config("smax-fast", algo="mappo", num_seeds=2, total_steps=3_000_000)
    trainer, state, _ = _train(cfg)
    win = jax.device_get(trainer.evaluate(state))["test_win_rate"]
    assert np.mean(win) >= 0.8, win
