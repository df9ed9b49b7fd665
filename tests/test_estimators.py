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
        r, disc, 0.9, v
    )
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
        r, disc, 0.95, v
    )
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
        np.testing.assert_allclose(
            ours[..., i], gae(r[..., i], v[..., i], nv[..., i], disc[..., 0], ends[..., 0], 0.8), rtol=1e-6
        )


# -- off-policy estimators -------------------------------------------------------------------

from jaxseq.estimators import preopc, stepwise_weighted_is, vtrace  # noqa: E402


def numpy_preopc(r, v, nv, d, ends, lam, log_rhos):
    """A2PO paper Eq. 2 as a loop: A_t = delta_t + d_t lam min(1, rho_{t+1}) (1 - end_t) A_{t+1}."""
    T = r.shape[0]
    adv = np.zeros_like(r)
    nxt = np.zeros_like(r[0])
    for t in reversed(range(T)):
        c = np.minimum(1.0, np.exp(log_rhos[t + 1])) if t + 1 < T else 0.0
        nxt = r[t] + d[t] * nv[t] - v[t] + d[t] * lam * c * (1.0 - ends[t]) * nxt
        adv[t] = nxt
    return adv


def numpy_vtrace(r, v, nv, d, ends, lam, log_rhos, clip_rho=1.0, clip_c=1.0):
    """Espeholt et al. 2018 Eq. 1 written as a sum, per start time s (no recursion)."""
    T = r.shape[0]
    rho = np.exp(log_rhos)
    targets = np.zeros_like(r)
    for s in range(T):
        acc = np.zeros_like(r[0])
        weight = np.ones_like(r[0])
        for t in range(s, T):
            acc = acc + weight * np.minimum(clip_rho, rho[t]) * (r[t] + d[t] * nv[t] - v[t])
            weight = weight * d[t] * lam * np.minimum(clip_c, rho[t]) * (1.0 - ends[t])
        targets[s] = v[s] + acc
    adv = np.zeros_like(r)
    for t in range(T):
        boot = np.where(ends[t] | (t == T - 1), nv[t], targets[min(t + 1, T - 1)])
        adv[t] = r[t] + d[t] * boot - v[t]
    return targets, adv


def _random_batch(seed, T=12, B=3):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(T, B)).astype(np.float32)
    v = rng.normal(size=(T, B)).astype(np.float32)
    nv = np.concatenate([v[1:], rng.normal(size=(1, B))]).astype(np.float32)
    term = rng.random((T, B)) < 0.1
    trunc = (rng.random((T, B)) < 0.1) & ~term
    nv = np.where(trunc, rng.normal(size=(T, B)), nv).astype(np.float32)  # true final obs after a time limit
    d = (0.97 * (1 - term)).astype(np.float32)
    log_rhos = rng.normal(scale=0.5, size=(T, B)).astype(np.float32)
    return r, v, nv, d, term | trunc, log_rhos


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), lam=st.floats(0.0, 1.0))
def test_preopc_matches_the_paper_loop(seed, lam):
    r, v, nv, d, ends, lr = _random_batch(seed)
    np.testing.assert_allclose(
        preopc(r, v, nv, d, ends, lam, lr), numpy_preopc(r, v, nv, d, ends, lam, lr), rtol=1e-4, atol=1e-4
    )


def test_preopc_with_unit_ratio_is_gae_and_small_ratio_cuts_the_trace():
    r, v, nv, d, ends, lr = _random_batch(0)
    np.testing.assert_allclose(
        preopc(r, v, nv, d, ends, 0.9, np.zeros_like(lr)), gae(r, v, nv, d, ends, 0.9), rtol=1e-6
    )
    # A vanishing preceding ratio at t+1 stops credit flowing back from t+1 to t.
    cut = preopc(r, v, nv, d, np.zeros_like(ends), 0.9, np.full_like(lr, -30.0))
    np.testing.assert_allclose(cut, r + d * nv - v, rtol=1e-5, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), lam=st.floats(0.0, 1.0), clip_rho=st.sampled_from([0.5, 1.0, 2.0]))
def test_vtrace_matches_the_sum_form(seed, lam, clip_rho):
    r, v, nv, d, ends, lr = _random_batch(seed)
    ours = vtrace(r, v, nv, d, ends, lam, lr, clip_rho=clip_rho)
    ref = numpy_vtrace(r, v, nv, d, ends, lam, lr, clip_rho=clip_rho)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_vtrace_matches_rlax_without_episode_cuts():
    rng = np.random.default_rng(5)
    T, B = 15, 4
    r = rng.normal(size=(T, B)).astype(np.float32)
    v_all = rng.normal(size=(T + 1, B)).astype(np.float32)
    term = rng.random((T, B)) < 0.1  # terminations are expressible in rlax through the discount
    d = (0.95 * (1 - term)).astype(np.float32)
    lr = rng.normal(scale=0.4, size=(T, B)).astype(np.float32)
    targets, adv = vtrace(r, v_all[:-1], v_all[1:], d, np.zeros((T, B), bool), 0.9, lr)
    ref_t = jax.vmap(lambda *a: rlax.vtrace(*a, lambda_=0.9), in_axes=1, out_axes=1)(
        v_all[:-1], v_all[1:], r, d, np.exp(lr)
    )
    np.testing.assert_allclose(targets - v_all[:-1], ref_t, rtol=1e-4, atol=1e-4)
    # rlax's policy-gradient advantage bootstraps from lam * v_{t+1} + (1 - lam) * V(s_{t+1}) and
    # multiplies by the clipped rho_t: with lam = 1 it is ours times that rho.
    _, adv1 = vtrace(r, v_all[:-1], v_all[1:], d, np.zeros((T, B), bool), 1.0, lr)
    ref = jax.vmap(lambda *a: rlax.vtrace_td_error_and_advantage(*a, lambda_=1.0), in_axes=1, out_axes=1)(
        v_all[:-1], v_all[1:], r, d, np.exp(lr)
    )
    np.testing.assert_allclose(np.minimum(1.0, np.exp(lr)) * adv1, ref.pg_advantage, rtol=1e-4, atol=1e-4)


def test_vtrace_on_policy_is_lambda_returns():
    r, v, nv, d, ends, lr = _random_batch(3)
    targets, adv = vtrace(r, v, nv, d, ends, 0.8, np.zeros_like(lr))
    np.testing.assert_allclose(targets, v + gae(r, v, nv, d, ends, 0.8), rtol=1e-5, atol=1e-5)


def _stepwise_is_numpy(log_rhos, starts):
    T, B = log_rhos.shape
    w = np.ones((T, B))
    for b in range(B):
        prod = 1.0
        for t in range(T):
            if starts[t, b]:
                prod = 1.0
            w[t, b] = prod
            prod *= np.exp(log_rhos[t, b])
    return w / w.mean(axis=1, keepdims=True)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), T=st.integers(1, 12), B=st.integers(1, 6))
def test_stepwise_weighted_is_matches_a_numpy_loop(seed, T, B):
    rng = np.random.default_rng(seed)
    log_rhos = rng.normal(0.0, 0.3, (T, B)).astype(np.float32)
    starts = rng.random((T, B)) < 0.2
    starts[0] = True
    got = stepwise_weighted_is(jnp.asarray(log_rhos), jnp.asarray(starts))
    np.testing.assert_allclose(got, _stepwise_is_numpy(log_rhos, starts), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got).mean(axis=1), 1.0, rtol=1e-5)


def test_an_estimator_refuses_inputs_of_unequal_rank_or_integer_rewards():
    T, B, N = 5, 2, 3
    x = jnp.zeros((T, B, N))
    ends = jnp.zeros((T, B, N), bool)
    with pytest.raises(AssertionError, match="different rank"):
        gae(x, jnp.zeros((T, B)), x, x, ends, 0.9)  # values without the agent axis
    with pytest.raises(AssertionError, match="different rank"):
        preopc(x, x, x, x, ends, 0.9, jnp.zeros((T, B)))
    with pytest.raises(AssertionError):
        vtrace(jnp.zeros((T, B, N), jnp.int32), x, x, x, ends, 0.9, x)
