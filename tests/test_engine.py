"""What every scheme shares (``jaxseq.engine.Engine``): the batch layout as training sequences and
the death mask, element by element. Fitting a unit is tested through the schemes
(``test_schemes.py``: only the unit agents move) and against NumPy (``test_conformance.py``)."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq.train import make_train

from support.helpers import tiny


@pytest.mark.parametrize("sequence_length", [1, 2, 8])
def test_sequences_cut_time_into_windows_that_become_the_batch_axis(sequence_length):
    config = tiny(num_envs=3, rollout_length=8, sequence_length=sequence_length, num_minibatches=1)
    engine = make_train(config).engine
    T, B, L = 8, 3, sequence_length
    x = np.arange(T)[:, None, None] * 100 + np.arange(B)[None, :, None] * 10 + np.arange(2)  # [T, B, 2]
    seq = np.asarray(engine.sequences(jnp.asarray(x)))
    assert seq.shape == (L, (T // L) * B, 2)
    for window in range(T // L):
        for b in range(B):
            # sequence (window, env) holds env b's steps window * L ... window * L + L - 1 in order
            np.testing.assert_array_equal(seq[:, window * B + b], x[window * L : (window + 1) * L, b])
    np.testing.assert_array_equal(np.asarray(engine.unsequences(jnp.asarray(seq))), x)


@pytest.mark.parametrize("death_mask", [True, False])
def test_the_death_mask_counts_only_agents_that_acted(death_mask):
    engine = make_train(tiny(death_mask=death_mask)).engine
    alive = jnp.asarray([[True, False, True], [False, False, True]])
    mask = np.asarray(engine.mask(alive))
    assert mask.dtype == np.float32
    np.testing.assert_array_equal(mask, np.asarray(alive, np.float32) if death_mask else np.ones((2, 3)))
