"""Action distributions: masked categorical and the continuous Gaussian, against scipy's densities."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from jaxseq import policies

from support.helpers import tiny_net


def test_masked_categorical_never_picks_unavailable_actions():
    pol = policies.Categorical()
    logits = jnp.array([[5.0, 0.0, 0.0], [0.0, 0.0, 9.0]])
    avail = jnp.array([[False, True, True], [True, True, False]])
    samples = jax.vmap(lambda k: pol.sample(k, logits, avail))(jax.random.split(jax.random.PRNGKey(0), 500))
    assert not np.any(np.asarray(avail)[np.arange(2), samples] == 0)
    np.testing.assert_array_equal(pol.greedy(logits, avail), [1, 0])
    np.testing.assert_allclose(np.exp(pol.log_probs(logits, avail)).sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(pol.entropy(logits, avail), [np.log(2), np.log(2)], rtol=1e-6)
    np.testing.assert_allclose(pol.log_prob(logits, avail, jnp.array([2, 0])), [np.log(0.5)] * 2, rtol=1e-6)


def _gaussian_case():
    rng = np.random.default_rng(0)
    mean, log_std = rng.uniform(-0.9, 0.9, (4, 3)), rng.uniform(-1.0, 0.5, (4, 3))
    actions = rng.normal(size=(4, 3))
    avail = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], bool)  # padded action dimensions
    per_dim = stats.norm.logpdf(actions, mean, np.exp(log_std))
    ent_dim = stats.norm.entropy(mean, np.exp(log_std))
    out = jnp.asarray(np.concatenate([mean, log_std], -1), jnp.float32)
    return out, jnp.asarray(avail), jnp.asarray(actions, jnp.float32), per_dim, ent_dim, avail


def test_gaussian_log_prob_and_entropy_reduce_over_real_dimensions():
    out, avail, actions, per_dim, ent_dim, mask = _gaussian_case()
    count = mask.sum(-1)
    for reduce, scale in (("sum", 1.0), ("mean", 1.0 / count)):
        pol = policies.Gaussian(reduce)
        np.testing.assert_allclose(pol.log_prob(out, avail, actions), (per_dim * mask).sum(-1) * scale, rtol=1e-5)
        np.testing.assert_allclose(pol.entropy(out, avail), (ent_dim * mask).sum(-1) * scale, rtol=1e-5)
    # The default ratio is the joint density ratio: the product of the per-dimension ratios (the
    # A2PO, FP3O and HARL code); "mean" (the ablation) takes their geometric mean.
    other = out.at[:, :3].add(0.1)
    other_dim = stats.norm.logpdf(np.asarray(actions), np.asarray(other[:, :3]), np.exp(np.asarray(out[:, 3:])))
    assert policies.Gaussian().reduce == "sum" and policies.make_policy(True).reduce == "sum"
    for reduce, scale in (("sum", 1.0), ("mean", 1.0 / count)):
        pol = policies.Gaussian(reduce)
        np.testing.assert_allclose(
            pol.log_prob(other, avail, actions) - pol.log_prob(out, avail, actions),
            ((other_dim - per_dim) * mask).sum(-1) * scale,
            rtol=1e-4,
            atol=1e-6,
        )


def test_gaussian_log_std_is_clamped_so_far_values_stay_finite():
    """The log-std is read clamped to [-20, 2] (the A2PO code's clamp): a head that drifted to
    +/- 50 gives the log-density of the clamp, finite, instead of inf or NaN."""
    pol = policies.Gaussian()
    actions, avail = jnp.array([[0.3, -0.2]]), jnp.ones((1, 2), bool)
    for far, clamp in ((50.0, policies.LOG_STD_MAX), (-50.0, policies.LOG_STD_MIN)):
        out = jnp.array([[0.3, -0.2, far, far]])
        want = stats.norm.logpdf([0.3, -0.2], [0.3, -0.2], np.exp(clamp)).sum()
        np.testing.assert_allclose(pol.log_prob(out, avail, actions), [want], rtol=1e-5)
        assert np.isfinite(pol.entropy(out, avail)).all()


def test_gaussian_samples_match_mean_and_std_and_leave_padding_zero():
    out, avail, _, _, _, mask = _gaussian_case()
    pol = policies.Gaussian()
    draws = np.asarray(jax.vmap(lambda k: pol.sample(k, out, avail))(jax.random.split(jax.random.PRNGKey(1), 4000)))
    assert np.all(draws[:, ~mask] == 0.0)
    mean, std = np.asarray(out[:, :3]), np.exp(np.asarray(out[:, 3:]))
    np.testing.assert_allclose(draws.mean(0)[mask], mean[mask], atol=4 * std.max() / np.sqrt(4000))
    np.testing.assert_allclose(draws.std(0)[mask], std[mask], rtol=0.06)
    np.testing.assert_array_equal(pol.greedy(out, avail), np.where(mask, mean, 0.0).astype(np.float32))


def test_gaussian_head_has_tanh_mean_and_per_agent_log_std():
    net = tiny_net(sharing="paps", num_agents=2, layer_norm=False, log_std_init=-0.5)
    params = net.init(jax.random.PRNGKey(0), 5)
    assert params["params"]["head"]["log_std"].shape == (2, 3)  # a head per agent under PaPS
    x = 100.0 * jax.random.normal(jax.random.PRNGKey(1), (7, 2, 5))
    _, out = net.apply(params, net.init_carry((7,)), x, jnp.zeros((7, 2), bool))
    assert out.shape == (7, 2, 6)
    assert np.all(np.abs(out[..., :3]) <= 1.0)
    np.testing.assert_allclose(out[..., 3:], -0.5)
