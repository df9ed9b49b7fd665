"""The evaluation protocol: a fixed number of complete greedy episodes per seed, the absolute
metric at the end of a run, and ``jaxseq eval`` on a saved run."""

import json

import jax
import numpy as np
import pytest

from jaxseq import checkpoint
from jaxseq.cli import main
from jaxseq.errors import ConfigError
from jaxseq.evaluation import evaluate_run
from jaxseq.rollout import episode_quotas
from jaxseq.run import train_run
from jaxseq.train import make_train

from helpers import tiny


def test_episode_quotas_split_the_episodes_as_evenly_as_possible():
    assert episode_quotas(7, 3) == (3, 2, 2)
    assert episode_quotas(32, 32) == (1,) * 32
    assert sum(episode_quotas(320, 32)) == 320


def test_evaluation_counts_exactly_the_requested_complete_episodes():
    """smax:3m episodes end when a side is eliminated, so their lengths vary; 7 episodes from 3
    envs (quotas 3, 2, 2) are all played to their end, none cut short by the scan."""
    trainer = make_train(tiny(env="smax:3m", num_seeds=2, eval_envs=3, eval_episodes=7))
    ev = jax.device_get(trainer.evaluate(trainer.init(jax.random.PRNGKey(0))))
    assert ev["test_episodes"].tolist() == [7, 7]
    lengths = ev["episode_lengths"]
    assert np.isfinite(lengths).sum(axis=1).tolist() == [7, 7]
    played = lengths[np.isfinite(lengths)]
    assert played.min() >= 1 and played.max() <= trainer.env.spec.max_steps and len(np.unique(played)) > 1
    np.testing.assert_allclose(ev["test_return_mean"], np.nanmean(ev["episode_returns"], axis=1), rtol=1e-6)
    np.testing.assert_allclose(ev["test_win_rate"], np.nanmean(ev["episode_wins"], axis=1), rtol=1e-6)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """4 chunks, evaluations at chunks 2 and 4, the absolute metric on 2 x 4 episodes per seed
    (test_train's resume test compiles the same chunk program)."""
    return train_run(
        tiny(total_steps=4 * 8 * 2 * 4, absolute_factor=2), out=tmp_path_factory.mktemp("run"), progress=False
    )


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_eval_of_the_last_checkpoint_reproduces_the_last_logged_evaluation(finished_run, capsys):
    result = evaluate_run(finished_run, "last")
    last = _rows(finished_run)[-1]
    assert result["chunk"] == 4 and result["episodes_per_seed"] == 4
    assert result["return"]["per_seed"] == pytest.approx(last["test_return_per_seed"], rel=1e-6)
    low, high = result["return"]["ci95"]
    assert low <= result["return"]["mean"] <= high
    assert main(["eval", str(finished_run), "--checkpoint", "last"]) == 0
    assert "95% CI" in capsys.readouterr().out


def test_the_absolute_metric_is_the_best_checkpoint_on_ten_times_the_episodes(finished_run):
    summary = json.loads((finished_run / "summary.json").read_text())
    best = checkpoint.best(finished_run)
    assert summary["absolute_checkpoint_chunk"] == best["chunk"] and summary["absolute_episodes_per_seed"] == 8
    again = evaluate_run(finished_run, "best", episodes=8)
    assert again["chunk"] == best["chunk"]
    assert summary["absolute_test_return_mean"] == pytest.approx(again["return"]["mean"], rel=1e-6)


def test_eval_errors_name_what_is_missing(tmp_path, finished_run, capsys):
    assert main(["eval", str(tmp_path / "nowhere")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((finished_run / "config.json").read_text())
    assert main(["eval", str(empty)]) == 2
    assert "no best checkpoint" in capsys.readouterr().err
    assert main(["eval", str(finished_run), "--checkpoint", "1"]) == 2
    assert "no checkpoint of chunk 1" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="expected best, last or a chunk number"):
        evaluate_run(finished_run, "newest")
    assert main(["eval", str(finished_run), "--episodes", "0"]) == 2
