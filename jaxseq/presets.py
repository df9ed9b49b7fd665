"""The papers' hyper-parameter tables as named presets: each a dict of overrides of the
:class:`~jaxseq.config.Config` defaults (``make_config(preset, **overrides)``).

Papers: A2PO = "Order Matters: Agent-by-agent Policy Optimization" (ICLR 2023); FP3O = "Holding
Monotonic Improvement and Generality for Multi-Agent Proximal Policy Optimization"; OPSPO =
"Efficient Sequential Policy Optimization via Off-Policy Correction in Multi-Agent Reinforcement
Learning". Every reading of a table is written beside its preset.
"""

from __future__ import annotations

from typing import Any

#: How the A2PO paper runs its algorithm (and OPSPO's, "consistent with A2PO"): under parameter
#: sharing Alg. 2 (App. B: "A2PO in the parameter sharing version is implemented as in Alg. 2"),
#: ceil(epochs / n) passes over the agents, one epoch each; without sharing Alg. 1, every agent all
#: its epochs in turn. Both fit the critic after each agent (Alg. 1 and 2, line 12; OPSPO Alg. 1,
#: line 11). The fields apply to the algorithms that read them (``configure.for_algorithm``); the
#: other loop order is the ablation: ``--set loop_order=agents-outer`` (or ``critic_fit=once``).
A2PO_SHARED = dict(loop_order="epochs-outer", critic_fit="per-unit")
A2PO_INDEPENDENT = dict(loop_order="agents-outer", critic_fit="per-unit")

#: Named presets; values are overrides of the defaults. The paper ones come from A2PO paper
#: App. B.4 (Tab. 7 SMAC, Tab. 10 MPE) where they map onto JaxMARL's envs.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # A2PO paper Tab. 10 (MPE): ppo epoch 8, chunk length 5 (our sequence_length), entropy 0.05, lr 2e-4,
    # lambda 0.97, eps 0.2;
    # parameter sharing (the default FuPS), so Alg. 2.
    "a2po-mpe": dict(
        algo="a2po",
        **A2PO_SHARED,
        env="mpe:spread",
        num_envs=40,
        rollout_length=100,
        epochs=8,
        sequence_length=5,
        ent_coef=0.05,
        actor_lr=2e-4,
        critic_lr=2e-4,
        gae_lambda=0.97,
        clip_eps=0.2,
    ),
    # A2PO paper Tab. 7 (SMAC 3s5z row): 8 epochs, lambda 0.95, eps 0.2; MAPPO's SMAC tricks (GRU);
    # parameter sharing (the default FuPS), so Alg. 2.
    "a2po-smax": dict(
        algo="a2po",
        **A2PO_SHARED,
        env="smax:3m",
        epochs=8,
        gae_lambda=0.95,
        clip_eps=0.2,
        network="gru",
        sequence_length=10,
        rollout_length=100,
        ent_coef=0.01,
    ),
    # Fast settings that learn MPE spread on a CPU in minutes.
    "mpe-fast": dict(
        env="mpe:spread",
        num_envs=64,
        rollout_length=50,
        epochs=5,
        num_minibatches=2,
        sequence_length=5,
        actor_lr=1e-3,
        critic_lr=1e-3,
        ent_coef=0.01,
    ),
    # Fast settings that learn SMAX 3m on a CPU.
    "smax-fast": dict(
        env="smax:3m",
        num_envs=64,
        rollout_length=64,
        epochs=5,
        num_minibatches=2,
        sequence_length=8,
        actor_lr=5e-4,
        critic_lr=5e-4,
        ent_coef=0.01,
        gamma=0.99,
    ),
    # Settings for multi-agent MuJoCo on a CPU: parameter-independent, batch 4000 from 32 envs.
    "mamujoco-fast": dict(
        env="mamujoco:Hopper-3x1",
        sharing="nops",
        num_envs=32,
        rollout_length=125,
        epochs=5,
        num_minibatches=4,
        sequence_length=5,
        actor_lr=3e-4,
        critic_lr=3e-4,
        gae_lambda=0.95,
        ent_coef_continuous=0.0,
        eval_every=4,
        eval_envs=16,
    ),
}

#: The network and value loss of JaxMARL's MAPPO-RNN baselines (``baselines/MAPPO/mappo_rnn_*.py``):
#: dense, GRU, dense, output, without LayerNorm; value targets unnormalised, squared error clipped.
#: For like-for-like comparisons with that peer (``benchmarks/peer_throughput.py``). What still
#: differs: its critic sees the world state and agent id, ours also the agent's own observation;
#: its layer after the GRU is initialised with gain 2 (ours sqrt 2); it normalises advantages per
#: minibatch (ours per batch) and scales the value loss by 0.5 under the 0.25 gradient-norm clip.
JAXMARL_NETWORK = dict(network="gru", num_layers=1, post_layers=1, layer_norm=False, value_norm=False, huber_delta=0.0)

PRESETS.update(
    {
        # JaxMARL's mappo_homogenous_rnn_smax.yaml (map 2s3z; its env plays 101 transitions per episode).
        "jaxmarl-mappo-smax": dict(
            env="smax:2s3z?max_steps=101",
            algo="mappo",
            sharing="fups",
            total_steps=10_000_000,
            num_envs=128,
            rollout_length=128,
            sequence_length=128,
            epochs=4,
            num_minibatches=4,
            hidden_size=128,
            actor_lr=2e-3,
            critic_lr=2e-3,
            lr_schedule="linear",
            max_grad_norm=0.25,
            ent_coef=0.0,
            **JAXMARL_NETWORK,
        ),
    }
)

# OPSPO paper App. B.3 Tab. 2 (SMAC), for the maps JaxMARL SMAX has (8m_vs_9m, MMM2 and corridor it
# lacks): (ppo epoch, the column printed as gamma, eps1, eps2); the rest as A2PO's SMAX preset. The
# column printed as gamma repeats A2PO's lambda for most maps (A2PO paper Tab. 7: 0.93 for 5m_vs_6m,
# 0.90 for 3s5z_vs_3s6z), so we read it as the GAE / trace lambda, not the discount.
_OPSPO_SMAC = {
    "5m_vs_6m": (10, 0.93, 0.1, 0.05),
    "3s5z": (10, 0.95, 0.2, 0.05),
    "10m_vs_11m": (10, 0.95, 0.2, 0.05),
    "3s5z_vs_3s6z": (8, 0.90, 0.2, 0.1),
    "27m_vs_30m": (8, 0.95, 0.2, 0.05),
    "6h_vs_8z": (8, 0.95, 0.2, 0.1),
}
PRESETS.update(
    {
        f"opspo-smax-{name}": {
            **PRESETS["a2po-smax"],
            "env": f"smax:{name}",
            "algo": "opspo",
            "epochs": epochs,
            "gae_lambda": lam,
            "clip_eps": eps1,
            "opspo_eps2": eps2,
        }
        for name, (epochs, lam, eps1, eps2) in _OPSPO_SMAC.items()
    }
)

# FP3O paper App. D.2 (SMAC), FP3O: Tab. 6's common values mapped onto our fields. Readings:
# "episode length" 400 is, as in the MAPPO code base, the steps per rollout thread and update
# (batch size 3200 = 8 rollout threads x 400), not SMAC's episode limit; "training threads" 32
# (torch CPU threads) and "stacked frames" 1 (none) have no field; "gain" 0.01 is the actor output
# gain of orthogonal_init; "num layer after" 1 we read as the one recurrent layer our GRU network
# has. The paper gives no data chunk length (sequence_length): 10, MAPPO's SMAC default (divides 400).
_FP3O_SMAC_COMMON = dict(
    algo="fp3o",
    actor_lr=5e-4,
    critic_lr=5e-4,
    gamma=0.99,
    gae_lambda=0.95,
    adam_eps=1e-5,
    activation="relu",
    orthogonal_init=True,
    num_envs=8,
    rollout_length=400,
    num_minibatches=1,
    max_grad_norm=10.0,
    hidden_size=64,
    num_layers=2,
    huber_delta=10.0,
    epochs=5,
    ent_coef=0.01,
    sequence_length=10,
)
# Tab. 7 per map: (ppo clip, actor network, steps under FuPS, PaPS, NoPS; None where the table
# has "-"). The actor network type applies to the critic too (our `network` is shared by both).
# JaxMARL SMAX lacks bane_vs_bane, 2c_vs_64zg and corridor, so they have no preset.
_FP3O_SMAC = {
    "3s5z": (0.2, "gru", (5_000_000, 5_000_000, 5_000_000)),
    "5m_vs_6m": (0.05, "gru", (8_000_000, 10_000_000, 10_000_000)),
    "6h_vs_8z": (0.2, "mlp", (10_000_000, 15_000_000, 20_000_000)),
    "10m_vs_11m": (0.2, "gru", (8_000_000, None, None)),
    "3s5z_vs_3s6z": (0.05, "gru", (12_000_000, None, None)),
}
PRESETS.update(
    {
        f"fp3o-smax-{name}-{sharing}": {
            **_FP3O_SMAC_COMMON,
            "env": f"smax:{name}",
            "sharing": sharing,
            "clip_eps": clip,
            "network": network,
            "total_steps": steps,
        }
        for name, (clip, network, all_steps) in _FP3O_SMAC.items()
        for sharing, steps in zip(("fups", "paps", "nops"), all_steps)
        if steps is not None
    }
)

# A2PO paper App. B.4.2 (MA-MuJoCo), A2PO: Tab. 8's common values (entropy 0, gain 0.01, batch 4000)
# and Tab. 9 per robot: (ppo epoch, actor = critic lr, lambda, eps). Parameter-independent
# (A2PO paper B.2.2), a Gaussian policy with tanh mean and log-std -0.5, per-dimension log-probs
# summed (our default: the A2PO code sums them; see policies.Gaussian). Batch 4000 = 4 envs x 1000
# steps, as in the MAPPO code base; agent blocks from Tab. 9's "agent block" row (Ant 8x1: 4;
# Humanoid 17x1: 5; HumanoidStandup 17x1: 4).
_A2PO_MUJOCO_COMMON = dict(
    algo="a2po",
    sharing="nops",
    **A2PO_INDEPENDENT,
    ent_coef_continuous=0.0,
    num_envs=4,
    rollout_length=1000,
    sequence_length=10,
)
_A2PO_MUJOCO = {
    "Ant": (8, 3e-4, 0.93, 0.2),
    "HalfCheetah": (5, 3e-4, 0.93, 0.2),
    "Hopper": (8, 1e-4, 0.95, 0.1),
    "Humanoid": (5, 3e-4, 0.90, 0.2),
    "HumanoidStandup": (5, 3e-4, 0.93, 0.2),
    "Walker2d": (5, 3e-4, 0.93, 0.2),
}
_A2PO_MUJOCO_TASKS = {
    "Ant": ("2x4", "2x4d", "4x2", "8x1"),
    "HalfCheetah": ("2x3", "3x2", "6x1"),
    "Hopper": ("3x1",),
    "Humanoid": ("9|8", "17x1"),
    "HumanoidStandup": ("9|8", "17x1"),
    "Walker2d": ("2x3", "3x2", "6x1"),
}
_A2PO_MUJOCO_BLOCKS = {"Ant-8x1": 4, "Humanoid-17x1": 5, "HumanoidStandup-17x1": 4}
PRESETS.update(
    {
        f"a2po-mamujoco-{robot}-{part}": {
            **_A2PO_MUJOCO_COMMON,
            "env": f"mamujoco:{robot}-{part}",
            "epochs": epochs,
            "actor_lr": lr,
            "critic_lr": lr,
            "gae_lambda": lam,
            "clip_eps": eps,
            "agent_blocks": _A2PO_MUJOCO_BLOCKS.get(f"{robot}-{part}", 0),
        }
        for robot, (epochs, lr, lam, eps) in _A2PO_MUJOCO.items()
        for part in _A2PO_MUJOCO_TASKS[robot]
    }
)

# OPSPO paper App. B.3 Tab. 3 (MA-MuJoCo), OPSPO: (ppo epoch, the column printed as gamma, eps1, eps2,
# omega_e, f_e, omega_n); "the parameters not mentioned are consistent with A2PO", so the rest is
# the A2PO preset of the same task (parameter-independent, hence learned omega-nets). The gamma
# column equals A2PO's lambda of Tab. 9 for every robot, so we read it as lambda, as for SMAC.
_OPSPO_MUJOCO = {
    "Ant-8x1": (8, 0.93, 0.2, 0.1),
    "Walker2d-6x1": (8, 0.93, 0.2, 0.1),
    "Hopper-3x1": (8, 0.95, 0.1, 0.05),
    "HalfCheetah-6x1": (8, 0.93, 0.2, 0.1),
    "Humanoid-9|8": (8, 0.90, 0.2, 0.05),
    "HumanoidStandup-9|8": (8, 0.93, 0.2, 0.05),
}
PRESETS.update(
    {
        f"opspo-mamujoco-{task}": {
            **PRESETS[f"a2po-mamujoco-{task}"],  # A2PO's agent blocks too (Ant-8x1: 4), "as A2PO"
            "algo": "opspo",
            "epochs": epochs,
            "gae_lambda": lam,
            "clip_eps": eps1,
            "opspo_eps2": eps2,
            "omega_e": 10,
            "f_e": 5,
            "omega_n": 20,
        }
        for task, (epochs, lam, eps1, eps2) in _OPSPO_MUJOCO.items()
    }
)

# FP3O paper App. D.1 (MAMuJoCo), FP3O: Tab. 4's common values and Tab. 5 per task (ppo clip; mlp;
# 10M steps under every sharing mode). Readings: batch 4000 = 4 rollout threads x episode length
# 1000; obsk 5 goes into the env id; 32 minibatches need 32 | num_envs * 1000 / sequence_length, so
# sequence_length 5 (MLP: the sequence only groups minibatch rows). "std x coef 1, std y coef 0.5" is
# the MAPPO code base's std = 0.5 * sigmoid(p / 1) with p initialised to 1; we keep exp(log_std)
# and start it at the same std, log(0.5 * sigmoid(1)) = -1.007. Tab. 4's actor lr 1e-5 is kept as
# printed. The Manyagent Swimmer [8x2] task has no MJX model in brax, so no preset.
_FP3O_MUJOCO_COMMON = dict(
    algo="fp3o",
    actor_lr=1e-5,
    critic_lr=3e-4,
    gamma=0.99,
    gae_lambda=0.95,
    adam_eps=1e-5,
    activation="relu",
    orthogonal_init=True,
    num_envs=4,
    rollout_length=1000,
    num_minibatches=32,
    sequence_length=5,
    max_grad_norm=10.0,
    hidden_size=64,
    num_layers=2,
    huber_delta=10.0,
    epochs=5,
    ent_coef_continuous=0.001,
    log_std_init=-1.007,
    network="mlp",
    total_steps=10_000_000,
)
_FP3O_MUJOCO = {"Reacher-2x1": 0.2, "Ant-2x4": 0.2, "Walker2d-2x3": 0.05, "Hopper-3x1": 0.05, "HalfCheetah-6x1": 0.2}
PRESETS.update(
    {
        f"fp3o-mamujoco-{task}-{sharing}": {
            **_FP3O_MUJOCO_COMMON,
            "env": f"mamujoco:{task}?obsk=5",
            "sharing": sharing,
            "clip_eps": clip,
        }
        for task, clip in _FP3O_MUJOCO.items()
        for sharing in ("fups", "paps", "nops")
    }
)

# A2PO paper App. B.4.4 Tab. 11 (GRF 5-vs-5; the extracted text labels it MPE, but B.4.4 points to it
# and gamma 0.995 is GRF's): ppo epoch 10, chunk length (sequence_length) 10, entropy 0.001, lr 5e-4, lambda 0.95,
# eps 0.25, gamma 0.995. Parameter-independent (A2PO paper Sec. 5.1); a chunk length implies the
# recurrent actor. The batch is not given: 8 games x 400 steps (MAPPO's GRF setting), one process
# per game; 4 evaluation games every 5 chunks. MAPPO gets the same values for a side-by-side run.
_GRF_5V5 = dict(
    env="grf:5_vs_5",
    sharing="nops",
    network="gru",
    epochs=10,
    sequence_length=10,
    ent_coef=0.001,
    actor_lr=5e-4,
    critic_lr=5e-4,
    gae_lambda=0.95,
    clip_eps=0.25,
    gamma=0.995,
    num_envs=8,
    rollout_length=400,
    num_minibatches=2,
    updates_per_chunk=2,
    eval_envs=4,
    eval_episodes=4,  # GRF games of 3000 steps through the bridge: 32 per evaluation would cost minutes on a CPU
    eval_every=5,
    checkpoint_every=1,
)
# OPSPO paper App. B.3 Tab. 4 (GRF), OPSPO: ppo epoch 15, the column printed as gamma 0.95 (read as
# lambda: it equals A2PO's lambda, as in Tab. 2-3), eps1 0.2, eps2 0.1, omega_e 5, f_e 5
# (printed omega_f), omega_n 10; the rest as A2PO.
PRESETS.update(
    {
        "a2po-grf-5_vs_5": {**_GRF_5V5, **A2PO_INDEPENDENT, "algo": "a2po"},
        "mappo-grf-5_vs_5": {**_GRF_5V5, "algo": "mappo"},
        "opspo-grf-5_vs_5": {
            **_GRF_5V5,
            **A2PO_INDEPENDENT,
            "algo": "opspo",
            "epochs": 15,
            "gae_lambda": 0.95,
            "clip_eps": 0.2,
            "opspo_eps2": 0.1,
            "omega_e": 5,
            "f_e": 5,
            "omega_n": 10,
        },
    }
)
