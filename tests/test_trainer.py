"""The compiled trainer and its run loop: one compilation, determinism, the metrics contract, the
run folder, resume and Ctrl-C, learning (``jaxseq.train``, ``jaxseq.run``). What each algorithm's
update does is ``test_schemes.py``."""

import json

import jax
import numpy as np
import pytest

import jaxseq.run as run_mod
from jaxseq.configure import make_config
from jaxseq.errors import ConfigError
from jaxseq.metrics import METRIC_KEYS
from jaxseq.run import train_run
from jaxseq.train import make_train

from support.helpers import one_update, run_chunks, tiny

_NON_DETERMINISTIC = {"sps", "wall_seconds"}


def test_same_key_gives_identical_metrics_and_seeds_differ():
    cfg = tiny()
    runs = []
    for _ in range(2):
        trainer = make_train(cfg)
        _, ms = run_chunks(trainer, trainer.init(jax.random.PRNGKey(7)), 2)
        runs.append(ms)
    for a, b in zip(*runs):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert runs[0][1]["loss_critic"][0] != runs[0][1]["loss_critic"][1]  # two seeds, two different runs


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(dict(algo="ippo", sharing="nops"), marks=pytest.mark.slow),  # golden: IPPO NoPS GRU
        dict(algo="mappo", network="gru", sharing="paps"),
        dict(env="mpe:speaker_listener", sharing="nops", value_norm=False, huber_delta=0.0, value_clip=0.0),
        # -m slow (29 s): SMAX is in the default suite through the dead-agent conformance case
        pytest.param(dict(env="smax:3m", network="gru", sharing="paps"), marks=pytest.mark.slow),
        dict(env="tabular:game?seed=1&states=4&agents=3&actions=3&max_steps=16", algo="a2po", num_seeds=1),
        # Gaussian, greedy = mean; -m slow: the golden test pins A2PO PaPS continuous
        pytest.param(
            dict(env="mpe:spread?actions=continuous", algo="a2po", sharing="paps", num_seeds=1), marks=pytest.mark.slow
        ),
    ],
)
def test_variants_compile_once_and_report_finite_metrics(overrides):
    trainer = make_train(tiny(**overrides))
    state, (*_, m) = run_chunks(trainer, trainer.init(jax.random.PRNGKey(0)), 3)
    assert trainer.trace_counter[0] == 1  # the state a chunk returns has the types it was given
    for k in ("loss_actor", "loss_critic", "entropy", "clip_frac", "approx_kl"):
        assert np.all(np.isfinite(m[k])), k
    ev = jax.device_get(trainer.evaluate(state))
    assert np.all(np.isfinite(ev["test_return_mean"]))
    assert 0.0 <= float(ev["test_win_rate"].min()) <= 1.0


def test_whole_run_as_one_program_vmaps_seeds():
    cfg = tiny(num_seeds=3)
    state, metrics = make_train(cfg)(jax.random.PRNGKey(0))
    assert metrics["loss_actor"].shape == (cfg.num_chunks, 3)
    assert int(state.update[0]) == cfg.num_chunks * cfg.updates_per_chunk


def test_zero_learning_rate_leaves_parameters_unchanged():
    before, _, after = one_update(tiny(actor_lr=0.0, critic_lr=0.0))
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        np.testing.assert_array_equal(a, b)


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in _NON_DETERMINISTIC} for r in rows]


def test_run_folder_contract_and_resume_reproduces_the_uninterrupted_run(tmp_path):
    cfg = tiny(total_steps=4 * 8 * 2 * 4)  # 4 chunks
    full = train_run(cfg, out=tmp_path / "full", progress=False)
    for name in ("config.json", "metrics.jsonl", "curves.png", "summary.json", "checkpoints/latest.json"):
        assert (full / name).exists(), name
    rows = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == cfg.num_chunks == 4
    for row in rows:
        assert set(METRIC_KEYS) <= set(row)
    assert rows[1]["test_return_mean"] is not None and rows[0]["test_return_mean"] is None
    assert rows[-1]["env_steps"] == 4 * cfg.updates_per_chunk * cfg.batch_size

    part = train_run(cfg, out=tmp_path / "part", progress=False, max_chunks=2)
    assert len((part / "metrics.jsonl").read_text().splitlines()) == 2
    resumed = train_run(resume=part, progress=False)
    assert resumed == part
    again = [json.loads(line) for line in (part / "metrics.jsonl").read_text().splitlines()]
    assert _strip(again) == _strip(rows)


def test_ctrl_c_keeps_finished_chunks_and_resume_completes(tmp_path, monkeypatch):
    cfg = tiny(total_steps=4 * 8 * 2 * 4, checkpoint_every=100)
    full = train_run(cfg, out=tmp_path / "full", progress=False)
    real = run_mod.metrics_line

    def interrupt_on_third(config, has_win, chunk, *a):
        if chunk == 3:
            raise KeyboardInterrupt
        return real(config, has_win, chunk, *a)

    monkeypatch.setattr(run_mod, "metrics_line", interrupt_on_third)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, out=tmp_path / "cut", progress=False)
    monkeypatch.setattr(run_mod, "metrics_line", real)
    (cut,) = (tmp_path / "cut").iterdir()
    assert json.loads((cut / "checkpoints" / "latest.json").read_text()) == {"chunk": 2}
    train_run(resume=cut, progress=False)

    def read(d):
        return _strip(json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines())

    assert read(cut) == read(full)


def test_wandb_missing_gives_a_clear_error(tmp_path):
    try:
        import wandb  # noqa: F401

        pytest.skip("wandb is installed")
    except ImportError:
        pass
    with pytest.raises(ConfigError, match="wandb is not installed"):
        train_run(tiny(), out=tmp_path, progress=False, use_wandb=True)


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["mappo", "a2po"])
def test_learns_mpe_spread_in_a_minute(algo):
    """mpe:spread, 2 seeds, 160k steps: the return rises well above a random policy's. About a
    minute each on 2 cores (100 s beside another test worker), so both run with -m slow for the
    suite's time budget; every piece of their training program is in the default suite's tests."""
    cfg = make_config("mpe-fast", algo=algo, total_steps=160_000, num_seeds=2, updates_per_chunk=10)
    trainer = make_train(cfg)
    state, ms = run_chunks(trainer, trainer.init(jax.random.PRNGKey(0)), cfg.num_chunks)
    first, last = ms[0]["return_mean"], ms[-1]["return_mean"]
    # A near-uniform initial policy scores about -48 per 25-step episode here; learning lifts it by > 5 in each seed.
    assert np.all(last - first > 5.0), (first, last)
