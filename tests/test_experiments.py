"""The experiment scripts' planning and tables, without training."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from jaxseq.configure import make_config
from jaxseq.metrics import metrics_line, summarize

ROOT = Path(__file__).resolve().parents[1]


def _load(script):
    spec = importlib.util.spec_from_file_location(script.removesuffix(".py"), ROOT / "experiments" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_summary_keeps_the_last_evaluation_of_every_seed():
    config = make_config(env="smax:3m", num_seeds=2)
    m = {"return_mean": np.array([1.0, 2.0]), "win_rate": np.array([0.5, 0.7])}
    evaluation = {"test_return_mean": np.array([3.0, 4.0]), "test_win_rate": np.array([0.25, 1.0])}
    rows = [metrics_line(config, True, 1, m, evaluation, 1.0), metrics_line(config, True, 2, m, None, 1.0)]
    summary = summarize(config, rows)
    assert summary["final_test_win_rate_per_seed"] == [0.25, 1.0]
    assert summary["final_test_return_per_seed"] == [3.0, 4.0]
    no_win = metrics_line(config, False, 1, m, evaluation, 1.0)
    assert (
        "test_win_rate_per_seed" not in no_win and summarize(config, [no_win])["final_test_win_rate_per_seed"] is None
    )


def test_fp3o_grid_dry_run_plans_every_cell(capfd):
    # capfd: importing JaxMARL (validation reads its maps) resets sys.stdout to sys.__stdout__.
    grid = _load("fp3o_smax.py")
    grid.main(["--dry-run", "--quick", "--maps", "3m", "mpe:spread", "--seeds", "4"])
    lines = [line for line in capfd.readouterr().out.splitlines() if "seeds:" in line]
    assert len(lines) == 6 and all(line.endswith("x 4 seeds: fp3o happo mappo ippo") for line in lines)
    assert "smax:3m" in lines[0] and "smax-fast" in lines[0] and "409,600 steps" in lines[0]
    assert "mpe:spread" in lines[5] and "nops" in lines[5] and "mpe-fast" in lines[5]
    grid.main(["--dry-run"])  # the paper presets: Table 2's maps that SMAX has, Tab. 7's steps per mode
    lines = [line for line in capfd.readouterr().out.splitlines() if "seeds:" in line]
    assert len(lines) == 9 and "fp3o-smax-6h_vs_8z-nops" in lines[-1] and "20,000,000 steps x 5 seeds" in lines[-1]
    with pytest.raises(SystemExit, match="no paper preset 'fp3o-smax-3m-fups'"):
        grid.main(["--dry-run", "--maps", "3m"])


def test_fp3o_grid_table_is_shaped_like_seed_002_table_2():
    grid = _load("fp3o_smax.py")
    assert grid.seed_values({"final_test_win_rate_per_seed": [0.5, 1.0]}) == [50.0, 100.0]
    assert grid.seed_values({"final_test_win_rate_per_seed": None, "final_test_return_per_seed": [-20.0]}) == [-20.0]
    results = {
        ("smax:3m", "fp3o", "fups"): [100.0, 50.0, 75.0],
        ("smax:3m", "fp3o", "nops"): [90.0],
        ("mpe:spread", "fp3o", "fups"): [-20.0, -22.0],
    }
    table = grid.grid_table(results, ["smax:3m", "mpe:spread"], ["fp3o", "mappo"], ["fups", "nops"], note="2 seeds")
    lines = table.splitlines()
    assert lines[0] == "| map | algo | metric | FuPS | NoPS |"
    assert lines[2] == "| smax:3m | fp3o | test win % (median ± std) | 75.0 ± 20.4 | 90.0 ± 0.0 |"
    assert lines[3] == "| smax:3m | mappo | test win % (median ± std) | n/a | n/a |"
    assert lines[4] == "| mpe:spread | fp3o | test return (median ± std) | -21.0 ± 1.0 | n/a |"
    assert len(lines) == 8 and lines[-1] == "2 seeds"


def test_the_scripts_sweep_flag_reads_grids_and_names_bad_values(capsys):
    import argparse

    from jaxseq.experiment import add_sweep_flag

    parser = argparse.ArgumentParser(prog="mpe.py")
    add_sweep_flag(parser)
    args = parser.parse_args(["--sweep", "actor_lr=1e-4,3e-4", "--sweep", "clip_eps=0.1"])
    assert args.sweep == [("actor_lr", (1e-4, 3e-4)), ("clip_eps", (0.1,))]
    with pytest.raises(SystemExit):
        parser.parse_args(["--sweep", "actor_lr=fast"])
    assert "argument --sweep: actor_lr: sweep values must be numbers, got 'fast'" in capsys.readouterr().err


def test_mpe_claims_name_only_known_cells_and_print_both_scores():
    claims = _load("mpe_claims.py")
    for name, (labels, pairs) in claims.CLAIMS.items():
        assert set(labels) <= set(claims.CELLS), name
        assert all(x in labels and y in labels for x, y in pairs), name
    agg = {"A": {"IQM": (1.0, 0.5, 1.5)}, "B": {"IQM": (0.0, -0.5, 0.25)}}
    poi = {"A > B": (0.75, 0.55, 0.95)}
    results = {s: {"aggregates": agg, "probability_of_improvement": poi} for s in ("absolute", "final")}
    lines = claims.claim_lines("c", ["A", "B"], [("A", "B")], results)
    assert "| A | 1.00 [0.50, 1.50] | 1.00 [0.50, 1.50] |" in lines
    assert "| A > B | 0.75 [0.55, 0.95] | 0.75 [0.55, 0.95] |" in lines
