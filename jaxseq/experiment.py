"""Side-by-side comparisons: several algorithms on one env, each a full run folder, then one plot
and one table of the final returns (mean +/- std over seeds) in the experiment folder, and the
aggregate report over the runs (:func:`jaxseq.report.report`: IQM, median, mean with 95%
intervals, and the optimality gap where the scores have a known range) in its ``report/``; with a
sweep, one line, one curve and one report entry per algorithm and grid point."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Sequence

from jaxseq import checkpoint, sweep
from jaxseq.config import Config, parse_value
from jaxseq.configure import for_algorithm, validate
from jaxseq.errors import ConfigError
from jaxseq.paths import check_output_folder, env_slug
from jaxseq.plotting import plot_runs
from jaxseq.report import format_report, report
from jaxseq.run import train_run
from jaxseq.run_folder import load_config, read_jsonl


def parse_variant(spec: str) -> dict:
    """``"a2po"`` or an ablation variant ``"a2po@loop_order=agents-outer@selection_rule=cyclic"`` ->
    the config overrides it names (``algo`` included). Bad fields or values raise ConfigError."""
    algo, *settings = spec.split("@")
    overrides = {"algo": algo}
    for item in settings:
        name, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(name, f"variant {spec!r}: expected FIELD=VALUE after '@', got {item!r}")
        overrides[name] = parse_value(name, text)
    return overrides


def split_label(entry: str) -> tuple[str, str]:
    """A ``--algos`` entry -> (label, variant): ``"A2PO cyclic=a2po@selection_rule=cyclic"`` names
    its cell ``A2PO cyclic`` in tables, curves and reports; an entry without a label (no ``=``
    before its first ``@``) is its own label."""
    head, sep, rest = entry.partition("=")
    if sep and "@" not in head:
        if not head.strip() or not rest:
            raise ConfigError("algos", f"{entry!r}: expected LABEL=VARIANT with both parts, e.g. 'A2PO=a2po'")
        return head.strip(), rest
    return entry, entry


def cell_variants(entries: Sequence[str]) -> dict[str, str]:
    """{label: variant} of ``--algos`` entries (:func:`split_label`); a label given twice raises."""
    cells: dict[str, str] = {}
    for label, spec in map(split_label, entries):
        if label in cells:
            raise ConfigError("algos", f"two cells are labelled {label!r}; each cell needs its own label")
        cells[label] = spec
    return cells


def add_sweep_flag(parser: argparse.ArgumentParser) -> None:
    """An experiment script's ``--sweep FIELD=V1,V2`` (repeatable): ``args.sweep`` is then a config's
    ``sweep``, run by every algorithm as one program."""
    parser.add_argument(
        "--sweep",
        action="append",
        type=_sweep_arg,
        default=[],
        metavar="FIELD=V1,V2",
        help="a hyper-parameter grid run as one program per algorithm; repeatable (grid = product)",
    )


def _sweep_arg(text: str) -> tuple[str, tuple[float, ...]]:
    try:
        return sweep.parse_arg(text)
    except ConfigError as err:  # argparse shows its message, not "invalid value"
        raise argparse.ArgumentTypeError(str(err)) from None


def variant_config(base: Config, spec: str) -> Config:
    """``base`` with the variant ``spec``'s overrides; the base's algorithm-specific fields (a paper
    preset's ``loop_order``, say) apply to the variants whose algorithm reads them."""
    overrides = parse_variant(spec)
    return for_algorithm(base.replace(**overrides), keep=set(overrides))


def compare(
    base: Config,
    algos: Sequence[str],
    out: Path | str,
    progress: bool = True,
    reps: int = 2000,
    command: str | None = None,
) -> Path:
    """Train ``base`` once per algorithm or variant (see :func:`parse_variant`; optionally labelled
    ``LABEL=VARIANT``, :func:`split_label`; same seeds, same everything else) in the experiment
    folder ``out`` (made if missing), each variant one run folder under ``out/runs/`` (its seeds,
    or its sweep's grid x seeds, vmapped in one program: a *cell*).
    The folder can be run into again with the same command: a cell whose run folder ran all its
    chunks is reused, one that was interrupted is resumed from its newest checkpoint, so
    a long grid loses no finished work and a later session carries it on.

    Writes ``curves.png``, ``results.md``, ``results.json`` (each row with its result ``folder``)
    and, when the runs evaluate (``eval_every`` > 0), the aggregate reports there (``reps`` bootstrap
    resamples): ``report/`` scores each seed by its absolute metric where the runs have one (with
    ``report/marl_eval.json`` in marl-eval's layout), ``report-final/`` by its final greedy
    evaluation; printing the table and the reports.
    As each cell is done a line goes to ``cells.jsonl``: the cell, its run folder, whether it was
    trained, resumed or reused, ``command`` as given, start and end time, wall seconds and the
    machine, so a grid that stops half-way still says how its finished cells were made. Returns ``out``.
    """
    variants = cell_variants(algos)
    configs = {label: variant_config(base, spec) for label, spec in variants.items()}
    for config in configs.values():
        validate(config)  # every variant, before the first one trains
    folder = Path(out)
    check_output_folder(folder, "out")
    runs, rows = {}, []
    for cell, config in configs.items():
        started = time.time()
        run_dir, how = _train_cell(cell, config, folder / "runs", progress)
        _record_cell(folder, command, cell, variants[cell], how, started, run_dir)
        for label, result in _results(cell, config, run_dir):
            runs[label] = read_jsonl(result / "metrics.jsonl")
            rows.append({"label": label, "folder": str(result), **json.loads((result / "summary.json").read_text())})
    plot_runs(runs, folder / "curves.png", title=f"{base.env}, {base.num_seeds} seeds")
    (folder / "results.json").write_text(json.dumps(rows, indent=2))
    (folder / "results.md").write_text(results_table(base, rows))
    print(results_table(base, rows))
    if base.eval_every:
        folders, labels = [r["folder"] for r in rows], [r["label"] for r in rows]
        marl_eval = folder / "report" / "marl_eval.json"
        print(format_report(report(folders, folder / "report", labels, reps, marl_eval=marl_eval)))
        print(format_report(report(folders, folder / "report-final", labels, reps, score="final")))
    else:
        print("no report: eval_every=0, so the runs have no greedy evaluations to aggregate")
    return folder


def _record_cell(
    folder: Path, command: str | None, label: str, spec: str, how: str, started: float, run_dir: Path
) -> None:
    """Append one cell's line to ``folder/cells.jsonl`` (see :func:`compare`)."""
    import jax

    line = {
        "cell": spec,
        "label": label,
        "run": run_dir.name,
        "done": how,
        "command": command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "wall_seconds": round(time.time() - started, 1),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "devices": [d.device_kind for d in jax.devices()],
            "jax": jax.__version__,
        },
    }
    with open(folder / "cells.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


def default_folder(base: Config, parent: Path | str = "runs") -> Path:
    """``parent/compare-<env>-<date-time>``: where a comparison goes when no folder is named."""
    return Path(parent) / f"compare-{env_slug(base.env)}-{time.strftime('%Y%m%d-%H%M%S')}"


def find_cell(runs_dir: Path, config: Config) -> Path | None:
    """The run folder under ``runs_dir`` that was started with exactly ``config`` (the newest if
    several; a saved config is read with renamed fields under their new names), or None."""
    matches = [d.parent for d in sorted(runs_dir.glob("*/config.json")) if load_config(d.parent, "out") == config]
    return matches[-1] if matches else None


def _train_cell(label: str, config: Config, runs_dir: Path, progress: bool) -> tuple[Path, str]:
    """(finished run folder, what was done) for one cell: ``reused`` if it ran all its chunks before,
    ``resumed`` if it was interrupted (from its newest checkpoint; without one it starts over in its
    own folder), else ``trained``."""
    cell = find_cell(runs_dir, config) if runs_dir.is_dir() else None
    if cell is None:
        return train_run(config, out=runs_dir, progress=progress), "trained"
    if finished(cell, config):
        print(f"{label}: reusing the finished cell {cell}", flush=True)
        return cell, "reused"
    print(f"{label}: resuming the interrupted cell {cell}", flush=True)
    return train_run(resume=cell, start_over=checkpoint.latest_chunk(cell) is None, progress=progress), "resumed"


def finished(run_dir: Path, config: Config) -> bool:
    """Whether the run folder ran all of ``config``'s chunks (a run writes its summary at any exit)."""
    summary = run_dir / "summary.json"
    return summary.is_file() and json.loads(summary.read_text()).get("chunks") == config.num_chunks


def _results(cell: str, config: Config, run_dir: Path) -> list[tuple[str, Path]]:
    """(label, folder) of each result of one trained cell: the run folder, or with a sweep each
    grid point's stream (``points/NNN``, labelled with its values)."""
    if not config.sweep:
        return [(cell, run_dir)]
    return [(f"{cell} {sweep.label(p)}", run_dir / "points" / f"{i:03d}") for i, p in enumerate(sweep.grid(config))]


def _pm(mean, std) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.3f} +/- {std:.3f}" if std is not None else f"{mean:.3f}"


def results_table(base: Config, rows: list[dict]) -> str:
    lines = [
        f"# {base.env}: {base.num_seeds} seeds, {rows[0]['env_steps']} env steps per seed",
        "",
        "| algo | final train return (mean +/- std over seeds) | final greedy test return | "
        "final test win rate | wall s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        test_ret = "n/a" if r["final_test_return_mean"] is None else f"{r['final_test_return_mean']:.3f}"
        win = "n/a" if r["final_test_win_rate"] is None else f"{r['final_test_win_rate']:.3f}"
        wall = "n/a" if r["wall_seconds"] is None else f"{r['wall_seconds']:.0f}"
        lines.append(
            f"| {r.get('label', r['algo'])} | {_pm(r['final_return_mean'], r['final_return_std'])} | {test_ret} | "
            f"{win} | {wall} |"
        )
    return "\n".join(lines) + "\n"
