"""Agent selection rules and the adaptive clipping schedule of A2PO (A2PO paper Sec. 4).

Selection happens one agent at a time inside the compiled stage: :func:`next_agent` picks the
k-th agent (k = 0, 1, ...) among those not yet updated, from per-agent scores (greedy rules use
the expected |advantage| of each remaining agent given the agents already updated).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SELECTION_RULES = ("cyclic", "random", "greedy", "semi-greedy", "reverse-greedy", "reverse-semi-greedy")


def next_agent(rule: str, k: jax.Array, scores: jax.Array, remaining: jax.Array, key: jax.Array) -> jax.Array:
    """Index of the k-th agent to update (k counts from 0).

    scores: [N] float, e.g. E|A_i| under the current preceding agents; remaining: [N] bool, agents
    not yet updated in this stage (at least one True). Rules:
    cyclic: the lowest remaining index (the fixed order 0, 1, ..., N-1);
    random: uniform over the remaining agents;
    greedy / reverse-greedy: the remaining agent with the largest / smallest score;
    semi-greedy / reverse-semi-greedy: (reverse-)greedy at even k, uniform at odd k (A2PO paper's
    R(k) alternates on k mod 2; the public code starts greedy, as here).
    """
    if rule not in SELECTION_RULES:
        raise ValueError(f"selection rule {rule!r} not in {SELECTION_RULES}")
    n = remaining.shape[0]
    uniform = jax.random.choice(key, n, p=remaining / remaining.sum())
    if rule == "cyclic":
        return jnp.argmax(remaining)
    if rule == "random":
        return uniform
    sign = -1.0 if rule.startswith("reverse") else 1.0
    greedy = jnp.argmax(jnp.where(remaining, sign * scores, -jnp.inf))
    if rule.endswith("semi-greedy"):
        return jnp.where(k % 2 == 0, greedy, uniform)
    return greedy


def adaptive_clip(eps: float, k: jax.Array, n: int, c: float = 0.5) -> jax.Array:
    """A2PO's adaptive clipping parameter C(eps, k) = eps * c + eps * (1 - c) * k / n, k = 1..n the
    position in the update order: agents updated later, which see more preceding changes, get a
    wider range; c = 1 gives eps for every agent."""
    return eps * c + eps * (1.0 - c) * k / n


def block_sizes(num_agents: int, num_blocks: int) -> tuple[int, ...]:
    """Sizes of the agent blocks updated as one unit (A2PO paper App. B.3: 10 agents in 3 blocks are
    3, 3, 4). ``num_blocks`` 0 means one agent per block."""
    if num_blocks <= 0 or num_blocks >= num_agents:
        return (1,) * num_agents
    base, extra = divmod(num_agents, num_blocks)
    return (base,) * (num_blocks - extra) + (base + 1,) * extra


def pick_block(
    rule: str, start: jax.Array, size: jax.Array, max_size: int, scores: jax.Array, remaining: jax.Array, key: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The agents at positions start .. start + size - 1 of the order, picked one by one with
    :func:`next_agent`. Returns (agents [max_size] int, valid [max_size] bool, remaining [N]).
    Slots from ``size`` on are padding: invalid, and repeating the first agent so that any write
    through them writes the same value as slot 0."""
    agents, valid = [], []
    for s, k in enumerate(jax.random.split(key, max_size)):
        ok = s < size
        pool = jnp.where(remaining.any(), remaining, True)  # padding may run past the last agent
        i = next_agent(rule, start + s, scores, pool, k)
        i = jnp.where(ok, i, agents[0]) if agents else i
        remaining = jnp.where(ok, remaining.at[i].set(False), remaining)
        agents.append(i)
        valid.append(ok)
    return jnp.stack(agents), jnp.stack(valid), remaining
