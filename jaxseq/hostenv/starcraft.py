"""StarCraft II through SMAC as a host environment: ``sc2:<map>`` (``sc2:3s5z``, ``sc2:corridor``, ...).

For users who have StarCraft II and SMAC installed (neither can be installed on our CI machines;
see docs/environments.md). The adapter drives ``smac.env.StarCraft2Env``'s public interface:
``get_env_info``, ``reset``, ``get_obs``, ``get_state``, ``get_avail_actions``,
``step(actions) -> (reward, terminated, info)`` and ``close``. Tests run it against a scripted
stand-in with the same interface (``tests/support/smac_standin.py``).

- Agent i is SMAC's agent i; observations and avail actions as SMAC gives them; the state of
  agent i is ``[obs_i, SMAC's global state]``.
- Alive: SMAC lets a dead agent take only no-op (action 0) and never offers no-op to a living one,
  so ``alive = not avail[:, 0]``.
- Reward: SMAC's shared team reward, given to every agent.
- Ends: ``info["episode_limit"]`` marks SMAC's time limit, which we report as a truncation;
  any other end is a termination; ``won = info["battle_won"]``.
- SMAC seeds at construction, so an episode's seed is not used; episodes differ by SC2's own
  randomness.
"""

from __future__ import annotations

import importlib

import numpy as np

from jaxseq.hostenv import HostObs, HostSpec, agent_states

#: The maps of SMAC's registry (smac.env.starcraft2.maps.smac_maps).
MAPS = (
    "3m",
    "8m",
    "25m",
    "5m_vs_6m",
    "8m_vs_9m",
    "10m_vs_11m",
    "27m_vs_30m",
    "MMM",
    "MMM2",
    "2s3z",
    "3s5z",
    "3s5z_vs_3s6z",
    "3s_vs_3z",
    "3s_vs_4z",
    "3s_vs_5z",
    "1c3s5z",
    "2m_vs_1z",
    "corridor",
    "6h_vs_8z",
    "2s_vs_1sc",
    "so_many_baneling",
    "bane_vs_bane",
    "2c_vs_64zg",
)


def _env_class(module: str):
    return importlib.import_module(module).StarCraft2Env


def spec(map_name: str, module: str = "smac.env") -> tuple[HostSpec, int]:
    """The shapes of a map and SMAC's episode limit, read from ``get_env_info`` (SMAC computes it
    from the map's unit lists without starting the game)."""
    env = _env_class(module)(map_name=map_name)
    info = env.get_env_info()
    env.close()
    n, obs, actions = info["n_agents"], info["obs_shape"], info["n_actions"]
    host = HostSpec(
        num_agents=n,
        obs_dim=obs,
        state_dim=obs + info["state_shape"],
        num_actions=actions,
        obs_widths=(obs,) * n,
        action_counts=(actions,) * n,
        has_win=True,
        episode_metrics=("battle_won",),
    )
    return host, int(info["episode_limit"])


class StarCraft:
    """One SMAC battle in array form (module docstring)."""

    def __init__(self, map_name: str, module: str = "smac.env"):
        self.env = _env_class(module)(map_name=map_name)

    def _observe(self) -> HostObs:
        obs = np.asarray(self.env.get_obs(), np.float32)
        avail = np.asarray(self.env.get_avail_actions(), bool)
        state = np.asarray(self.env.get_state(), np.float32)
        return HostObs(obs, agent_states(obs, state), avail, ~avail[:, 0])

    def reset(self, seed: int) -> HostObs:
        self.env.reset()
        self._won = False
        return self._observe()

    def step(self, actions: np.ndarray):
        reward, ended, info = self.env.step([int(a) for a in actions])
        truncated = bool(ended and info.get("episode_limit", False))
        self._won = bool(info.get("battle_won", False))
        obs = self._observe()
        return obs, np.full(obs.alive.shape, reward, np.float32), bool(ended) and not truncated, truncated, self._won

    def episode_metrics(self) -> dict[str, float]:
        return {"battle_won": float(self._won)}

    def close(self) -> None:
        self.env.close()
