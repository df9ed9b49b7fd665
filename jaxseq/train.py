"""The compiled trainer: ``make_train(config) -> Trainer``.

One training *update* is: a rollout of ``rollout_length`` steps in ``num_envs`` vmapped envs
(``lax.scan``), advantage estimation, then ``epochs`` x ``num_minibatches`` gradient steps on
sequences of ``chunk_length`` steps. A *chunk* is ``updates_per_chunk`` updates in one ``lax.scan``:
the unit the Python loop (``jaxseq.run``) calls, logs, evaluates and checkpoints between.

Seeds are a leading vmapped axis of the whole :class:`TrainState`: ``Trainer.init(key)`` makes
``num_seeds`` states from one key, and ``Trainer.chunk`` runs them all in one program.

Array layout inside the program is time-major ``[T, B, N, ...]`` (time, env, agent).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxseq import density, estimators, nets, normalization, objectives, ordering, policies, state_weights, update
from jaxseq.algorithms import ALGORITHMS, Algorithm
from jaxseq.config import Config, validate
from jaxseq.errors import ConfigError
from jaxseq.envs import AutoReset, EnvState, Observation, make_env


@struct.dataclass
class TrainState:
    """Everything one seed's training needs; a pytree, so it vmaps, jits and checkpoints."""

    actor_params: Any
    critic_params: Any
    actor_opt: Any
    critic_opt: Any
    value_norm: normalization.ValueNormState
    env_state: EnvState  # [B] envs
    obs: Observation  # [B, N, ...] the observation to act on next
    start: jax.Array  # [B] bool: obs is the first of an episode
    actor_carry: jax.Array  # [B, N, C]
    critic_carry: jax.Array  # [B, N, C]
    key: jax.Array
    update: jax.Array  # [] int32, updates done
    stage_remaining: jax.Array  # [N] bool, agents not yet updated in this stage (RPISA's stage spans N updates)
    density: Any  # OPSPO with learned state weights: state_weights.DensityState (ring buffers, omega-nets); else None


@struct.dataclass
class Rollout:
    """A batch, time-major [T, B, ...]. Carries are the network inputs before the step's reset."""

    obs: Observation  # [T, B, N, ...]
    start: jax.Array  # [T, B]
    actions: jax.Array  # [T, B, N]
    log_probs: jax.Array  # [T, B, N]
    value_preds: jax.Array  # [T, B, N] critic outputs (normalised space when value_norm)
    next_value_preds: jax.Array  # [T, B, N] critic outputs on the true next observation
    rewards: jax.Array  # [T, B, N]
    terminated: jax.Array  # [T, B]
    truncated: jax.Array  # [T, B]
    actor_carry: jax.Array  # [T, B, N, C]
    critic_carry: jax.Array  # [T, B, N, C]


@dataclasses.dataclass(frozen=True)
class Trainer:
    """The compiled pieces of one configuration. Build it with :func:`make_train`."""

    config: Config
    algorithm: Algorithm
    env: AutoReset
    actor: nets.MultiAgentNet
    critic: nets.MultiAgentNet
    actor_tx: optax.GradientTransformation
    critic_tx: optax.GradientTransformation
    #: Python-side count of how often the chunk program was traced (= compiled).
    trace_counter: list = dataclasses.field(default_factory=lambda: [0])
    #: Conformance hook: :meth:`learn` also returns, under the metric "trace", what each unit of the
    #: sequential and FP3O schemes started from and was given (parameters, ratios), for a
    #: recomputation from scratch. Off in training; ``chunk`` does not reduce it.
    trace_units: bool = False

    # -- construction -------------------------------------------------------------------------
    def init_one(self, key: jax.Array) -> TrainState:
        cfg, spec = self.config, self.env.spec
        k_actor, k_critic, k_env, key = jax.random.split(key, 4)
        actor_params = self.actor.init(k_actor, spec.obs_dim)
        critic_params = self.critic.init(k_critic, self._critic_in_dim())
        # Compiled: op by op, an MJX reset is hundreds of tiny compilations (about 25 s).
        env_state, obs = jax.jit(jax.vmap(self.env.reset))(jax.random.split(k_env, cfg.num_envs))
        return TrainState(
            actor_params=actor_params,
            critic_params=critic_params,
            actor_opt=self.actor_optimizer.init(actor_params),
            critic_opt=self.critic_tx.init(critic_params),
            value_norm=normalization.init(),
            env_state=env_state,
            obs=obs,
            start=jnp.ones((cfg.num_envs,), bool),
            actor_carry=self.actor.init_carry((cfg.num_envs,)),
            critic_carry=self.critic.init_carry((cfg.num_envs,)),
            key=key,
            update=jnp.zeros((), jnp.int32),
            stage_remaining=jnp.ones((spec.num_agents,), bool),
            density=self._init_density(jax.random.fold_in(key, 1), actor_params) if self.sdc_method == "bch" else None,
        )

    @property
    def sdc_method(self) -> str:
        """OPSPO's state weights: "bch" (learned omega-nets), "wis" (step-wise weighted IS) or "none"."""
        cfg = self.config
        if self.algorithm.objective != "opspo" or not cfg.opspo_sdc:
            return "none"
        if cfg.opspo_sdc_method == "auto":
            return "bch" if cfg.sharing == "nops" else "wis"
        return cfg.opspo_sdc_method

    @functools.cached_property
    def policy(self) -> policies.Categorical | policies.Gaussian:
        """The action distribution: Gaussian for continuous-action envs (mamujoco), else categorical."""
        return policies.make_policy(self.env.spec.continuous, self.config.log_prob_reduce)

    @property
    def ent_coef(self) -> float:
        return self.config.ent_coef_continuous if self.env.spec.continuous else self.config.ent_coef

    @functools.cached_property
    def learned_weights(self) -> state_weights.LearnedStateWeights:
        cfg = self.config
        learner = density.DensityRatio(state_dim=self.env.spec.state_dim, gamma=cfg.gamma, hidden=cfg.density_hidden,
                                       lr=cfg.density_lr, omega_steps=cfg.omega_e, f_steps=cfg.f_e)
        return state_weights.LearnedStateWeights(self.actor, self.policy, learner, cfg.omega_n, cfg.density_batch)

    def _init_density(self, key: jax.Array, actor_params: Any) -> state_weights.DensityState:
        cfg, spec = self.config, self.env.spec
        T, B, N = cfg.rollout_length, cfg.num_envs, spec.num_agents
        f32 = jnp.float32
        shape, dtype = self.policy.action_shape(spec.num_actions)
        example = {"states": jnp.zeros((T + 1, B, spec.state_dim), f32), "valid": jnp.zeros((T, B), bool),
                   "start": jnp.zeros((T, B), bool), "obs": jnp.zeros((T, B, N, spec.obs_dim), f32),
                   "avail": jnp.zeros((T, B, N, spec.num_actions), bool), "actions": jnp.zeros((T, B, N, *shape), dtype),
                   "actor_carry": jnp.zeros((T, B, N, self.actor.carry_dim), f32)}
        return self.learned_weights.init(key, example, actor_params)

    @staticmethod
    def _density_data(batch: Rollout, last_obs: Observation) -> dict:
        """A batch in the ring's layout (:meth:`state_weights.LearnedStateWeights.push`)."""
        states = jnp.concatenate([batch.obs.state[:, :, 0], last_obs.state[None, :, 0]])
        return {"states": states, "valid": ~(batch.terminated | batch.truncated), "start": batch.start,
                "obs": batch.obs.obs, "avail": batch.obs.avail, "actions": batch.actions,
                "actor_carry": batch.actor_carry}

    @functools.cached_property
    def actor_optimizer(self) -> update.AgentOptimizer:
        """Per-agent optimiser states for stacked parameters; for shared ones per ``shared_optimizer``."""
        return update.AgentOptimizer(self.actor_tx, self.actor.param_axes, self.env.spec.num_agents,
                                     per_agent_shared=self.config.shared_optimizer == "per-agent")

    def init(self, key: jax.Array) -> TrainState:
        """``num_seeds`` independent states with a leading seed axis, all from ``key``.

        Runs op by op (the env reset aside), not as one compiled program: orthogonal initialisation
        calls LAPACK's QR, and XLA's CPU runtime deadlocked (jax 0.10, 2 cores) when one program ran several batched
        QRs concurrently, each waiting for the thread pool the others held.
        """
        state = jax.vmap(self.init_one)(jax.random.split(key, self.config.num_seeds))
        # Strong dtypes everywhere (JaxMARL's reset leaves weakly typed ints), so the state the chunk
        # returns has the same types as this one and the chunk compiles once.
        return jax.tree.map(lambda x: x.astype(x.dtype), state)

    def _critic_in_dim(self) -> int:
        spec = self.env.spec
        return spec.state_dim if self.algorithm.critic_input == "state" else spec.obs_dim

    def _critic_input(self, obs: Observation) -> jax.Array:
        x = obs.state if self.algorithm.critic_input == "state" else obs.obs
        if self.config.death_mask:
            x = jnp.where(obs.alive[..., None], x, 0.0)
        return x

    # -- rollout ------------------------------------------------------------------------------
    def rollout(self, ts: TrainState) -> tuple[TrainState, Rollout, dict]:
        """``rollout_length`` steps in every env. Returns the new state, the batch and episode sums."""
        cfg = self.config
        n = self.env.spec.num_agents

        def step(carry, _):
            ts, stats = carry
            key, k_act, k_env = jax.random.split(ts.key, 3)
            start_n = jnp.broadcast_to(ts.start[:, None], (cfg.num_envs, n))
            actor_carry, logits = self.actor.apply(ts.actor_params, ts.actor_carry, ts.obs.obs, start_n)
            actions = self.policy.sample(k_act, logits, ts.obs.avail)
            log_probs = self.policy.log_prob(logits, ts.obs.avail, actions)
            critic_carry, v = self.critic.apply(ts.critic_params, ts.critic_carry, self._critic_input(ts.obs), start_n)
            env_state, out = jax.vmap(self.env.step)(jax.random.split(k_env, cfg.num_envs), ts.env_state, actions)
            # The value of the true next observation, continuing this episode's recurrent state.
            _, v_next = self.critic.apply(ts.critic_params, critic_carry, self._critic_input(out.final_obs),
                                          jnp.zeros_like(start_n))
            record = Rollout(
                obs=ts.obs, start=ts.start, actions=actions, log_probs=log_probs,
                value_preds=v[..., 0], next_value_preds=v_next[..., 0], rewards=out.reward,
                terminated=out.terminated, truncated=out.truncated,
                actor_carry=ts.actor_carry, critic_carry=ts.critic_carry,
            )
            done = out.done.astype(jnp.float32)
            stats = {
                "episodes": stats["episodes"] + done.sum(),
                "return_sum": stats["return_sum"] + (done * out.episode_return).sum(),
                "length_sum": stats["length_sum"] + (done * out.episode_length).sum(),
                "win_sum": stats["win_sum"] + (done * out.won).sum(),
            }
            ts = ts.replace(env_state=env_state, obs=out.obs, start=out.done, actor_carry=actor_carry,
                            critic_carry=critic_carry, key=key)
            return (ts, stats), record

        zeros = {k: jnp.zeros((), jnp.float32) for k in ("episodes", "return_sum", "length_sum", "win_sum")}
        (ts, stats), batch = jax.lax.scan(step, (ts, zeros), None, length=cfg.rollout_length)
        return ts, batch, stats

    # -- advantage estimation -----------------------------------------------------------------
    def _denorm(self, vn, x):
        return normalization.denormalize(vn, x) if self.config.value_norm else x

    def _norm(self, vn, x):
        return normalization.normalize(vn, x) if self.config.value_norm else x

    def returns_inputs(self, batch: Rollout, vn: normalization.ValueNormState) -> dict:
        """The estimators' inputs, all [T, B, N] in return units.

        Dead agents keep receiving the team reward (JaxMARL SMAX), so their traces run on to the
        end of the episode; the critic is trained on their (death-masked) inputs too, so the value
        a dying agent bootstraps from is a trained one.
        """
        cfg = self.config
        terminated = jnp.broadcast_to(batch.terminated[..., None], batch.rewards.shape)
        ends = terminated | batch.truncated[..., None]
        return {
            "rewards": batch.rewards,
            "values": self._denorm(vn, batch.value_preds),
            "next_values": self._denorm(vn, batch.next_value_preds),
            "discounts": cfg.gamma * (1.0 - terminated.astype(jnp.float32)),
            "episode_ends": ends,
        }

    @property
    def estimator(self) -> str:
        """The algorithm's estimator, after the ablation switches (OPSPO without AEC uses GAE)."""
        if self.algorithm.objective == "opspo" and not self.config.opspo_aec:
            return "gae"
        return self.algorithm.estimator

    def _estimate(self, est: dict, log_rho: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(advantages, value targets), both [T, B, N], with the algorithm's estimator; ``log_rho``
        [T, B, N] (or [T, B, 1], one for every agent) is the log joint ratio each agent's
        off-policy estimator corrects for (ignored by GAE)."""
        cfg, name = self.config, self.estimator
        if name == "vtrace":
            targets, adv = estimators.vtrace(**est, lam=cfg.gae_lambda, log_rhos=log_rho,
                                             clip_rho=cfg.vtrace_clip_rho, clip_c=cfg.vtrace_clip_c)
            return adv, targets
        if name == "preopc":
            adv = estimators.preopc(**est, lam=cfg.gae_lambda, log_rhos=log_rho)
        else:
            adv = estimators.gae(**est, lam=cfg.gae_lambda)
        return adv, adv + est["values"]

    @staticmethod
    def _abs_advantage(adv: jax.Array, alive: jax.Array) -> jax.Array:
        """E|A_i| over the batch's active samples, per agent: [T, B, N] -> [N] (the greedy rules' score)."""
        return jnp.sum(jnp.abs(adv) * alive, axis=(0, 1)) / jnp.maximum(jnp.sum(alive, axis=(0, 1)), 1)

    def _normalize_advantages(self, adv: jax.Array, mask: jax.Array) -> jax.Array:
        if not self.config.advantage_norm:
            return adv
        mean = objectives.masked_mean(adv, mask)
        std = jnp.sqrt(objectives.masked_mean((adv - mean) ** 2, mask))
        return (adv - mean) / (std + 1e-8)

    # -- losses -------------------------------------------------------------------------------
    @staticmethod
    def _replay(step_fn, carry0, inputs, start) -> jax.Array:
        """Re-run a network over sequences: ``step_fn(carry, x_t, start_t) -> (carry, out_t)``,
        inputs [L, M, ...], start [L, M], carry0 [M, ...] -> outputs [L, M, ...]."""
        return jax.lax.scan(lambda c, xs: step_fn(c, *xs), carry0, (inputs, start))[1]

    @staticmethod
    def _agents_step(net: nets.MultiAgentNet, params, agents: jax.Array):
        """Step function of the agents ``agents`` [K]; episode-start flags broadcast over them."""
        k = agents.shape[0]
        return lambda c, x, s: net.apply_agents(params, agents, c, x, jnp.broadcast_to(s[..., None], s.shape + (k,)))

    def _mask(self, alive: jax.Array) -> jax.Array:
        return alive.astype(jnp.float32) if self.config.death_mask else jnp.ones_like(alive, jnp.float32)

    def _policy_loss(self, logits, mb: dict, clip_eps) -> tuple[jax.Array, dict]:
        """Negative surrogate of ``self.algorithm.objective`` minus the entropy bonus, over the K agents
        of an update unit (the last axis).

        mb: obs (avail), actions, log_probs (behaviour), advantages, mask (alive and a real unit
        member), log_rho, the preceding agents' joint log ratio, state_weights (OPSPO's state
        density ratio estimate) and, for FP3O, log_mid (each agent's middle log ratio), all [..., K]."""
        cfg = self.config
        log_ratio = self.policy.log_prob(logits, mb["obs"].avail, mb["actions"]) - mb["log_probs"]
        mask = mb["mask"]
        objective = self.algorithm.objective
        if objective == "ppo":
            surrogate = objectives.ppo_clip_objective(log_ratio, mb["advantages"], clip_eps, mask)
        elif objective == "coppo":  # the unit is every agent at once (simultaneous scheme)
            surrogate = objectives.coppo_objective(log_ratio, objectives.others_log_ratio(log_ratio, mask),
                                                   mb["advantages"], clip_eps, cfg.coppo_clip_others, mask)
        elif objective == "fp3o":  # the unit is every agent at once (FP3O scheme)
            surrogate = objectives.fp3o_objective(log_ratio, mb["log_mid"], mb["advantages"], clip_eps, mask)
        elif objective == "happo":
            surrogate = objectives.happo_objective(log_ratio, mb["log_rho"], mb["advantages"], clip_eps, mask)
        elif objective == "a2po":
            surrogate = objectives.a2po_objective(log_ratio, mb["log_rho"], mb["advantages"], clip_eps, mask)
        elif objective == "opspo":
            surrogate = objectives.opspo_objective(log_ratio, mb["log_rho"], mb["advantages"], mb["state_weights"],
                                                   clip_eps, cfg.opspo_eps2, cfg.opspo_crc, mask)
        else:
            raise ValueError(f"unknown objective {objective!r}")
        ent = objectives.masked_mean(self.policy.entropy(logits, mb["obs"].avail), mask)
        loss = -surrogate - self.ent_coef * ent
        return loss, {"loss_actor": loss, "entropy": ent, **objectives.policy_diagnostics(log_ratio, clip_eps, mask)}

    def critic_loss(self, params, mb: dict) -> tuple[jax.Array, dict]:
        """mb["value_preds"] and mb["targets"] are in the critic's (normalised) space."""
        cfg = self.config
        agents = jnp.arange(self.env.spec.num_agents)
        preds = self._replay(self._agents_step(self.critic, params, agents), mb["critic_carry"][0],
                             self._critic_input(mb["obs"]), mb["start"])
        loss = objectives.value_loss(preds[..., 0], mb["value_preds"], mb["targets"], cfg.value_clip,
                                     cfg.huber_delta, jnp.ones_like(mb["value_preds"]))
        return loss, {"loss_critic": loss}

    # -- one update ---------------------------------------------------------------------------
    def _sequences(self, x: jax.Array) -> jax.Array:
        """[T, B, ...] -> [L, (T / L) * B, ...]: cut time into chunks of L, chunks become the batch axis."""
        L = self.config.chunk_length
        T, B = x.shape[:2]
        x = x.reshape((T // L, L, B) + x.shape[2:]).swapaxes(0, 1)
        return x.reshape((L, (T // L) * B) + x.shape[3:])

    def _unsequences(self, x: jax.Array) -> jax.Array:
        """The inverse of :meth:`_sequences`: [L, (T / L) * B, ...] -> [T, B, ...]."""
        L, B = self.config.chunk_length, self.config.num_envs
        x = x.reshape((L, x.shape[1] // B, B) + x.shape[2:]).swapaxes(0, 1)
        return x.reshape((-1, B) + x.shape[3:])

    def update(self, ts: TrainState) -> tuple[TrainState, dict]:
        """One training update: a rollout, then :meth:`learn` on it."""
        ts, batch, ep_stats = self.rollout(ts)
        ts, metrics = self.learn(ts, batch)
        return ts, {**metrics, **ep_stats}

    def learn(self, ts: TrainState, batch: Rollout) -> tuple[TrainState, dict]:
        """Advantages and the actor update of the algorithm's scheme, then the critic, on one batch."""
        cfg = self.config
        est = self.returns_inputs(batch, ts.value_norm)
        key, k_actor, k_critic = jax.random.split(ts.key, 3)
        data = jax.tree.map(self._sequences, {
            "obs": batch.obs, "start": batch.start, "actions": batch.actions, "log_probs": batch.log_probs,
            "actor_carry": batch.actor_carry, "critic_carry": batch.critic_carry,
        })
        if self.sdc_method == "bch":
            ts = ts.replace(density=self.learned_weights.push(ts.density, self._density_data(batch, ts.obs),
                                                              ts.actor_params))
        schemes = {"simultaneous": self._simultaneous_actors, "sequential": self._sequential_actors,
                   "rpisa": self._rpisa_actor, "fp3o": self._fp3o_actors}
        ts, targets, info = schemes[self.algorithm.scheme](ts, data, est, k_actor)
        # Critic: fitted once, after the actors, on the targets the actors' advantages came from.
        value_norm = normalization.update(ts.value_norm, targets) if cfg.value_norm else ts.value_norm
        # Old predictions re-expressed under the updated statistics, so value clipping compares like with like.
        data["value_preds"] = self._sequences(self._norm(value_norm, est["values"]))
        data["targets"] = self._sequences(self._norm(value_norm, targets))
        critic_params, critic_opt, c_info = update.fit(self.critic_loss, ts.critic_params, ts.critic_opt,
                                                       update.plain_step(self.critic_tx), data, k_critic, cfg.epochs,
                                                       cfg.num_minibatches)
        ts = ts.replace(critic_params=critic_params, critic_opt=critic_opt, value_norm=value_norm, key=key,
                        update=ts.update + 1)
        return ts, {**info, **c_info}

    def _fit_unit(self, params, opt, data: dict, agents: jax.Array, valid: jax.Array, advantages: jax.Array,
                  log_rho: jax.Array, weights: jax.Array, clip_eps, key: jax.Array, epochs: int):
        """Update the agents ``agents`` [K] (``valid`` [K]: real members, not padding) as one unit.

        data: sequences of every agent ([L, S, N, ...]); advantages [T, B, K] of the unit's agents;
        log_rho [T, B, K] (or [T, B, 1]) each member's preceding joint log ratio (HAPPO: its factor);
        weights [T, B, K] (or [T, B, 1]) OPSPO's state weights (ones elsewhere); clip_eps a scalar or
        one per member [K]. Only the members' parameters and optimiser states move. Returns (params,
        opt, info averaged over the gradient steps).
        """
        cfg = self.config
        unit = jax.tree.map(lambda x: jnp.take(x, agents, axis=2), {k: v for k, v in data.items() if k != "start"})
        mask = self._mask(unit["obs"].alive) * valid
        per_step = lambda x: jnp.broadcast_to(self._sequences(x), mask.shape)  # noqa: E731  [T, B, K] -> [L, S, K]
        unit.update(start=data["start"], mask=mask, log_rho=per_step(log_rho),
                    state_weights=per_step(weights),
                    advantages=self._normalize_advantages(self._sequences(advantages), mask))

        def loss(p, mb):
            logits = self._replay(self._agents_step(self.actor, p, agents), mb["actor_carry"][0], mb["obs"].obs,
                                  mb["start"])
            return self._policy_loss(logits, mb, clip_eps)

        members = jnp.zeros((self.env.spec.num_agents,), bool).at[agents].max(valid)
        return update.fit(loss, params, opt, self.actor_optimizer.step(members), unit, key, epochs,
                          cfg.num_minibatches)

    def _state_weights(self, log_rho: jax.Array, data: dict, preceding: jax.Array, params, ts: TrainState,
                       density_nets: tuple, key: jax.Array) -> tuple[jax.Array, tuple, dict]:
        """OPSPO's state weights min(omega, 1), omega the density ratio of the preceding joint
        policy's states over the behaviour policy's: [T, B, K] by step-wise weighted importance
        sampling of each member's ``log_rho`` [T, B, K] (seed 003 App. B.2); [T, B, 1] from learned
        omega-nets (Alg. 2) for the policy whose moved agents outside the unit are ``preceding`` [N]
        (their parameters in ``params``; ``density_nets`` = the behaviour's and the preceding
        policy's (nets, scale), the latter refitted here); ones without the state-distribution
        correction and for the other algorithms. Returns (weights, density_nets, metrics)."""
        method = self.sdc_method
        if method == "wis":
            starts = self._unsequences(data["start"])
            omega = jax.vmap(estimators.stepwise_weighted_is, in_axes=(-1, None), out_axes=-1)(log_rho, starts)
            return jnp.minimum(omega, 1.0), density_nets, {}
        if method == "none":
            return jnp.ones_like(log_rho[..., :1]), density_nets, {}
        lw, ds = self.learned_weights, ts.density
        behaviour, (rs_p, _) = density_nets
        rs_p, scale_p, info = lw.fit(rs_p, ds, ts.actor_params, params, preceding, key)
        states = ds.ring.items["data"]["states"][ds.ring.newest, :-1]  # this batch's s_t, [T, B, D]
        weights = jnp.where(preceding.any(), lw.weights(behaviour, (rs_p, scale_p), states), 1.0)[..., None]
        return weights, (behaviour, (rs_p, scale_p)), info

    def _behaviour_density(self, ts: TrainState, key: jax.Array) -> tuple[TrainState, tuple]:
        """With learned state weights, fit omega_k = d^{pi_k} / d_mix of this update's behaviour policy
        (warm-started from the last update); the preceding policy's nets start from it. Returns the
        state and the initial ``density_nets`` of :meth:`_state_weights`."""
        if self.sdc_method != "bch":
            return ts, ()
        n = self.env.spec.num_agents
        rs, scale, _ = self.learned_weights.fit(ts.density.ratio, ts.density, ts.actor_params, ts.actor_params,
                                                jnp.zeros((n,), bool), key)
        return ts.replace(density=ts.density.replace(ratio=rs)), ((rs, scale), (rs, scale))

    def _agent_log_ratios(self, params, data: dict, agents: jax.Array) -> jax.Array:
        """log pi_params(a|o) - log pi_behaviour(a|o) of each of the agents ``agents`` [K] over the
        whole batch: [T, B, K]."""
        take = lambda x: jnp.take(x, agents, axis=2)  # noqa: E731
        obs = jax.tree.map(take, data["obs"])
        logits = self._replay(self._agents_step(self.actor, params, agents), take(data["actor_carry"])[0], obs.obs,
                              data["start"])
        return self._unsequences(self.policy.log_prob(logits, obs.avail, take(data["actions"])) - take(data["log_probs"]))

    def _log_ratio(self, params, data: dict, agents: jax.Array, valid: jax.Array) -> jax.Array:
        """Sum over the valid agents ``agents`` [K] of their log ratios (:meth:`_agent_log_ratios`): [T, B]."""
        return jnp.sum(self._agent_log_ratios(params, data, agents) * valid, axis=-1)

    def _simultaneous_actors(self, ts: TrainState, data: dict, est: dict, key: jax.Array):
        """Every agent at once (MAPPO, IPPO, CoPPO). With V-trace the advantages are recomputed before
        every epoch under the joint ratio of all agents' current policies (the correction of all
        agents that seed 000 Sec. 5.2 ablates); the critic's targets are the last ones."""
        cfg, n = self.config, self.env.spec.num_agents
        agents, valid = jnp.arange(n), jnp.ones((n,), bool)
        corrected = self.estimator == "vtrace"
        passes, epochs = (cfg.epochs, 1) if corrected else (1, cfg.epochs)

        def one_pass(carry, k):
            params, opt, _ = carry
            log_rho = (self._log_ratio(params, data, agents, valid) if corrected else jnp.zeros(est["values"].shape[:2]))[..., None]
            adv, targets = self._estimate(est, log_rho)
            params, opt, info = self._fit_unit(params, opt, data, agents, valid, adv, log_rho, jnp.ones_like(log_rho),
                                               cfg.clip_eps, k, epochs)
            return (params, opt, targets), info

        init = (ts.actor_params, ts.actor_opt, jnp.zeros_like(est["values"]))
        (params, opt, targets), infos = jax.lax.scan(one_pass, init, jax.random.split(key, passes))
        return ts.replace(actor_params=params, actor_opt=opt), targets, jax.tree.map(jnp.mean, infos)

    def _sequential_actors(self, ts: TrainState, data: dict, est: dict, key: jax.Array):
        """The agent-by-agent actor update: a ``lax.scan`` over units (agent blocks) k = 0..U-1.

        Before each unit, every agent's log ratio over the behaviour policy is evaluated at the
        parameters the unit starts from (under NoPS an agent's parameters change only in its own
        unit, so its ratio is evaluated after that unit and kept: the same value), and agent i's
        preceding joint ratio is
        rho_{-i} = prod_{j != i, j moved} pi^j / pi_b^j (A2PO Eq. 2 and 6 with pi-hat the current joint
        policy; OPSPO Eq. 14 and 20). "Moved" are the agents whose current policy may differ from
        the behaviour: under FuPS and PaPS every agent (any unit moves the shared weights); under
        NoPS the agents of the earlier units of this update, over all passes. So under NoPS and
        agents-outer rho_{-i} is the product over the preceding units; from Alg. 2's second pass
        on, and always under sharing, it covers every other agent (A2PO Alg. 2 line 7, App. B.1).
        The selection rule picks the unit's agents among those not yet updated in this pass, from
        E|A_i| with each agent's advantages under its own rho_{-i}; a block's members see each
        other's ratio where those have moved. Each member's advantages and value targets come from
        the estimator under its rho_{-i}; the unit's agents are updated together (their own
        optimiser states; the adaptive clip at each member's position). HAPPO's surrogate takes
        HARL's factor instead: the product, over the units earlier in this pass, of each member's
        ratio after its update over before it (equal to rho under NoPS).
        ``loop_order``: "agents-outer" runs every unit's epochs in one go (A2PO Alg. 1; HARL);
        "epochs-outer" makes ceil(epochs / U) passes over a fresh order, one epoch per unit (A2PO
        Alg. 2). Returns the state with the new actor, the value targets [T, B, N] and metrics.
        """
        cfg, alg = self.config, self.algorithm
        n = self.env.spec.num_agents
        sizes = ordering.block_sizes(n, cfg.agent_blocks)
        units, width = len(sizes), max(sizes)
        starts = [sum(sizes[:u]) for u in range(units)]
        rule = cfg.selection_rule if alg.order == "config" else alg.order
        epochs_outer = cfg.loop_order == "epochs-outer"
        passes, epochs = (-(-cfg.epochs // units), 1) if epochs_outer else (1, cfg.epochs)
        alive = self._unsequences(data["obs"].alive)  # [T, B, N]
        all_agents = jnp.arange(n)
        incremental = alg.objective == "happo"  # HARL's factor for HAPPO's surrogate
        shared = self.actor.sharing != "nops"  # every unit moves every agent's policy
        adaptive = alg.objective == "a2po" and cfg.adaptive_clip

        k_density, key = jax.random.split(key)
        ts, density_nets = self._behaviour_density(ts, k_density)

        def unit(carry, xs):
            params, opt, moved, remaining, log_factor, kept, targets, density_nets = carry
            start, size, k = xs
            k_pick, k_fit, k_weights = jax.random.split(k, 3)
            # [T, B, N] every agent's log ratio at the unit's start
            log_ratios = self._agent_log_ratios(params, data, all_agents) if shared else kept
            log_rho = objectives.others_log_ratio(log_ratios, moved)  # [T, B, N]: log rho_{-i}
            adv_all, targets_all = self._estimate(est, log_rho)
            scores = self._abs_advantage(adv_all, alive)
            agents, valid, remaining = ordering.pick_block(rule, start, size, width, scores, remaining, k_pick)
            members = jnp.zeros((n,), bool).at[agents].max(valid)
            targets = targets.at[..., agents].set(targets_all[..., agents])
            unit_log_rho = log_rho[..., agents]  # [T, B, K]
            weights, density_nets, info_w = self._state_weights(unit_log_rho, data, moved & ~members, params, ts,
                                                                density_nets, k_weights)
            position = start + jnp.arange(width)  # 0-based positions of the unit's slots in the order
            eps = ordering.adaptive_clip(cfg.clip_eps, position + 1, n, cfg.clip_c) if adaptive else cfg.clip_eps
            given = log_factor[..., None] if incremental else unit_log_rho
            new_params, opt, info = self._fit_unit(params, opt, data, agents, valid, adv_all[..., agents], given,
                                                   weights, eps, k_fit, epochs)
            if incremental or not shared:
                after = self._agent_log_ratios(new_params, data, agents)  # [T, B, K]
                log_factor = log_factor + jnp.sum((after - log_ratios[..., agents]) * valid, axis=-1)
                kept = kept.at[..., agents].set(after)  # padding slots repeat agent 0's value
            info.update(agents=agents, valid=valid, position=position, abs_adv=scores[agents],
                        state_weight_mean=weights.mean(), state_weight_min=weights.min(), **info_w)
            if self.trace_units:
                info["trace"] = {"params": params, "moved": moved, "log_rho": given}
            return (new_params, opt, moved | members, remaining, log_factor, kept, targets, density_nets), info

        def one_pass(carry, k):
            params, opt, moved, kept, targets, density_nets = carry
            xs = (jnp.array(starts), jnp.array(sizes), jax.random.split(k, units))
            init = (params, opt, moved, jnp.ones((n,), bool), jnp.zeros(alive.shape[:2]), kept, targets, density_nets)
            (params, opt, moved, _, _, kept, targets, density_nets), infos = jax.lax.scan(unit, init, xs)
            return (params, opt, moved, kept, targets, density_nets), infos

        # ``kept`` (NoPS): each agent's log ratio at its current parameters, 0 before its first unit.
        zeros = jnp.zeros_like(est["values"])
        init = (ts.actor_params, ts.actor_opt, jnp.full((n,), shared), zeros, zeros, density_nets)
        (params, opt, _, _, targets, _), infos = jax.lax.scan(one_pass, init, jax.random.split(key, passes))
        # infos: [P, U, ...] over passes and units
        trace = infos.pop("trace", None)
        agents, valid = infos.pop("agents"), infos.pop("valid")  # [P, U, K]
        metrics = {k: v.mean() for k, v in infos.items() if k not in ("position", "abs_adv")}
        # The joint ratio after the last unit: the whole new joint policy over the behaviour one.
        rho = jnp.exp(self._log_ratio(params, data, all_agents, jnp.ones((n,), bool)))
        metrics.update(preceding_ratio_mean=rho.mean(), preceding_ratio_std=rho.std(),
                       preceding_ratio_max=rho.max())
        # Per-agent diagnostics, [N] indexed by agent id, averaged over passes: its position in the
        # order, its unit's clip fraction, KL and TV estimates, and E|A_i| when it was picked.
        per_agent = {"position": infos["position"], "abs_adv": infos["abs_adv"]}
        per_agent.update({k: jnp.broadcast_to(infos[k][..., None], agents.shape) for k in ("clip_frac", "approx_kl", "tv")})
        weight = valid.astype(jnp.float32).ravel()
        count = jnp.zeros(n).at[agents.ravel()].add(weight)
        metrics.update({f"agent_{k}": jnp.zeros(n).at[agents.ravel()].add(v.ravel() * weight) / count
                        for k, v in per_agent.items()})
        if trace is not None:
            metrics["trace"] = {**trace, "agents": agents, "valid": valid}
        return ts.replace(actor_params=params, actor_opt=opt), targets, metrics

    def _fp3o_actors(self, ts: TrainState, data: dict, est: dict, key: jax.Array):
        """FP3O (seed 002 Alg. 2, Eq. 9-10): every agent in one unit, twice, GAE advantages.

        Independence step: ``epochs`` epochs of PPO-clip (Eq. 9) for every agent in parallel, from the
        old parameters -> the middle parameters. Dependence step: from the middle parameters and the
        optimiser state, ``epochs`` more epochs of Eq. 10 (:func:`objectives.fp3o_objective`), agent j
        with R_j = the other agents' middle ratios, computed once after the independence step (both
        steps run ``epochs``, as the public code's two stages each run ppo_epoch; the critic is
        fitted once, after the actors). The non-overlapping map (:func:`ordering.fp3o_selection`)
        assigns agent j_p to pipeline p; since R_j covers every k != j whichever pipeline selected
        j, the update does not depend on it, and it is not drawn here. With ``fp3o_guard`` the
        dependence step is skipped (the middle parameters kept) when :func:`objectives.fp3o_guard`
        fails. With one agent R = 1: PPO-clip for 2 x ``epochs`` epochs (tested).
        """
        cfg, n = self.config, self.env.spec.num_agents
        agents, valid = jnp.arange(n), jnp.ones((n,), bool)
        k_ind, k_dep = jax.random.split(key)
        no_rho = jnp.zeros(est["values"].shape[:2] + (1,))
        adv, targets = self._estimate(est, no_rho)

        def step(params, opt, log_mid, k):
            return self._fit_unit(params, opt, {**data, "log_mid": self._sequences(log_mid)}, agents, valid, adv,
                                  no_rho, jnp.ones_like(no_rho), cfg.clip_eps, k, cfg.epochs)

        mid, mid_opt, info_ind = step(ts.actor_params, ts.actor_opt, jnp.zeros_like(adv), k_ind)
        log_mid = self._agent_log_ratios(mid, data, agents)  # [T, B, N], fixed for the dependence step
        params, opt, info_dep = step(mid, mid_opt, log_mid, k_dep)
        mask = self._mask(self._unsequences(data["obs"].alive))
        guard = objectives.fp3o_guard(log_mid, self._normalize_advantages(adv, mask), mask)
        proceed = guard if cfg.fp3o_guard else jnp.bool_(True)
        params, opt = jax.tree.map(lambda new, old: jnp.where(proceed, new, old), (params, opt), (mid, mid_opt))
        info = jax.tree.map(lambda a, b: jnp.where(proceed, (a + b) / 2, a), info_ind, info_dep)
        joint_mid = jnp.exp(jnp.sum(log_mid * mask, axis=-1))
        info.update(fp3o_guard_pass=guard.astype(jnp.float32), middle_ratio_mean=joint_mid.mean(),
                    middle_ratio_std=joint_mid.std())
        if self.trace_units:
            info["trace"] = {"params": mid, "log_mid": log_mid}
        return ts.replace(actor_params=params, actor_opt=opt), targets, info

    def _rpisa_actor(self, ts: TrainState, data: dict, est: dict, key: jax.Array):
        """RPISA-PPO: this update's fresh batch serves one agent, the next in this stage's order
        (a stage spans N updates, so N rollouts); PPO-clip on that agent only, GAE advantages; the
        critic is fitted on every agent's targets of every batch."""
        cfg, alg = self.config, self.algorithm
        n = self.env.spec.num_agents
        k_pick, k_fit = jax.random.split(key)
        remaining = jnp.where(ts.stage_remaining.any(), ts.stage_remaining, True)
        no_rho = jnp.zeros(est["values"].shape[:2] + (1,))
        adv, targets = self._estimate(est, no_rho)
        alive = self._unsequences(data["obs"].alive)
        scores = self._abs_advantage(adv, alive)
        agents, valid, remaining = ordering.pick_block(alg.order, n - remaining.sum(), 1, 1, scores, remaining, k_pick)
        params, opt, info = self._fit_unit(ts.actor_params, ts.actor_opt, data, agents, valid, adv[..., agents],
                                           no_rho, jnp.ones_like(no_rho), cfg.clip_eps, k_fit, cfg.epochs)
        return ts.replace(actor_params=params, actor_opt=opt, stage_remaining=remaining), targets, info

    # -- chunks and evaluation ----------------------------------------------------------------
    def chunk_one(self, ts: TrainState) -> tuple[TrainState, dict]:
        """``updates_per_chunk`` updates of one seed; metrics reduced to one value each."""
        ts, m = jax.lax.scan(lambda s, _: self.update(s), ts, None, length=self.config.updates_per_chunk)
        episodes = m["episodes"].sum()
        episode_keys = ("episodes", "return_sum", "length_sum", "win_sum")
        out = {k: v.mean(axis=0) for k, v in m.items() if k not in episode_keys}  # mean over updates
        out["episodes"] = episodes
        safe = jnp.maximum(episodes, 1.0)
        nan = jnp.float32(jnp.nan)
        out["return_mean"] = jnp.where(episodes > 0, m["return_sum"].sum() / safe, nan)
        out["episode_length"] = jnp.where(episodes > 0, m["length_sum"].sum() / safe, nan)
        out["win_rate"] = jnp.where(episodes > 0, m["win_sum"].sum() / safe, nan)
        return ts, out

    def evaluate_one(self, ts: TrainState) -> dict:
        """Greedy evaluation: ``eval_envs`` fresh episodes; the first episode of each env counts."""
        cfg, spec = self.config, self.env.spec
        key = jax.random.fold_in(ts.key, 0x5EED)
        k_reset, k_steps = jax.random.split(key)
        env_state, obs = jax.vmap(self.env.reset)(jax.random.split(k_reset, cfg.eval_envs))
        n = spec.num_agents

        def step(carry, k):
            env_state, obs, actor_carry, start, finished, ret, won = carry
            start_n = jnp.broadcast_to(start[:, None], (cfg.eval_envs, n))
            actor_carry, logits = self.actor.apply(ts.actor_params, actor_carry, obs.obs, start_n)
            actions = self.policy.greedy(logits, obs.avail)
            env_state, out = jax.vmap(self.env.step)(jax.random.split(k, cfg.eval_envs), env_state, actions)
            first_end = out.done & ~finished
            ret = jnp.where(first_end, out.episode_return, ret)
            won = jnp.where(first_end, out.won, won)
            return (env_state, out.obs, actor_carry, out.done, finished | out.done, ret, won), None

        init = (env_state, obs, self.actor.init_carry((cfg.eval_envs,)), jnp.ones((cfg.eval_envs,), bool),
                jnp.zeros((cfg.eval_envs,), bool), jnp.zeros((cfg.eval_envs,)), jnp.zeros((cfg.eval_envs,), bool))
        (_, _, _, _, finished, ret, won), _ = jax.lax.scan(step, init, jax.random.split(k_steps, spec.max_steps + 1))
        f = finished.astype(jnp.float32)
        count = jnp.maximum(f.sum(), 1.0)
        nan = jnp.float32(jnp.nan)  # no finished episode: no number (the rows say null), not 0
        return {"test_return_mean": jnp.where(f.sum() > 0, (ret * f).sum() / count, nan),
                "test_win_rate": jnp.where(f.sum() > 0, (won * f).sum() / count, nan)}

    def _traced_chunk(self, ts: TrainState) -> tuple[TrainState, dict]:
        self.trace_counter[0] += 1
        return jax.vmap(self.chunk_one)(ts)

    @functools.cached_property
    def chunk(self) -> Callable[[TrainState], tuple[TrainState, dict]]:
        """The compiled chunk for all seeds: [S]-stacked state -> (state, metrics [S]).

        The input is not donated: the run loop keeps the last finished state until the next chunk
        has finished, so an interrupt mid-chunk can still checkpoint it.
        """
        return jax.jit(self._traced_chunk)

    @functools.cached_property
    def evaluate(self) -> Callable[[TrainState], dict]:
        """Compiled greedy evaluation of every seed: [S]-stacked state -> metrics [S]."""
        return jax.jit(jax.vmap(self.evaluate_one))

    def __call__(self, key: jax.Array) -> tuple[TrainState, dict]:
        """The whole run as one program (PureJaxRL style): ``num_chunks`` chunks of every seed,
        from the state :meth:`init` draws.

        Returns the final [S]-stacked state and metrics stacked [num_chunks, S].
        """

        def run(ts):
            return jax.lax.scan(lambda s, _: jax.vmap(self.chunk_one)(s), ts, None, length=self.config.num_chunks)

        return jax.jit(run)(self.init(key))


def make_train(config: Config) -> Trainer:
    """Validate ``config`` (before anything compiles) and assemble the trainer."""
    validate(config)
    algorithm = ALGORITHMS[config.algo]
    env = make_env(config.env)
    spec = env.spec
    if config.agent_blocks > spec.num_agents:
        raise ConfigError("agent_blocks", f"must be at most the number of agents of {config.env} "
                                          f"({spec.num_agents}), got {config.agent_blocks}")
    common = dict(sharing=config.sharing, num_agents=spec.num_agents, hidden=config.hidden_size,
                  num_layers=config.num_layers, recurrent=config.network == "gru", layer_norm=config.layer_norm,
                  orthogonal=config.orthogonal_init, activation=config.activation)
    actor = nets.make_network(out_dim=spec.num_actions, out_gain=0.01,
                              log_std_init=config.log_std_init if spec.continuous else None, **common)
    critic = nets.make_network(out_dim=1, out_gain=1.0, **common)
    return Trainer(config, algorithm, env, actor, critic, _optimizer(config.actor_lr, config),
                   _optimizer(config.critic_lr, config))


def _optimizer(lr: float, config: Config) -> optax.GradientTransformation:
    adam = optax.adam(lr, eps=config.adam_eps)
    if config.max_grad_norm > 0:
        return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adam)
    return adam
