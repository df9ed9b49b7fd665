"""MPE experiments: algorithms side by side on a JaxMARL MPE task.

Reads top to bottom: pick the paper's hyper-parameters (A2PO paper App. B.4, Tab. 10) or the fast
CPU preset, build one config, train every algorithm on it with the same seeds, and write one plot,
one results table and the aggregate report (IQM, median, mean with 95% intervals;
`jaxseq.report`) into an experiment folder.

    python experiments/mpe.py                                # MAPPO vs IPPO, mpe:spread, 4 seeds, 2M steps
    python experiments/mpe.py --env 'mpe:spread?n=5' --preset a2po-mpe --algos mappo ippo --steps 5000000
    python experiments/mpe.py --algos a2po a2po@loop_order=agents-outer a2po@selection_rule=cyclic   # ablation variants
    python experiments/mpe.py --algos mappo a2po --sweep actor_lr=3e-4,1e-3   # each algorithm's grid as one program
"""

import argparse

from jaxseq.configure import make_config
from jaxseq.experiment import add_sweep_flag, compare

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--env", default="mpe:spread", help="an MPE env id, e.g. 'mpe:spread?n=5&reward=general'")
parser.add_argument("--algos", nargs="+", default=["mappo", "ippo"])
parser.add_argument("--preset", default="mpe-fast", help="mpe-fast (CPU minutes) or a2po-mpe (A2PO paper Tab. 10)")
parser.add_argument("--seeds", type=int, default=4, help="seeds, vmapped in one program per algorithm")
parser.add_argument("--steps", type=int, default=2_000_000, help="environment steps per seed")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", default="runs/experiments")
add_sweep_flag(parser)
args = parser.parse_args()

# One config for every algorithm: only `algo` differs between the runs.
config = make_config(
    args.preset, env=args.env, num_seeds=args.seeds, total_steps=args.steps, seed=args.seed, sweep=args.sweep
)
folder = compare(config, args.algos, args.out)
print(f"plot, table and report in {folder}")
