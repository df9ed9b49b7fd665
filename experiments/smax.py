"""SMAX experiments: algorithms side by side on a JaxMARL SMAX map, against the heuristic enemy.

Reads top to bottom: pick the paper's SMAC hyper-parameters (A2PO paper App. B.4, Tab. 7, GRU
policies) or the fast CPU preset, build one config, train every algorithm with the same seeds,
and write one plot (return and win rate), one results table and the aggregate report (IQM,
median, mean and optimality gap of the win rates with 95% intervals; `jaxseq.report`) into an experiment folder.

    python experiments/smax.py                                   # MAPPO vs IPPO on smax:3m, 2 seeds, 3M steps
    python experiments/smax.py --env smax:2s3z --preset a2po-smax --steps 10000000
"""

import argparse

from jaxseq.configure import make_config
from jaxseq.experiment import add_sweep_flag, compare

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--env", default="smax:3m", help="a SMAX env id (see `python -m jaxseq envs`)")
parser.add_argument("--algos", nargs="+", default=["mappo", "ippo"])
parser.add_argument("--preset", default="smax-fast", help="smax-fast (CPU) or a2po-smax (A2PO paper Tab. 7)")
parser.add_argument("--seeds", type=int, default=2, help="seeds, vmapped in one program per algorithm")
parser.add_argument("--steps", type=int, default=3_000_000, help="environment steps per seed")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", default="runs/experiments")
add_sweep_flag(parser)
args = parser.parse_args()

# One config for every algorithm; greedy evaluation every 2 chunks gives the test win-rate curve.
config = make_config(
    args.preset,
    env=args.env,
    num_seeds=args.seeds,
    total_steps=args.steps,
    seed=args.seed,
    sweep=args.sweep,
    eval_every=2,
)
folder = compare(config, args.algos, args.out)
print(f"plot, table and report in {folder}")
