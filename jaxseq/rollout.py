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
    episodes that ended (:data:`EPISODE_SUMS`).

    ``next_value_preds[t]``, the critic on the true next observation continuing the episode's
    recurrent state, is ``value_preds[t + 1]`` wherever the episode goes on (the same inputs: the
    next observation, the carry, no reset), one forward after the last step, and a second forward
    on the final observation only on steps where an env was truncated (a ``lax.cond``: skipped
    for one member where no env was truncated; a vmap over members computes it on every step).
    Where an episode terminated it is the next episode's first value, which the estimators'
    discount of 0 ignores."""
    cfg, n = eng.config, eng.num_agents
    no_start = jnp.zeros((cfg.num_envs, n), bool)
    critic_params = ts.critic_params  # fixed during the rollout

    def value(carry, obs):
        """The critic on ``obs`` continuing the recurrent state ``carry`` (no reset): [B, N]."""
        return eng.critic.apply(critic_params, carry, eng.critic_input(obs), no_start)[1][..., 0]

    def step(carry, _):
        ts, stats = carry
        key, k_act, k_env = jax.random.split(ts.key, 3)
        start_n = jnp.broadcast_to(ts.start[:, None], (cfg.num_envs, n))
        actor_carry, logits = eng.actor.apply(ts.actor_params, ts.actor_carry, ts.obs.obs, start_n)
        actions = eng.policy.sample(k_act, logits, ts.obs.avail)
        log_probs = eng.policy.log_prob(logits, ts.obs.avail, actions)
        critic_carry, v = eng.critic.apply(ts.critic_params, ts.critic_carry, eng.critic_input(ts.obs), start_n)
        env_state, out = jax.vmap(env.step)(jax.random.split(k_env, cfg.num_envs), ts.env_state, actions)
        # The value of the final observation of a truncated episode, continuing its recurrent state.
        v_final = jax.lax.cond(
            out.truncated.any(),
            lambda: value(critic_carry, out.final_obs),
            lambda: jnp.zeros(v.shape[:-1]),
        )
        record = Rollout(
            obs=ts.obs,
            start=ts.start,
            actions=actions,
            log_probs=log_probs,
            value_preds=v[..., 0],
            next_value_preds=v_final,
            rewards=out.reward,
            terminated=out.terminated,
            truncated=out.truncated,
            actor_carry=ts.actor_carry,
            critic_carry=ts.critic_carry,
        )
        stats = _add_ended_episodes(stats, out)
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
    following = jnp.concatenate([batch.value_preds[1:], value(ts.critic_carry, ts.obs)[None]])
    next_values = jnp.where(batch.truncated[..., None], batch.next_value_preds, following)
    return ts, batch.replace(next_value_preds=next_values), stats


def _add_ended_episodes(stats: dict, out) -> dict:
    """:data:`EPISODE_SUMS` ``stats`` plus the episodes that ended at this step (``out``: the
    envs' :class:`~jaxseq.envs.base.Step`, [B])."""
    done = out.done.astype(jnp.float32)
    return {
        "episodes": stats["episodes"] + done.sum(),
        "return_sum": stats["return_sum"] + (done * out.episode_return).sum(),
        "length_sum": stats["length_sum"] + (done * out.episode_length).sum(),
        "win_sum": stats["win_sum"] + (done * out.won).sum(),
    }


def episode_quotas(episodes: int, num_envs: int) -> tuple[int, ...]:
    """How many complete episodes each of ``num_envs`` parallel envs plays so that they make
    ``episodes`` together: as equal as possible, the first envs one more."""
    return tuple(episodes // num_envs + (i < episodes % num_envs) for i in range(num_envs))


def greedy_evaluation(eng: "Engine", env, ts: TrainState, episodes: int | None = None) -> dict:
    """Greedy evaluation of ``episodes`` (default ``eval_episodes``) complete episodes, played by
    min(``eval_envs``, episodes) parallel envs, each its fixed quota (:func:`episode_quotas`) of
    consecutive episodes from a fresh reset. A fixed quota per env, not "the first episodes to
    end", so short episodes are not favoured. Its key is derived from (not split off) the training
    key, so evaluating does not change training.

    Returns test_return_mean, test_win_rate and test_episodes (the episodes counted) as scalars,
    and episode_returns / episode_wins / episode_lengths [num_envs * max quota] per counted
    episode (NaN where a slot was not played)."""
    n = eng.num_agents
    episodes = episodes or eng.config.eval_episodes
    num = min(eng.config.eval_envs, episodes)
    quotas = episode_quotas(episodes, num)
    quota, most = jnp.array(quotas), max(quotas)
    rows = jnp.arange(num)
    key = jax.random.fold_in(ts.key, 0x5EED)
    k_reset, k_steps = jax.random.split(key)
    env_state, obs = jax.vmap(env.reset)(jax.random.split(k_reset, num))

    def step(carry, k):
        env_state, obs, actor_carry, start, count, returns, wins, lengths = carry
        start_n = jnp.broadcast_to(start[:, None], (num, n))
        actor_carry, logits = eng.actor.apply(ts.actor_params, actor_carry, obs.obs, start_n)
        actions = eng.policy.greedy(logits, obs.avail)
        env_state, out = jax.vmap(env.step)(jax.random.split(k, num), env_state, actions)
        counted = out.done & (count < quota)
        slot = jnp.minimum(count, most - 1)
        returns = returns.at[rows, slot].set(jnp.where(counted, out.episode_return, returns[rows, slot]))
        wins = wins.at[rows, slot].set(jnp.where(counted, out.won, wins[rows, slot]))
        lengths = lengths.at[rows, slot].set(jnp.where(counted, out.episode_length, lengths[rows, slot]))
        return (env_state, out.obs, actor_carry, out.done, count + counted, returns, wins, lengths), None

    init = (
        env_state,
        obs,
        eng.actor.init_carry((num,)),
        jnp.ones((num,), bool),
        jnp.zeros((num,), jnp.int32),
        jnp.zeros((num, most)),
        jnp.zeros((num, most)),
        jnp.zeros((num, most)),
    )
    # An episode lasts at most max_steps transitions, so this many steps finish every quota.
    length = most * (eng.spec.max_steps + 1)
    (_, _, _, _, count, returns, wins, lengths), _ = jax.lax.scan(step, init, jax.random.split(k_steps, length))
    played = jnp.arange(most)[None, :] < count[:, None]  # [num, most]
    total = played.sum()
    nan = jnp.float32(jnp.nan)  # no finished episode: no number (the rows say null), not 0
    mean = lambda x: jnp.where(total > 0, jnp.sum(jnp.where(played, x, 0.0)) / jnp.maximum(total, 1), nan)  # noqa: E731
    return {
        "test_return_mean": mean(returns),
        "test_win_rate": mean(wins),
        "test_episodes": total,
        "episode_returns": jnp.where(played, returns, nan).ravel(),
        "episode_wins": jnp.where(played, wins, nan).ravel(),
        "episode_lengths": jnp.where(played, lengths, nan).ravel(),
    }
