"""The tabular game: exact evaluation, the estimators against their exact expectations, the env adapter
and the improvement-frequency script (benchmarks/tabular_improvement.py) at a tiny size."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq import estimators
from jaxseq.envs import make_env, parse_env_id
from jaxseq.envs.tabular import joint_action_table, joint_index, make_game
from jaxseq.envs.tabular_exact import evaluate, joint_policy, preopc_expectation, sample_chains, vtrace_expectation
from jaxseq.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _softmax(x):
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def _policies(seed, n, S, A, shift=0.5):
    """A behaviour policy pi [n, S, A] and a target near it in which agent 0 (a 'preceding agent') moved."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, S, A))
    moved = logits.copy()
    moved[0] += shift * rng.normal(size=(S, A))
    return _softmax(logits), _softmax(moved)


# --------------------------------------------------------------------------------------------
# The game and exact evaluation
# --------------------------------------------------------------------------------------------


def test_joint_index_is_mixed_radix_with_agent_0_most_significant():
    table = joint_action_table(3, 3)
    assert table.shape == (27, 3)
    np.testing.assert_array_equal(table[11], [1, 0, 2])  # 1*9 + 0*3 + 2
    np.testing.assert_array_equal(joint_index(table, 3), np.arange(27))
    pi = _softmax(np.random.default_rng(0).normal(size=(3, 2, 3)))
    joint = joint_policy(pi)
    np.testing.assert_allclose(joint[1, 11], pi[0, 1, 1] * pi[1, 1, 0] * pi[2, 1, 2])
    np.testing.assert_allclose(joint.sum(-1), 1.0)


def test_make_game_is_deterministic_and_stochastic():
    g1, g2, g3 = make_game(7), make_game(7), make_game(8)
    np.testing.assert_array_equal(g1.P, g2.P)
    np.testing.assert_array_equal(g1.R, g2.R)
    assert not np.allclose(g1.R, g3.R)
    assert g1.P.shape == (4, 27, 4) and g1.R.shape == (4, 27) and g1.mu0.shape == (4,)
    np.testing.assert_allclose(g1.P.sum(-1), 1.0)
    np.testing.assert_allclose(g1.mu0.sum(), 1.0)
    # Exactly one fully coordinated joint action per state carries the bonus (reward > 1).
    assert np.all((g1.R > 1.0).sum(-1) == 1)


@pytest.fixture(scope="module")
def small():
    game = make_game(3, num_states=3, num_agents=2, num_actions=2, gamma=0.9)
    pi, pi_hat = _policies(0, 2, 3, 2)
    return game, pi, pi_hat


def test_exact_evaluation_satisfies_bellman_and_zero_mean_advantages(small):
    game, pi, _ = small
    ev = evaluate(game, pi)
    joint = joint_policy(pi)
    # V = sum_a pi(a|s) (R + gamma P V)
    np.testing.assert_allclose(ev.V, (joint * (game.R + game.gamma * game.P @ ev.V)).sum(-1), atol=1e-12)
    np.testing.assert_allclose((joint * ev.A).sum(-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(ev.d.sum(), 1.0, atol=1e-12)
    assert np.all(ev.d > 0)
    # d is stationary for "restart from mu0 with prob 1 - gamma, else follow P_pi".
    np.testing.assert_allclose(ev.d, (1 - game.gamma) * game.mu0 + game.gamma * ev.d @ ev.P_pi, atol=1e-12)
    np.testing.assert_allclose(ev.J, game.mu0 @ ev.V)


def test_J_matches_monte_carlo_returns(small):
    game, pi, _ = small
    ev = evaluate(game, pi)
    horizon, chains = 200, 4000  # gamma^200 * max|R| < 1e-8
    _, _, rewards = sample_chains(game, pi, horizon, chains, seed=1)
    returns = (game.gamma ** np.arange(horizon))[:, None] * rewards
    returns = returns.sum(0)
    se = returns.std(ddof=1) / np.sqrt(chains)
    assert abs(returns.mean() - ev.J) < 4 * se, (returns.mean(), ev.J, se)


def test_performance_difference_identity(small):
    """J(pi') - J(pi) = E_{s ~ d^{pi'}, a ~ pi'}[A^pi(s, a)] / (1 - gamma) (Kakade & Langford 2002)."""
    game, pi, pi_new = small
    ev, ev_new = evaluate(game, pi), evaluate(game, pi_new)
    rhs = (ev_new.d[:, None] * ev_new.pi * ev.A).sum() / (1 - game.gamma)
    np.testing.assert_allclose(ev_new.J - ev.J, rhs, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Exact expectations of the estimators: identities
# --------------------------------------------------------------------------------------------


def test_preopc_expectation_identities(small):
    game, pi, pi_hat = small
    ev, ev_hat = evaluate(game, pi), evaluate(game, pi_hat)
    any_values = np.array([3.0, -1.0, 0.5])
    # Untruncated traces, lam = 1: G + V = Q^{target} for any V.
    G = preopc_expectation(game, pi, pi_hat, any_values, 1.0, truncate=False)
    np.testing.assert_allclose(G + any_values[:, None], ev_hat.Q, atol=1e-9)
    # On-policy (rho = 1) with V = V^pi: every TD error has mean A^pi given (s, a) and mean 0 later.
    np.testing.assert_allclose(preopc_expectation(game, pi, pi, ev.V, 0.7), ev.A, atol=1e-9)


def test_vtrace_expectation_identities(small):
    game, pi, pi_hat = small
    ev, ev_hat = evaluate(game, pi), evaluate(game, pi_hat)
    any_values = np.array([3.0, -1.0, 0.5])
    # Clip thresholds above every ratio and lam = 1: the expected target is V^{target} for any V.
    np.testing.assert_allclose(vtrace_expectation(game, pi, pi_hat, any_values, 1.0, 1e6, 1e6), ev_hat.V, atol=1e-9)
    # V^{target} is a fixed point for any lam when untruncated.
    np.testing.assert_allclose(vtrace_expectation(game, pi, pi_hat, ev_hat.V, 0.6, 1e6, 1e6), ev_hat.V, atol=1e-9)
    # On-policy: the lambda-return has mean V^pi when V = V^pi.
    np.testing.assert_allclose(vtrace_expectation(game, pi, pi, ev.V, 0.8), ev.V, atol=1e-9)


def test_preopc_is_closer_to_the_preceding_policys_advantage_than_gae(small):
    """With V = V^{pi_hat}, the first TD error has mean A^{pi_hat}; later ones are weighted by
    min(1, rho), which removes part of the behaviour policy's bias, so PreOPC's expectation is
    closer to A^{pi_hat} than GAE's (rho = 1). Not a theorem for every game: it held in 386 of 400
    random cases (seeds 0..199, lam 0.9 and 0.95), with a median error ratio of 0.28."""
    game, pi, pi_hat = small
    ev, ev_hat = evaluate(game, pi), evaluate(game, pi_hat)
    w = ev.d[:, None] * ev.pi  # where the behaviour data lies
    for lam in (0.9, 0.95, 1.0):
        pre = preopc_expectation(game, pi, pi_hat, ev_hat.V, lam)
        gae = preopc_expectation(game, pi, pi, ev_hat.V, lam)
        err_pre = np.sqrt((w * (pre - ev_hat.A) ** 2).sum())
        err_gae = np.sqrt((w * (gae - ev_hat.A) ** 2).sum())
        assert err_pre < 0.7 * err_gae, (lam, err_pre, err_gae)
        assert np.abs(pre - ev_hat.A).max() < np.abs(gae - ev_hat.A).max()


# --------------------------------------------------------------------------------------------
# The estimators' sample means converge to the exact expectations
# --------------------------------------------------------------------------------------------

TAIL = 200  # steps dropped at the end of each chain: the estimators cut the trace there; (gamma lam)^200 < 1e-9
GROUPS = 20  # independent groups of chains for the standard error (steps within a chain are correlated)


def _run_estimators(game, pi, pi_hat, values, steps, chains, seed, lam):
    """preopc advantages and vtrace targets on sampled behaviour chains, [steps, chains] each,
    with the cells they fall in: (s, a) pairs s * J + a and states s."""
    states, actions, rewards = sample_chains(game, pi, steps + TAIL, chains, seed)
    log_rho = np.log(joint_policy(pi_hat) / joint_policy(pi))[states[:-1], actions]
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    args = (f32(rewards), f32(values[states[:-1]]), f32(values[states[1:]]), game.gamma, jnp.zeros(rewards.shape, bool))
    adv = np.asarray(estimators.preopc(*args, lam, f32(log_rho)))[:steps]
    targets, _ = estimators.vtrace(*args, 1.0, f32(log_rho), clip_rho=1e6, clip_c=1e6)
    s, a = states[:steps], actions[:steps]
    return adv, s * game.num_joint + a, np.asarray(targets)[:steps], s


def _cell_means(x, cell, cells, group, groups):
    """Per group (of chains) and cell, the mean of x: [groups, cells]."""
    sums, counts = np.zeros((groups, cells)), np.zeros((groups, cells))
    np.add.at(sums, (group, cell), x)
    np.add.at(counts, (group, cell), 1)
    assert counts.min() > 0
    return sums / counts, counts


def _check_convergence(x, cell, cells, exact):
    """Error with 4x data below the mean error of the four quarter-size data sets, and the full-data
    mean within 4.5 standard errors (from the spread over GROUPS groups of chains) in every cell."""
    chains = x.shape[1]
    quarter = np.broadcast_to(np.arange(chains) // (chains // 4), x.shape)
    q_means, _ = _cell_means(x, cell, cells, quarter, 4)
    g_means, counts = _cell_means(x, cell, cells, np.broadcast_to(np.arange(chains) % GROUPS, x.shape), GROUPS)
    full = (g_means * counts).sum(0) / counts.sum(0)
    mse_quarter = ((q_means - exact) ** 2).mean()
    mse_full = ((full - exact) ** 2).mean()
    assert mse_full < mse_quarter, (mse_full, mse_quarter)
    se = g_means.std(0, ddof=1) / np.sqrt(GROUPS)
    assert np.all(np.abs(full - exact) < 4.5 * se + 1e-4), (full - exact, se)


def test_preopc_and_vtrace_sample_means_converge_to_exact_expectations(small):
    """400 chains x 250 steps per quarter (100k samples), 400k in all; each quarter's error is the
    "1x" error, the whole set's the "4x" one (expected ratio of squared errors 1/4; over 40 seeds
    the worst was 0.55 for PreOPC and 0.86 for V-trace)."""
    game, pi, pi_hat = small
    ev, ev_hat = evaluate(game, pi), evaluate(game, pi_hat)
    lam = 0.9
    exact_pre = preopc_expectation(game, pi, pi_hat, ev.V, lam).reshape(-1)
    exact_vt = vtrace_expectation(game, pi, pi_hat, ev.V, 1.0, 1e6, 1e6)
    np.testing.assert_allclose(exact_vt, ev_hat.V, atol=1e-9)  # so V-trace's sample means approach V^{pi_hat}
    adv, sa, targets, s = _run_estimators(game, pi, pi_hat, ev.V, 250, 1600, 2, lam)
    _check_convergence(adv, sa, game.num_states * game.num_joint, exact_pre)
    _check_convergence(targets, s, game.num_states, exact_vt)


# --------------------------------------------------------------------------------------------
# The environment adapter
# --------------------------------------------------------------------------------------------


def test_make_env_builds_the_tabular_game_and_steps_under_jit_and_vmap():
    env = make_env("tabular:game?seed=5&states=3&agents=2&actions=4&max_steps=4")
    spec = env.spec
    assert (spec.num_agents, spec.obs_dim, spec.state_dim, spec.num_actions, spec.max_steps) == (2, 3, 3, 4, 4)
    assert not spec.has_win and not spec.heterogeneous
    game = env.env.game
    np.testing.assert_array_equal(game.R, make_game(5, num_states=3, num_agents=2, num_actions=4).R)

    B = 16
    keys = jax.random.split(jax.random.PRNGKey(0), B)
    state, obs = jax.jit(jax.vmap(env.reset))(keys)
    assert obs.obs.shape == (B, 2, 3) and obs.state.shape == (B, 2, 3)
    assert obs.avail.shape == (B, 2, 4) and bool(obs.avail.all()) and bool(obs.alive.all())
    np.testing.assert_array_equal(obs.obs.sum(-1), 1.0)
    np.testing.assert_array_equal(obs.obs[:, 0], obs.obs[:, 1])

    step = jax.jit(jax.vmap(env.step))
    rng = np.random.default_rng(0)
    for t in range(1, 9):
        actions = jnp.asarray(rng.integers(4, size=(B, 2)), jnp.int32)
        s_before = np.asarray(state.inner.s)
        state, out = step(jax.random.split(jax.random.PRNGKey(t), B), state, actions)
        expected = game.R[s_before, joint_index(np.asarray(actions), 4)]
        np.testing.assert_allclose(out.reward, np.repeat(expected[:, None], 2, 1), rtol=1e-6)
        np.testing.assert_array_equal(
            out.final_obs.obs[:, 0].argmax(-1), np.asarray(out.final_obs.state[:, 1]).argmax(-1)
        )
        assert not bool(out.terminated.any()) and not bool(out.won.any())
        assert bool((out.truncated == (t % 4 == 0)).all()) and bool((out.done == out.truncated).all())
    assert int(out.episode_length[0]) == 4


def test_env_transitions_follow_P():
    env = make_env("tabular:game?seed=2&states=3&agents=2&actions=2")
    adapter, game = env.env, env.env.game
    state, _ = adapter.reset(jax.random.PRNGKey(0))
    state = state.replace(s=jnp.asarray(1, jnp.int32))
    actions = jnp.array([1, 0], jnp.int32)  # joint action 2
    keys = jax.random.split(jax.random.PRNGKey(1), 20000)
    nxt, _ = jax.jit(jax.vmap(adapter.step, in_axes=(0, None, None)))(keys, state, actions)
    freq = np.bincount(np.asarray(nxt.s), minlength=3) / 20000
    np.testing.assert_allclose(freq, game.P[1, 2], atol=0.015)


@pytest.mark.parametrize(
    "bad, words",
    [
        ("tabular:grid", r"unknown tabular task 'grid'; allowed: \['game'\]"),
        ("tabular:game?states=0", "states .* must be positive"),
        ("tabular:game?agents=12&actions=5", "at most"),
        ("tabular:game?seed=-1", "seed .* must be >= 0"),
        ("tabular:game?size=3", "bad parameter"),
    ],
)
def test_bad_tabular_ids_fail_with_a_clear_message(bad, words):
    with pytest.raises(ConfigError, match=words):
        parse_env_id(bad)


def test_tabular_id_defaults():
    assert parse_env_id("tabular:game")[2] == {"seed": 0, "states": 4, "agents": 3, "actions": 3, "max_steps": 50}


# --------------------------------------------------------------------------------------------
# The improvement-frequency study at a tiny size
# --------------------------------------------------------------------------------------------


def _run_study(script: str, tmp_path, *args) -> tuple[str, list]:
    """Run a tabular study script without saving; returns (stdout, its JSON rows)."""
    out = tmp_path / "rows.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args, "--no-save", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout, json.loads(out.read_text())


def test_tabular_improvement_script(tmp_path):
    stdout, rows = _run_study(
        "tabular_improvement.py",
        tmp_path,
        "--agents",
        "2",
        "3",
        "--configs",
        "1:0.2",
        "200:0.2",
        "--stages",
        "6",
        "--steps",
        "5",
    )
    assert "command: `python benchmarks/tabular_improvement.py" in stdout and "| 3 | 200 | 0.2 | a2po |" in stdout
    variants = {"happo", "a2po", "a2po-preopc", "a2po-uncorrected", "a2po-unclipped-rho"}
    assert len(rows) == 2 * 2 * len(variants) and {r["variant"] for r in rows} == variants
    for r in rows:
        for key in ("agent_improved", "later_improved", "stage_improved"):
            assert 0.0 <= r[key][0] <= 1.0 and r[key][1] >= 0.0
        assert r["tv"][0] > 0 and r["stages"] == 6
    small_steps = [r for r in rows if r["lr"] == 1]
    # Small exact steps improve J: the first-order surrogate is accurate there.
    assert all(r["agent_improved"][0] == 1.0 and r["stage_dJ"][0] > 0 for r in small_steps)
    # ... and Thm. 1's surrogate L is closer to J than Prop. 1's L^I, which carries the preceding agents'
    # gain as an offset (removing it removes most of the error).
    assert all(
        max(r["err_corrected"][0], r["err_intuitive_diff"][0]) < 0.5 * r["err_intuitive"][0] for r in small_steps
    )
    tv = {(r["n"], r["lr"], r["variant"]): r["tv"][0] for r in rows}
    assert all(tv[(n, 200.0, v)] > tv[(n, 1.0, v)] for n in (2, 3) for v in variants)


def test_tabular_joint_improvement_script(tmp_path):
    stdout, rows = _run_study(
        "tabular_joint_improvement.py",
        tmp_path,
        "--agents",
        "1",
        "3",
        "--configs",
        "1:0.2",
        "200:0.2",
        "--stages",
        "4",
        "--steps",
        "5",
    )
    assert "command: `python benchmarks/tabular_joint_improvement.py" in stdout and "| 3 | 200 | 0.2 | fp3o |" in stdout
    rows = {(r["n"], r["lr"], r["variant"]): r for r in rows}
    for r in rows.values():
        assert 0.0 <= r["stage_improved"][0] <= 1.0 and r["tv"][0] > 0
    for lr in (1.0, 200.0):
        # One agent: the parallel ascent (step size lr * n on the agent-averaged surrogate) is HAPPO's
        # single update, and FP3O (R = 1) is MAPPO with twice the steps.
        np.testing.assert_allclose(rows[1, lr, "mappo"]["stage_dJ"][0], rows[1, lr, "happo"]["stage_dJ"][0], rtol=1e-5)
        np.testing.assert_allclose(
            rows[1, lr, "fp3o"]["stage_dJ"][0], rows[1, lr, "mappo-2x"]["stage_dJ"][0], rtol=1e-5
        )
        assert rows[3, lr, "fp3o"]["stage_dJ"][0] != rows[3, lr, "mappo-2x"]["stage_dJ"][0]
