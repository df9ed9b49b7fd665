"""The training rollout's bootstrap values, recomputed from scratch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq.train import make_train

from support.helpers import tiny

T, B = 12, 3


@pytest.mark.parametrize("num_seeds", [1, 2], ids=["one-member-branch", "vmapped-select"])
def test_next_values_are_the_critic_on_the_true_next_observation(num_seeds):
    """``next_value_preds[t]`` = V(true next observation | the critic's carry after step t), where
    an episode was truncated (its final observation) and where it went on (the next one): the env
    replayed from the initial state with the batch's actions and the rollout's keys, the critic
    applied step by step."""
    trainer = make_train(
        tiny(
            env="mpe:spread?max_steps=4",
            network="gru",
            num_seeds=num_seeds,
            num_envs=B,
            rollout_length=T,
            num_minibatches=1,
        )
    )
    first = trainer.init(jax.random.PRNGKey(3))
    _, batch, _ = jax.jit(trainer.over_members(trainer.rollout))(first)
    s, b = jax.tree.map(lambda x: x[0], (first, batch))
    eng, n = trainer.with_values(s.hyper).engine, trainer.env.spec.num_agents
    assert b.truncated.any() and not b.truncated.all() and not b.terminated.any()
    env_step, critic = jax.jit(jax.vmap(trainer.env.step)), jax.jit(eng.critic.apply)
    key, env_state = s.key, s.env_state
    for t in range(T):
        key, _, k_env = jax.random.split(key, 3)
        env_state, out = env_step(jax.random.split(k_env, B), env_state, b.actions[t])
        obs_t = jax.tree.map(lambda x: x[t], b.obs)
        start = jnp.broadcast_to(b.start[t][:, None], (B, n))
        carry, v = critic(s.critic_params, b.critic_carry[t], eng.critic_input(obs_t), start)
        np.testing.assert_allclose(b.value_preds[t], v[..., 0], rtol=1e-5, atol=1e-6)
        _, v_next = critic(s.critic_params, carry, eng.critic_input(out.final_obs), jnp.zeros_like(start))
        np.testing.assert_allclose(b.next_value_preds[t], v_next[..., 0], rtol=1e-5, atol=1e-6, err_msg=f"step {t}")
