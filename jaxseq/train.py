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

from jaxseq import estimators, nets, normalization, objectives
from jaxseq.algorithms import ALGORITHMS, Algorithm
from jaxseq.config import Config, validate
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

    # -- construction -------------------------------------------------------------------------
    def init_one(self, key: jax.Array) -> TrainState:
        cfg, spec = self.config, self.env.spec
        k_actor, k_critic, k_env, key = jax.random.split(key, 4)
        actor_params = self.actor.init(k_actor, spec.obs_dim)
        critic_params = self.critic.init(k_critic, self._critic_in_dim())
        env_state, obs = jax.vmap(self.env.reset)(jax.random.split(k_env, cfg.num_envs))
        return TrainState(
            actor_params=actor_params,
            critic_params=critic_params,
            actor_opt=self.actor_tx.init(actor_params),
            critic_opt=self.critic_tx.init(critic_params),
            value_norm=normalization.init(),
            env_state=env_state,
            obs=obs,
            start=jnp.ones((cfg.num_envs,), bool),
            actor_carry=self.actor.init_carry((cfg.num_envs,)),
            critic_carry=self.critic.init_carry((cfg.num_envs,)),
            key=key,
            update=jnp.zeros((), jnp.int32),
        )

    def init(self, key: jax.Array) -> TrainState:
        """``num_seeds`` independent states with a leading seed axis, all from ``key``.

        Runs op by op, not as one compiled program: orthogonal initialisation calls LAPACK's QR,
        and XLA's CPU runtime deadlocked (jax 0.10, 2 cores) when one program ran several batched
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
            actions = nets.sample_actions(k_act, logits, ts.obs.avail)
            log_probs = nets.action_log_prob(logits, ts.obs.avail, actions)
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

    def advantages(self, batch: Rollout, vn: normalization.ValueNormState) -> tuple[jax.Array, jax.Array]:
        """GAE advantages and value targets, both [T, B, N], in return units."""
        cfg = self.config
        values = self._denorm(vn, batch.value_preds)
        next_values = self._denorm(vn, batch.next_value_preds)
        discounts = (cfg.gamma * (1.0 - batch.terminated.astype(jnp.float32)))[..., None]
        ends = (batch.terminated | batch.truncated)[..., None]
        adv = estimators.gae(batch.rewards, values, next_values, discounts, ends, cfg.gae_lambda)
        return adv, adv + values

    # -- losses -------------------------------------------------------------------------------
    def _replay(self, net: nets.MultiAgentNet, params, carry0, inputs, start) -> jax.Array:
        """Re-run ``net`` over sequences: inputs [L, M, N, D], start [L, M], carry0 [M, N, C] -> [L, M, N, K]."""
        n = self.env.spec.num_agents

        def step(carry, xs):
            x, s = xs
            carry, out = net.apply(params, carry, x, jnp.broadcast_to(s[:, None], s.shape + (n,)))
            return carry, out

        _, outs = jax.lax.scan(step, carry0, (inputs, start))
        return outs

    def _mask(self, mb: dict) -> jax.Array:
        alive = mb["obs"].alive
        return alive.astype(jnp.float32) if self.config.death_mask else jnp.ones_like(alive, jnp.float32)

    def actor_loss(self, params, mb: dict) -> tuple[jax.Array, dict]:
        """Negative PPO-clip objective minus the entropy bonus, on a minibatch of sequences."""
        cfg = self.config
        logits = self._replay(self.actor, params, mb["actor_carry"][0], mb["obs"].obs, mb["start"])
        log_probs = nets.action_log_prob(logits, mb["obs"].avail, mb["actions"])
        log_ratio = log_probs - mb["log_probs"]
        mask = self._mask(mb)
        surrogate = objectives.ppo_clip_objective(log_ratio, mb["advantages"], cfg.clip_eps, mask)
        ent = objectives.masked_mean(nets.entropy(logits, mb["obs"].avail), mask)
        loss = -surrogate - cfg.ent_coef * ent
        return loss, {"loss_actor": loss, "entropy": ent, **objectives.policy_diagnostics(log_ratio, cfg.clip_eps, mask)}

    def critic_loss(self, params, mb: dict, vn: normalization.ValueNormState) -> tuple[jax.Array, dict]:
        cfg = self.config
        preds = self._replay(self.critic, params, mb["critic_carry"][0], self._critic_input(mb["obs"]), mb["start"])
        loss = objectives.value_loss(preds[..., 0], mb["value_preds"], self._norm(vn, mb["targets"]),
                                     cfg.value_clip, cfg.huber_delta, self._mask(mb))
        return loss, {"loss_critic": loss}

    # -- one update ---------------------------------------------------------------------------
    def _sequences(self, x: jax.Array) -> jax.Array:
        """[T, B, ...] -> [L, (T / L) * B, ...]: cut time into chunks of L, chunks become the batch axis."""
        L = self.config.chunk_length
        T, B = x.shape[:2]
        x = x.reshape((T // L, L, B) + x.shape[2:]).swapaxes(0, 1)
        return x.reshape((L, (T // L) * B) + x.shape[3:])

    def update(self, ts: TrainState) -> tuple[TrainState, dict]:
        cfg = self.config
        ts, batch, ep_stats = self.rollout(ts)
        adv, targets = self.advantages(batch, ts.value_norm)
        value_norm = normalization.update(ts.value_norm, targets) if cfg.value_norm else ts.value_norm
        alive = batch.obs.alive
        if cfg.advantage_norm:
            mask = alive if cfg.death_mask else jnp.ones_like(alive)
            mean = objectives.masked_mean(adv, mask)
            std = jnp.sqrt(objectives.masked_mean((adv - mean) ** 2, mask))
            adv = (adv - mean) / (std + 1e-8)
        data = {
            "obs": batch.obs, "start": batch.start, "actions": batch.actions, "log_probs": batch.log_probs,
            "value_preds": batch.value_preds, "advantages": adv, "targets": targets,
            "actor_carry": batch.actor_carry, "critic_carry": batch.critic_carry,
        }
        data = jax.tree.map(self._sequences, data)
        num_seq = data["start"].shape[1]
        mb_size = num_seq // cfg.num_minibatches

        def minibatch_step(carry, idx):
            actor_params, critic_params, actor_opt, critic_opt = carry
            mb = jax.tree.map(lambda x: x[:, idx], data)
            a_grads, a_info = jax.grad(self.actor_loss, has_aux=True)(actor_params, mb)
            c_grads, c_info = jax.grad(self.critic_loss, has_aux=True)(critic_params, mb, value_norm)
            a_updates, actor_opt = self.actor_tx.update(a_grads, actor_opt, actor_params)
            c_updates, critic_opt = self.critic_tx.update(c_grads, critic_opt, critic_params)
            carry = (optax.apply_updates(actor_params, a_updates), optax.apply_updates(critic_params, c_updates),
                     actor_opt, critic_opt)
            return carry, {**a_info, **c_info}

        def epoch(carry, key):
            perm = jax.random.permutation(key, num_seq).reshape(cfg.num_minibatches, mb_size)
            return jax.lax.scan(minibatch_step, carry, perm)

        key, k_epochs = jax.random.split(ts.key)
        carry = (ts.actor_params, ts.critic_params, ts.actor_opt, ts.critic_opt)
        carry, infos = jax.lax.scan(epoch, carry, jax.random.split(k_epochs, cfg.epochs))
        actor_params, critic_params, actor_opt, critic_opt = carry
        ts = ts.replace(actor_params=actor_params, critic_params=critic_params, actor_opt=actor_opt,
                        critic_opt=critic_opt, value_norm=value_norm, key=key, update=ts.update + 1)
        metrics = {k: v.mean() for k, v in infos.items()}
        metrics.update(ep_stats)
        return ts, metrics

    # -- chunks and evaluation ----------------------------------------------------------------
    def chunk_one(self, ts: TrainState) -> tuple[TrainState, dict]:
        """``updates_per_chunk`` updates of one seed; metrics reduced to one value each."""
        ts, m = jax.lax.scan(lambda s, _: self.update(s), ts, None, length=self.config.updates_per_chunk)
        episodes = m["episodes"].sum()
        out = {k: m[k].mean() for k in ("loss_actor", "loss_critic", "entropy", "clip_frac", "approx_kl")}
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
            actions = nets.greedy_actions(logits, obs.avail)
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
        return {"test_return_mean": (ret * f).sum() / count, "test_win_rate": (won * f).sum() / count}

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
    common = dict(sharing=config.sharing, num_agents=spec.num_agents, hidden=config.hidden_size,
                  num_layers=config.num_layers, recurrent=config.network == "gru", layer_norm=config.layer_norm,
                  orthogonal=config.orthogonal_init, activation=config.activation)
    actor = nets.make_network(out_dim=spec.num_actions, out_gain=0.01, **common)
    critic = nets.make_network(out_dim=1, out_gain=1.0, **common)
    return Trainer(config, algorithm, env, actor, critic, _optimizer(config.actor_lr, config),
                   _optimizer(config.critic_lr, config))


def _optimizer(lr: float, config: Config) -> optax.GradientTransformation:
    adam = optax.adam(lr, eps=config.adam_eps)
    if config.max_grad_norm > 0:
        return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adam)
    return adam
