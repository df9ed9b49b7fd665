"""Tiny configurations that compile and run in seconds on a CPU."""

from jaxseq.config import make_config


def tiny(**overrides):
    base = dict(env="mpe:spread", algo="mappo", num_envs=4, rollout_length=8, chunk_length=4, epochs=2, num_minibatches=2,
                hidden_size=16, num_layers=1, updates_per_chunk=2, total_steps=4 * 8 * 2 * 4, eval_every=2,
                eval_envs=4, checkpoint_every=1, num_seeds=2)
    base.update(overrides)
    return make_config(**base)
