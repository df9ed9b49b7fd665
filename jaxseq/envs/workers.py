"""The bridge's two kinds of worker: a local process (``pool=local``) and a Ray actor (``pool=ray``).

Both serve the protocol of :mod:`jaxseq.hostenv.worker` (the same ``Server`` answers every
message) and look the same to :class:`jaxseq.envs.bridge.WorkerPool`:

- ``send(msg)`` queues one request without waiting (an ``OSError`` if the worker is gone);
- ``receive(timeout)`` returns the reply's payload or raises :class:`WorkerFailure` with kind
  ``"exception"`` (the worker answered with a traceback), ``"crash"`` (it died) or ``"hang"`` (no
  reply within ``timeout`` seconds);
- ``kill()`` ends it at once, ``close()`` politely.

Requests to one worker are answered in the order sent; the pool sends every worker its share of
a batch before it waits for any, so the workers step in parallel.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any, Protocol

#: Seconds a new worker may take to start (Python and NumPy imports), whatever the step timeout.
STARTUP_SECONDS = 60.0

#: What installs Ray (the error when ``pool=ray`` is asked for without it names it).
RAY_INSTALL = "pip install -e '.[ray]'"


class WorkerFailure(Exception):
    """A worker raised, crashed or hung: ``kind`` is "exception", "crash" or "hang"."""

    def __init__(self, kind: str, detail: str):
        super().__init__(kind)
        self.kind, self.detail = kind, detail


class Worker(Protocol):
    def send(self, msg: tuple) -> None: ...
    def receive(self, timeout: float) -> Any: ...
    def kill(self) -> None: ...
    def close(self) -> None: ...


def _payload(reply: tuple) -> Any:
    status, payload = reply
    if status == "error":
        raise WorkerFailure("exception", payload)
    return payload


class LocalWorker:
    """A worker process (``python -m jaxseq.hostenv.worker FD``) and its end of a socket pair; its
    stderr goes to ``log_dir/worker<index>.stderr``, whose tail a crash report quotes."""

    def __init__(self, log_dir: str, index: int):
        parent, child = socket.socketpair()
        self.stderr_path = os.path.join(log_dir, f"worker{index}.stderr")
        # The worker sees the parent's import path, so a factory may name a module of the caller's.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jaxseq.hostenv.worker", str(child.fileno())],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
        child.close()
        self.conn = Connection(parent.detach())

    def send(self, msg: tuple) -> None:
        self.conn.send(msg)

    def receive(self, timeout: float) -> Any:
        try:
            if not self.conn.poll(timeout):
                raise WorkerFailure("hang", f"no reply within {timeout:g} s")
            reply = self.conn.recv()
        except (EOFError, OSError):
            code = self.proc.wait(timeout=timeout)
            raise WorkerFailure("crash", f"exit status {code}; stderr tail:\n{self._stderr_tail()}") from None
        return _payload(reply)

    def _stderr_tail(self, chars: int = 2000) -> str:
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")[-chars:]

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.conn.close()

    def close(self) -> None:
        try:
            self.conn.send(("close",))
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()


class _Actor:
    """The Ray actor: a :class:`~jaxseq.hostenv.worker.Server` in a Ray worker process."""

    def __init__(self):
        from jaxseq.hostenv.worker import Server

        self.server = Server()

    def answer(self, msg: tuple) -> tuple:
        return self.server.answer(msg)

    def close(self) -> None:
        self.server.close()


#: Whether this process started the Ray runtime it is connected to (see connect_ray).
_LOCAL_RUNTIME = False


def connect_ray():
    """The ``ray`` module, connected, and the CPUs an actor reserves there: the runtime this
    process already joined (``ray.init(address=...)`` by the user) or the cluster ``RAY_ADDRESS``
    names: 1 (a node takes as many actors as it has CPUs); else a new local runtime whose workers
    see this process's import path: 0 (as many actors as asked for, like local processes)."""
    import ray

    global _LOCAL_RUNTIME
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            try:
                ray.init(configure_logging=False)
            except ConnectionError as e:  # not a worker's failure: no use restarting it
                raise RuntimeError(f"pool=ray: RAY_ADDRESS={os.environ['RAY_ADDRESS']}: {e}") from None
        else:
            path = os.pathsep.join(p for p in sys.path if p)
            ray.init(
                include_dashboard=False,
                configure_logging=False,
                runtime_env={"env_vars": {"PYTHONPATH": path}},
                # Replies up to 16 MiB go inline, not through the object store (Ray's default is
                # 100 KiB: 128 pz:simple_spread envs' reply is ~280 KiB). Measured: 256 envs on 2
                # actors, 3,396 -> 4,415 steps/s (benchmarks/results/bridge_throughput.md).
                _system_config={"max_direct_call_object_size": 1 << 24},
            )
            _LOCAL_RUNTIME = True
    return ray, 0 if _LOCAL_RUNTIME else 1


class RayWorker:
    """A worker as a Ray actor, spread over the cluster's nodes (``connect_ray`` says how many CPUs
    each reserves). A crash is a Ray error of the call (``RayActorError`` when the actor died); a
    hang is a reply not ready within the timeout; both end the actor with ``ray.kill``."""

    def __init__(self):
        self.ray, self.cpus = connect_ray()
        remote = self.ray.remote(_Actor).options(num_cpus=self.cpus, max_restarts=0, scheduling_strategy="SPREAD")
        self.actor = remote.remote()
        self._pending: list = []

    def send(self, msg: tuple) -> None:
        self._pending.append(self.actor.answer.remote(msg))

    def receive(self, timeout: float) -> Any:
        try:
            reply = self.ray.get(self._pending.pop(0), timeout=timeout)
        except self.ray.exceptions.GetTimeoutError:
            raise WorkerFailure("hang", f"no reply within {timeout:g} s{self._cpu_hint()}") from None
        except self.ray.exceptions.RayError as e:  # the actor died (RayActorError) or its call failed
            raise WorkerFailure("crash", f"the actor died: {e}") from None
        return _payload(reply)

    def _cpu_hint(self) -> str:
        """Why an actor may not have started: it waits for a CPU the cluster does not have free."""
        if not self.cpus:
            return ""
        free, total = (r.get("CPU", 0) for r in (self.ray.available_resources(), self.ray.cluster_resources()))
        return f" (each actor reserves 1 CPU; the Ray cluster has {free:g} of {total:g} free)"

    def kill(self) -> None:
        self.ray.kill(self.actor, no_restart=True)
        self._pending.clear()

    def close(self) -> None:
        try:
            self.ray.get(self.actor.close.remote(), timeout=5)
        except self.ray.exceptions.RayError:  # dead or hung: killed all the same
            pass
        self.kill()


def start_worker(pool: str, log_dir: str, index: int) -> Worker:
    """A new worker of kind ``pool`` ("local" or "ray")."""
    if pool == "ray":
        return RayWorker()
    return LocalWorker(log_dir, index)
