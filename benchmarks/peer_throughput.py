"""Training throughput of JaxMARL's own MAPPO-RNN baselines and of jaxseq's MAPPO on the same settings.

Runs JaxMARL's baseline files (``baselines/MAPPO/mappo_rnn_smax.py`` and ``mappo_rnn_mpe.py``,
unmodified, from a checkout of FLAIROx/JaxMARL given with ``--jaxmarl-src``; their code is never
copied here) with their own YAML configs, only ``TOTAL_TIMESTEPS`` overridden so that a run is
``--updates`` updates, and jaxseq's MAPPO (:func:`profile_iteration.issue_config`, issue 19's
command) on the same map, batch, epochs, minibatches, network width, learning rate and anneal,
gradient clip and entropy coefficient, one after the other in this process: once with jaxseq's
network (MAPPO's reference LayerNorms and value normalisation) and once with JaxMARL's
(:data:`jaxseq.presets.JAXMARL_NETWORK`: dense, GRU, dense, no LayerNorm, plain clipped value
loss), the like-for-like program.

The baseline file is imported as a module and its own ``make_train(config)`` is jitted, compiled
ahead of time and called (its ``main`` needs hydra and wandb and is not run); where ``hydra``,
``wandb`` or ``omegaconf`` are not installed, stand-in modules take their names (a ``hydra.main``
decorator that is never called, a no-op ``wandb.log``, which the file's per-update
``io_callback`` calls). The environments are those of the installed ``jaxmarl`` package, the
one jaxseq runs, not the checkout's. Both programs run under the XLA flags ``import jaxseq`` sets.

Timing: each program is compiled ahead of time, called once to warm up, then called
``--repeats`` times, the two programs alternating; steps/s = NUM_ENVS x NUM_STEPS x updates /
median seconds. The peer's call is its whole ``train(rng)``: network init and env reset (a few
ms) are inside it, as its file is written; jaxseq's call is one chunk of the same updates.

Prints the table and appends it, with device, command, date and load averages, to
``benchmarks/results/peer_throughput.md``.

    python benchmarks/peer_throughput.py --jaxmarl-src ~/src/JaxMARL
    python benchmarks/peer_throughput.py --jaxmarl-src ~/src/JaxMARL --envs smax --updates 4
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
import statistics
import sys
import types
from pathlib import Path

import jax
import yaml

from jaxseq.presets import JAXMARL_NETWORK
from jaxseq.train import make_train

from harness import header, load_average, publish, seconds
from profile_iteration import issue_config

#: Per environment: the baseline file, its config, and jaxseq's env id and overrides for the same
#: settings. JaxMARL's env with ``max_steps=m`` plays m + 1 transitions per episode, so jaxseq's
#: ``max_steps`` is one more than JaxMARL's default (SMAX 100, MPE 25).
PEERS = {
    "smax": {
        "file": "baselines/MAPPO/mappo_rnn_smax.py",
        "config": "baselines/MAPPO/config/mappo_homogenous_rnn_smax.yaml",
        "jaxseq_env": "smax:{map}?max_steps=101",
        "jaxseq": {},
    },
    "mpe": {
        "file": "baselines/MAPPO/mappo_rnn_mpe.py",
        "config": "baselines/MAPPO/config/mappo_homogenous_rnn_mpe.yaml",
        "jaxseq_env": "mpe:spread?n=3&max_steps=26",
        "jaxseq": {},  # its config says ACTIVATION tanh, but its networks call nn.relu
    },
}


class _Loader(yaml.SafeLoader):
    """PyYAML's resolver (YAML 1.1) reads ``2e-3`` and ``1e7`` as strings; hydra reads floats."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(\d+\.\d*|\.\d+|\d+)[eE][-+]?\d+$"), None)


def load_config(path: Path) -> dict:
    with path.open() as f:
        return yaml.load(f, Loader=_Loader)


def _stand_ins() -> None:
    """Modules the baseline imports for its ``main`` only, where they are not installed."""

    def missing(name: str) -> bool:
        return name not in sys.modules and importlib.util.find_spec(name) is None

    if missing("hydra"):
        hydra = types.ModuleType("hydra")
        hydra.main = lambda **kwargs: lambda fn: fn
        sys.modules["hydra"] = hydra
    if missing("wandb"):
        wandb = types.ModuleType("wandb")
        wandb.init = lambda *args, **kwargs: None
        wandb.log = lambda *args, **kwargs: None
        sys.modules["wandb"] = wandb
    if missing("omegaconf"):
        omegaconf = types.ModuleType("omegaconf")
        omegaconf.OmegaConf = type("OmegaConf", (), {"to_container": staticmethod(lambda c, **kw: c)})
        sys.modules["omegaconf"] = omegaconf


def import_baseline(src: Path, name: str):
    path = src / PEERS[name]["file"]
    if not path.is_file():
        raise SystemExit(f"--jaxmarl-src {src}: no {PEERS[name]['file']} (a checkout of FLAIROx/JaxMARL is expected)")
    _stand_ins()
    spec = importlib.util.spec_from_file_location(f"jaxmarl_baseline_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def peer_program(src: Path, name: str, updates: int, map_name: str | None, epochs: int | None = None):
    """(compiled ``train``, its argument, the config as run) of JaxMARL's baseline for ``updates``
    updates (``epochs``: its UPDATE_EPOCHS, where given)."""
    config = load_config(src / PEERS[name]["config"])
    config["TOTAL_TIMESTEPS"] = updates * config["NUM_ENVS"] * config["NUM_STEPS"]
    if epochs is not None:
        config["UPDATE_EPOCHS"] = epochs
    if map_name is not None and "MAP_NAME" in config:
        config["MAP_NAME"] = map_name
    module = import_baseline(src, name)
    train = module.make_train(config)
    if config["NUM_UPDATES"] != updates:
        raise SystemExit(f"{PEERS[name]['file']} counts {config['NUM_UPDATES']} updates, expected {updates}")
    rng = jax.random.PRNGKey(config["SEED"])
    return jax.jit(train).lower(rng).compile(), rng, config


def jaxseq_program(peer: dict, name: str, updates: int, **network):
    """(compiled chunk of ``updates`` updates, its state, the config) of jaxseq's MAPPO on ``peer``'s
    settings, with the ``network`` overrides."""
    env = PEERS[name]["jaxseq_env"].format(map=peer.get("MAP_NAME"))
    cfg = issue_config(
        env,
        peer["NUM_ENVS"],
        peer["NUM_STEPS"],
        updates,
        epochs=peer["UPDATE_EPOCHS"],
        num_minibatches=peer["NUM_MINIBATCHES"],
        hidden_size=peer["GRU_HIDDEN_DIM"],
        actor_lr=float(peer["LR"]),
        critic_lr=float(peer["LR"]),
        lr_schedule="linear" if peer["ANNEAL_LR"] else "constant",
        max_grad_norm=float(peer["MAX_GRAD_NORM"]),
        ent_coef=float(peer["ENT_COEF"]),
        gamma=float(peer["GAMMA"]),
        gae_lambda=float(peer["GAE_LAMBDA"]),
        clip_eps=float(peer["CLIP_EPS"]),
        **PEERS[name]["jaxseq"],
        **network,
    )
    trainer = make_train(cfg)
    state = trainer.init(jax.random.PRNGKey(0))
    return trainer.compile_chunk(state), state, cfg


def jaxseq_command(cfg) -> str:
    fields = (
        "num_envs rollout_length epochs num_minibatches network hidden_size num_layers post_layers sequence_length "
        "actor_lr critic_lr lr_schedule max_grad_norm ent_coef layer_norm value_norm huber_delta eval_every"
    ).split()
    sets = " ".join(f"{k}={getattr(cfg, k)}" for k in fields)
    return f"--env {shlex.quote(cfg.env)} --algo mappo --sharing {cfg.sharing} --set {sets}"


def compare(src: Path, name: str, updates: int, repeats: int, map_name: str | None, rollout_share: bool) -> dict:
    peer, rng, peer_cfg = peer_program(src, name, updates, map_name)
    ours, state, cfg = jaxseq_program(peer_cfg, name, updates)
    like, like_state, like_cfg = jaxseq_program(peer_cfg, name, updates, **JAXMARL_NETWORK)
    calls = {"peer": lambda: peer(rng), "jaxseq": lambda: ours(state), "like": lambda: like(like_state)}
    if rollout_share:  # the peer with one epoch, and jaxseq's rollout alone, ``updates`` times
        peer1, rng1, _ = peer_program(src, name, updates, map_name, epochs=1)
        trainer = make_train(cfg)
        rollouts = jax.jit(
            jax.vmap(lambda s: jax.lax.scan(lambda c, _: (trainer.rollout(c)[0], None), s, None, length=updates)[0])
        )
        calls.update({"peer 1 epoch": lambda: peer1(rng1), "jaxseq rollout": lambda: rollouts(state)})
    load = [load_average()]
    for call in calls.values():  # warm-up
        jax.block_until_ready(call())
    times = {k: [] for k in calls}
    for _ in range(repeats):  # alternating, so a change of load hits both
        for k, call in calls.items():
            times[k].append(seconds(call))
    load.append(load_average())
    steps = peer_cfg["NUM_ENVS"] * peer_cfg["NUM_STEPS"] * updates
    median = {k: statistics.median(v) for k, v in times.items()}
    sps = {k: steps / median[k] for k in ("peer", "jaxseq", "like")}
    share = {}
    if rollout_share:
        # The peer's time is linear in its epochs: t(E) = rollout and GAE + E x epoch, so t(4) and
        # t(1) give the rollout; the init inside its program counts as rollout here.
        epochs = peer_cfg["UPDATE_EPOCHS"]
        epoch = (median["peer"] - median["peer 1 epoch"]) / (epochs - 1)
        share = {"peer": (median["peer 1 epoch"] - epoch) / median["peer"]}
        share["jaxseq"] = median["jaxseq rollout"] / median["jaxseq"]
    return {
        "share": share,
        "name": name,
        "file": PEERS[name]["file"],
        "map": peer_cfg.get("MAP_NAME", peer_cfg.get("ENV_NAME")),
        "env": cfg.env,
        "peer_sps": sps["peer"],
        "jaxseq_sps": sps["jaxseq"],
        "like_sps": sps["like"],
        "command": jaxseq_command(cfg),
        "like_command": jaxseq_command(like_cfg),
        "load": load,
        "batch": f"{peer_cfg['NUM_ENVS']} envs x {peer_cfg['NUM_STEPS']} steps",
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jaxmarl-src", type=Path, help="a checkout of FLAIROx/JaxMARL (required)")
    parser.add_argument("--envs", nargs="+", choices=sorted(PEERS), default=["smax", "mpe"])
    parser.add_argument("--map", default=None, help="SMAX map for both programs (default: the baseline config's)")
    parser.add_argument("--updates", type=int, default=3, help="updates per timed call (and in the run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--rollout-share",
        action="store_true",
        help="also the share of the rollout: jaxseq's rollout timed alone; JaxMARL's from its file run "
        "with UPDATE_EPOCHS=1 as well (time linear in the epochs)",
    )
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    if args.jaxmarl_src is None:
        parser.error("--jaxmarl-src DIR is required: a checkout of FLAIROx/JaxMARL with baselines/MAPPO/")
    if not args.jaxmarl_src.is_dir():
        parser.error(f"--jaxmarl-src {args.jaxmarl_src}: not a directory")

    rows = [compare(args.jaxmarl_src, e, args.updates, args.repeats, args.map, args.rollout_share) for e in args.envs]
    head = header(
        "peer_throughput.py",
        argv,
        f"{args.updates} updates per timed call, median of {args.repeats} alternating calls after a warm-up, "
        "compile excluded, one seed",
    )
    lines = [
        "| baseline file | map / task | batch | JaxMARL steps/s | jaxseq steps/s | jaxseq / JaxMARL "
        "| jaxseq, JaxMARL's network, steps/s | that / JaxMARL | load average before, after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['file']} | {r['map']} | {r['batch']} | {r['peer_sps']:,.0f} | {r['jaxseq_sps']:,.0f} | "
            f"{r['jaxseq_sps'] / r['peer_sps']:.2f} | {r['like_sps']:,.0f} | {r['like_sps'] / r['peer_sps']:.2f} | "
            f"{r['load'][0]}; {r['load'][1]} |"
        )
    if args.rollout_share:
        lines += ["", "| map / task | JaxMARL rollout share | jaxseq rollout share |", "|---|---|---|"]
        lines += [f"| {r['map']} | {r['share']['peer']:.2f} | {r['share']['jaxseq']:.2f} |" for r in rows]
    lines.append("")
    lines += [f"jaxseq on {r['name']}: `python -m jaxseq train {r['command']}`" for r in rows]
    lines += [
        f"jaxseq with JaxMARL's network on {r['name']}: `python -m jaxseq train {r['like_command']}`" for r in rows
    ]
    publish(head + "\n".join(lines) + "\n\n", "peer_throughput.md", not args.no_save)


if __name__ == "__main__":
    main()
