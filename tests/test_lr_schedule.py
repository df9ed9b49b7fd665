"""``lr_schedule="linear"`` (JaxMARL's ANNEAL_LR): update u of U runs at (1 - u / U) times the
learning rates, for the config's rates and for a sweep member's traced ones."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq.errors import ConfigError
from jaxseq.train import make_train

from support.helpers import tiny

SMALL = dict(num_seeds=1, hidden_size=8, epochs=1, num_minibatches=1, actor_lr=1e-3, critic_lr=2e-3)
#: A sweep member's traced actor_lr (it differs from the config's); its critic_lr is the config's.
MEMBER = {"actor_lr": 3e-3}


def _learned(learn, ts, batch, update, hyper):
    """Actor and critic parameters after one update (``learn``, compiled) at update index ``update``
    with ``hyper``."""
    ts = ts.replace(update=jnp.int32(update), hyper={k: jnp.float32(v) for k, v in hyper.items()})
    new, _ = learn(ts, batch)
    return jax.device_get((new.actor_params, new.critic_params))


def _close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-8)


def _moved(a, b) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_linear_schedule_equals_the_constant_schedule_at_the_scaled_rates():
    trainer = make_train(tiny(lr_schedule="linear", **SMALL))
    linear, constant = jax.jit(trainer.learn), jax.jit(make_train(tiny(**SMALL)).learn)
    total = trainer.config.total_updates
    assert total == trainer.config.num_chunks * trainer.config.updates_per_chunk == 8
    ts = jax.tree.map(lambda x: x[0], trainer.init(jax.random.PRNGKey(0)))
    ts, batch, _ = jax.jit(trainer.rollout)(ts)
    start = jax.device_get((ts.actor_params, ts.critic_params))

    def constant_at(factor):
        """One update of the constant schedule at ``factor`` times the member's rates (read from
        ``hyper``, as a sweep member's: one program for every factor)."""
        return _learned(constant, ts, batch, 0, {"actor_lr": 3e-3 * factor, "critic_lr": 2e-3 * factor})

    # One program for the linear schedule: the member's actor_lr and the config's critic_lr, both scaled.
    first = _learned(linear, ts, batch, 0, MEMBER)
    _close(first, constant_at(1.0))  # the first update at the full rates
    last = _learned(linear, ts, batch, total - 1, MEMBER)
    _close(last, constant_at(1 / total))  # the last at 1 / U of them
    _close(_learned(linear, ts, batch, 3, MEMBER), constant_at(1 - 3 / total))
    # Off by one would give the last update rate 0 (nothing moves) or 2 / U: both differ by far more.
    assert _moved(last, start) > 1e-5 and _moved(last, first) > 1e-4
    assert _moved(last, constant_at(2 / total)) > 1e-5
    # After the last update the rates are 0: nothing moves.
    assert _moved(_learned(linear, ts, batch, total, MEMBER), start) == 0.0


def test_a_bad_schedule_names_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"lr_schedule: 'cosine' is not allowed; allowed: \['constant', 'linear'\]"):
        make_train(tiny(lr_schedule="cosine"))
