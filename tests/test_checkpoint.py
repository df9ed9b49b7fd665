"""Checkpoints round-trip trees with zero-size leaves (MJX physics states have them)."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxseq import checkpoint


def test_save_and_restore_keep_every_leaf_including_zero_size_ones(tmp_path):
    state = {"a": jnp.arange(3.0), "act": jnp.zeros((2, 0)), "b": {"c": jnp.ones((2, 2), jnp.int32)}}
    checkpoint.save(tmp_path, 3, state)
    checkpoint.save(tmp_path, 5, jax.tree.map(lambda x: x + 1, state))
    chunk, out = checkpoint.restore(tmp_path, jax.eval_shape(lambda: state))
    assert chunk == 5
    for want, got in zip(jax.tree.leaves(state), jax.tree.leaves(out)):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, np.asarray(want) + 1)
    assert jax.tree.structure(out) == jax.tree.structure(state)
