"""Action distributions of the actor: masked categorical (discrete) and diagonal Gaussian (continuous).

The actor network outputs ``out [..., H]``; a policy turns it into actions and log-probabilities.
``avail [..., A]`` is the environment's per-agent action mask: for discrete actions the available
actions, for continuous actions the agent's real action dimensions (padding dimensions are False
where agents control different numbers of joints, e.g. ``mamujoco:Humanoid-9|8``).

Every objective works on ``log pi_new - log pi_old`` of the taken actions, so a policy's
:meth:`log_prob` is the only place where the two action kinds differ.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

_NEG = -1e9
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # the Gaussian's log-std clamp
#: How a Gaussian joins its per-dimension log-probabilities: "sum" (the joint density) or "mean".
LOG_PROB_REDUCTIONS = ("sum", "mean")


@dataclasses.dataclass(frozen=True)
class Categorical:
    """Masked categorical over ``A`` actions: ``out`` are logits [..., A]; actions int32 [...]."""

    @staticmethod
    def action_shape(num_actions: int) -> tuple[tuple[int, ...], jnp.dtype]:
        """Per-agent action shape and dtype."""
        return (), jnp.int32

    @staticmethod
    def log_probs(out: jax.Array, avail: jax.Array) -> jax.Array:
        """Log-softmax over available actions; unavailable actions get a very low log-probability."""
        return jax.nn.log_softmax(jnp.where(avail, out, _NEG), axis=-1)

    def sample(self, key: jax.Array, out: jax.Array, avail: jax.Array) -> jax.Array:
        return jax.random.categorical(key, jnp.where(avail, out, _NEG), axis=-1).astype(jnp.int32)

    def greedy(self, out: jax.Array, avail: jax.Array) -> jax.Array:
        return jnp.argmax(jnp.where(avail, out, _NEG), axis=-1).astype(jnp.int32)

    def log_prob(self, out: jax.Array, avail: jax.Array, actions: jax.Array) -> jax.Array:
        """log pi(a | o) of the taken actions: out [..., A], actions [...] -> [...]."""
        return jnp.take_along_axis(self.log_probs(out, avail), actions[..., None], axis=-1)[..., 0]

    def entropy(self, out: jax.Array, avail: jax.Array) -> jax.Array:
        """Entropy of the masked categorical, [...]."""
        logp = self.log_probs(out, avail)
        return -jnp.sum(jnp.where(avail, jnp.exp(logp) * logp, 0.0), axis=-1)


@dataclasses.dataclass(frozen=True)
class Gaussian:
    """Diagonal Gaussian over ``A`` action dimensions: ``out [..., 2A]`` is (mean, log_std).

    The actor's Gaussian head (:class:`jaxseq.nets.GaussianHead`) puts tanh on the mean and keeps a
    learnable state-independent log-std (initialised to -0.5), as in the A2PO and OPSPO papers. Actions are
    sampled unbounded; the environment clips them to its control range, and the log-probability is
    that of the unclipped sample.

    ``reduce`` forms one log-probability from the per-dimension ones over the real dimensions:
    ``"sum"`` (the default) is the joint density of the dimensions, so an agent's ratio is the
    product of its per-dimension ratios, as in the A2PO, FP3O and HARL code; ``"mean"`` averages
    them (a ratio is then the geometric mean of the per-dimension ratios; the papers' sentence, kept
    as an ablation). The entropy is reduced the same way. The log-std is clamped to
    [LOG_STD_MIN, LOG_STD_MAX] = [-20, 2] where it is read (as the A2PO code does), so a run that
    drives it far keeps finite log-probabilities.
    """

    reduce: str = "sum"

    @staticmethod
    def action_shape(num_actions: int) -> tuple[tuple[int, ...], jnp.dtype]:
        return (num_actions,), jnp.float32

    @staticmethod
    def _split(out: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)

    def _reduce(self, per_dim: jax.Array, avail: jax.Array) -> jax.Array:
        total = jnp.sum(jnp.where(avail, per_dim, 0.0), axis=-1)
        if self.reduce == "sum":
            return total
        return total / jnp.maximum(jnp.sum(avail, axis=-1), 1)

    def sample(self, key: jax.Array, out: jax.Array, avail: jax.Array) -> jax.Array:
        mean, log_std = self._split(out)
        return jnp.where(avail, mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape), 0.0)

    def greedy(self, out: jax.Array, avail: jax.Array) -> jax.Array:
        return jnp.where(avail, self._split(out)[0], 0.0)

    def log_prob(self, out: jax.Array, avail: jax.Array, actions: jax.Array) -> jax.Array:
        """out [..., 2A], actions [..., A] -> [...]: the reduced per-dimension Normal log-densities."""
        mean, log_std = self._split(out)
        z = (actions - mean) * jnp.exp(-log_std)
        return self._reduce(-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi), avail)

    def entropy(self, out: jax.Array, avail: jax.Array) -> jax.Array:
        """Per-dimension entropy 1/2 log(2 pi e) + log_std, reduced like the log-probability, [...]."""
        return self._reduce(0.5 + 0.5 * math.log(2 * math.pi) + self._split(out)[1], avail)


def make_policy(continuous: bool, reduce: str = "sum") -> Categorical | Gaussian:
    return Gaussian(reduce) if continuous else Categorical()
