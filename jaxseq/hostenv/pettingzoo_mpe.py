"""PettingZoo's MPE (package ``mpe2``) as a host environment: ``pz:simple_spread``.

The same task as JaxMARL's ``mpe:spread``, run by the reference Python implementation in worker
processes, so every CI run drives the subprocess bridge. Agent i is ``env.possible_agents[i]``;
the agent-specific global state is ``[obs_i, env.state()]`` (every agent's observation, as for
``mpe:spread``). Episodes end only at the time limit (a truncation).
"""

from __future__ import annotations

import numpy as np

from jaxseq.hostenv import HostObs, HostSpec, agent_states


def _make(n: int, local_ratio: float, max_steps: int):
    from mpe2 import simple_spread_v3

    return simple_spread_v3.parallel_env(N=n, local_ratio=local_ratio, max_cycles=max_steps, continuous_actions=False)


def spec(n: int) -> HostSpec:
    """Shapes of simple_spread with ``n`` agents: obs 6n (own velocity and position, 2 per landmark,
    2 per other agent for position and 2 for communication), 5 moves."""
    obs = 6 * n
    return HostSpec(
        num_agents=n, obs_dim=obs, state_dim=obs + n * obs, num_actions=5, obs_widths=(obs,) * n, action_counts=(5,) * n
    )


class SimpleSpread:
    """``simple_spread_v3.parallel_env`` in array form (see the module docstring)."""

    def __init__(self, n: int, local_ratio: float, max_steps: int):
        self.env = _make(n, local_ratio, max_steps)
        self.agents = list(self.env.possible_agents)
        self.spec = spec(n)
        self._avail = np.ones((n, 5), bool)
        self._alive = np.ones((n,), bool)

    def _observe(self, obs: dict) -> HostObs:
        rows = np.stack([np.asarray(obs[a], np.float32) for a in self.agents])
        return HostObs(rows, agent_states(rows, rows.reshape(-1)), self._avail, self._alive)

    def reset(self, seed: int) -> HostObs:
        obs, _ = self.env.reset(seed=seed)
        return self._observe(obs)

    def step(self, actions: np.ndarray):
        obs, rewards, terminations, truncations, _ = self.env.step(
            {a: int(actions[i]) for i, a in enumerate(self.agents)}
        )
        reward = np.asarray([rewards[a] for a in self.agents], np.float32)
        terminated = all(terminations[a] for a in self.agents)
        truncated = all(truncations[a] for a in self.agents)
        return self._observe(obs), reward, terminated, truncated, False

    def close(self) -> None:
        self.env.close()
