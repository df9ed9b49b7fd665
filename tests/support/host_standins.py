"""Scripted host environments for the bridge tests; they run in worker processes."""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from jaxseq.hostenv import HostObs, HostSpec

COUNTING_SPEC = HostSpec(
    num_agents=2,
    obs_dim=2,
    state_dim=2,
    num_actions=3,
    obs_widths=(2, 2),
    action_counts=(3, 3),
    episode_metrics=("steps_seen",),
)


def episode_length(tag: float) -> int:
    return 3 + int(tag) % 4


class CountingEnv:
    """obs row = [t, tag]: t counts the episode's steps, tag identifies the episode (from its
    seed); the reward is 1 + the sum of the actions; the episode terminates after
    ``episode_length(tag)`` steps. ``fail`` = "crash" | "exception" | "hang" makes the worker fail once, at step
    ``fail_at`` of an episode, on an instance that finds ``flag`` absent (it creates it first)."""

    def __init__(self, fail: str | None = None, fail_at: int = 3, flag: str = ""):
        self.fail, self.fail_at, self.flag = fail, fail_at, flag

    def _first_to_fail(self) -> bool:
        """True for exactly one instance over all workers: creating the flag file is atomic (the
        workers step in parallel, so a check-then-create would let two of them fail)."""
        try:
            os.close(os.open(self.flag, os.O_CREAT | os.O_EXCL))
            return True
        except FileExistsError:
            return False

    def _obs(self) -> HostObs:
        row = np.asarray([self.t, self.tag], np.float32)
        obs = np.stack([row, row])
        return HostObs(obs, obs, np.ones((2, 3), bool), np.ones((2,), bool))

    def reset(self, seed: int) -> HostObs:
        self.t, self.tag = 0, seed % 100_000
        return self._obs()

    def step(self, actions):
        self.t += 1
        if self.fail and self.t == self.fail_at and self._first_to_fail():
            if self.fail == "crash":
                os.kill(os.getpid(), signal.SIGKILL)
            elif self.fail == "hang":
                time.sleep(3600)
            else:
                raise RuntimeError("scripted failure in the stand-in env")
        reward = np.full((2,), 1.0 + float(np.sum(actions)), np.float32)
        ended = self.t >= episode_length(self.tag)
        return self._obs(), reward, ended, False, False

    def episode_metrics(self) -> dict[str, float]:
        return {"steps_seen": float(self.t)}
