"""The update schemes (``jaxseq.schemes``) through one compiled update: each reduces to PPO or
to another algorithm where the papers say it must (one agent, one block, lambda one), the
sequential loop touches every agent and records its per-agent diagnostics, and every scheme
trains with several agents and continuous actions. The per-unit ratios, advantages and clips
against NumPy are ``test_conformance.py``; the pinned values ``test_golden.py``."""

import json

import jax
import numpy as np
import pytest

from jaxseq import checkpoint
from jaxseq.run import train_run
from jaxseq.train import make_train

from support.helpers import one_update, run_chunks, tiny


def _same_training(cfg, reference: str, algo: str, **algo_overrides):
    """One update of ``reference`` and of ``algo`` from the same state on the same batch
    (:func:`helpers.one_update`, cached: references repeat across cases); their actors and losses
    must agree. One minibatch per epoch, so the schemes' different minibatch permutations cannot
    matter."""
    _, ref_m, ref_params = one_update(cfg.replace(algo=reference, num_minibatches=1))
    _, m, params = one_update(cfg.replace(algo=algo, num_minibatches=1, **algo_overrides))
    for a, b in zip(jax.tree.leaves(ref_params), jax.tree.leaves(params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for k in ("loss_actor", "loss_critic", "clip_frac", "approx_kl"):
        np.testing.assert_allclose(ref_m[k], m[k], rtol=1e-4, atol=1e-7, err_msg=k)


@pytest.mark.parametrize(
    "algo, sharing, extra",
    [
        ("happo", "fups", {}),
        ("happo_preopc", "nops", {}),
        ("a2po", "fups", {}),
        ("a2po", "paps", {"loop_order": "epochs-outer"}),
        ("a2po", "fups", {"shared_optimizer": "one"}),
        ("coppo", "fups", {}),
        ("rpisa", "paps", {}),
    ],
)
def test_with_one_agent_every_multi_agent_objective_equals_ppo(algo, sharing, extra):
    _same_training(tiny(env="mpe:spread?n=1", num_seeds=1, sharing=sharing), "mappo", algo, **extra)


# -m slow (25 s each; CI's slow step): the conformance tests check the block path in every sharing
# mode and loop order, and HAPPO's factor per unit.
@pytest.mark.slow
@pytest.mark.parametrize("algo", ["happo", "a2po"])
def test_one_block_of_every_agent_is_the_simultaneous_update(algo):
    # One unit holding all agents: no preceding agents (rho = 1, PreOPC = GAE), adaptive clip at k = n gives eps.
    _same_training(tiny(num_seeds=1, sharing="nops"), "mappo", algo, agent_blocks=1, loop_order="agents-outer")


@pytest.mark.parametrize(
    "sharing, extra",
    [
        # 27 s cold, with -m slow: test_conformance's OPSPO NoPS cases check that the learned weights
        # are exactly 1 while no earlier unit's agent has moved, in the default suite.
        pytest.param("nops", {}, marks=pytest.mark.slow),
        ("fups", {"opspo_aec": False, "opspo_sdc": False, "opspo_crc": False}),
    ],
    ids=["learned-omega", "no-corrections"],
)
def test_opspo_with_one_agent_equals_ppo(sharing, extra):
    # rho = 1: V-trace = GAE at lambda = 1, state weights 1 (no preceding agent: the learned omega is
    # fitted but not used; step-wise WIS of rho = 1 is exactly 1), the dynamic
    # range is 1 +/- eps1.
    _same_training(tiny(env="mpe:spread?n=1", num_seeds=1, gae_lambda=1.0, sharing=sharing), "mappo", "opspo", **extra)


# WIS and no corrections with -m slow: the conformance and golden tests pin OPSPO's update in every
# sharing mode; the learned omega-nets' ring buffers and their checkpoint are checked only here.
@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({}, marks=pytest.mark.slow),
        # -m slow (23 s): the conformance tests recompute the learned weights under NoPS
        pytest.param({"sharing": "nops"}, marks=pytest.mark.slow),
        pytest.param({"opspo_aec": False, "opspo_sdc": False, "opspo_crc": False}, marks=pytest.mark.slow),
    ],
    ids=["wis", "learned-omega", "no-corrections"],
)
def test_opspo_runs_with_several_agents(extra, tmp_path):
    trainer = make_train(tiny(algo="opspo", num_seeds=1, **extra))
    state, (m,) = run_chunks(trainer, trainer.init(jax.random.PRNGKey(0)), 1)
    for k in ("loss_actor", "loss_critic", "clip_frac", "preceding_ratio_mean"):
        assert np.all(np.isfinite(m[k])), k
    assert float(m["preceding_ratio_mean"][0]) != 1.0
    assert 0.0 < float(m["state_weight_min"][0]) <= float(m["state_weight_mean"][0]) <= 1.0
    if trainer.sdc_method == "none":
        assert float(m["state_weight_min"][0]) == 1.0
    if trainer.sdc_method == "bch":
        assert np.isfinite(m["density_loss"][0])
        assert state.extra["density"].ring.filled.sum() == trainer.config.updates_per_chunk  # one slot per update
        # the ring buffers, the log-prob cache and the omega-nets are part of the checkpointed state
        checkpoint.save(tmp_path, 1, state)
        _, restored = checkpoint.restore(tmp_path, jax.eval_shape(lambda: state))
        for a, b in zip(jax.tree.leaves(state.extra["density"]), jax.tree.leaves(restored.extra["density"])):
            np.testing.assert_array_equal(a, b)


def test_mappo_vtrace_with_one_epoch_and_lambda_one_equals_mappo():
    # Before the first epoch every ratio is 1, and then V-trace's advantage r + gamma v_{t+1} - V
    # equals GAE's at lambda = 1.
    _same_training(tiny(num_seeds=1, epochs=1, gae_lambda=1.0), "mappo", "mappo_vtrace")


def test_mappo_vtrace_recomputes_its_correction_every_epoch():
    results = {algo: one_update(tiny(algo=algo, num_seeds=1, epochs=4))[2] for algo in ("mappo", "mappo_vtrace")}
    assert not all(
        np.allclose(a, b) for a, b in zip(jax.tree.leaves(results["mappo"]), jax.tree.leaves(results["mappo_vtrace"]))
    )


def test_rpisa_updates_one_agent_per_rollout_and_every_agent_once_per_stage():
    trainer = make_train(tiny(algo="rpisa", sharing="nops", num_seeds=1, updates_per_chunk=1))
    state = trainer.init(jax.random.PRNGKey(0))
    moved = []
    for _ in range(3):
        before = jax.device_get(state.actor_params["params"]["head"]["kernel"][0])
        state, _ = trainer.chunk(state)
        after = jax.device_get(state.actor_params["params"]["head"]["kernel"][0])
        changed = [i for i in range(3) if not np.array_equal(before[i], after[i])]
        assert len(changed) == 1, changed
        moved += changed
    assert sorted(moved) == [0, 1, 2]
    assert int(state.update[0]) == 3


@pytest.mark.parametrize(
    "algo, sharing, loop_order",
    [("happo", "nops", "agents-outer"), ("a2po", "fups", "epochs-outer"), ("a2po", "paps", "agents-outer")],
)
def test_sequential_zero_learning_rate_changes_nothing_and_rho_stays_one(algo, sharing, loop_order):
    # Every unit re-evaluates the ratios from the current parameters: with nothing moving they are
    # exactly 1. (With a learning rate, tests/test_conformance.py recomputes them in every mode.)
    before, m, after = one_update(
        tiny(algo=algo, sharing=sharing, loop_order=loop_order, actor_lr=0.0, critic_lr=0.0, num_seeds=1)
    )
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        np.testing.assert_array_equal(a, b)
    assert float(m["preceding_ratio_mean"]) == 1.0


@pytest.mark.parametrize("loop_order, blocks", [("agents-outer", 0), ("epochs-outer", 2)])
def test_sequential_nops_update_touches_every_agent(loop_order, blocks):
    before, _, after = one_update(
        tiny(algo="a2po", sharing="nops", num_seeds=1, loop_order=loop_order, agent_blocks=blocks)
    )
    kernel_b = before["params"]["head"]["kernel"]
    kernel_a = after["params"]["head"]["kernel"]
    for i in range(3):  # every agent's own head moved
        assert not np.allclose(kernel_a[i], kernel_b[i])


def test_sequential_per_agent_diagnostics_in_the_metrics_lines(tmp_path):
    cfg = tiny(algo="a2po", selection_rule="greedy", num_seeds=2, total_steps=4 * 8 * 2 * 2, eval_every=0)
    run_dir = train_run(cfg, out=tmp_path, progress=False)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    n = 3
    for row in rows:
        # Every update's order is a permutation, so the mean positions always sum to 0 + 1 + ... + n-1.
        assert len(row["agent_position"]) == n
        assert sum(row["agent_position"]) == pytest.approx(n * (n - 1) / 2)
        for key in ("agent_clip_frac", "agent_approx_kl", "agent_tv", "agent_abs_adv"):
            assert len(row[key]) == n and all(v >= 0 for v in row[key]), key
        assert row["tv"] >= 0 and row["preceding_ratio_mean"] > 0


@pytest.mark.slow  # the golden test pins CoPPO's update (PaPS, continuous) against MAPPO's
def test_coppo_runs_with_several_agents_and_differs_from_mappo():
    results = {}
    for algo in ("mappo", "coppo"):
        trainer = make_train(tiny(algo=algo, num_seeds=1))
        _, (m,) = run_chunks(trainer, trainer.init(jax.random.PRNGKey(0)), 1)
        results[algo] = m
        assert np.all(np.isfinite(m["loss_actor"]))
    # Same key, same data at the first update; the others' ratio changes the surrogate after the first step.
    assert results["mappo"]["loss_actor"][0] != results["coppo"]["loss_actor"][0]


def test_fp3o_with_one_agent_is_ppo_with_twice_the_epochs():
    # One agent: R = 1 (no other agent), so the dependence step continues PPO-clip from the middle
    # parameters and optimiser state; each step runs `epochs`. One update: the critic (fitted for
    # `epochs` in both) has not yet fed back into the actor; one minibatch: permutations cannot matter.
    cfg = tiny(env="mpe:spread?n=1", num_seeds=1, num_minibatches=1)
    _, ref_m, ref_params = one_update(cfg.replace(algo="mappo", epochs=4))
    _, m, params = one_update(cfg.replace(algo="fp3o", epochs=2))
    for a, b in zip(jax.tree.leaves(ref_params), jax.tree.leaves(params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for k in ("loss_actor", "clip_frac", "approx_kl", "entropy"):
        np.testing.assert_allclose(ref_m[k], m[k], rtol=1e-4, atol=1e-7, err_msg=k)


# -m slow: the golden test pins FP3O's update under NoPS, FuPS (GRU) and PaPS (continuous), and the
# conformance tests recompute its middle ratios.
@pytest.mark.slow
@pytest.mark.parametrize("sharing, network, guard", [("paps", "gru", True), ("nops", "mlp", False)])
def test_fp3o_runs_with_several_agents(sharing, network, guard):
    trainer = make_train(
        tiny(algo="fp3o", num_seeds=1, sharing=sharing, network=network, fp3o_guard=guard, updates_per_chunk=1)
    )
    state = trainer.init(jax.random.PRNGKey(0))
    before = jax.device_get(state.actor_params["params"]["head"]["kernel"][0])
    state, (m,) = run_chunks(trainer, state, 1)
    for k in ("loss_actor", "loss_critic", "clip_frac", "approx_kl", "middle_ratio_mean", "fp3o_guard_pass"):
        assert np.all(np.isfinite(m[k])), k
    assert float(m["middle_ratio_mean"][0]) != 1.0
    after = jax.device_get(state.actor_params["params"]["head"]["kernel"][0])
    assert float(m["fp3o_guard_pass"][0]) in (0.0, 1.0)
    for i in range(3):  # every agent's own head moved (stacked under both sharings; at least the independence step)
        assert not np.allclose(before[i], after[i])


# -m slow: the golden test pins one continuous update of A2PO, HAPPO, OPSPO, FP3O and CoPPO, and
# the conformance tests the joint density ratio of every algorithm.
@pytest.mark.slow
@pytest.mark.parametrize("algo, sharing", [("fp3o", "paps"), ("opspo", "nops")])
def test_continuous_actions_train_in_every_scheme(algo, sharing):
    """Gaussian actors on continuous MPE spread (with the sequential case of the variants test, the
    fast twin of the MA-MuJoCo training runs): FP3O, and OPSPO's sequential scheme with learned
    state weights (float actions in its ring); each agent's log-std trains."""
    trainer = make_train(tiny(env="mpe:spread?actions=continuous", algo=algo, sharing=sharing, num_seeds=1))
    state = trainer.init(jax.random.PRNGKey(0))
    before = jax.device_get(state.actor_params["params"]["head"])
    state, (m,) = run_chunks(trainer, state, 1)
    for key in ("loss_actor", "loss_critic", "entropy", "approx_kl"):
        assert np.all(np.isfinite(m[key])), key
    after = jax.device_get(state.actor_params["params"]["head"])
    moved = np.abs(after["log_std"] - before["log_std"])  # [seeds, (agents,) A]
    assert np.all(moved.reshape(moved.shape[0], -1, moved.shape[-1]).max(-1) > 0)  # every agent's log-std trained
    if algo == "opspo":
        assert state.extra["density"].ring.items["data"]["actions"].dtype == np.float32
