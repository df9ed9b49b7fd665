"""Losses on hand-computed cases; selection rules produce permutations; adaptive clipping."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseq import objectives as O
from jaxseq.ordering import SELECTION_RULES, adaptive_clip, block_sizes, next_agent, pick_block

ONE = jnp.ones(())


def test_ppo_clip_hand_cases():
    # r = 1.5, A = 2, eps = 0.2: min(3.0, 1.2 * 2) = 2.4.  r = 0.5, A = -1: min(-0.5, -0.8) = -0.8.
    lr = jnp.log(jnp.array([1.5, 0.5]))
    np.testing.assert_allclose(O.ppo_clip_objective(lr, jnp.array([2.0, -1.0]), 0.2, ONE), (2.4 - 0.8) / 2, rtol=1e-6)
    # The mask drops the second sample.
    np.testing.assert_allclose(
        O.ppo_clip_objective(lr, jnp.array([2.0, -1.0]), 0.2, jnp.array([1.0, 0.0])), 2.4, rtol=1e-6
    )


def test_value_loss_hand_cases():
    # Huber with delta 1 on error 3: 0.5 + 1 * 2 = 2.5. Clipped prediction old + 0.2 = 0.2, error 2.8 -> 2.3.
    np.testing.assert_allclose(O.value_loss(jnp.array(0.0), jnp.array(0.0), jnp.array(3.0), 0.0, 1.0, ONE), 2.5)
    np.testing.assert_allclose(
        O.value_loss(jnp.array(2.0), jnp.array(0.0), jnp.array(3.0), 0.2, 1.0, ONE), 2.3, rtol=1e-6
    )
    np.testing.assert_allclose(O.value_loss(jnp.array(2.0), jnp.array(0.0), jnp.array(3.0), 0.0, 0.0, ONE), 0.5)


def test_happo_objective_scales_the_advantage_by_the_preceding_factor():
    lr, lf, adv = jnp.log(1.5), jnp.log(0.5), jnp.array(2.0)
    # M = 0.5: min(1.5 * 1.0, 1.2 * 1.0) = 1.2
    np.testing.assert_allclose(O.happo_objective(lr, lf, adv, 0.2, ONE), 1.2, rtol=1e-6)
    # The factor carries no gradient.
    g = jax.grad(lambda f: O.happo_objective(jnp.log(1.1), f, adv, 0.2, ONE))(lf)
    assert float(g) == 0.0


def test_a2po_objective_clips_the_preceding_ratio_to_half_eps():
    # rho = 2 -> clip(2, 0.9, 1.1) = 1.1 with eps = 0.2; r = 1: l = 1.1, A = 1: min(1.1, 1.1) = 1.1.
    np.testing.assert_allclose(O.a2po_objective(jnp.log(1.0), jnp.log(2.0), jnp.array(1.0), 0.2, ONE), 1.1, rtol=1e-6)
    # r = 1.2, rho = 1.05: l = 1.26 > 1.2 -> clipped to 1.2 for A > 0.
    np.testing.assert_allclose(O.a2po_objective(jnp.log(1.2), jnp.log(1.05), jnp.array(1.0), 0.2, ONE), 1.2, rtol=1e-6)
    # With rho = 1 it is PPO-clip.
    lr = jnp.linspace(-0.5, 0.5, 7)
    adv = jnp.linspace(-1, 1, 7)
    np.testing.assert_allclose(
        O.a2po_objective(lr, jnp.zeros(7), adv, 0.2, ONE), O.ppo_clip_objective(lr, adv, 0.2, ONE), rtol=1e-6
    )


def test_coppo_objective_double_clip():
    # others = 1.5 clipped to 1.1 (eps_o 0.1); r = 1: product 1.1 clipped with eps 0.2 stays 1.1; A = 1.
    np.testing.assert_allclose(O.coppo_objective(0.0, jnp.log(1.5), jnp.array(1.0), 0.2, 0.1, ONE), 1.1, rtol=1e-6)
    # r = 1.3, others 1.0: product 1.3 -> clipped to 1.2 for A > 0.
    np.testing.assert_allclose(O.coppo_objective(jnp.log(1.3), 0.0, jnp.array(1.0), 0.2, 0.1, ONE), 1.2, rtol=1e-6)


def test_others_log_ratio_excludes_exactly_the_own_ratio():
    # Three agents with ratios 2, 3, 5: each agent's product is that of the other two.
    lr = jnp.log(jnp.array([[2.0, 3.0, 5.0]]))
    np.testing.assert_allclose(jnp.exp(O.others_log_ratio(lr, ONE)), [[15.0, 10.0, 6.0]], rtol=1e-6)
    # A masked-out agent counts as ratio 1 for the others; one agent alone has an empty product.
    np.testing.assert_allclose(
        jnp.exp(O.others_log_ratio(lr, jnp.array([1.0, 0.0, 1.0]))), [[5.0, 10.0, 2.0]], rtol=1e-6
    )
    assert float(O.others_log_ratio(jnp.log(jnp.array([7.0])), ONE)[0]) == 0.0
    # Each agent's entry does not depend on its own ratio at all.
    grads = jax.jacobian(lambda x: O.others_log_ratio(x, ONE))(jnp.array([0.1, -0.2, 0.3]))
    np.testing.assert_array_equal(np.diag(grads), 0.0)
    np.testing.assert_array_equal(grads + np.eye(3), 1.0)


def test_fp3o_objective_hand_cases():
    # Middle ratios (1.5, 0.5), so R = (0.5, 1.5); current ratios (1.3, 1.0), A = 1, eps = 0.2:
    # agent 0: min(1.3 * 0.5, 1.2 * 0.5) = 0.6; agent 1: 1.0 * 1.5 = 1.5; mean 1.05.
    lr, mid = jnp.log(jnp.array([1.3, 1.0])), jnp.log(jnp.array([1.5, 0.5]))
    np.testing.assert_allclose(O.fp3o_objective(lr, mid, jnp.ones(2), 0.2, ONE), 1.05, rtol=1e-6)
    # A < 0: agent 0 (r = 0.7 below 1 - eps): min(-0.7 * 0.5, -0.8 * 0.5) = -0.4.
    np.testing.assert_allclose(
        O.fp3o_objective(jnp.log(jnp.array([0.7, 1.0])), mid, -jnp.ones(2), 0.2, ONE), (-0.4 - 1.5) / 2, rtol=1e-6
    )
    # R carries no gradient; the own middle ratio does not enter the own term.
    g = jax.grad(lambda m: O.fp3o_objective(lr, m, jnp.ones(2), 0.2, ONE))(mid)
    np.testing.assert_array_equal(g, 0.0)
    np.testing.assert_allclose(
        O.fp3o_objective(lr, jnp.log(jnp.array([9.0, 0.5])), jnp.array([0.0, 1.0]), 0.2, ONE), 9.0 / 2, rtol=1e-6
    )
    # Middle = old (R = 1) is the independence step, PPO-clip (Eq. 9).
    lrs, adv = jnp.linspace(-0.5, 0.5, 12).reshape(4, 3), jnp.linspace(-1, 1, 12).reshape(4, 3)
    np.testing.assert_allclose(
        O.fp3o_objective(lrs, jnp.zeros((4, 3)), adv, 0.2, ONE), O.ppo_clip_objective(lrs, adv, 0.2, ONE), rtol=1e-6
    )


def test_fp3o_guard_compares_the_joint_with_the_independent_middle_surrogate():
    # Middle ratios (1.5, 0.5): joint 0.75 per agent. A = (1, 1): sum_j 0.75 = 1.5 < 1.5 + 0.5 = 2 -> skip.
    mid = jnp.log(jnp.array([1.5, 0.5]))
    assert not bool(O.fp3o_guard(mid, jnp.ones(2), ONE))
    # A = (-1, -1): -1.5 >= -2 -> run; equal surrogates (all ratios 1) -> run.
    assert bool(O.fp3o_guard(mid, -jnp.ones(2), ONE))
    assert bool(O.fp3o_guard(jnp.zeros((5, 2)), jnp.ones((5, 2)), ONE))
    # Masked samples do not count: only the second row (A = -1) remains.
    mids, adv = jnp.stack([mid, mid]), jnp.array([[1.0, 1.0], [-1.0, -1.0]])
    assert bool(O.fp3o_guard(mids, adv, jnp.array([[0.0], [1.0]])))


def test_opspo_clip_range_narrows_with_off_policyness():
    low, high = O.opspo_clip_range(jnp.log(jnp.array([1.0, 1.05, 1.5, 1 / 1.5])), 0.2, 0.1)
    np.testing.assert_allclose(low, [0.8, 0.84, 0.9, 0.9], rtol=1e-6)  # min(max(rho, 1/rho) 0.8, 0.9)
    np.testing.assert_allclose(high, [1.2, 1.2 / 1.05, 1.1, 1.1], rtol=1e-6)  # max(min(rho, 1/rho) 1.2, 1.1)


def test_opspo_objective_hand_cases():
    eps1, eps2, a = 0.2, 0.1, jnp.array(1.0)
    rho = jnp.log(1.5)  # rt = 1.2; base (0.9, 1.1) -> corrected range (1.08, 1.32)
    # r = 1: r rt = 1.2 inside the corrected range, weight 0.5
    np.testing.assert_allclose(O.opspo_objective(0.0, rho, a, 0.5, eps1, eps2, True, ONE), 0.6, rtol=1e-6)
    # r = 1.2: r rt = 1.44 clipped to 1.32 for A > 0
    np.testing.assert_allclose(O.opspo_objective(jnp.log(1.2), rho, a, 1.0, eps1, eps2, True, ONE), 1.32, rtol=1e-6)
    # without the correction the same sample is clipped to 1 + eps1
    np.testing.assert_allclose(O.opspo_objective(jnp.log(1.2), rho, a, 1.0, eps1, eps2, False, ONE), 1.2, rtol=1e-6)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), crc=st.booleans())
def test_opspo_reduces_to_ppo_on_policy_and_to_the_vanilla_objective_without_corrections(seed, crc):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    log_ratio = 0.3 * jax.random.normal(k1, (64,))
    log_rho = 0.3 * jax.random.normal(k2, (64,))
    adv = jax.random.normal(k3, (64,))
    mask = jnp.ones(64)
    # rho = 1, weights 1: PPO-clip with eps1, with or without the clip-range correction
    np.testing.assert_allclose(
        O.opspo_objective(log_ratio, 0.0, adv, 1.0, 0.2, 0.1, crc, mask),
        O.ppo_clip_objective(log_ratio, adv, 0.2, mask),
        rtol=1e-5,
        atol=1e-6,  # a mean of 64 float32 terms near 0: its rounding is absolute
    )
    # every correction off (weights 1, no CRC; the caller's GAE advantages): PPO-clip on r * clip(rho)
    rt = jnp.clip(jnp.exp(log_rho), 0.8, 1.2)
    np.testing.assert_allclose(
        O.opspo_objective(log_ratio, log_rho, adv, 1.0, 0.2, 0.1, False, mask),
        O.ppo_clip_objective(log_ratio + jnp.log(rt), adv, 0.2, mask),
        rtol=1e-5,
        atol=1e-6,  # a mean of 64 float32 terms near 0: its rounding is absolute
    )


def _order(rule, scores, key):
    """A full order [N] from fixed scores: one block of every agent, as the sequential scheme picks it."""
    n = scores.shape[0]
    return pick_block(rule, 0, n, n, scores, jnp.ones((n,), bool), key)[0]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 9), seed=st.integers(0, 10_000), rule=st.sampled_from(SELECTION_RULES))
def test_selection_rules_produce_permutations(n, seed, rule):
    scores = jax.random.normal(jax.random.PRNGKey(seed), (n,))
    order = np.asarray(_order(rule, scores, jax.random.PRNGKey(seed + 1)))
    assert sorted(order.tolist()) == list(range(n))


def test_selection_rules_follow_their_scores():
    scores = jnp.array([0.3, 2.0, -1.0, 0.9])
    key = jax.random.PRNGKey(0)
    assert _order("cyclic", scores, key).tolist() == [0, 1, 2, 3]
    assert _order("greedy", scores, key).tolist() == [1, 3, 0, 2]
    assert _order("reverse-greedy", scores, key).tolist() == [2, 0, 3, 1]
    semi = _order("semi-greedy", scores, key).tolist()
    assert semi[0] == 1  # greedy first, then alternating with uniform picks
    assert _order("reverse-semi-greedy", scores, key).tolist()[0] == 2
    with pytest.raises(ValueError, match="selection rule"):
        next_agent("best", 0, scores, jnp.ones(4, bool), key)


def test_random_rule_only_picks_remaining_agents():
    remaining = jnp.array([False, True, False, True])
    picks = jax.vmap(lambda k: next_agent("random", 1, jnp.zeros(4), remaining, k))(
        jax.random.split(jax.random.PRNGKey(0), 200)
    )
    assert set(np.asarray(picks).tolist()) == {1, 3}


def test_block_sizes_follow_the_paper_example():
    assert block_sizes(10, 3) == (3, 3, 4)  # A2PO paper App. B.3
    assert block_sizes(5, 0) == (1,) * 5 and block_sizes(4, 4) == (1,) * 4 and block_sizes(4, 1) == (4,)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 9), blocks=st.integers(0, 9), seed=st.integers(0, 10_000), rule=st.sampled_from(SELECTION_RULES)
)
def test_blocks_partition_the_agents(n, blocks, seed, rule):
    sizes = block_sizes(n, min(blocks, n))
    scores = jax.random.normal(jax.random.PRNGKey(seed), (n,))
    remaining, picked = jnp.ones(n, bool), []
    for u, size in enumerate(sizes):
        agents, valid, remaining = pick_block(
            rule, sum(sizes[:u]), size, max(sizes), scores, remaining, jax.random.PRNGKey(seed + u)
        )
        assert np.asarray(valid).sum() == size
        # padding slots repeat the block's first agent
        assert all(int(a) == int(agents[0]) for a, v in zip(agents, valid) if not v)
        picked += [int(a) for a, v in zip(agents, valid) if v]
    assert sorted(picked) == list(range(n)) and not bool(remaining.any())


def test_adaptive_clip_schedule():
    eps, n = 0.2, 4
    values = [float(adaptive_clip(eps, k, n)) for k in range(1, n + 1)]
    np.testing.assert_allclose(values, [0.125, 0.15, 0.175, 0.2], rtol=1e-6)
    assert float(adaptive_clip(eps, 1, n, c=1.0)) == pytest.approx(eps)


def test_coppos_inner_clip_is_half_the_clip_by_default_and_the_field_where_set():
    """The reference CoPPO baseline clips the others' joint ratio to 1 +/- clip_eps / 2: with
    clip_eps 0.1 (Hopper) that is 0.05, not the old constant 0.1."""
    from jaxseq.algorithms.components import OBJECTIVES
    from jaxseq.config import Config

    key = jax.random.PRNGKey(0)
    log_ratio = 0.2 * jax.random.normal(key, (16, 3))
    u = {"advantages": jax.random.normal(jax.random.PRNGKey(1), (16, 3)), "mask": jnp.ones((16, 3))}
    others = O.others_log_ratio(log_ratio, u["mask"])
    for clip_eps, field, inner in ((0.1, 0.0, 0.05), (0.2, 0.0, 0.1), (0.1, 0.3, 0.3)):
        got = OBJECTIVES["coppo"].fn(log_ratio, u, clip_eps, Config(clip_eps=clip_eps, coppo_clip_others=field))
        want = O.coppo_objective(log_ratio, others, u["advantages"], clip_eps, inner, u["mask"])
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert not np.isclose(
        O.coppo_objective(log_ratio, others, u["advantages"], 0.1, 0.05, u["mask"]),
        O.coppo_objective(log_ratio, others, u["advantages"], 0.1, 0.1, u["mask"]),
    )


def test_a_product_of_many_agents_ratios_cannot_overflow_the_factor():
    """27 agents' log ratios of 4 each sum to 104 > log(float32 max): HAPPO's factor and FP3O's R
    stay finite (bounded at e^20) instead of stopping the run with an inf."""
    log_mid = jnp.full((8, 27), 4.0)
    adv, mask = jnp.ones((8, 27)), jnp.ones((8, 27))
    assert not np.isfinite(np.exp(np.float32(104.0)))
    assert np.isfinite(O.happo_objective(jnp.zeros((8, 27)), jnp.full((8, 27), 104.0), adv, 0.2, mask))
    assert np.isfinite(O.fp3o_objective(jnp.zeros((8, 27)), log_mid, adv, 0.2, mask))
    np.testing.assert_allclose(O.bounded_exp(jnp.array([-100.0, 0.5, 100.0])), np.exp([-20.0, 0.5, 20.0]), rtol=1e-6)


def test_a_surrogate_refuses_an_input_missing_its_agent_axis():
    """[T, K] beside [T] would broadcast into a wrong [T, K] product (a column per agent of the
    wrong rho); the surrogates refuse unequal ranks at trace time (scalars stay allowed)."""
    log_ratio, adv = jnp.zeros((4, 3)), jnp.ones((4, 3))
    with pytest.raises(AssertionError, match="different rank"):
        O.a2po_objective(log_ratio, jnp.zeros((4,)), adv, 0.2, 1.0)
    with pytest.raises(AssertionError, match="different rank"):
        O.opspo_objective(log_ratio, jnp.zeros((4, 1)), adv, jnp.ones((4,)), 0.2, 0.1, True, 1.0)
    O.a2po_objective(log_ratio, jnp.zeros((4, 1)), adv, 0.2, 1.0)  # [..., 1]: one value for the unit
