"""MAPPO's ValueNorm (jaxseq.normalization) against a NumPy loop written from its definition (Yu et
al. 2022): debiased exponential moving averages of the targets' mean and mean of squares, the
variance floored at 1e-2, masked samples left out."""

import jax.numpy as jnp
import numpy as np

from jaxseq import normalization


def _numpy_value_norm(batches, masks, beta=normalization.BETA):
    mean = mean_sq = debias = 0.0
    for x, m in zip(batches, masks):
        n = max(m.sum(), 1.0)
        mean = beta * mean + (1 - beta) * (x * m).sum() / n
        mean_sq = beta * mean_sq + (1 - beta) * (x**2 * m).sum() / n
        debias = beta * debias + (1 - beta)
    mu = mean / max(debias, 1e-5)
    return mu, max(mean_sq / max(debias, 1e-5) - mu**2, normalization.MIN_VAR)


def test_the_running_statistics_match_the_definition_and_invert():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0 + t, 2.0, size=(8, 3)) for t in range(5)]
    masks = [(rng.uniform(size=(8, 3)) > 0.3).astype(np.float64) for _ in range(5)]
    state = normalization.init()
    for x, m in zip(batches, masks):
        state = normalization.update(state, jnp.asarray(x, jnp.float32), jnp.asarray(m, jnp.float32))
    mean, var = _numpy_value_norm(batches, masks)
    x = jnp.linspace(-5.0, 5.0, 7)
    np.testing.assert_allclose(normalization.normalize(state, x), (np.asarray(x) - mean) / np.sqrt(var), rtol=2e-3)
    np.testing.assert_allclose(normalization.denormalize(state, normalization.normalize(state, x)), x, atol=1e-4)


def test_masked_samples_do_not_move_the_statistics_and_the_variance_is_floored():
    x = jnp.array([1.0, 1.0, 100.0])
    masked = normalization.update(normalization.init(), x, jnp.array([1.0, 1.0, 0.0]))
    plain = normalization.update(normalization.init(), x[:2])
    np.testing.assert_allclose(masked.mean, plain.mean)
    np.testing.assert_allclose(masked.mean_sq, plain.mean_sq)
    # constant targets: variance 0, floored, so normalising divides by sqrt(1e-2) = 0.1
    np.testing.assert_allclose(normalization.normalize(plain, jnp.array([2.0])), [10.0], rtol=1e-3)
