"""Actor and critic networks, and the one code path for every parameter-sharing mode.

A network is a per-agent module (:class:`AgentNet`: a ``trunk`` then a ``head``) applied to every
agent with ``jax.vmap`` over the agent axis. The sharing mode only decides which top-level
sub-trees of the parameters carry a leading agent axis:

- ``fups``: nothing stacked (one set of parameters);
- ``paps``: the head is stacked ``[N, ...]``, the trunk shared;
- ``nops``: trunk and head stacked (separate networks, vmapped).

An agent-id one-hot is appended to every input in every mode (under NoPS it is a constant input,
i.e. an extra bias), so the three modes compute the same function when the per-agent parameters
are equal: one code path, and an invariant the tests pin.

Shapes: inputs ``x [..., N, D]``, episode-start flags ``start [..., N]``, recurrent carry
``[..., N, H]`` (``H = 1`` and unused for MLPs); outputs ``[..., N, K]``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

SHARING_MODES = ("fups", "paps", "nops")
NETWORKS = ("mlp", "gru")  #: "gru": a GRU after the dense layers
ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh}
_STACKED = {"fups": (), "paps": ("head",), "nops": ("trunk", "head")}


def _host_qr(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q, r = np.linalg.qr(np.asarray(a, np.float64))  # batched over leading axes
    return q.astype(a.dtype), r.astype(a.dtype)


def orthogonal(gain: float = 1.0):
    """The orthogonal initialiser (Saxe et al. 2014), as ``jax.nn.initializers.orthogonal`` draws
    it: a standard normal [max(r, c), min(r, c)] matrix for a kernel [r, c], the Q of its QR
    decomposition with the signs of diag(R), transposed when r < c, times ``gain``.

    The QR runs on the host (NumPy, in a ``pure_callback``) so that the initial state compiles as one
    program: XLA's CPU runtime deadlocked (jax 0.10, 2 cores) when one program ran several batched
    LAPACK QRs concurrently.
    """

    def init(key, shape, dtype=jnp.float32):
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        a = jax.random.normal(key, (max(rows, cols), min(rows, cols)), dtype)
        k = a.shape[1]
        q, r = jax.pure_callback(
            _host_qr,
            (jax.ShapeDtypeStruct(a.shape, dtype), jax.ShapeDtypeStruct((k, k), dtype)),
            a,
            vmap_method="expand_dims",
        )
        q = q * jnp.sign(jnp.diagonal(r))
        return gain * (q.T if rows < cols else q).reshape(shape)

    return init


def _dense(features: int, gain: float, orthogonal_init: bool, name: str | None = None) -> nn.Dense:
    if orthogonal_init:
        return nn.Dense(features, kernel_init=orthogonal(gain), bias_init=nn.initializers.zeros, name=name)
    return nn.Dense(features, name=name)


class Trunk(nn.Module):
    """LayerNorm on the inputs, ``num_layers`` dense layers (+LayerNorm), optionally a GRU, then
    ``post_layers`` dense layers (no LayerNorm; JaxMARL's MAPPO-RNN networks have one).

    Split in three for replaying sequences: :meth:`encode` (everything before the GRU) and
    :meth:`post` (everything after it) have no state, so they run on all steps of a sequence at
    once; :meth:`recur` is the GRU step (the identity for MLPs). The GRU carry is zeroed where
    ``start`` is True, before the step is taken: the first observation of an episode is processed
    from a fresh hidden state, exactly once. Parameter names are those flax gives the layers in
    this order (``LayerNorm_0``, ``Dense_0``, ...).
    """

    hidden: int
    num_layers: int
    recurrent: bool
    layer_norm: bool
    orthogonal: bool
    activation: str
    post_layers: int = 0

    def setup(self):
        n = self.num_layers
        self.norms = [nn.LayerNorm(name=f"LayerNorm_{i}") for i in range(n + 1)] if self.layer_norm else []
        self.layers = [_dense(self.hidden, np.sqrt(2.0), self.orthogonal, name=f"Dense_{i}") for i in range(n)]
        if self.recurrent:
            self.cell = nn.GRUCell(self.hidden, recurrent_kernel_init=orthogonal(), name="GRUCell_0")
        self.post_dense = [
            _dense(self.hidden, np.sqrt(2.0), self.orthogonal, name=f"Dense_{n + i}") for i in range(self.post_layers)
        ]

    def encode(self, x):
        """x [..., D] -> [..., hidden] (or [..., D] with no layers)."""
        act = ACTIVATIONS[self.activation]
        if self.layer_norm:
            x = self.norms[0](x)
        for i, layer in enumerate(self.layers):
            x = act(layer(x))
            if self.layer_norm:
                x = self.norms[i + 1](x)
        return x

    def recur(self, carry, e, start):
        """One step: carry [..., C], e [..., hidden], start [...] -> (carry, h [..., hidden])."""
        if not self.recurrent:
            return carry, e
        carry = jnp.where(start[..., None], jnp.zeros_like(carry), carry)
        return self.cell(carry, e)

    def post(self, h):
        """h [..., hidden] -> [..., hidden]: the dense layers after the GRU."""
        for layer in self.post_dense:
            h = ACTIVATIONS[self.activation](layer(h))
        return h

    def __call__(self, carry, x, start):
        carry, h = self.recur(carry, self.encode(x), start)
        return carry, self.post(h)


class GaussianHead(nn.Module):
    """The continuous-action head: mean tanh(W h + b) [..., A] and a learnable state-independent
    log-std [A] initialised to ``log_std_init``; returns (mean, log_std) concatenated, [..., 2A]
    (:class:`jaxseq.policies.Gaussian`)."""

    action_dim: int
    gain: float
    orthogonal: bool
    log_std_init: float

    @nn.compact
    def __call__(self, h):
        mean = jnp.tanh(_dense(self.action_dim, self.gain, self.orthogonal, name="mean")(h))
        log_std = self.param("log_std", nn.initializers.constant(self.log_std_init), (self.action_dim,))
        return jnp.concatenate([mean, jnp.broadcast_to(log_std, mean.shape)], axis=-1)


class AgentNet(nn.Module):
    """``trunk`` then a ``head``: linear with ``out_dim`` outputs and orthogonal gain ``out_gain``, or,
    where ``log_std_init`` is given, a :class:`GaussianHead` over ``out_dim`` action dimensions.
    ``encode``, ``recur`` and ``decode`` are the three parts, for :meth:`MultiAgentNet.replay_agents`."""

    trunk: Trunk
    out_dim: int
    out_gain: float
    log_std_init: float | None = None

    def setup(self):
        orthogonal_init = self.trunk.orthogonal
        if self.log_std_init is None:
            self.head = _dense(self.out_dim, self.out_gain, orthogonal_init)
        else:
            self.head = GaussianHead(self.out_dim, self.out_gain, orthogonal_init, self.log_std_init)

    def encode(self, x):
        return self.trunk.encode(x)

    def recur(self, carry, e, start):
        return self.trunk.recur(carry, e, start)

    def decode(self, h):
        return self.head(self.trunk.post(h))

    def __call__(self, carry, x, start):
        carry, h = self.trunk(carry, x, start)
        return carry, self.head(h)


@dataclasses.dataclass(frozen=True)
class MultiAgentNet:
    """An :class:`AgentNet` applied to ``num_agents`` agents under a sharing mode."""

    net: AgentNet
    sharing: str
    num_agents: int

    @property
    def carry_dim(self) -> int:
        return self.net.trunk.hidden if self.net.trunk.recurrent else 1

    @property
    def param_axes(self) -> dict:
        """vmap axes of the parameter tree: 0 for stacked sub-trees, None for shared ones."""
        return {"params": {name: (0 if name in _STACKED[self.sharing] else None) for name in ("trunk", "head")}}

    def _with_agent_id(self, x: jax.Array) -> jax.Array:
        ids = jnp.broadcast_to(jnp.eye(self.num_agents, dtype=x.dtype), x.shape[:-1] + (self.num_agents,))
        return jnp.concatenate([x, ids], axis=-1)

    def init_carry(self, batch_shape: Sequence[int]) -> jax.Array:
        return jnp.zeros((*batch_shape, self.num_agents, self.carry_dim), jnp.float32)

    def init(self, key: jax.Array, in_dim: int) -> Any:
        n = self.num_agents
        x = self._with_agent_id(jnp.zeros((n, in_dim), jnp.float32))
        carry, start = self.init_carry(()), jnp.zeros((n,), bool)
        stacked = jax.vmap(self.net.init)(jax.random.split(key, n), carry, x, start)
        return jax.tree.map(
            lambda ax, p: p if ax == 0 else jax.tree.map(lambda a: a[0], p), self.param_axes, stacked, is_leaf=is_axis
        )

    def view(self, params: Any, i: jax.Array) -> Any:
        """Agent i's parameters as a single-agent tree: stacked sub-trees indexed at i (a dynamic
        index), shared ones as they are."""
        return jax.tree.map(
            lambda ax, p: jax.tree.map(lambda a: a[i], p) if ax == 0 else p, self.param_axes, params, is_leaf=is_axis
        )

    def _per_agent(self, params: Any, agents: jax.Array, method: str, *args: jax.Array, axes: tuple[int, ...]):
        """``method`` of the agents ``agents`` [K], each with its own parameters (:meth:`view`); the
        agent axis of ``args`` is ``axes`` (negative) and the outputs' is -2."""
        return jax.vmap(
            lambda i, *a: self.net.apply(self.view(params, i), *a, method=method), in_axes=(0, *axes), out_axes=-2
        )(agents, *args)

    def _encode(self, params: Any, agents: jax.Array, x: jax.Array) -> jax.Array:
        """x [..., K, D] -> [..., K, hidden], the agent id appended to each agent's input."""

        def with_id(i, x_i):
            ids = jax.nn.one_hot(i, self.num_agents, dtype=x_i.dtype)
            return jnp.concatenate([x_i, jnp.broadcast_to(ids, x_i.shape[:-1] + ids.shape)], axis=-1)

        x = jax.vmap(with_id, in_axes=(0, -2), out_axes=-2)(agents, x)
        return self._per_agent(params, agents, "encode", x, axes=(-2,))

    def apply_agents(
        self, params: Any, agents: jax.Array, carry: jax.Array, x: jax.Array, start: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """One step of the K agents ``agents`` [K] (dynamic indices, repeats allowed), each with its
        own view: carry [..., K, C], x [..., K, D], start [..., K] -> (carry [..., K, C], out [..., K, out])."""
        e = self._encode(params, agents, x)
        carry, h = self._per_agent(params, agents, "recur", carry, e, start, axes=(-2, -2, -1))
        return carry, self._per_agent(params, agents, "decode", h, axes=(-2,))

    def replay_agents(
        self, params: Any, agents: jax.Array, carry0: jax.Array, x: jax.Array, start: jax.Array
    ) -> jax.Array:
        """The K agents over sequences: carry0 [M, K, C], x [L, M, K, D], start [L, M, K] -> out
        [L, M, K, out], equal to :meth:`apply_agents` stepped L times. Only the GRU step runs
        inside the time scan; the layers before it and the head run on all L steps at once (on
        CPU the per-step layers of small minibatches cost about 15% of a gradient)."""
        e = self._encode(params, agents, x)
        if self.net.trunk.recurrent:

            def step(carry, xs):
                return self._per_agent(params, agents, "recur", carry, *xs, axes=(-2, -2, -1))

            e = jax.lax.scan(step, carry0, (e, start))[1]
        return self._per_agent(params, agents, "decode", e, axes=(-2,))

    def apply(self, params: Any, carry: jax.Array, x: jax.Array, start: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Every agent: carry [..., N, C], x [..., N, D], start [..., N] -> (carry [..., N, C], out [..., N, K])."""
        return self.apply_agents(params, jnp.arange(self.num_agents), carry, x, start)


def is_axis(t: Any) -> bool:
    """Leaves of :attr:`MultiAgentNet.param_axes` (0 or None), for ``jax.tree.map(..., is_leaf=is_axis)``."""
    return t is None or isinstance(t, int)


def make_network(
    *,
    out_dim: int,
    out_gain: float,
    sharing: str,
    num_agents: int,
    hidden: int,
    num_layers: int,
    recurrent: bool,
    layer_norm: bool,
    orthogonal: bool,
    activation: str,
    post_layers: int = 0,
    log_std_init: float | None = None,
) -> MultiAgentNet:
    """``log_std_init`` given: a Gaussian actor over ``out_dim`` action dimensions (outputs [..., 2 out_dim])."""
    trunk = Trunk(
        hidden=hidden,
        num_layers=num_layers,
        recurrent=recurrent,
        layer_norm=layer_norm,
        orthogonal=orthogonal,
        activation=activation,
        post_layers=post_layers,
    )
    return MultiAgentNet(
        AgentNet(trunk=trunk, out_dim=out_dim, out_gain=out_gain, log_std_init=log_std_init), sharing, num_agents
    )
