"""The worker process: owns host-environment instances and steps them on request.

Started by :class:`jaxseq.envs.bridge.WorkerPool` as ``python -m jaxseq.hostenv.worker FD`` with one
end of a socket pair as file descriptor FD. Messages are pickled tuples
(:class:`multiprocessing.connection.Connection`):

- ``("init", factory, max_steps)``: ``factory = (module, function, kwargs)`` builds one instance.
- ``("reset", slots, seeds)``: (re)start an episode in each slot, creating missing instances.
  Reply ``("ok", {"obs": HostObs of [K, ...] arrays})``.
- ``("step", slots, seeds, actions)``: one transition per slot with auto-reset (the seed starts the
  next episode where one ends). A slot this worker does not hold (it was lost with a crashed
  worker, or comes from another process's checkpoint) is created and reset, and its transition is
  marked ``lost``: the parent reports it as a truncation with zero reward. Reply ``("ok", dict)``
  with ``obs`` (to act on next), ``final`` (the true next observation), ``reward`` [K, N],
  ``terminated``, ``truncated``, ``won``, ``lost`` [K] and ``episodes`` (one dict per ended
  episode: instance, length, return, and the environment's behaviour metrics).
- ``("close",)``.

An exception is answered with ``("error", traceback text)`` and the worker exits; the parent
restarts it.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from multiprocessing.connection import Connection

import numpy as np

from jaxseq.hostenv import HostObs


def build(factory: tuple) -> object:
    module, function, kwargs = factory
    return getattr(importlib.import_module(module), function)(**kwargs)


def _stack(items: list[HostObs]) -> HostObs:
    return HostObs(*(np.stack(field) for field in zip(*items)))


class Instance:
    """One host environment with its episode counters."""

    def __init__(self, env: object):
        self.env = env
        self.steps = 0
        self.ret = 0.0

    def reset(self, seed: int) -> HostObs:
        self.steps, self.ret = 0, 0.0
        return self.env.reset(int(seed))


class Worker:
    def __init__(self, factory: tuple, max_steps: int):
        self.factory = factory
        self.max_steps = max_steps
        self.instances: dict[int, Instance] = {}

    def _get(self, slot: int) -> tuple[Instance, bool]:
        """The slot's instance and whether it had to be created."""
        if slot in self.instances:
            return self.instances[slot], False
        inst = self.instances[slot] = Instance(build(self.factory))
        return inst, True

    def reset(self, slots, seeds) -> dict:
        return {"obs": _stack([self._get(s)[0].reset(seed) for s, seed in zip(slots, seeds)])}

    def step(self, slots, seeds, actions) -> dict:
        obs, final, rewards, flags, episodes = [], [], [], [], []
        for slot, seed, action in zip(slots, seeds, actions):
            inst, created = self._get(slot)
            if created:  # lost: a fresh episode; the parent fills in the last observation it saw
                first = inst.reset(seed)
                obs.append(first)
                final.append(first)
                rewards.append(np.zeros(first.alive.shape, np.float32))
                flags.append((False, True, False, True))
                continue
            nxt, reward, terminated, truncated, won = inst.env.step(action)
            inst.steps += 1
            inst.ret += float(np.mean(reward))
            terminated = bool(terminated)
            truncated = (bool(truncated) or inst.steps >= self.max_steps) and not terminated
            if terminated or truncated:
                metrics = getattr(inst.env, "episode_metrics", dict)()
                episodes.append({"instance": int(slot), "length": inst.steps, "return": inst.ret, **metrics})
                obs.append(inst.reset(seed))
            else:
                obs.append(nxt)
            final.append(nxt)
            rewards.append(np.asarray(reward, np.float32))
            flags.append((terminated, truncated, bool(won), False))
        flags = np.asarray(flags, bool).reshape(-1, 4)
        return {
            "obs": _stack(obs),
            "final": _stack(final),
            "reward": np.stack(rewards),
            "terminated": flags[:, 0],
            "truncated": flags[:, 1],
            "won": flags[:, 2],
            "lost": flags[:, 3],
            "episodes": episodes,
        }

    def close(self) -> None:
        for inst in self.instances.values():
            close = getattr(inst.env, "close", None)
            if close is not None:
                close()


class Server:
    """Answers the messages above, one at a time; the local worker process and the Ray actor
    (:mod:`jaxseq.envs.workers`) both serve through it."""

    def __init__(self):
        self.worker: Worker | None = None

    def answer(self, msg: tuple) -> tuple:
        """The reply to ``msg``: ``("ok", payload)``, or ``("error", traceback text)`` after which
        the caller ends this worker."""
        try:
            if msg[0] == "init":
                self.worker = Worker(*msg[1:])
                return ("ok", None)
            if msg[0] in ("reset", "step"):
                return ("ok", getattr(self.worker, msg[0])(*msg[1:]))
            raise ValueError(f"unknown message {msg[0]!r}")
        except Exception:
            return ("error", traceback.format_exc())

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()


def main(fd: int) -> None:
    conn = Connection(fd)
    server = Server()
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the parent went away
            break
        if msg[0] == "close":
            break
        reply = server.answer(msg)
        conn.send(reply)
        if reply[0] == "error":
            return
    server.close()


if __name__ == "__main__":
    main(int(sys.argv[1]))
