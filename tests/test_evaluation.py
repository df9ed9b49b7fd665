"""The evaluation protocol: a fixed number of complete greedy episodes per seed, the absolute
metric at the end of a run, ``jaxseq eval`` (also on another env id) and ``jaxseq render`` on a
saved run, and the marl-eval file a run keeps."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from jaxseq import checkpoint
from jaxseq.cli import main
from jaxseq.errors import ConfigError
from jaxseq.evaluation import evaluate_run, load_policy
from jaxseq.render import NOT_RENDERED, render_run
from jaxseq.rollout import episode_quotas
from jaxseq.run import train_run
from jaxseq.train import make_train

from support.helpers import tiny


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
    """4 chunks, evaluations at chunks 2 and 4, the absolute metric on 2 x 4 episodes per seed, and
    marl_eval.json (test_trainer's resume test compiles the same chunk program)."""
    return train_run(
        tiny(total_steps=4 * 8 * 2 * 4, absolute_factor=2, write_marl_eval=True),
        out=tmp_path_factory.mktemp("run"),
        progress=False,
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


def test_the_run_keeps_marl_eval_json_with_every_logged_evaluation_of_every_seed(finished_run):
    """marl-eval's raw-data layout (Gorsane et al. 2022; the marl_eval package is not installed here):
    {env: {task: {algo: {seed_k: {step_i: {step_count, return: [value]}, absolute_metrics}}}}}."""
    data = json.loads((finished_run / "marl_eval.json").read_text())
    evaluated = [r for r in _rows(finished_run) if r.get("test_return_per_seed")]
    summary = json.loads((finished_run / "summary.json").read_text())
    assert [r["chunk"] for r in evaluated] == [2, 4]
    seeds = data["mpe"]["spread"]["mappo"]
    assert sorted(seeds) == ["seed_0", "seed_1"]
    for s in range(2):
        record = seeds[f"seed_{s}"]
        assert sorted(record) == ["absolute_metrics", "step_0", "step_1"]
        for k, row in enumerate(evaluated):
            assert record[f"step_{k}"] == {"step_count": row["env_steps"], "return": [row["test_return_per_seed"][s]]}
        assert record["absolute_metrics"] == {"return": [summary["absolute_test_return_per_seed"][s]]}


def test_a_restored_state_keeps_its_update_count_so_a_resumed_schedule_continues(finished_run):
    """lr_schedule reads TrainState.update: a checkpoint restores it (chunk 3 = 6 updates per seed)."""
    trainer, chunk, state = load_policy(finished_run, "3")
    assert chunk == 3 and state.update.tolist() == [3 * trainer.config.updates_per_chunk] * 2


def test_eval_on_another_env_id_of_the_same_shapes(finished_run, capsys):
    """MPE's dynamics draw no random numbers, so the 50-step episodes begin as the 25-step ones and
    add 25 rewards < 0: every seed's return is lower."""
    base = evaluate_run(finished_run, "last")
    longer = evaluate_run(finished_run, "last", env="mpe:spread?max_steps=50")
    assert longer["env"] == "mpe:spread?max_steps=50" and longer["trained_env"] == "mpe:spread"
    assert all(a < b for a, b in zip(longer["return"]["per_seed"], base["return"]["per_seed"]))
    assert main(["eval", str(finished_run), "--env", "mpe:spread?n=4"]) == 2
    err = capsys.readouterr().err
    assert "'mpe:spread?n=4' has 4 agents, observation widths [24, 24, 24, 24]" in err
    assert "trained on 'mpe:spread' with 3 agents, observation widths [18, 18, 18], discrete actions [5, 5, 5]" in err
    with pytest.raises(ConfigError, match="'smax:3m' is a smax env; the run was trained on 'mpe:spread' \\(mpe\\)"):
        evaluate_run(finished_run, "last", env="smax:3m")


def test_render_writes_one_frame_per_step_of_the_greedy_episode(finished_run, tmp_path):
    out = tmp_path / "episode.gif"
    result = render_run(finished_run, out, "last", seed_index=1)
    assert result["chunk"] == 4 and result["length"] == 25  # mpe:spread episodes last max_steps = 25 steps
    with Image.open(out) as gif:
        assert gif.n_frames == result["frames"] == result["length"]
        assert gif.size[0] > 100 and gif.size[1] > 100
    assert np.isfinite(result["return"]) and result["return"] < 0  # spread's rewards are negative distances


def _run_folder_of(finished_run, path, **changes):
    """A run folder holding only ``finished_run``'s config with ``changes`` (no checkpoints)."""
    path.mkdir()
    config = {**json.loads((finished_run / "config.json").read_text()), **changes}
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_render_errors_name_what_is_missing_or_cannot_be_drawn(finished_run, tmp_path, capsys, monkeypatch):
    gif = str(tmp_path / "x.gif")
    assert main(["render", str(tmp_path / "nowhere"), "--out", gif]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["render", str(_run_folder_of(finished_run, tmp_path / "empty")), "--out", gif]) == 2
    assert "no best checkpoint" in capsys.readouterr().err
    assert main(["render", str(finished_run), "--out", gif, "--seed-index", "2"]) == 2
    assert "seed_index: must lie in [0, 2)" in capsys.readouterr().err
    for env, words in [
        ("tabular:game", "tabular:game cannot be rendered: the tabular game's state is an index"),
        ("grf:5_vs_5", "grf:5_vs_5 cannot be rendered: gfootball draws only in its own window"),
        ("pz:simple_spread", "pz:simple_spread cannot be rendered: host environments run in worker processes"),
    ]:
        folder = _run_folder_of(finished_run, tmp_path / env.replace(":", "-"), env=env)
        with pytest.raises(ConfigError, match=words):
            render_run(folder, gif)
    assert "write_video" in NOT_RENDERED["grf"]
    # MuJoCo without an OpenGL context: refused before anything loads, naming what to install.
    import mujoco

    def no_gl(*args, **kwargs):
        raise mujoco.FatalError("an OpenGL platform library has not been loaded into this process")

    monkeypatch.setattr(mujoco, "Renderer", no_gl)
    folder = _run_folder_of(finished_run, tmp_path / "mujoco", env="mamujoco:Hopper-3x1")
    with pytest.raises(ConfigError, match="MuJoCo cannot create an OpenGL context") as err:
        render_run(folder, gif)
    for words in ("MUJOCO_GL=egl", "libegl1", "MUJOCO_GL=osmesa", "libosmesa6", "OpenGL platform library"):
        assert words in str(err.value)


MUJOCO_FRAMES = """
import sys
import numpy as np
import mujoco
from jaxseq.render import mujoco_gif

model = mujoco.MjModel.from_xml_string(
    "<mujoco><worldbody><light pos='0 0 3'/><geom type='plane' size='2 2 .1'/>"
    "<body pos='0 0 .5'><joint type='slide' axis='1 0 0'/><geom type='box' size='.1 .1 .1' rgba='1 0 0 1'/>"
    "</body></worldbody></mujoco>"
)
mujoco_gif(model, np.linspace(0.0, 0.6, 7)[:, None], sys.argv[1], dt=0.05)
"""


def test_mujoco_frames_through_egl(tmp_path):
    """mujoco.Renderer off screen (MUJOCO_GL is read when mujoco is imported, hence a subprocess):
    one frame per joint position, each different; skipped where EGL cannot make a context."""
    out = tmp_path / "slide.gif"
    env = {**os.environ, "MUJOCO_GL": "egl"}
    proc = subprocess.run([sys.executable, "-c", MUJOCO_FRAMES, str(out)], env=env, capture_output=True, text=True)
    if proc.returncode and ("OpenGL" in proc.stderr or "EGL" in proc.stderr):
        pytest.skip(f"no EGL context here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as gif:
        frames = []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("RGB"), np.int16))
    assert len(frames) == 7 and frames[0].shape == (240, 320, 3)
    assert all(np.abs(a - b).max() > 0 for a, b in zip(frames, frames[1:]))


def test_reading_a_run_needs_neither_its_devices_nor_an_intact_best(finished_run, tmp_path, capsys, monkeypatch):
    """A run trained on 2 devices is evaluated and rendered on this one; a damaged best falls back to
    the newest intact checkpoint with a one-line warning; output paths are checked before any work."""
    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "devices": 2}))
    best = copy / "checkpoints" / checkpoint.best(copy)["folder"]
    for f in best.rglob("*"):
        if f.is_file():
            f.write_bytes(f.read_bytes()[:3])
    assert main(["eval", str(copy), "--json", str(tmp_path / "eval.json")]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(f"jaxseq: warning: the best checkpoint {best} is unreadable")
    assert captured.err.count("\n") == 1 and "checkpoint best (chunk 4)" in captured.out
    assert json.loads((tmp_path / "eval.json").read_text())["chunk"] == 4
    assert main(["render", str(copy), "--checkpoint", "last", "--out", str(tmp_path / "e.gif")]) == 0
    assert (tmp_path / "e.gif").stat().st_size > 0

    missing = tmp_path / "missing"
    for command in ("eval", "render"):
        assert main([command, str(missing)]) == 2
        assert capsys.readouterr().err == f"jaxseq: error: run_dir: {missing} is not a run folder (no config.json)\n"
    import jaxseq.evaluation

    monkeypatch.setattr(jaxseq.evaluation, "evaluate_run", lambda *a: pytest.fail("evaluated before the check"))
    monkeypatch.setattr(jaxseq.evaluation, "load_policy", lambda *a: pytest.fail("loaded before the check"))
    for argv, field in [
        (["eval", str(copy), "--json", str(missing / "r.json")], "json"),
        (["render", str(copy), "--out", str(missing / "e.gif")], "out"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        words = f"{field}: the folder {missing} does not exist; create it first or give another path"
        assert err == f"jaxseq: error: {words}\n"
