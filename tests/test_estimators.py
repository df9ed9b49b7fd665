"""GAE against rlax and against a NumPy loop written from the formula (with episode cuts)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseq.estimators import gae

rlax = pytest.importorskip("rlax")


def numpy_gae(rewards, values, next_values, discounts, episode_ends, lam):
    """Direct transcription: delta_t = r_t + d_t V'_t - V_t; A_t = delta_t + d_t lam (1 - end_t) A_{t+1}."""
    T = rewards.shape[0]
    adv = np.zeros_like(rewards)
    nxt = np.zeros_like(rewards[0])
    for t in reversed(range(T)):
        delta = rewards[t] + discounts[t] * next_values[t] - values[t]
        nxt = delta + discounts[t] * lam * (1.0 - episode_ends[t]) * nxt
        adv[t] = nxt
    return adv


def test_gae_matches_rlax_without_episode_ends():
    rng = np.random.default_rng(0)
    T, B = 17, 5
    r = rng.normal(size=(T, B)).astype(np.float32)
    v = rng.normal(size=(T + 1, B)).astype(np.float32)
    disc = np.full((T, B), 0.97, np.float32)
    ours = gae(r, v[:-1], v[1:], disc, np.zeros((T, B), bool), 0.9)
    theirs = jax.vmap(rlax.truncated_generalized_advantage_estimation, in_axes=(1, 1, None, 1), out_axes=1)(
        r, disc, 0.9, v)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_gae_matches_rlax_with_terminations():
    # A termination sets the discount to 0, which cuts the rlax trace too: the two must agree.
    rng = np.random.default_rng(1)
    T, B = 20, 3
    r = rng.normal(size=(T, B)).astype(np.float32)
    v = rng.normal(size=(T + 1, B)).astype(np.float32)
    term = rng.random((T, B)) < 0.2
    disc = (0.99 * (1 - term)).astype(np.float32)
    ours = gae(r, v[:-1], v[1:], disc, term, 0.95)
    theirs = jax.vmap(rlax.truncated_generalized_advantage_estimation, in_axes=(1, 1, None, 1), out_axes=1)(
        r, disc, 0.95, v)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 30), B=st.integers(1, 4), lam=st.floats(0.0, 1.0), seed=st.integers(0, 10_000))
def test_gae_matches_numpy_loop_with_truncations(T, B, lam, seed):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(T, B)).astype(np.float32)
    v = rng.normal(size=(T, B)).astype(np.float32)
    nv = rng.normal(size=(T, B)).astype(np.float32)  # true next values: differ from v[t+1] after a reset
    term = rng.random((T, B)) < 0.15
    trunc = (rng.random((T, B)) < 0.15) & ~term
    disc = (0.99 * (1 - term)).astype(np.float32)
    ends = term | trunc
    ours = np.asarray(gae(r, v, nv, disc, ends, lam))
    np.testing.assert_allclose(ours, numpy_gae(r, v, nv, disc, ends.astype(np.float32), lam), rtol=1e-4, atol=1e-4)


def test_truncation_bootstraps_and_termination_does_not():
    r = jnp.zeros((1, 2))
    v = jnp.zeros((1, 2))
    nv = jnp.full((1, 2), 10.0)
    term = jnp.array([[True, False]])
    trunc = jnp.array([[False, True]])
    adv = gae(r, v, nv, 0.9 * (1 - term), term | trunc, 0.95)
    np.testing.assert_allclose(adv, [[0.0, 9.0]])


def test_episode_end_cuts_the_trace():
    # The second episode's reward must not leak into the first episode's advantage.
    r = jnp.array([0.0, 100.0])
    v = jnp.zeros(2)
    adv = gae(r, v, v, jnp.full(2, 0.99), jnp.array([True, False]), 1.0)
    assert float(adv[0]) == 0.0 and float(adv[1]) == 100.0


def test_trailing_agent_axis_broadcasts_discounts():
    rng = np.random.default_rng(2)
    r = rng.normal(size=(6, 2, 3)).astype(np.float32)
    v = rng.normal(size=(6, 2, 3)).astype(np.float32)
    nv = rng.normal(size=(6, 2, 3)).astype(np.float32)
    ends = rng.random((6, 2, 1)) < 0.3
    disc = np.full((6, 2, 1), 0.9, np.float32)
    ours = gae(r, v, nv, disc, ends, 0.8)
    for i in range(3):
        np.testing.assert_allclose(ours[..., i], gae(r[..., i], v[..., i], nv[..., i], disc[..., 0], ends[..., 0], 0.8),
                                   rtol=1e-6)
