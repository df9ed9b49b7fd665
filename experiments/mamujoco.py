"""Multi-agent MuJoCo experiments: algorithms side by side on one robot partition (MJX physics).

Reads top to bottom: pick the fast CPU preset or a paper preset (A2PO paper Tab. 8-9: for A2PO,
``--preset a2po-mamujoco-<task>``), build one config, train every algorithm on it with the same
seeds, and write one plot, one results table and the aggregate report (IQM, median and mean
with 95% intervals; `jaxseq.report`) into an experiment folder.

    python experiments/mamujoco.py                                    # MAPPO vs A2PO, Hopper-3x1, 2 seeds, 1M steps
    python experiments/mamujoco.py --task HalfCheetah-6x1 --algos mappo happo a2po --steps 3000000
    python experiments/mamujoco.py --task 'Humanoid-9|8' --preset a2po-mamujoco-Humanoid-9|8 --seeds 4   # on a GPU
"""

import argparse

from jaxseq.configure import make_config
from jaxseq.experiment import add_sweep_flag, compare

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument(
    "--task", default="Hopper-3x1", help="Robot-partition, e.g. HalfCheetah-6x1 (python -m jaxseq envs)"
)
parser.add_argument("--obsk", type=int, default=1, help="observation neighbourhood (joints within graph distance k)")
parser.add_argument("--algos", nargs="+", default=["mappo", "a2po"])
parser.add_argument("--preset", default="mamujoco-fast", help="mamujoco-fast (CPU) or a paper preset")
parser.add_argument("--seeds", type=int, default=2, help="seeds, vmapped in one program per algorithm")
parser.add_argument("--steps", type=int, default=1_000_000, help="environment steps per seed")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", default="runs/experiments")
add_sweep_flag(parser)
args = parser.parse_args()

# One config for every algorithm: only `algo` differs between the runs.
config = make_config(
    args.preset,
    env=f"mamujoco:{args.task}?obsk={args.obsk}",
    num_seeds=args.seeds,
    total_steps=args.steps,
    seed=args.seed,
    sweep=args.sweep,
)
folder = compare(config, args.algos, args.out)
print(f"plot, table and report in {folder}")
