"""``python -m jaxseq compare``: a grid of algorithms on one env, each a cell (one program, its
seeds vmapped), the results table, the aggregate report and marl-eval JSON; a folder run into
again reuses its finished cells and resumes an interrupted one."""

import json
from pathlib import Path

import pytest

from jaxseq.cli import main
from jaxseq.configure import make_config
from jaxseq.errors import ConfigError
from jaxseq.experiment import find_cell, split_label, variant_config
from jaxseq.run import train_run
from jaxseq.run_folder import read_jsonl

from support.helpers import tiny

#: tiny()'s config as command-line fields (4 chunks of 2 updates, 2 seeds, evaluations every 2 chunks).
SHAPES = ("num_envs", "rollout_length", "sequence_length", "epochs", "num_minibatches", "hidden_size", "num_layers")
CADENCE = ("updates_per_chunk", "eval_every", "eval_envs", "eval_episodes", "absolute_factor", "checkpoint_every")
TINY = {name: getattr(tiny(), name) for name in SHAPES + CADENCE}
STEPS = tiny().total_steps
#: The second cell with a label of its own (LABEL=VARIANT).
LABELLED = "A2PO greedy=a2po@selection_rule=greedy"


# The two cells are the programs of test_trainer's resume test (MAPPO) and of test_schemes' per-agent
# diagnostics test (A2PO, greedy order): the suite compiles each once.


def _command(folder):
    settings = [f"{name}={value}" for name, value in TINY.items()]
    return ["compare", "--env", "mpe:spread", "--algos", "mappo", LABELLED, "--num-seeds", "2"] + [
        "--total-steps",
        str(STEPS),
        "--set",
        *settings,
        "--out",
        str(folder),
        "--reps",
        "20",
        "--no-progress",
    ]


def test_compare_runs_a_tiny_grid_resumes_an_interrupted_cell_and_reuses_finished_ones(tmp_path, capsys):
    folder = tmp_path / "grid"
    # The A2PO cell was interrupted after 2 of its 4 chunks (its checkpoint kept).
    base = make_config(env="mpe:spread", num_seeds=2, total_steps=STEPS, **TINY)
    a2po = variant_config(base, "a2po@selection_rule=greedy")
    assert a2po.algo == "a2po" and a2po.selection_rule == "greedy"
    interrupted = train_run(a2po, out=folder / "runs", progress=False, max_chunks=2)
    assert [r["chunk"] for r in read_jsonl(interrupted / "metrics.jsonl")] == [1, 2]

    assert main(_command(folder)) == 0
    out = capsys.readouterr().out
    assert f"A2PO greedy: resuming the interrupted cell {interrupted}" in out
    rows = json.loads((folder / "results.json").read_text())
    assert [r["label"] for r in rows] == ["mappo", "A2PO greedy"]
    assert rows[1]["folder"] == str(interrupted)
    for row in rows:  # every cell ran to the end, its seeds in one program
        assert row["num_seeds"] == 2 and row["chunks"] == 4 and row["env_steps"] == STEPS
        chunks = [r["chunk"] for r in read_jsonl(f"{row['folder']}/metrics.jsonl")]
        assert chunks == [1, 2, 3, 4]
    report = json.loads((folder / "report" / "report.json").read_text())
    assert report["seeds_per_task"] == {"mappo": 2, "A2PO greedy": 2}
    assert set(report["probability_of_improvement"]) == {"mappo > A2PO greedy", "A2PO greedy > mappo"}
    final = json.loads((folder / "report-final" / "report.json").read_text())
    assert final["score"] == "the final greedy evaluation" and final["seeds_per_task"] == report["seeds_per_task"]
    marl_eval = json.loads((folder / "report" / "marl_eval.json").read_text())
    algos = marl_eval["mpe"]["spread"]
    assert set(algos) == {"mappo", "A2PO greedy"}
    assert all(set(seeds) == {"seed_0", "seed_1"} for seeds in algos.values())
    assert set(algos["mappo"]["seed_0"]) == {"step_0", "step_1"}  # evaluations after chunks 2 and 4
    table = (folder / "results.md").read_text()
    assert "| mappo |" in table and "| A2PO greedy |" in table
    assert (folder / "curves.png").stat().st_size > 0
    records = read_jsonl(folder / "cells.jsonl")
    assert [r["cell"] for r in records] == ["mappo", "a2po@selection_rule=greedy"]
    assert [r["label"] for r in records] == ["mappo", "A2PO greedy"]
    assert [r["done"] for r in records] == ["trained", "resumed"]
    assert records[1]["run"] == interrupted.name
    assert all(r["command"].startswith("python -m jaxseq compare --env mpe:spread --algos mappo") for r in records)
    assert all(r["machine"]["cpus"] >= 1 and r["wall_seconds"] > 0 for r in records)

    # The same command again: both cells are found by their configs and nothing trains.
    stamps = {row["folder"]: (Path(row["folder"]) / "metrics.jsonl").stat().st_mtime_ns for row in rows}
    assert main(_command(folder)) == 0
    out = capsys.readouterr().out
    assert out.count("reusing the finished cell") == 2 and "MiB per member" not in out
    assert {f: (Path(f) / "metrics.jsonl").stat().st_mtime_ns for f in stamps} == stamps
    assert [r["done"] for r in read_jsonl(folder / "cells.jsonl")[2:]] == ["reused", "reused"]
    assert find_cell(folder / "runs", a2po.replace(seed=1)) is None  # another config is another cell


def test_cell_labels_are_split_from_variants_and_must_differ(tmp_path, capsys):
    assert split_label("mappo") == ("mappo", "mappo")
    assert split_label("a2po@selection_rule=cyclic") == ("a2po@selection_rule=cyclic",) * 2  # no label
    assert split_label("A2PO cyclic=a2po@selection_rule=cyclic") == ("A2PO cyclic", "a2po@selection_rule=cyclic")
    with pytest.raises(ConfigError, match="LABEL=VARIANT"):
        split_label("=mappo")
    # Two cells with one label stop the command before anything trains.
    command = ["compare", "--env", "mpe:spread", "--algos", "X=mappo", "X=happo", "--out", str(tmp_path / "grid")]
    assert main(command) != 0
    assert "algos: two cells are labelled 'X'" in capsys.readouterr().err
    assert not (tmp_path / "grid").exists()
