"""State density ratios for OPSPO's state-distribution correction (OPSPO paper Sec. 3.2, App. B.2, Alg. 2).

The ratio omega(s) = d^{pi'}(s) / d^{b}(s) of a target policy pi' over the distribution b of the
data's states is learned by the BCH min-max (Liu et al. 2018) with an omega-net and a test-function
f-net. For any f, the discounted occupancy d' = (1 - gamma) mu0 + gamma P_{pi'}^T d' gives

    L(omega, f) = gamma E_{(s,a,s') ~ data}[(omega(s') - omega(s) pi'(a|s)/b(a|s)) f(s')]
                  - (1 - gamma) E_{s0 ~ mu0}[(1 - omega(s0)) f(s0)]  =  0        (OPSPO paper Alg. 2)

exactly when omega = d'/d (the data's s' marginal and mu0 mix to d). The signs are those of Alg. 2's
L-hat; the extracted Eq. 16 prints the mu0 term with a plus, which the derivation above rules out.

**Squared or linear.** Eq. 17/33 print the objective squared, Alg. 2 ascends and descends the linear
L-hat. Linear alone is unbounded in f (scale f up); squaring a minibatch mean gives biased
gradients, and squaring inside the expectation does not vanish at the true ratio. We use the
linear L with a quadratic penalty on the test function,

    max_f  L(omega, f) - 1/2 E_{s ~ d}[f(s)^2],  d = gamma (s' marginal) + (1 - gamma) mu0,

whose inner maximum is 1/2 E_d[(r_omega / d)^2], r_omega the residual of the occupancy equation:
the value of the squared form with f normalised (Liu et al. take L^2 over a unit ball of f), zero
only at the true ratio, with unbiased minibatch gradients for both players (Danskin: omega's
gradient is that of L at the inner optimum). ``tests/test_density.py`` checks on the tabular game
that the learned omega recovers the exact d^{pi'}/d^{pi}; docs/design.md has the details.

Multi-behaviour data (Alg. 2, after Chen et al. 2019): with data of the last ``omega_n`` behaviour
policies, b is their mixture, b(a|s) = mean_j pi_j(a|s) (:func:`mixture_log_prob`); the ring buffers
that hold those policies' data live in the trainer's state (``jaxseq.train``).

Shapes: states ``[M, D]``; a batch (:class:`TransitionBatch`) holds M transitions and M0 initial
states.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

#: omega's pre-activation bias: softplus(x + SHIFT) = 1 at x = 0, so a fresh omega-net starts near 1.
SHIFT = float(np.log(np.e - 1.0))


class RatioMLP(nn.Module):
    """A two-layer tanh MLP [M, D] -> [M]; ``positive``: softplus output (omega), else linear (f)."""

    hidden: int
    positive: bool

    @nn.compact
    def __call__(self, x):
        for _ in range(2):
            x = nn.tanh(nn.Dense(self.hidden)(x))
        out = nn.Dense(1)(x)[..., 0]
        return jax.nn.softplus(out + SHIFT) if self.positive else out


@struct.dataclass
class TransitionBatch:
    """states, next_states [M, D]; log_ratio [M] = log pi'(a|s) - log b(a|s) of the taken joint
    action; weights [M] (0 drops a transition, e.g. one that ended its episode); initial [M0, D]
    initial states; initial_weights [M0]. Weights allow exact expectations (enumerated tables)."""

    states: jax.Array
    next_states: jax.Array
    log_ratio: jax.Array
    weights: jax.Array
    initial: jax.Array
    initial_weights: jax.Array


@struct.dataclass
class RatioState:
    """The omega-net and f-net with their Adam states."""

    omega: Any
    f: Any
    omega_opt: Any
    f_opt: Any


def _mean(x: jax.Array, w: jax.Array) -> jax.Array:
    return jnp.sum(w * x) / jnp.maximum(jnp.sum(w), 1e-12)


@dataclasses.dataclass(frozen=True)
class DensityRatio:
    """The learner of OPSPO paper Alg. 2: ``omega_steps`` (omega_e) outer iterations, each on a fresh
    batch, of ``f_steps`` (f_e) ascent steps of the f-net then one descent step of the omega-net."""

    state_dim: int
    gamma: float
    hidden: int = 64
    lr: float = 1e-3
    omega_steps: int = 10
    f_steps: int = 5

    @property
    def omega_net(self) -> RatioMLP:
        return RatioMLP(self.hidden, positive=True)

    @property
    def f_net(self) -> RatioMLP:
        return RatioMLP(self.hidden, positive=False)

    @property
    def tx(self) -> optax.GradientTransformation:
        return optax.adam(self.lr)

    def init(self, key: jax.Array) -> RatioState:
        k_omega, k_f = jax.random.split(key)
        x = jnp.zeros((1, self.state_dim), jnp.float32)
        omega, f = self.omega_net.init(k_omega, x), self.f_net.init(k_f, x)
        return RatioState(omega=omega, f=f, omega_opt=self.tx.init(omega), f_opt=self.tx.init(f))

    def omega(self, params: Any, states: jax.Array) -> jax.Array:
        """omega(s): [..., D] -> [...]."""
        return self.omega_net.apply(params, states)

    def objective(self, omega_params: Any, f_params: Any, batch: TransitionBatch) -> tuple[jax.Array, jax.Array]:
        """(L(omega, f), the penalty 1/2 E_d[f^2]) of the nets on a batch."""
        m = batch.states.shape[0]
        every = jnp.concatenate([batch.states, batch.next_states, batch.initial])  # one forward pass per net
        omega = self.omega(omega_params, every)
        f = self.f_net.apply(f_params, every[m:])
        return bch_objective(omega[:m], omega[m : 2 * m], omega[2 * m :], f[:m], f[m:], batch, self.gamma)

    def fit(self, rs: RatioState, batches: TransitionBatch) -> tuple[RatioState, dict]:
        """Alg. 2 over ``batches`` (every leaf with a leading axis of ``omega_steps``, one batch per
        outer iteration). Returns the new state and the last iteration's L and penalty."""

        def f_loss(f_params, omega_params, batch):
            loss, penalty = self.objective(omega_params, f_params, batch)
            return -(loss - penalty)

        def omega_loss(omega_params, f_params, batch):
            return self.objective(omega_params, f_params, batch)[0]

        def step(params, opt, grads):
            updates, opt = self.tx.update(grads, opt, params)
            return optax.apply_updates(params, updates), opt

        def outer(rs, batch):
            def inner(carry, _):
                f, f_opt = carry
                return step(f, f_opt, jax.grad(f_loss)(f, rs.omega, batch)), None

            (f, f_opt), _ = jax.lax.scan(inner, (rs.f, rs.f_opt), None, length=self.f_steps)
            omega, omega_opt = step(rs.omega, rs.omega_opt, jax.grad(omega_loss)(rs.omega, f, batch))
            loss, penalty = self.objective(omega, f, batch)
            return RatioState(omega=omega, f=f, omega_opt=omega_opt, f_opt=f_opt), (loss, penalty)

        rs, (loss, penalty) = jax.lax.scan(outer, rs, batches)
        return rs, {"density_loss": loss[-1], "density_penalty": penalty[-1]}


def bch_objective(
    omega_s, omega_next, omega_init, f_next, f_init, batch: TransitionBatch, gamma: float
) -> tuple[jax.Array, jax.Array]:
    """(L(omega, f), 1/2 E_d[f^2]) from the values of omega and f at the batch's states (module
    docstring): omega_s, omega_next, f_next [M] at s and s', omega_init, f_init [M0] at s0."""
    scale = _mean(omega_s, batch.weights)
    omega_s, omega_next, omega_init = omega_s / scale, omega_next / scale, omega_init / scale
    delta = omega_next - omega_s * jnp.exp(batch.log_ratio)
    loss = gamma * _mean(delta * f_next, batch.weights) - (1 - gamma) * _mean(
        (1 - omega_init) * f_init, batch.initial_weights
    )
    penalty = 0.5 * (gamma * _mean(f_next**2, batch.weights) + (1 - gamma) * _mean(f_init**2, batch.initial_weights))
    return loss, penalty


def mixture_log_prob(log_probs: jax.Array, filled: jax.Array) -> jax.Array:
    """log of the mixture b(a|s) = mean_j pi_j(a|s) over the filled behaviour policies.

    log_probs [W, ...] (policy j's log-probability of the taken action), filled [W] bool -> [...].
    """
    mask = filled.reshape((-1,) + (1,) * (log_probs.ndim - 1))
    return jax.nn.logsumexp(jnp.where(mask, log_probs, -jnp.inf), axis=0) - jnp.log(jnp.maximum(filled.sum(), 1))


@struct.dataclass
class Ring:
    """A fixed-size ring buffer of ``W`` items: every leaf of ``items`` has a leading axis W; ``filled``
    [W] bool; ``head`` [] int32 is the slot the next push writes."""

    items: Any
    filled: jax.Array
    head: jax.Array

    @staticmethod
    def create(example: Any, size: int) -> "Ring":
        """An empty ring of ``size`` slots shaped like ``example``."""
        items = jax.tree.map(lambda x: jnp.zeros((size,) + x.shape, x.dtype), example)
        return Ring(items=items, filled=jnp.zeros((size,), bool), head=jnp.zeros((), jnp.int32))

    def push(self, item: Any) -> "Ring":
        items = jax.tree.map(lambda buf, x: buf.at[self.head].set(x), self.items, item)
        return Ring(
            items=items, filled=self.filled.at[self.head].set(True), head=(self.head + 1) % self.filled.shape[0]
        )

    @property
    def newest(self) -> jax.Array:
        """The slot written last."""
        return (self.head - 1) % self.filled.shape[0]
