"""FP3O against HAPPO, MAPPO and IPPO under the three parameter-sharing modes (FP3O paper, Table 2).

Reads top to bottom: plan one config per (map, sharing mode) cell, from the paper's presets
(FP3O paper Tab. 6-7, `fp3o-smax-<map>-<sharing>`), one preset for every cell (--preset), or the
fast CPU presets (--quick); train the four algorithms on each cell with the same seeds
(`jaxseq.experiment.compare`: one plot and results table per cell); then write one table shaped
like Table 2: rows map and algorithm, columns sharing modes, cells the final greedy test win rate
in % (on MPE, which has no win, the final greedy test return) as median +/- std over seeds (the
paper: 32 test episodes, 5 seeds, the median win rate of Yu et al. 2021; App. D); and end with the
aggregate report over every run of the grid (`jaxseq.report`, each algorithm x sharing mode one
entry, win rates on their own [0, 1] scale, so the optimality gap is reported) in `<out>/fp3o-grid-*/report/`.

    python experiments/fp3o_smax.py                                    # Table 2's SMAX maps, paper presets
    python experiments/fp3o_smax.py --quick --maps 3m mpe:spread --seeds 4   # CPU-sized grid
    python experiments/fp3o_smax.py --maps 5m_vs_6m --seeds 2 --dry-run      # print the plan only
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from jaxseq.config import Config
from jaxseq.configure import make_config, validate
from jaxseq.presets import PRESETS

ALGOS = ("fp3o", "happo", "mappo", "ippo")
SHARINGS = ("fups", "paps", "nops")
SHARING_NAMES = {"fups": "FuPS", "paps": "PaPS", "nops": "NoPS"}  # the paper's column titles
#: Table 2's maps that JaxMARL SMAX has (bane_vs_bane, 2c_vs_64zg and corridor it lacks).
PAPER_MAPS = ("3s5z", "5m_vs_6m", "6h_vs_8z")
#: --quick: the CPU preset and the default environment steps per seed of each env family.
QUICK = {"smax": ("smax-fast", 400_000), "mpe": ("mpe-fast", 500_000)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--maps",
        nargs="+",
        default=None,
        help="SMAX map names (3m, 5m_vs_6m) or env ids (mpe:spread); default: Table 2's SMAX maps, or 3m with --quick",
    )
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), help="algorithms or ALGO@FIELD=VALUE variants")
    parser.add_argument("--sharing", nargs="+", default=list(SHARINGS), choices=SHARINGS)
    parser.add_argument(
        "--preset",
        default=None,
        help="one preset for every cell (env and sharing set per cell); default: fp3o-smax-<map>-<sharing>",
    )
    parser.add_argument("--quick", action="store_true", help="smax-fast / mpe-fast presets and small step counts")
    parser.add_argument("--seeds", type=int, default=5, help="seeds, vmapped in one program per run (paper: 5)")
    parser.add_argument("--steps", type=int, default=None, help="environment steps per seed (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/experiments")
    parser.add_argument("--dry-run", action="store_true", help="print the planned grid and exit")
    args = parser.parse_args(argv)
    if args.quick and args.preset:
        parser.error("--quick and --preset exclude each other")
    if args.maps is None:
        args.maps = ["3m"] if args.quick else list(PAPER_MAPS)
    return args


def env_id(name: str) -> str:
    """``"3m"`` -> ``"smax:3m"``; a full env id (``"mpe:spread"``) stays as it is."""
    return name if ":" in name else f"smax:{name}"


def cell_config(env: str, sharing: str, args: argparse.Namespace) -> tuple[str, Config]:
    """The preset name and the config of one (env, sharing) cell of the grid."""
    steps = args.steps
    if args.quick:
        if env.split(":")[0] not in QUICK:
            raise SystemExit(f"--quick has presets for {sorted(QUICK)} envs only, not {env!r}")
        preset, quick_steps = QUICK[env.split(":")[0]]
        steps = steps or quick_steps
    elif args.preset:
        preset = args.preset
    else:
        preset = f"fp3o-smax-{env.removeprefix('smax:')}-{sharing}"
        if preset not in PRESETS:
            have = sorted(k for k in PRESETS if k.startswith("fp3o-smax-"))
            raise SystemExit(f"no paper preset {preset!r} (FP3O paper Tab. 7 in SMAX: {have}); use --quick or --preset")
    overrides = dict(env=env, sharing=sharing, num_seeds=args.seeds, seed=args.seed, eval_every=2)
    if steps:
        overrides["total_steps"] = steps
    return preset, make_config(preset, **overrides)


def env_steps(config: Config) -> int:
    """Environment steps per seed a run makes: whole chunks of updates, so total_steps rounded up."""
    return config.total_updates * config.batch_size


def plan(args: argparse.Namespace) -> dict[tuple[str, str], tuple[str, Config]]:
    """Every (env, sharing) cell -> (preset, config), each algorithm validated before anything trains."""
    from jaxseq.experiment import parse_variant

    cells = {(env_id(m), s): cell_config(env_id(m), s, args) for m in args.maps for s in args.sharing}
    for _, config in cells.values():
        for spec in args.algos:
            validate(config.replace(**parse_variant(spec)))
    return cells


def seed_values(row: dict) -> list[float] | None:
    """One compare results row -> the final greedy test win rate per seed in %, or, without wins
    (MPE), the final greedy test return per seed; None where the run never evaluated."""
    if row.get("final_test_win_rate_per_seed") is not None:
        return [100.0 * v for v in row["final_test_win_rate_per_seed"]]
    return row.get("final_test_return_per_seed")


def cell_text(values: list[float] | None) -> str:
    """Median +/- std over seeds (population std, as the run metrics), or n/a."""
    if not values:
        return "n/a"
    return f"{np.median(values):.1f} ± {np.std(values):.1f}"


def grid_table(
    results: dict[tuple[str, str, str], list[float] | None],
    envs: list[str],
    algos: list[str],
    sharings: list[str],
    note: str = "",
) -> str:
    """The Table 2-shaped markdown table from ``results[(env, algo, sharing)]`` (values per seed)."""
    lines = [
        "| map | algo | metric | " + " | ".join(SHARING_NAMES[s] for s in sharings) + " |",
        "|---|---|---|" + "---|" * len(sharings),
    ]
    for env in envs:
        metric = "test win % (median ± std)" if env.startswith("smax:") else "test return (median ± std)"
        for algo in algos:
            cells = [cell_text(results.get((env, algo, s))) for s in sharings]
            lines.append(f"| {env} | {algo} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + (f"\n{note}\n" if note else "")


def main(argv: list[str] | None = None) -> None:
    """Plan the grid, train every cell (unless --dry-run), write and print the table."""
    args = parse_args(argv)
    cells = plan(args)
    for (env, sharing), (preset, config) in cells.items():
        print(
            f"{env:<20} {sharing:<5} preset {preset:<26} {env_steps(config):>11,} steps x {config.num_seeds} seeds: "
            f"{' '.join(args.algos)}"
        )
    if args.dry_run:
        return
    from jaxseq.experiment import compare
    from jaxseq.report import format_report, report

    folder = Path(args.out) / f"fp3o-grid-{time.strftime('%Y%m%d-%H%M%S')}"
    results, runs = {}, {}
    for (env, sharing), (_, config) in cells.items():
        cell_folder = compare(config, args.algos, folder / sharing)
        for row in json.loads((cell_folder / "results.json").read_text()):
            results[(env, row["label"], sharing)] = seed_values(row)
            runs[row["folder"]] = f"{row['label']} {SHARING_NAMES[sharing]}"
    presets = "; ".join(f"{env} {s}: {p}, {env_steps(c):,} env steps" for (env, s), (p, c) in cells.items())
    table = grid_table(
        results,
        list(dict.fromkeys(env for env, _ in cells)),
        args.algos,
        args.sharing,
        note=f"{args.seeds} seeds per cell; {presets}",
    )
    (folder / "table.md").write_text(table)
    print(table)
    print(format_report(report(list(runs), folder / "report", list(runs.values()))))
    print(f"table, report, plots and run folders in {folder}")


if __name__ == "__main__":
    main()
