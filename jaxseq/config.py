"""The training configuration's schema: one frozen dataclass, its fields' types and help, and
parsing a field's value from text. A leaf: it imports no module that owns a choice (the papers'
presets are :mod:`jaxseq.presets`; building a config from a preset and validating it against the
owners of its choices is :mod:`jaxseq.configure`).

Every field has a default that runs. ``make_train`` validates once, before anything compiles.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

from jaxseq import sweep
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
    num_minibatches: int = 1  #: minibatches per epoch (split over training sequences x envs)
    actor_lr: float = 5e-4  #: Adam step size of the actor
    critic_lr: float = 5e-4  #: Adam step size of the critic
    lr_schedule: str = "constant"  #: "constant" or "linear": actor_lr and critic_lr times 1 - update / total_updates (JaxMARL's ANNEAL_LR; constant within an update, 0 after the last)
    adam_eps: float = 1e-5  #: Adam epsilon
    max_grad_norm: float = 10.0  #: global gradient-norm clip (each network); <= 0 disables
    ent_coef: float = 0.01  #: entropy bonus coefficient (discrete actions)
    ent_coef_continuous: float = 0.0  #: entropy bonus coefficient for continuous actions (the A2PO and OPSPO papers: 0)
    log_prob_reduce: str = "sum"  #: continuous actions: per-dimension log-probabilities summed ("sum": the joint density, so a ratio is the product of the per-dimension ratios, as in the A2PO, FP3O and HARL code) or averaged ("mean": the papers' sentence, an ablation)
    log_std_init: float = -0.5  #: continuous actions: initial value of the learnable state-independent log-std
    # -- sequential (agent-by-agent) schemes -------------------------------------------------
    selection_rule: str = (
        "semi-greedy"  #: A2PO agent order: cyclic, random, greedy, semi-greedy, reverse-greedy, reverse-semi-greedy
    )
    adaptive_clip: bool = True  #: A2PO adaptive clipping C(eps, k) = eps * c + eps * (1 - c) * k / n
    clip_c: float = 0.5  #: c of the adaptive clipping schedule, in [0, 1]
    agent_blocks: int = (
        0  #: sequential schemes: blocks of agents updated as one unit (0: one agent per block; A2PO paper App. B.3)
    )
    critic_fit: str = "once"  #: sequential schemes: fit the critic "once" per update after every unit, or "per-unit": after each unit on its value targets, so the next unit's advantages use the refit critic (A2PO Alg. 1-2 line 12, OPSPO Alg. 1 line 11)
    loop_order: str = "agents-outer"  #: sequential schemes: "agents-outer" (each block all its epochs; A2PO Alg. 1, HARL) or "epochs-outer" (ceil(epochs / blocks) passes over the blocks, one epoch each; A2PO Alg. 2)
    shared_optimizer: str = "per-agent"  #: optimiser state of shared actor weights (FuPS, PaPS trunk): "per-agent" (each agent its own; a block applies its members' mean update) or "one" (HARL's share_param)
    opspo_eps2: float = 0.1  #: OPSPO: the narrowest base clip range 1 +/- eps2 (eps1 is clip_eps; 0 < eps2 < clip_eps)
    opspo_aec: bool = True  #: OPSPO advantage-estimation correction: V-trace under the preceding ratio (off: GAE)
    opspo_sdc: bool = True  #: OPSPO state-distribution correction: state weights min(omega, 1) (off: 1)
    opspo_crc: bool = True  #: OPSPO clip-range correction: dynamic base range scaled by the clipped preceding ratio
    opspo_sdc_method: str = "auto"  #: OPSPO state weights: "bch" (learned omega-net, OPSPO paper Alg. 2), "wis" (step-wise weighted IS, App. B.2), "auto" (bch under nops, wis under parameter sharing, as in OPSPO paper)
    omega_n: int = 10  #: bch: behaviour policies (and their batches) kept in the ring buffer; pi_mix is their mean
    omega_e: int = 10  #: bch: outer iterations of Alg. 2 (omega-net steps), each on a fresh batch from the buffer
    f_e: int = 5  #: bch: f-net (test function) ascent steps per outer iteration
    density_batch: int = 256  #: bch: transitions (and initial states) per Alg. 2 batch
    density_lr: float = 1e-3  #: bch: Adam step size of the omega-net and the f-net
    density_hidden: int = 64  #: bch: width of the omega-net's and f-net's two hidden layers
    vtrace_clip_rho: float = 1.0  #: V-trace rho-bar (mappo_vtrace), > 0
    vtrace_clip_c: float = 1.0  #: V-trace c-bar (mappo_vtrace), > 0
    coppo_clip_others: float = 0.0  #: CoPPO: clip range of the other agents' joint ratio, in [0, 1); 0: clip_eps / 2, the reference CoPPO baseline's
    fp3o_guard: bool = False  #: FP3O: the public code's improvement guard: skip the dependence step when sum_j E[prod_k r_mid^k A] < sum_j E[r_mid^j A] (off: always run it, as in FP3O paper)
    # -- networks -----------------------------------------------------------------------------
    network: str = "mlp"  #: "mlp" or "gru" (a GRU after the dense layers)
    hidden_size: int = 64  #: width of every hidden layer
    num_layers: int = 2  #: dense layers before the head (or the GRU)
    post_layers: int = 0  #: dense layers (no LayerNorm) after the GRU (MLP: after the others), before the output layer; JaxMARL's MAPPO-RNN networks have 1
    activation: str = "relu"  #: "relu" or "tanh"
    sharing: str = "fups"  #: "fups" (one network + agent id), "paps" (shared trunk, per-agent heads), "nops"
    sequence_length: int = 8  #: steps per training sequence, replayed with the recurrent state (HARL's chunk)
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
    eval_episodes: int = (
        32  #: complete greedy episodes per seed in every evaluation (the protocol of Gorsane et al. 2022)
    )
    eval_envs: int = 32  #: parallel envs of an evaluation; each plays its share of eval_episodes to the end
    absolute_factor: int = 10  #: at the end of a run the best checkpoint is re-evaluated on absolute_factor x eval_episodes episodes (the absolute metric, in summary.json); 0 disables
    checkpoint_every: int = 10  #: checkpoint every this many chunks (and always at the end / on Ctrl-C)
    write_marl_eval: bool = False  #: keep RUN_DIR/marl_eval.json (marl-eval's JSON layout) up to date after every evaluation; the absolute metric joins it at the end
    # -- sweeps and devices -------------------------------------------------------------------
    sweep: tuple = ()  #: hyper-parameter grid run as one program, ((field, (v1, v2, ...)), ...); members = grid points x num_seeds (see jaxseq.sweep.SWEEPABLE)
    devices: int = 0  #: devices of the mesh the program is sharded over (0: all; with shard=members, the most that divide the members)
    shard: str = "members"  #: what the mesh splits: "members" (seeds and grid points, each device its own) or "envs" (data parallel: every member's env batch, gradients reduced over devices)

    def __post_init__(self):
        object.__setattr__(self, "sweep", sweep.normalize(self.sweep))

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.rollout_length

    @property
    def num_updates(self) -> int:
        return max(1, self.total_steps // self.batch_size)

    @property
    def num_members(self) -> int:
        """Grid points x seeds: the leading axis of the train state."""
        points = 1
        for _, values in self.sweep:
            points *= len(values)
        return points * self.num_seeds

    @property
    def num_chunks(self) -> int:
        return -(-self.num_updates // self.updates_per_chunk)

    @property
    def total_updates(self) -> int:
        """Updates the run makes: whole chunks, so ``num_updates`` rounded up to a multiple of
        ``updates_per_chunk`` (the horizon of ``lr_schedule="linear"``)."""
        return self.num_chunks * self.updates_per_chunk

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def field_types() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def field_docs() -> dict[str, str]:
    """The ``#:`` comment of every field, read from this file's tokens (a comment belongs to the
    field whose definition it sits in, also where the formatter wrapped the value), for ``--help``
    and docs."""
    import inspect
    import io
    import tokenize

    names = {f.name for f in dataclasses.fields(Config)}
    docs, field, line_start = {}, None, True
    for tok in tokenize.generate_tokens(io.StringIO(inspect.getsource(Config)).readline):
        if tok.type == tokenize.NAME and line_start and tok.string in names:
            field = tok.string
        elif tok.type == tokenize.COMMENT and tok.string.startswith("#:") and field is not None:
            docs[field] = tok.string[2:].strip()
        line_start = tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT)
    return docs


#: Config fields renamed, old name -> new name. A saved run's config.json with an old name is read
#: under the new one (:func:`migrate`); anything a user types with an old name is refused, pointing
#: to the new one (:func:`check_field_names`). "Chunk" means only the compiled group of updates
#: (``updates_per_chunk``); the recurrent training sequence is ``sequence_length``.
RENAMED = {"chunk_length": "sequence_length"}


def migrate(fields: dict[str, Any]) -> dict[str, Any]:
    """A saved config's fields with renamed ones under their new names (see :data:`RENAMED`)."""
    return {RENAMED.get(name, name): value for name, value in fields.items()}


def check_field_names(names) -> None:
    """ConfigError for the first name that is not a config field, pointing renamed fields to their
    new name and listing the fields otherwise."""
    types_ = field_types()
    for name in sorted(set(names) - set(types_)):
        if name in RENAMED:
            raise ConfigError(name, f"was renamed: use {RENAMED[name]} (same meaning)")
        raise ConfigError(name, f"unknown config field; allowed: {sorted(types_)}")


def parse_value(name: str, text: str) -> Any:
    """Parse ``text`` as the type of field ``name`` (for ``--set name=value``)."""
    check_field_names([name])
    types_ = field_types()
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


#: Functions that moved to :mod:`jaxseq.configure` (they import the modules that own the choices).
_MOVED = ("make_config", "for_algorithm", "validate", "validate_fields")


def __getattr__(name: str):
    if name in _MOVED:
        raise AttributeError(f"jaxseq.config.{name} moved: use jaxseq.configure.{name}")
    raise AttributeError(f"module 'jaxseq.config' has no attribute {name!r}")
