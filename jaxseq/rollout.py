"""Acting in the environments: the training rollout and the greedy evaluation, both one ``lax.scan``
over steps of ``B`` vmapped envs. Arrays are time-major ``[T, B, N, ...]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from jaxseq.types import Rollout, TrainState

if TYPE_CHECKING:
    from jaxseq.engine import Engine

EPISODE_SUMS = ("episodes", "return_sum", "length_sum", "win_sum")


def rollout(eng: "Engine", env, ts: TrainState) -> tuple[TrainState, Rollout, dict]:
    """``rollout_length`` steps in every env. Returns the new state, the batch and the sums over the
    episodes that ended (:data:`EPISODE_SUMS`)."""
    cfg, n = eng.config, eng.num_agents

    def step(carry, _):
        ts, stats = carry
        key, k_act, k_env = jax.random.split(ts.key, 3)
        start_n = jnp.broadcast_to(ts.start[:, None], (cfg.num_envs, n))
        actor_carry, logits = eng.actor.apply(ts.actor_params, ts.actor_carry, ts.obs.obs, start_n)
        actions = eng.policy.sample(k_act, logits, ts.obs.avail)
        log_probs = eng.policy.log_prob(logits, ts.obs.avail, actions)
        critic_carry, v = eng.critic.apply(ts.critic_params, ts.critic_carry, eng.critic_input(ts.obs), start_n)
        env_state, out = jax.vmap(env.step)(jax.random.split(k_env, cfg.num_envs), ts.env_state, actions)
        # The value of the true next observation, continuing this episode's recurrent state.
        _, v_next = eng.critic.apply(
            ts.critic_params, critic_carry, eng.critic_input(out.final_obs), jnp.zeros_like(start_n)
        )
        record = Rollout(
            obs=ts.obs,
            start=ts.start,
            actions=actions,
            log_probs=log_probs,
            value_preds=v[..., 0],
            next_value_preds=v_next[..., 0],
            rewards=out.reward,
            terminated=out.terminated,
            truncated=out.truncated,
            actor_carry=ts.actor_carry,
            critic_carry=ts.critic_carry,
        )
        done = out.done.astype(jnp.float32)
        stats = {
            "episodes": stats["episodes"] + done.sum(),
            "return_sum": stats["return_sum"] + (done * out.episode_return).sum(),
            "length_sum": stats["length_sum"] + (done * out.episode_length).sum(),
            "win_sum": stats["win_sum"] + (done * out.won).sum(),
        }
        ts = ts.replace(
            env_state=env_state,
            obs=out.obs,
            start=out.done,
            actor_carry=actor_carry,
            critic_carry=critic_carry,
            key=key,
        )
        return (ts, stats), record

    zeros = {k: jnp.zeros((), jnp.float32) for k in EPISODE_SUMS}
    (ts, stats), batch = jax.lax.scan(step, (ts, zeros), None, length=cfg.rollout_length)
    return ts, batch, stats


def greedy_evaluation(eng: "Engine", env, ts: TrainState) -> dict:
    """Greedy evaluation: ``eval_envs`` fresh episodes; the first episode of each env counts. Its key
    is derived from (not split off) the training key, so evaluating does not change training."""
    n, num = eng.num_agents, eng.config.eval_envs
    key = jax.random.fold_in(ts.key, 0x5EED)
    k_reset, k_steps = jax.random.split(key)
    env_state, obs = jax.vmap(env.reset)(jax.random.split(k_reset, num))

    def step(carry, k):
        env_state, obs, actor_carry, start, finished, ret, won = carry
        start_n = jnp.broadcast_to(start[:, None], (num, n))
        actor_carry, logits = eng.actor.apply(ts.actor_params, actor_carry, obs.obs, start_n)
        actions = eng.policy.greedy(logits, obs.avail)
        env_state, out = jax.vmap(env.step)(jax.random.split(k, num), env_state, actions)
        first_end = out.done & ~finished
        ret = jnp.where(first_end, out.episode_return, ret)
        won = jnp.where(first_end, out.won, won)
        return (env_state, out.obs, actor_carry, out.done, finished | out.done, ret, won), None

    init = (
        env_state,
        obs,
        eng.actor.init_carry((num,)),
        jnp.ones((num,), bool),
        jnp.zeros((num,), bool),
        jnp.zeros((num,)),
        jnp.zeros((num,), bool),
    )
    (_, _, _, _, finished, ret, won), _ = jax.lax.scan(step, init, jax.random.split(k_steps, eng.spec.max_steps + 1))
    f = finished.astype(jnp.float32)
    count = jnp.maximum(f.sum(), 1.0)
    nan = jnp.float32(jnp.nan)  # no finished episode: no number (the rows say null), not 0
    return {
        "test_return_mean": jnp.where(f.sum() > 0, (ret * f).sum() / count, nan),
        "test_win_rate": jnp.where(f.sum() > 0, (won * f).sum() / count, nan),
    }
