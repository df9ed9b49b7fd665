"""The papers' claims on one MPE evidence folder: one aggregate report per claim, over that claim's
cells, with short labels (docs/results.md reads them).

The cells are the runs of `python -m jaxseq compare` into FOLDER with this file's `BASE` settings
(the command is in FOLDER/invocations.jsonl); each cell is found by its exact config
(`jaxseq.experiment.find_cell`), so a claim is reported only when all its cells have finished.
For every claim it writes FOLDER/claims/<claim>/absolute/ (each seed scored by its absolute
metric) and .../final/ (by its final greedy evaluation), and prints the IQM with its 95%
interval per cell and the probability of improvement of the pairs the paper compares.

    python experiments/mpe_claims.py experiments/results/mpe-spread-n3
    python experiments/mpe_claims.py experiments/results/mpe-spread-n5 --env 'mpe:spread?n=5'
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxseq.configure import make_config
from jaxseq.experiment import find_cell, finished, variant_config
from jaxseq.report import report

#: The grid's settings besides the env (docs/results.md, "Protocol").
BASE = dict(num_seeds=10, total_steps=2_000_000)
#: The papers' loop for A2PO and OPSPO under parameter sharing: Alg. 2, the critic refit per agent.
ALG2 = "@loop_order=epochs-outer@critic_fit=per-unit"
CELLS = {
    "MAPPO": "mappo",
    "HAPPO": "happo",
    "HAPPO w/ PreOPC": "happo_preopc",
    "A2PO": "a2po" + ALG2,
    "A2PO cyclic": "a2po" + ALG2 + "@selection_rule=cyclic",
    "A2PO random": "a2po" + ALG2 + "@selection_rule=random",
    "OPSPO": "opspo" + ALG2,
    "OPSPO w/o AEC": "opspo" + ALG2 + "@opspo_aec=false",
    "OPSPO w/o SDC": "opspo" + ALG2 + "@opspo_sdc=false",
    "OPSPO w/o CRC": "opspo" + ALG2 + "@opspo_crc=false",
    "FP3O": "fp3o",
}
#: claim -> (its cells, the ordered pairs (X, Y) whose P(X > Y) the claim is about).
CLAIMS = {
    "a2po-vs-baselines": (["A2PO", "MAPPO", "HAPPO"], [("A2PO", "MAPPO"), ("A2PO", "HAPPO")]),
    "preopc": (
        ["HAPPO w/ PreOPC", "HAPPO", "A2PO"],
        [("HAPPO w/ PreOPC", "HAPPO"), ("A2PO", "HAPPO w/ PreOPC")],
    ),
    "selection-rule": (["A2PO", "A2PO cyclic", "A2PO random"], [("A2PO", "A2PO cyclic"), ("A2PO", "A2PO random")]),
    "opspo-vs-baselines": (
        ["OPSPO", "A2PO", "HAPPO", "MAPPO"],
        [("OPSPO", "A2PO"), ("OPSPO", "HAPPO"), ("OPSPO", "MAPPO")],
    ),
    "opspo-ablation": (
        ["OPSPO", "OPSPO w/o AEC", "OPSPO w/o SDC", "OPSPO w/o CRC"],
        [("OPSPO", "OPSPO w/o AEC"), ("OPSPO", "OPSPO w/o SDC"), ("OPSPO", "OPSPO w/o CRC")],
    ),
    "fp3o-vs-baselines": (["FP3O", "HAPPO", "MAPPO"], [("FP3O", "HAPPO"), ("FP3O", "MAPPO")]),
}


def finished_cells(folder: Path, env: str) -> dict[str, Path]:
    """{label: run folder} of the cells of :data:`CELLS` that ran all their chunks in ``folder``."""
    base = make_config("mpe-fast", env=env, **BASE)
    cells = {}
    for label, spec in CELLS.items():
        config = variant_config(base, spec)
        run = find_cell(folder / "runs", config)
        if run is not None and finished(run, config):
            cells[label] = run
    return cells


def claim_lines(name: str, labels: list[str], pairs, results: dict[str, dict]) -> list[str]:
    """The printed summary of one claim: IQM [95% interval] per cell under both scores, then P(X > Y)."""
    lines = [f"## {name}", "", "| cell | IQM, absolute metric | IQM, final greedy |", "|---|---|---|"]
    for label in labels:
        cells = [results[s]["aggregates"][label]["IQM"] for s in ("absolute", "final")]
        lines.append(f"| {label} | " + " | ".join(f"{p:.2f} [{lo:.2f}, {hi:.2f}]" for p, lo, hi in cells) + " |")
    lines += ["", "| P(X > Y) | absolute metric | final greedy |", "|---|---|---|"]
    for x, y in pairs:
        cells = [results[s]["probability_of_improvement"][f"{x} > {y}"] for s in ("absolute", "final")]
        lines.append(f"| {x} > {y} | " + " | ".join(f"{p:.2f} [{lo:.2f}, {hi:.2f}]" for p, lo, hi in cells) + " |")
    return lines + [""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="the compare folder of one MPE task")
    parser.add_argument("--env", default="mpe:spread", help="the task's env id, as given to compare")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    args = parser.parse_args(argv)
    cells = finished_cells(args.folder, args.env)
    lines = [f"# Claims on {args.env} ({len(cells)} finished cells: {', '.join(cells)})", ""]
    for name, (labels, pairs) in CLAIMS.items():
        missing = [label for label in labels if label not in cells]
        if missing:
            lines += [f"## {name}", "", f"not reported: no finished cell for {', '.join(missing)}", ""]
            continue
        folders = [str(cells[label]) for label in labels]
        out = args.folder / "claims" / name
        results = {s: report(folders, out / s, labels, args.reps, score=s) for s in ("absolute", "final")}
        lines += claim_lines(name, labels, pairs, results)
    text = "\n".join(lines)
    (args.folder / "claims").mkdir(exist_ok=True)
    (args.folder / "claims" / "README.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
