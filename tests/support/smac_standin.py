"""A scripted stand-in for ``smac.env.StarCraft2Env``: the same public interface, no game.

Map "Nm" has N agents (6 + N actions: no-op, stop, 4 moves, attack enemy j) against N enemies of
3 health each. Each step every living agent that attacks a living enemy takes 1 health off it;
agent i dies at step 4 + 3 i unless the battle ended. Reward: health removed this step, plus 10 on
a win. The episode ends with a win when every enemy is dead, or at the episode limit (8 steps),
where SMAC sets ``info["episode_limit"]``. Unavailable actions raise, as SMAC does.
"""

from __future__ import annotations

import numpy as np

EPISODE_LIMIT = 8


class StarCraft2Env:
    def __init__(self, map_name: str):
        self.n = int(map_name.rstrip("m"))
        self.n_actions = 6 + self.n

    def get_env_info(self) -> dict:
        return {
            "n_agents": self.n,
            "n_actions": self.n_actions,
            "obs_shape": self.n + 2,
            "state_shape": 2 * self.n + 1,
            "episode_limit": EPISODE_LIMIT,
        }

    def reset(self):
        self.t = 0
        self.enemy = np.full(self.n, 3.0)
        self.alive = np.ones(self.n, bool)
        return self.get_obs(), self.get_state()

    def get_obs(self) -> list[np.ndarray]:
        return [np.concatenate([self.enemy, [float(self.alive[i]), i]]) for i in range(self.n)]

    def get_state(self) -> np.ndarray:
        return np.concatenate([self.enemy, self.alive.astype(float), [self.t]])

    def get_avail_actions(self) -> list[list[int]]:
        rows = []
        for i in range(self.n):
            if not self.alive[i]:
                rows.append([1] + [0] * (self.n_actions - 1))
            else:
                rows.append([0] + [1] * 5 + [int(h > 0) for h in self.enemy])
        return rows

    def step(self, actions):
        avail = self.get_avail_actions()
        for i, a in enumerate(actions):
            if not avail[i][a]:
                raise AssertionError(f"Agent {i} cannot perform action {a}")
        before = self.enemy.sum()
        for i, a in enumerate(actions):
            if self.alive[i] and a >= 6 and self.enemy[a - 6] > 0:
                self.enemy[a - 6] -= 1
        self.t += 1
        won = bool(self.enemy.sum() == 0)
        reward = float(before - self.enemy.sum()) + (10.0 if won else 0.0)
        if not won:
            self.alive &= ~(self.t >= 4 + 3 * np.arange(self.n))
        info = {"battle_won": won}
        ended = won or self.t >= EPISODE_LIMIT
        if ended and not won:
            info["episode_limit"] = True
        return reward, ended, info

    def close(self) -> None:
        pass
