"""Hyper-parameter sweeps in one program (one device): a grid equals its separate runs and compiles
once; the run folder's per-point streams and sweep table; refused fields and the memory check."""

import json

import jax
import numpy as np
import pytest

from jaxseq import distributed, sweep
from jaxseq.cli import build_parser, config_from_args
from jaxseq.errors import ConfigError
from jaxseq.evaluation import evaluate_run, format_evaluation
from jaxseq.experiment import compare
from jaxseq.run import train_run
from jaxseq.train import make_train

from support.helpers import tiny

# Two gradient steps per update (on the first the ratio is 1 and no clip binds), and learning rates
# large enough that clip_eps 0.02 binds where 0.3 does not.
SMALL = dict(num_seeds=1, epochs=2, num_minibatches=1)
GRID = {"actor_lr": (3e-3, 3e-2), "clip_eps": (0.02, 0.3)}
KEYS = ("loss_actor", "loss_critic", "entropy", "approx_kl", "return_mean")


def _two_chunks(config):
    """(trainer, final state, {key: [2 chunks, M]})."""
    trainer = make_train(config)
    state = trainer.init(jax.random.PRNGKey(config.seed))
    rows = []
    for _ in range(2):
        state, m = trainer.chunk(state)
        rows.append(jax.device_get(m))
    return trainer, jax.device_get(state), {k: np.stack([r[k] for r in rows]) for k in KEYS}


@pytest.mark.slow  # 38 s: five programs (the sweep and its four runs); CI runs it in its slow step
def test_a_2x2_sweep_equals_its_four_separate_runs_and_compiles_once():
    trainer, state, swept = _two_chunks(tiny(sweep=GRID, **SMALL))
    assert trainer.trace_counter[0] == 1  # two chunks, one program for the four members
    assert trainer.config.num_members == 4
    points = sweep.grid(trainer.config)
    # The last field varies fastest; member g * S + s is seed s of point g.
    assert points == [
        {"actor_lr": 3e-3, "clip_eps": 0.02},
        {"actor_lr": 3e-3, "clip_eps": 0.3},
        {"actor_lr": 3e-2, "clip_eps": 0.02},
        {"actor_lr": 3e-2, "clip_eps": 0.3},
    ]
    np.testing.assert_array_equal(state.hyper["clip_eps"], np.float32([0.02, 0.3, 0.02, 0.3]))
    actor = jax.tree.leaves(state.actor_params)
    for g, point in enumerate(points):
        _, alone_state, alone = _two_chunks(tiny(**SMALL, **point))
        # A swept value is a traced scalar where the separate run folds a constant: XLA may order
        # the float operations differently, so the two agree to float32 rounding, not bit for bit.
        for k in alone:
            np.testing.assert_allclose(swept[k][:, g : g + 1], alone[k], rtol=1e-4, atol=1e-6, err_msg=f"{point} {k}")
        for a, b in zip(actor, jax.tree.leaves(alone_state.actor_params)):
            np.testing.assert_allclose(a[g : g + 1], b, rtol=1e-4, atol=1e-6)
        # The points' values reached the program: every point's policy differs from the first's.
        if g:
            assert max(float(np.abs(x[g] - x[0]).max()) for x in actor) > 1e-4, point


def test_a_sweep_run_folder_has_a_stream_per_point_and_the_sorted_table(tmp_path, capsys):
    config = tiny(sweep={"actor_lr": (5e-4, 3e-3)}, num_seeds=2, epochs=1, num_minibatches=1)
    # Through the experiment scripts' compare(): one run folder, one results line per grid point.
    folder = compare(config, ["mappo"], tmp_path, progress=False, reps=200)
    (run,) = (folder / "runs").iterdir()
    out = capsys.readouterr().out
    assert "MiB per member (4 members per device" in out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows[-1]["return_per_seed"]) == 4  # the whole run's line lists every member
    streams = []
    for i, lr in enumerate((5e-4, 3e-3)):
        point = run / "points" / f"{i:03d}"
        assert json.loads((point / "config.json").read_text())["actor_lr"] == lr
        assert json.loads((point / "config.json").read_text())["sweep"] == []
        point_rows = [json.loads(line) for line in (point / "metrics.jsonl").read_text().splitlines()]
        assert [r["chunk"] for r in point_rows] == [r["chunk"] for r in rows]
        # The point's stream holds its two members of the whole run's line.
        assert point_rows[-1]["return_per_seed"] == rows[-1]["return_per_seed"][2 * i : 2 * i + 2]
        assert point_rows[-1]["test_return_per_seed"] == rows[-1]["test_return_per_seed"][2 * i : 2 * i + 2]
        assert (point / "summary.json").is_file()
        streams.append(point_rows)
    table = json.loads((run / "sweep.json").read_text())
    assert [e["final_mean"] for e in table] == sorted((e["final_mean"] for e in table), reverse=True)
    for e in table:
        finals = streams[e["point"]][-1]["test_return_per_seed"]
        assert e["final_mean"] == pytest.approx(np.mean(finals))
        lo, hi = e["final_ci"]
        assert lo < e["final_mean"] < hi
    assert json.loads((run / "summary.json").read_text())["sweep_best"]["point"] == table[0]["point"]
    assert (run / "sweep.md").read_text().count("| 00") == 2
    assert (run / "curves.png").stat().st_size > 0
    assert "| 000 | actor_lr=0.0005 |" in out and "| 001 | actor_lr=0.003 |" in out  # the table is printed
    results = (folder / "results.md").read_text()
    assert "| mappo actor_lr=0.0005 |" in results and "| mappo actor_lr=0.003 |" in results
    # compare() ends with the aggregate report over the results, one entry per grid point.
    report = json.loads((folder / "report" / "report.json").read_text())
    assert report["seeds_per_task"] == {"mappo actor_lr=0.0005": 2, "mappo actor_lr=0.003": 2}
    assert (folder / "report" / "performance_profile.png").is_file() and "| mappo actor_lr=0.003 | 2 |" in out
    # jaxseq eval of the sweep: each grid point on its own seeds, never pooled.
    result = evaluate_run(run, "last")
    assert [p["label"] for p in result["points"]] == ["actor_lr=0.0005", "actor_lr=0.003"] and "return" not in result
    for i, point in enumerate(result["points"]):
        assert point["return"]["per_seed"] == pytest.approx(rows[-1]["test_return_per_seed"][2 * i : 2 * i + 2])
    assert "2 seeds x 2 grid points\nactor_lr=0.0005:\n  return" in format_evaluation(result)


def test_the_cli_reads_sweeps():
    args = build_parser().parse_args(
        ["train", "--sweep", "actor_lr=1e-4,3e-4", "--sweep", "clip-eps=0.1,0.2", "--num-seeds", "3"]
    )
    config = config_from_args(args)
    assert config.sweep == (("actor_lr", (1e-4, 3e-4)), ("clip_eps", (0.1, 0.2)))
    assert config.num_members == 12
    with pytest.raises(ConfigError, match="sweep: expected FIELD=V1,V2"):
        config_from_args(build_parser().parse_args(["train", "--sweep", "actor_lr"]))
    with pytest.raises(ConfigError, match="actor_lr: sweep values must be numbers"):
        config_from_args(build_parser().parse_args(["train", "--sweep", "actor_lr=fast"]))


@pytest.mark.parametrize("field", ["num_envs", "hidden_size", "network", "algo", "env", "epochs"])
def test_fields_that_change_shapes_or_code_are_refused_with_the_allowed_ones(field):
    with pytest.raises(ConfigError) as err:
        make_train(tiny(sweep={field: (1, 2)}))
    message = str(err.value)
    assert message.startswith(f"{field}: cannot be swept: it changes array shapes or the program's code")
    assert "fields a sweep may vary: actor_lr, critic_lr" in message and "clip_eps" in message


@pytest.mark.parametrize(
    "grid, match",
    [
        ({"actor_lr": ()}, "actor_lr: a swept field needs at least one value"),
        ({"max_grad_norm": (0.0, 0.5)}, "max_grad_norm: values <= 0 switch the code off"),
        ({"actor_lr": (1e-3, -1.0)}, "actor_lr"),  # every grid point is validated as a config
        ({"gamma": (0.99, 1.5)}, "gamma"),
        ([("clip_eps", (0.1,)), ("clip_eps", (0.2,))], "clip_eps: appears twice in the sweep"),
        ("actor_lr", "sweep: expected pairs"),
        ({"nosuch": (1.0,)}, "^nosuch: no such config field; a sweep may vary actor_lr, critic_lr"),
        ({"actor_lr": (1e-3, 3e-3, 1e-3)}, "^actor_lr: the sweep value 0.001 is given twice"),
    ],
)
def test_bad_sweeps_are_refused_before_compiling(grid, match):
    with pytest.raises(ConfigError, match=match):
        make_train(tiny(sweep=grid))


def test_the_memory_check_says_how_many_members_would_fit(tmp_path, monkeypatch):
    mib = 2**20
    line = distributed.check_memory(10 * mib, 4, 100 * mib, "num_seeds")
    assert line == (
        "program memory: 10.0 MiB per device, 2.50 MiB per member (4 members per device; a device holds 100 MiB)"
    )
    with pytest.raises(ConfigError) as err:
        distributed.check_memory(400 * mib, 4, 100 * mib, "sweep")
    assert str(err.value) == (
        "sweep: the program needs 400.0 MiB per device but a device holds 100.0 MiB; "
        "about 1 members per device would fit (members = grid points x seeds)"
    )
    # Through a run: the compiled chunk is measured before any folder is made or chunk runs.
    monkeypatch.setattr(distributed, "device_memory", lambda: 1024)
    with pytest.raises(
        ConfigError,
        match=r"^num_seeds: the program needs .* not even one member fits: lower the env's agent count \(3\)",
    ):
        train_run(tiny(), out=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_members_are_named_by_grid_point_and_seed():
    config = tiny(sweep=GRID, num_seeds=2)
    assert [sweep.member_label(config, m) for m in (0, 5, 7)] == [
        "actor_lr=0.003 clip_eps=0.02 seed 0",
        "actor_lr=0.03 clip_eps=0.02 seed 1",
        "actor_lr=0.03 clip_eps=0.3 seed 1",
    ]
    assert sweep.member_label(tiny(num_seeds=3), 2) == "seed 2"
