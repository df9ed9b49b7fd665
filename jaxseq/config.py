"""The training configuration: one frozen dataclass, presets, parsing and validation.

Every field has a default that runs. :func:`validate` is called by ``make_train`` and by the CLI
before anything compiles; a bad value raises :class:`~jaxseq.errors.ConfigError` naming the field
and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

from jaxseq.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Config:
    # -- what to train ------------------------------------------------------------------------
    env: str = "mpe:spread"  #: env id, family:name?k=v (see ``python -m jaxseq envs``)
    algo: str = "a2po"  #: algorithm (see ``python -m jaxseq algos``)
    total_steps: int = 2_000_000  #: environment steps per seed (one step = one joint action in one env)
    num_seeds: int = 1  #: independent seeds run as one program through jax.vmap
    seed: int = 0  #: the one key that seeds everything
    # -- rollout ------------------------------------------------------------------------------
    num_envs: int = 32  #: parallel environments per seed
    rollout_length: int = 128  #: steps per environment per update (batch = num_envs * rollout_length)
    # -- optimisation -------------------------------------------------------------------------
    gamma: float = 0.99  #: discount
    gae_lambda: float = 0.95  #: lambda of GAE (and of the off-policy traces)
    clip_eps: float = 0.2  #: PPO clip range epsilon
    epochs: int = 5  #: passes over each batch
    num_minibatches: int = 1  #: minibatches per epoch (split over recurrent chunks x envs)
    actor_lr: float = 5e-4  #: Adam step size of the actor
    critic_lr: float = 5e-4  #: Adam step size of the critic
    adam_eps: float = 1e-5  #: Adam epsilon
    max_grad_norm: float = 10.0  #: global gradient-norm clip (each network); <= 0 disables
    ent_coef: float = 0.01  #: entropy bonus coefficient (discrete actions)
    ent_coef_continuous: float = 0.0  #: entropy bonus coefficient for continuous actions (seeds 000, 003: 0)
    log_prob_reduce: str = "sum"  #: continuous actions: per-dimension log-probabilities summed ("sum": the joint density, so a ratio is the product of the per-dimension ratios, as in the A2PO, FP3O and HARL code) or averaged ("mean": the papers' sentence, an ablation)
    log_std_init: float = -0.5  #: continuous actions: initial value of the learnable state-independent log-std
    # -- sequential (agent-by-agent) schemes -------------------------------------------------
    selection_rule: str = "semi-greedy"  #: A2PO agent order: cyclic, random, greedy, semi-greedy, reverse-greedy, reverse-semi-greedy
    adaptive_clip: bool = True  #: A2PO adaptive clipping C(eps, k) = eps * c + eps * (1 - c) * k / n
    clip_c: float = 0.5  #: c of the adaptive clipping schedule, in [0, 1]
    agent_blocks: int = 0  #: sequential schemes: blocks of agents updated as one unit (0: one agent per block; seed 000 App. B.3)
    loop_order: str = "agents-outer"  #: sequential schemes: "agents-outer" (each block all its epochs; A2PO Alg. 1, HARL) or "epochs-outer" (ceil(epochs / blocks) passes over the blocks, one epoch each; A2PO Alg. 2)
    shared_optimizer: str = "per-agent"  #: optimiser state of shared actor weights (FuPS, PaPS trunk): "per-agent" (each agent its own; a block applies its members' mean update) or "one" (HARL's share_param)
    opspo_eps2: float = 0.1  #: OPSPO: the narrowest base clip range 1 +/- eps2 (eps1 is clip_eps; 0 < eps2 < clip_eps)
    opspo_aec: bool = True  #: OPSPO advantage-estimation correction: V-trace under the preceding ratio (off: GAE)
    opspo_sdc: bool = True  #: OPSPO state-distribution correction: state weights min(omega, 1) (off: 1)
    opspo_crc: bool = True  #: OPSPO clip-range correction: dynamic base range scaled by the clipped preceding ratio
    opspo_sdc_method: str = "auto"  #: OPSPO state weights: "bch" (learned omega-net, seed 003 Alg. 2), "wis" (step-wise weighted IS, App. B.2), "auto" (bch under nops, wis under parameter sharing, as in seed 003)
    omega_n: int = 10  #: bch: behaviour policies (and their batches) kept in the ring buffer; pi_mix is their mean
    omega_e: int = 10  #: bch: outer iterations of Alg. 2 (omega-net steps), each on a fresh batch from the buffer
    f_e: int = 5  #: bch: f-net (test function) ascent steps per outer iteration
    density_batch: int = 256  #: bch: transitions (and initial states) per Alg. 2 batch
    density_lr: float = 1e-3  #: bch: Adam step size of the omega-net and the f-net
    density_hidden: int = 64  #: bch: width of the omega-net's and f-net's two hidden layers
    vtrace_clip_rho: float = 1.0  #: V-trace rho-bar (mappo_vtrace), > 0
    vtrace_clip_c: float = 1.0  #: V-trace c-bar (mappo_vtrace), > 0
    coppo_clip_others: float = 0.1  #: CoPPO: clip range of the other agents' joint ratio, in (0, 1) (the reference CoPPO baseline: clip_eps / 2)
    fp3o_guard: bool = False  #: FP3O: the public code's improvement guard: skip the dependence step when sum_j E[prod_k r_mid^k A] < sum_j E[r_mid^j A] (off: always run it, as in seed 002)
    # -- networks -----------------------------------------------------------------------------
    network: str = "mlp"  #: "mlp" or "gru" (a GRU after the dense layers)
    hidden_size: int = 64  #: width of every hidden layer
    num_layers: int = 2  #: dense layers before the head (or the GRU)
    activation: str = "relu"  #: "relu" or "tanh"
    sharing: str = "fups"  #: "fups" (one network + agent id), "paps" (shared trunk, per-agent heads), "nops"
    chunk_length: int = 8  #: length of the sequences replayed in training (recurrent data chunk length)
    # -- the MAPPO implementation tricks (Yu et al. 2022), reference defaults ----------------
    layer_norm: bool = True  #: LayerNorm on the inputs and after every hidden layer
    orthogonal_init: bool = True  #: orthogonal init, gain sqrt(2) hidden, 0.01 actor output, 1 critic output
    value_norm: bool = True  #: normalise value targets with running statistics (ValueNorm)
    huber_delta: float = 10.0  #: Huber loss delta of the value loss; <= 0 uses the squared error
    value_clip: float = 0.2  #: clip the value update around the old prediction; <= 0 disables
    advantage_norm: bool = True  #: normalise advantages over the batch (active agents only)
    death_mask: bool = True  #: dead agents: zeroed critic input (agent id kept), no actor-loss terms
    # -- evaluation, logging, checkpoints -----------------------------------------------------
    updates_per_chunk: int = 10  #: updates compiled into one program call; one metrics line per chunk
    eval_every: int = 5  #: greedy evaluation every this many chunks (0 disables)
    eval_envs: int = 32  #: greedy evaluation episodes per seed
    checkpoint_every: int = 10  #: checkpoint every this many chunks (and always at the end / on Ctrl-C)

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.rollout_length

    @property
    def num_updates(self) -> int:
        return max(1, self.total_steps // self.batch_size)

    @property
    def num_chunks(self) -> int:
        return -(-self.num_updates // self.updates_per_chunk)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


#: Named presets; values are overrides of the defaults. The paper ones come from seed 000
#: App. B.4 (Tab. 7 SMAC, Tab. 10 MPE) where they map onto JaxMARL's envs.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # Seed 000 Tab. 10 (MPE): ppo epoch 8, chunk length 5, entropy 0.05, lr 2e-4, lambda 0.97, eps 0.2.
    "a2po-mpe": dict(env="mpe:spread", num_envs=40, rollout_length=100, epochs=8, chunk_length=5, ent_coef=0.05, actor_lr=2e-4, critic_lr=2e-4,
                     gae_lambda=0.97, clip_eps=0.2),
    # Seed 000 Tab. 7 (SMAC 3s5z row): 8 epochs, lambda 0.95, eps 0.2; MAPPO's SMAC tricks (GRU).
    # The paper's A2PO with shared parameters is Alg. 2: add loop_order=epochs-outer for a2po.
    "a2po-smax": dict(env="smax:3m", epochs=8, gae_lambda=0.95, clip_eps=0.2, network="gru", chunk_length=10,
                      rollout_length=100, ent_coef=0.01),
    # Fast settings that learn MPE spread on a CPU in minutes.
    "mpe-fast": dict(env="mpe:spread", num_envs=64, rollout_length=50, epochs=5, num_minibatches=2,
                     chunk_length=5, actor_lr=1e-3, critic_lr=1e-3, ent_coef=0.01),
    # Fast settings that learn SMAX 3m on a CPU.
    "smax-fast": dict(env="smax:3m", num_envs=64, rollout_length=64, epochs=5, num_minibatches=2,
                      chunk_length=8, actor_lr=5e-4, critic_lr=5e-4, ent_coef=0.01, gamma=0.99),
    # Settings for multi-agent MuJoCo on a CPU: parameter-independent, batch 4000 from 32 envs.
    "mamujoco-fast": dict(env="mamujoco:Hopper-3x1", sharing="nops", num_envs=32, rollout_length=125, epochs=5,
                          num_minibatches=4, chunk_length=5, actor_lr=3e-4, critic_lr=3e-4, gae_lambda=0.95,
                          ent_coef_continuous=0.0, eval_every=4, eval_envs=16),
}

# Seed 003 App. B.3 Tab. 2 (SMAC), for the maps JaxMARL SMAX has (8m_vs_9m, MMM2 and corridor it
# lacks): (ppo epoch, the column printed as gamma, eps1, eps2); the rest as A2PO's SMAX preset. The
# column printed as gamma repeats A2PO's lambda for most maps (seed 000 Tab. 7: 0.93 for 5m_vs_6m,
# 0.90 for 3s5z_vs_3s6z), so we read it as the GAE / trace lambda, not the discount.
_OPSPO_SMAC = {"5m_vs_6m": (10, 0.93, 0.1, 0.05), "3s5z": (10, 0.95, 0.2, 0.05), "10m_vs_11m": (10, 0.95, 0.2, 0.05),
               "3s5z_vs_3s6z": (8, 0.90, 0.2, 0.1), "27m_vs_30m": (8, 0.95, 0.2, 0.05), "6h_vs_8z": (8, 0.95, 0.2, 0.1)}
PRESETS.update({
    f"opspo-smax-{name}": {**PRESETS["a2po-smax"], "env": f"smax:{name}", "algo": "opspo", "epochs": epochs,
                           "gae_lambda": lam, "clip_eps": eps1, "opspo_eps2": eps2}
    for name, (epochs, lam, eps1, eps2) in _OPSPO_SMAC.items()
})

# Seed 002 App. D.2 (SMAC), FP3O: Tab. 6's common values mapped onto our fields. Readings:
# "episode length" 400 is, as in the MAPPO code base, the steps per rollout thread and update
# (batch size 3200 = 8 rollout threads x 400), not SMAC's episode limit; "training threads" 32
# (torch CPU threads) and "stacked frames" 1 (none) have no field; "gain" 0.01 is the actor output
# gain of orthogonal_init; "num layer after" 1 we read as the one recurrent layer our GRU network
# has. The paper gives no data chunk length: 10, MAPPO's SMAC default (divides 400).
_FP3O_SMAC_COMMON = dict(algo="fp3o", actor_lr=5e-4, critic_lr=5e-4, gamma=0.99, gae_lambda=0.95, adam_eps=1e-5,
                         activation="relu", orthogonal_init=True, num_envs=8, rollout_length=400, num_minibatches=1,
                         max_grad_norm=10.0, hidden_size=64, num_layers=2, huber_delta=10.0, epochs=5, ent_coef=0.01,
                         chunk_length=10)
# Tab. 7 per map: (ppo clip, actor network, steps under FuPS, PaPS, NoPS; None where the table
# has "-"). The actor network type applies to the critic too (our `network` is shared by both).
# JaxMARL SMAX lacks bane_vs_bane, 2c_vs_64zg and corridor, so they have no preset.
_FP3O_SMAC = {"3s5z": (0.2, "gru", (5_000_000, 5_000_000, 5_000_000)),
              "5m_vs_6m": (0.05, "gru", (8_000_000, 10_000_000, 10_000_000)),
              "6h_vs_8z": (0.2, "mlp", (10_000_000, 15_000_000, 20_000_000)),
              "10m_vs_11m": (0.2, "gru", (8_000_000, None, None)),
              "3s5z_vs_3s6z": (0.05, "gru", (12_000_000, None, None))}
PRESETS.update({
    f"fp3o-smax-{name}-{sharing}": {**_FP3O_SMAC_COMMON, "env": f"smax:{name}", "sharing": sharing, "clip_eps": clip,
                                    "network": network, "total_steps": steps}
    for name, (clip, network, all_steps) in _FP3O_SMAC.items()
    for sharing, steps in zip(("fups", "paps", "nops"), all_steps) if steps is not None
})

# Seed 000 App. B.4.2 (MA-MuJoCo), A2PO: Tab. 8's common values (entropy 0, gain 0.01, batch 4000)
# and Tab. 9 per robot: (ppo epoch, actor = critic lr, lambda, eps). Parameter-independent
# (seed 000 B.2.2), a Gaussian policy with tanh mean and log-std -0.5, per-dimension log-probs
# summed (our default: the A2PO code sums them; see policies.Gaussian). Batch 4000 = 4 envs x 1000
# steps, as in the MAPPO code base; agent blocks from Tab. 9's "agent block" row (Ant 8x1: 4; Humanoid 17x1: 5; HumanoidStandup 17x1: 4).
_A2PO_MUJOCO_COMMON = dict(algo="a2po", sharing="nops", ent_coef_continuous=0.0, num_envs=4, rollout_length=1000,
                           chunk_length=10)
_A2PO_MUJOCO = {"Ant": (8, 3e-4, 0.93, 0.2), "HalfCheetah": (5, 3e-4, 0.93, 0.2), "Hopper": (8, 1e-4, 0.95, 0.1),
                "Humanoid": (5, 3e-4, 0.90, 0.2), "HumanoidStandup": (5, 3e-4, 0.93, 0.2),
                "Walker2d": (5, 3e-4, 0.93, 0.2)}
_A2PO_MUJOCO_TASKS = {"Ant": ("2x4", "2x4d", "4x2", "8x1"), "HalfCheetah": ("2x3", "3x2", "6x1"), "Hopper": ("3x1",),
                      "Humanoid": ("9|8", "17x1"), "HumanoidStandup": ("9|8", "17x1"),
                      "Walker2d": ("2x3", "3x2", "6x1")}
_A2PO_MUJOCO_BLOCKS = {"Ant-8x1": 4, "Humanoid-17x1": 5, "HumanoidStandup-17x1": 4}
PRESETS.update({
    f"a2po-mamujoco-{robot}-{part}": {**_A2PO_MUJOCO_COMMON, "env": f"mamujoco:{robot}-{part}", "epochs": epochs,
                                      "actor_lr": lr, "critic_lr": lr, "gae_lambda": lam, "clip_eps": eps,
                                      "agent_blocks": _A2PO_MUJOCO_BLOCKS.get(f"{robot}-{part}", 0)}
    for robot, (epochs, lr, lam, eps) in _A2PO_MUJOCO.items() for part in _A2PO_MUJOCO_TASKS[robot]
})

# Seed 003 App. B.3 Tab. 3 (MA-MuJoCo), OPSPO: (ppo epoch, the column printed as gamma, eps1, eps2,
# omega_e, f_e, omega_n); "the parameters not mentioned are consistent with A2PO", so the rest is
# the A2PO preset of the same task (parameter-independent, hence learned omega-nets). The gamma
# column equals A2PO's lambda of Tab. 9 for every robot, so we read it as lambda, as for SMAC.
_OPSPO_MUJOCO = {"Ant-8x1": (8, 0.93, 0.2, 0.1), "Walker2d-6x1": (8, 0.93, 0.2, 0.1), "Hopper-3x1": (8, 0.95, 0.1, 0.05),
                 "HalfCheetah-6x1": (8, 0.93, 0.2, 0.1), "Humanoid-9|8": (8, 0.90, 0.2, 0.05),
                 "HumanoidStandup-9|8": (8, 0.93, 0.2, 0.05)}
PRESETS.update({
    f"opspo-mamujoco-{task}": {**PRESETS[f"a2po-mamujoco-{task}"], "algo": "opspo", "agent_blocks": 0, "epochs": epochs,
                               "gae_lambda": lam, "clip_eps": eps1, "opspo_eps2": eps2, "omega_e": 10, "f_e": 5,
                               "omega_n": 20}
    for task, (epochs, lam, eps1, eps2) in _OPSPO_MUJOCO.items()
})

# Seed 002 App. D.1 (MAMuJoCo), FP3O: Tab. 4's common values and Tab. 5 per task (ppo clip; mlp;
# 10M steps under every sharing mode). Readings: batch 4000 = 4 rollout threads x episode length
# 1000; obsk 5 goes into the env id; 32 minibatches need 32 | num_envs * 1000 / chunk_length, so
# chunk_length 5 (MLP: the chunk only groups minibatch rows). "std x coef 1, std y coef 0.5" is
# the MAPPO code base's std = 0.5 * sigmoid(p / 1) with p initialised to 1; we keep exp(log_std)
# and start it at the same std, log(0.5 * sigmoid(1)) = -1.007. Tab. 4's actor lr 1e-5 is kept as
# printed. The Manyagent Swimmer [8x2] task has no MJX model in brax, so no preset.
_FP3O_MUJOCO_COMMON = dict(algo="fp3o", actor_lr=1e-5, critic_lr=3e-4, gamma=0.99, gae_lambda=0.95, adam_eps=1e-5,
                           activation="relu", orthogonal_init=True, num_envs=4, rollout_length=1000,
                           num_minibatches=32, chunk_length=5, max_grad_norm=10.0, hidden_size=64, num_layers=2,
                           huber_delta=10.0, epochs=5, ent_coef_continuous=0.001, log_std_init=-1.007,
                           network="mlp", total_steps=10_000_000)
_FP3O_MUJOCO = {"Reacher-2x1": 0.2, "Ant-2x4": 0.2, "Walker2d-2x3": 0.05, "Hopper-3x1": 0.05, "HalfCheetah-6x1": 0.2}
PRESETS.update({
    f"fp3o-mamujoco-{task}-{sharing}": {**_FP3O_MUJOCO_COMMON, "env": f"mamujoco:{task}?obsk=5", "sharing": sharing,
                                        "clip_eps": clip}
    for task, clip in _FP3O_MUJOCO.items() for sharing in ("fups", "paps", "nops")
})

# Seed 000 App. B.4.4 Tab. 11 (GRF 5-vs-5; the extracted text labels it MPE, but B.4.4 points to it
# and gamma 0.995 is GRF's): ppo epoch 10, chunk length 10, entropy 0.001, lr 5e-4, lambda 0.95,
# eps 0.25, gamma 0.995. Parameter-independent (seed 000 Sec. 5.1); a chunk length implies the
# recurrent actor. The batch is not given: 8 games x 400 steps (MAPPO's GRF setting), one process
# per game; 4 evaluation games every 5 chunks. MAPPO gets the same values for a side-by-side run.
_GRF_5V5 = dict(env="grf:5_vs_5", sharing="nops", network="gru", epochs=10, chunk_length=10, ent_coef=0.001,
                actor_lr=5e-4, critic_lr=5e-4, gae_lambda=0.95, clip_eps=0.25, gamma=0.995, num_envs=8,
                rollout_length=400, num_minibatches=2, updates_per_chunk=2, eval_envs=4, eval_every=5,
                checkpoint_every=1)
# Seed 003 App. B.3 Tab. 4 (GRF), OPSPO: ppo epoch 15, the column printed as gamma 0.95 (read as
# lambda: it equals A2PO's lambda, as in Tab. 2-3), eps1 0.2, eps2 0.1, omega_e 5, f_e 5
# (printed omega_f), omega_n 10; the rest as A2PO.
PRESETS.update({
    "a2po-grf-5_vs_5": {**_GRF_5V5, "algo": "a2po"},
    "mappo-grf-5_vs_5": {**_GRF_5V5, "algo": "mappo"},
    "opspo-grf-5_vs_5": {**_GRF_5V5, "algo": "opspo", "epochs": 15, "gae_lambda": 0.95, "clip_eps": 0.2,
                         "opspo_eps2": 0.1, "omega_e": 5, "f_e": 5, "omega_n": 10},
})

_CHOICES: dict[str, tuple[str, ...]] = {
    "network": ("mlp", "gru"),
    "activation": ("relu", "tanh"),
    "sharing": ("fups", "paps", "nops"),
    "loop_order": ("agents-outer", "epochs-outer"),
    "shared_optimizer": ("per-agent", "one"),
    "opspo_sdc_method": ("auto", "bch", "wis"),
    "log_prob_reduce": ("mean", "sum"),
    "selection_rule": ("cyclic", "random", "greedy", "semi-greedy", "reverse-greedy", "reverse-semi-greedy"),
}
_POSITIVE_INT = ("total_steps", "num_seeds", "num_envs", "rollout_length", "epochs", "num_minibatches",
                 "hidden_size", "num_layers", "chunk_length", "updates_per_chunk", "eval_envs", "checkpoint_every",
                 "omega_n", "omega_e", "f_e", "density_batch", "density_hidden")


def field_types() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def field_docs() -> dict[str, str]:
    """The ``#:`` comment of every field, read from this file, for ``--help`` and docs."""
    import inspect

    docs = {}
    for line in inspect.getsource(Config).splitlines():
        line = line.strip()
        if "#:" in line and ":" in line.split("#:")[0]:
            name = line.split(":")[0].strip()
            docs[name] = line.split("#:", 1)[1].strip()
    return docs


def parse_value(name: str, text: str) -> Any:
    """Parse ``text`` as the type of field ``name`` (for ``--set name=value``)."""
    types_ = field_types()
    if name not in types_:
        raise ConfigError(name, f"unknown config field; allowed: {sorted(types_)}")
    kind = types_[name]
    if kind is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(name, f"expected a boolean (true/false), got {text!r}")
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(name, f"expected {kind.__name__}, got {text!r}") from None


def make_config(preset: str = "default", **overrides: Any) -> Config:
    if preset not in PRESETS:
        raise ConfigError("preset", f"unknown preset {preset!r}; allowed: {sorted(PRESETS)}")
    unknown = set(overrides) - set(field_types())
    if unknown:
        raise ConfigError(sorted(unknown)[0], f"unknown config field; allowed: {sorted(field_types())}")
    return Config(**{**PRESETS[preset], **overrides})


def validate(config: Config) -> None:
    """Raise ConfigError for any bad or contradictory setting. Touches no JAX."""
    from jaxseq.algorithms import ALGORITHMS
    from jaxseq.envs import parse_env_id

    for name, kind in field_types().items():
        value = getattr(config, name)
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ConfigError(name, f"expected {kind.__name__}, got {value!r}")
    for name, allowed in _CHOICES.items():
        if getattr(config, name) not in allowed:
            raise ConfigError(name, f"{getattr(config, name)!r} is not allowed; allowed: {list(allowed)}")
    for name in _POSITIVE_INT:
        if getattr(config, name) < 1:
            raise ConfigError(name, f"must be a positive integer, got {getattr(config, name)}")
    if config.eval_every < 0:
        raise ConfigError("eval_every", "must be >= 0 (0 disables evaluation)")
    if config.algo not in ALGORITHMS:
        raise ConfigError("algo", f"unknown algorithm {config.algo!r}; allowed: {sorted(ALGORITHMS)}")
    parse_env_id(config.env)
    if not 0.0 <= config.gamma <= 1.0:
        raise ConfigError("gamma", f"must lie in [0, 1], got {config.gamma}")
    if not 0.0 <= config.gae_lambda <= 1.0:
        raise ConfigError("gae_lambda", f"must lie in [0, 1], got {config.gae_lambda}")
    if not 0.0 < config.clip_eps < 1.0:
        raise ConfigError("clip_eps", f"must lie in (0, 1), got {config.clip_eps}")
    if not 0.0 < config.coppo_clip_others < 1.0:
        raise ConfigError("coppo_clip_others", f"must lie in (0, 1), got {config.coppo_clip_others}")
    if not 0.0 <= config.clip_c <= 1.0:
        raise ConfigError("clip_c", f"must lie in [0, 1], got {config.clip_c}")
    for name in ("vtrace_clip_rho", "vtrace_clip_c"):
        if getattr(config, name) <= 0:
            raise ConfigError(name, f"must be > 0, got {getattr(config, name)}")
    # Only OPSPO's objective reads eps2, so a narrow clip_eps (seed 002 Tab. 7: 0.05) stays valid elsewhere.
    if ALGORITHMS[config.algo].objective == "opspo" and not 0.0 < config.opspo_eps2 < config.clip_eps:
        raise ConfigError("opspo_eps2", f"must lie in (0, clip_eps={config.clip_eps}), got {config.opspo_eps2}")
    if config.agent_blocks < 0:
        raise ConfigError("agent_blocks", f"must be >= 0 (0: one agent per block), got {config.agent_blocks}")
    scheme = ALGORITHMS[config.algo].scheme
    if scheme != "sequential" and config.agent_blocks:
        raise ConfigError("agent_blocks", f"applies to the sequential algorithms only; {config.algo} is {scheme}")
    if scheme != "sequential" and config.loop_order != "agents-outer":
        raise ConfigError("loop_order", f"applies to the sequential algorithms only; {config.algo} is {scheme}")
    if config.fp3o_guard and config.algo != "fp3o":
        raise ConfigError("fp3o_guard", f"applies to fp3o only, got algo={config.algo}")
    if config.density_lr <= 0:
        raise ConfigError("density_lr", f"must be > 0, got {config.density_lr}")
    for name in ("actor_lr", "critic_lr"):
        if getattr(config, name) < 0:
            raise ConfigError(name, f"must be >= 0, got {getattr(config, name)}")
    if config.rollout_length % config.chunk_length:
        raise ConfigError("chunk_length", f"must divide rollout_length={config.rollout_length}, got {config.chunk_length}")
    sequences = config.num_envs * (config.rollout_length // config.chunk_length)
    if sequences % config.num_minibatches:
        raise ConfigError("num_minibatches", f"must divide the number of training sequences num_envs * "
                                             f"rollout_length / chunk_length = {sequences}, got {config.num_minibatches}")
    if config.batch_size > config.total_steps:
        raise ConfigError("total_steps", f"must be at least one batch (num_envs * rollout_length = {config.batch_size})")
