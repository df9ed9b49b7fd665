"""What every update scheme shares: the batch layout, the estimators' inputs, the K-agent policy
loss, fitting one unit of agents, log ratios over the batch, and the critic fit.

An :class:`Engine` is built once per config by :func:`make_engine` (called by
:func:`jaxseq.train.make_train`); the schemes (:mod:`jaxseq.schemes`) are functions of it. Nothing
here asks which algorithm runs: the resolved algorithm's estimator and objective are functions
(:mod:`jaxseq.algorithms`).

Training data are *sequences*: :meth:`Engine.sequences` cuts the rollout's time axis into
``sequence_length`` pieces, ``[T, B, ...] -> [L, S, ...]`` with S = (T / L) * B; minibatches split S
and keep the agent axis whole, so a unit can index its agents.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from jaxseq import nets, normalization, objectives, policies, update
from jaxseq.config import Config
from jaxseq.contracts import UNIT_INPUTS, Resolved, UnitInputs
from jaxseq.envs import EnvSpec, Observation
from jaxseq.state_weights import LearnedStateWeights, NoStateWeights, make_state_weights
from jaxseq.types import Rollout, TrainState


@dataclasses.dataclass(frozen=True)
class Engine:
    config: Config
    spec: EnvSpec
    algorithm: Resolved
    actor: nets.MultiAgentNet
    critic: nets.MultiAgentNet
    policy: policies.Categorical | policies.Gaussian
    actor_optimizer: update.AgentOptimizer
    critic_tx: optax.GradientTransformation
    state_weights: NoStateWeights | LearnedStateWeights
    #: Conformance hook: the sequential and FP3O schemes also return, under the metric "trace",
    #: what each unit started from and was given (parameters, ratios). Off in training.
    trace_units: bool = False

    @property
    def num_agents(self) -> int:
        return self.spec.num_agents

    @property
    def ent_coef(self) -> float:
        return self.config.ent_coef_continuous if self.spec.continuous else self.config.ent_coef

    # -- layout ---------------------------------------------------------------------------------
    def sequences(self, x: jax.Array) -> jax.Array:
        """[T, B, ...] -> [L, (T / L) * B, ...]: cut time into sequences of L steps, which become the batch axis."""
        L = self.config.sequence_length
        T, B = x.shape[:2]
        x = x.reshape((T // L, L, B) + x.shape[2:]).swapaxes(0, 1)
        return x.reshape((L, (T // L) * B) + x.shape[3:])

    def unsequences(self, x: jax.Array) -> jax.Array:
        """The inverse of :meth:`sequences`: [L, (T / L) * B, ...] -> [T, B, ...]."""
        L, B = self.config.sequence_length, self.config.num_envs
        x = x.reshape((L, x.shape[1] // B, B) + x.shape[2:]).swapaxes(0, 1)
        return x.reshape((-1, B) + x.shape[3:])

    def training_data(self, batch: Rollout) -> dict:
        """The batch fields the actor and critic fits read, as sequences [L, S, ...]."""
        return jax.tree.map(
            self.sequences,
            {
                "obs": batch.obs,
                "start": batch.start,
                "actions": batch.actions,
                "log_probs": batch.log_probs,
                "actor_carry": batch.actor_carry,
                "critic_carry": batch.critic_carry,
            },
        )

    def mask(self, alive: jax.Array) -> jax.Array:
        """The death mask: 1 where the agent acted (ones without ``death_mask``)."""
        return alive.astype(jnp.float32) if self.config.death_mask else jnp.ones_like(alive, jnp.float32)

    # -- critic inputs and the estimators' inputs -----------------------------------------------
    @property
    def critic_in_dim(self) -> int:
        return self.spec.state_dim if self.algorithm.critic_input == "state" else self.spec.obs_dim

    def critic_input(self, obs: Observation) -> jax.Array:
        x = obs.state if self.algorithm.critic_input == "state" else obs.obs
        if self.config.death_mask:
            x = jnp.where(obs.alive[..., None], x, 0.0)
        return x

    def denorm(self, vn, x):
        return normalization.denormalize(vn, x) if self.config.value_norm else x

    def norm(self, vn, x):
        return normalization.normalize(vn, x) if self.config.value_norm else x

    def returns_inputs(self, batch: Rollout, vn: normalization.ValueNormState) -> dict:
        """The estimators' inputs, all [T, B, N] in return units.

        Dead agents keep receiving the team reward (JaxMARL SMAX), so their traces run on to the
        end of the episode; the critic is trained on their (death-masked) inputs too, so the value
        a dying agent bootstraps from is a trained one.
        """
        terminated = jnp.broadcast_to(batch.terminated[..., None], batch.rewards.shape)
        ends = terminated | batch.truncated[..., None]
        return {
            "rewards": batch.rewards,
            "values": self.denorm(vn, batch.value_preds),
            "next_values": self.denorm(vn, batch.next_value_preds),
            "discounts": self.config.gamma * (1.0 - terminated.astype(jnp.float32)),
            "episode_ends": ends,
        }

    def estimate(self, est: dict, log_rho: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(advantages, value targets), both [T, B, N], from the algorithm's estimator; ``log_rho``
        [T, B, N] (or [T, B, 1], one for every agent) is the log joint ratio each agent's
        off-policy estimator corrects for (ignored by on-policy ones)."""
        return self.algorithm.estimator.fn(est, log_rho, self.config)

    @staticmethod
    def abs_advantage(adv: jax.Array, alive: jax.Array) -> jax.Array:
        """E|A_i| over the batch's active samples, per agent: [T, B, N] -> [N] (the greedy rules' score)."""
        return jnp.sum(jnp.abs(adv) * alive, axis=(0, 1)) / jnp.maximum(jnp.sum(alive, axis=(0, 1)), 1)

    def normalize_advantages(self, adv: jax.Array, mask: jax.Array) -> jax.Array:
        if not self.config.advantage_norm:
            return adv
        mean = objectives.masked_mean(adv, mask)
        std = jnp.sqrt(objectives.masked_mean((adv - mean) ** 2, mask))
        return (adv - mean) / (std + 1e-8)

    # -- replaying networks over sequences --------------------------------------------------------
    @staticmethod
    def replay(net: nets.MultiAgentNet, params, agents: jax.Array, carry0, inputs, start) -> jax.Array:
        """The agents ``agents`` [K] of ``net`` re-run over sequences: carry0 [M, K, C], inputs
        [L, M, K, D], start [L, M] (every agent's episode starts) -> outputs [L, M, K, ...]."""
        starts = jnp.broadcast_to(start[..., None], start.shape + agents.shape)
        return net.replay_agents(params, agents, carry0, inputs, starts)

    def agent_log_ratios(self, params, data: dict, agents: jax.Array) -> jax.Array:
        """log pi_params(a|o) - log pi_behaviour(a|o) of each of the agents ``agents`` [K] over the
        whole batch (``data`` as sequences): [T, B, K]."""
        take = lambda x: jnp.take(x, agents, axis=2)  # noqa: E731
        obs = jax.tree.map(take, data["obs"])
        logits = self.replay(self.actor, params, agents, take(data["actor_carry"])[0], obs.obs, data["start"])
        return self.unsequences(
            self.policy.log_prob(logits, obs.avail, take(data["actions"])) - take(data["log_probs"])
        )

    def log_ratio(self, params, data: dict, agents: jax.Array, valid: jax.Array) -> jax.Array:
        """Sum over the valid agents ``agents`` [K] of their log ratios (:meth:`agent_log_ratios`): [T, B]."""
        return jnp.sum(self.agent_log_ratios(params, data, agents) * valid, axis=-1)

    # -- the actor: one unit of K agents ----------------------------------------------------------
    def policy_loss(self, logits, mb: dict, clip_eps) -> tuple[jax.Array, dict]:
        """Negative surrogate of the algorithm's objective minus the entropy bonus, over the K agents
        of an update unit (the last axis).

        mb: obs (avail), actions, log_probs (behaviour), advantages, mask (alive and a real unit
        agent, not padding) and the optional inputs the scheme provides (``contracts.UnitInputs``), all [..., K]."""
        log_ratio = self.policy.log_prob(logits, mb["obs"].avail, mb["actions"]) - mb["log_probs"]
        mask = mb["mask"]
        surrogate = self.algorithm.objective(log_ratio, mb, clip_eps, self.config)
        ent = objectives.masked_mean(self.policy.entropy(logits, mb["obs"].avail), mask)
        loss = -surrogate - self.ent_coef * ent
        return loss, {"loss_actor": loss, "entropy": ent, **objectives.policy_diagnostics(log_ratio, clip_eps, mask)}

    def fit_unit(
        self, params, opt, data: dict, agents: jax.Array, valid: jax.Array, inputs: UnitInputs, key, epochs: int
    ):
        """Update the agents ``agents`` [K] (``valid`` [K]: real unit agents, not padding) as one unit.

        data: sequences of every agent ([L, S, N, ...]); ``inputs`` what the scheme gives the unit
        ([T, B, K] or [T, B, 1]: advantages, and the optional inputs it provides; the clip, a scalar
        or [K]). Only the unit agents' parameters and optimiser states move. Returns (params, opt, info
        averaged over the gradient steps).
        """
        unit = jax.tree.map(lambda x: jnp.take(x, agents, axis=2), {k: v for k, v in data.items() if k != "start"})
        mask = self.mask(unit["obs"].alive) * valid
        per_step = lambda x: jnp.broadcast_to(self.sequences(x), mask.shape)  # noqa: E731  [T, B, K] -> [L, S, K]
        unit.update(
            {name: per_step(getattr(inputs, name)) for name in UNIT_INPUTS if getattr(inputs, name) is not None}
        )
        unit.update(
            start=data["start"],
            mask=mask,
            advantages=self.normalize_advantages(self.sequences(inputs.advantages), mask),
        )

        def loss(p, mb):
            logits = self.replay(self.actor, p, agents, mb["actor_carry"][0], mb["obs"].obs, mb["start"])
            return self.policy_loss(logits, mb, inputs.clip_eps)

        in_unit = jnp.zeros((self.num_agents,), bool).at[agents].max(valid)
        return update.fit(
            loss, params, opt, self.actor_optimizer.step(in_unit), unit, key, epochs, self.config.num_minibatches
        )

    # -- the critic -------------------------------------------------------------------------------
    def critic_loss(self, params, mb: dict) -> tuple[jax.Array, dict]:
        """mb["value_preds"] and mb["targets"] are in the critic's (normalised) space; mb["critic_mask"]
        the agents whose values are fitted."""
        cfg = self.config
        agents = jnp.arange(self.num_agents)
        preds = self.replay(
            self.critic, params, agents, mb["critic_carry"][0], self.critic_input(mb["obs"]), mb["start"]
        )
        loss = objectives.value_loss(
            preds[..., 0],
            mb["value_preds"],
            mb["targets"],
            cfg.value_clip,
            cfg.huber_delta,
            mb["critic_mask"],
        )
        return loss, {"loss_critic": loss}

    def fit_critic(
        self,
        ts: TrainState,
        data: dict,
        values: jax.Array,
        targets: jax.Array,
        key: jax.Array,
        epochs: int | None = None,
        agents: jax.Array | None = None,
    ) -> tuple[TrainState, dict]:
        """Value normalisation update, then ``epochs`` (default ``Config.epochs``) x
        ``num_minibatches`` critic steps towards ``targets`` [T, B, N] (return units); ``values``
        [T, B, N] the rollout's predictions (the value clip's reference). ``agents`` [N] bool: the
        agents whose targets are fitted and enter the normaliser's statistics (default every agent;
        the unit agents under ``critic_fit = "per-unit"``)."""
        cfg = self.config
        agents = jnp.ones((self.num_agents,), bool) if agents is None else agents
        if cfg.value_norm:
            value_norm = normalization.update(ts.value_norm, targets, jnp.broadcast_to(agents, targets.shape))
        else:
            value_norm = ts.value_norm
        # Old predictions re-expressed under the updated statistics, so value clipping compares like with like.
        data = {
            **data,
            "value_preds": self.sequences(self.norm(value_norm, values)),
            "targets": self.sequences(self.norm(value_norm, targets)),
            "critic_mask": self.sequences(jnp.broadcast_to(agents, targets.shape).astype(jnp.float32)),
        }
        params, opt, info = update.fit(
            self.critic_loss,
            ts.critic_params,
            ts.critic_opt,
            update.plain_step(self.critic_tx),
            data,
            key,
            cfg.epochs if epochs is None else epochs,
            cfg.num_minibatches,
        )
        return ts.replace(critic_params=params, critic_opt=opt, value_norm=value_norm), info

    def refit_values(self, est: dict, ts: TrainState, data: dict) -> dict:
        """``est`` (:meth:`returns_inputs`) with the values of ``ts``'s critic and value normaliser:
        V(s_t) over the batch (replayed from the stored carries, as the critic is fitted), and the
        next values V(s_{t+1}): the following step's, after the last step the critic on ``ts.obs``
        (``ts`` is the state after the rollout), and at truncated steps the rollout's (the final
        observation is not kept in the batch). Used after a per-unit critic fit."""
        agents, inputs = jnp.arange(self.num_agents), self.critic_input(data["obs"])
        preds = self.replay(self.critic, ts.critic_params, agents, data["critic_carry"][0], inputs, data["start"])
        values = self.denorm(ts.value_norm, self.unsequences(preds[..., 0]))
        no_start = jnp.zeros(ts.start.shape + (self.num_agents,), bool)
        last = self.critic.apply(ts.critic_params, ts.critic_carry, self.critic_input(ts.obs), no_start)[1][..., 0]
        following = jnp.concatenate([values[1:], self.denorm(ts.value_norm, last)[None]])
        truncated = est["episode_ends"] & (est["discounts"] > 0)  # where V(s_{t+1}) counts and is the final obs'
        return {**est, "values": values, "next_values": jnp.where(truncated, est["next_values"], following)}


def make_engine(config: Config, spec, resolved, trace_units: bool, clip_grads: bool) -> Engine:
    """The engine of ``config``: its networks, policy, optimisers and state weights. Its numeric fields may be
    traced scalars (a sweep member's values); ``clip_grads`` is the one code switch they decide,
    given concretely."""
    common = dict(
        sharing=config.sharing,
        num_agents=spec.num_agents,
        hidden=config.hidden_size,
        num_layers=config.num_layers,
        post_layers=config.post_layers,
        recurrent=config.network == "gru",
        layer_norm=config.layer_norm,
        orthogonal=config.orthogonal_init,
        activation=config.activation,
    )
    actor = nets.make_network(
        out_dim=spec.num_actions, out_gain=0.01, log_std_init=config.log_std_init if spec.continuous else None, **common
    )
    critic = nets.make_network(out_dim=1, out_gain=1.0, **common)
    policy = policies.make_policy(spec.continuous, config.log_prob_reduce)
    actor_optimizer = update.AgentOptimizer(
        _optimizer(config.actor_lr, config, clip_grads),
        actor.param_axes,
        spec.num_agents,
        per_agent_shared=config.shared_optimizer == "per-agent",
    )
    weights = make_state_weights(resolved.state_weights, actor, policy, spec, config)
    return Engine(
        config,
        spec,
        resolved,
        actor,
        critic,
        policy,
        actor_optimizer,
        _optimizer(config.critic_lr, config, clip_grads),
        weights,
        trace_units=trace_units,
    )


def _optimizer(lr: float, config: Config, clip_grads: bool) -> optax.GradientTransformation:
    adam = optax.adam(lr, eps=config.adam_eps)
    if clip_grads:
        return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adam)
    return adam
