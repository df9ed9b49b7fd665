"""One greedy episode of a saved policy as an animated GIF:
``python -m jaxseq render RUN_DIR [--out episode.gif] [--checkpoint best|last|CHUNK] [--seed-index I]``.

The policy is loaded as ``jaxseq eval`` loads it (:func:`jaxseq.evaluation.load_policy`). The episode
is one ``lax.scan`` of ``max_steps`` greedy steps of member ``I``'s policy in one env, on the
adapter under the auto-reset (so nothing resets), cut after the step that ends the episode; its
per-step env states are drawn by the family's own renderer:

- MPE: JaxMARL's ``MPEVisualizer``, one frame per step (the state after it);
- SMAX: JaxMARL's ``SMAXVisualizer``, the steps expanded into the world's sub-steps as its
  ``expand_state_seq`` does, replayed with the episode's own step keys (the heuristic enemy draws
  random numbers, so JaxMARL's replay, which derives other keys, would show another battle);
- MA-MuJoCo: ``mujoco.Renderer`` off screen, a tracking camera on the robot, one frame per step.
  It needs an OpenGL context (``MUJOCO_GL=egl`` or ``osmesa`` on a machine without a display);
  without one the command stops before loading anything, saying what to install.

The tabular game and the host environments (``grf:``, ``pz:``, ``sc2:``) are refused, with the reason.
Pillow stores a frame identical to the one before it as a longer display of that one (SMAX's units
standing still), so a GIF may hold fewer frames than were drawn; MPE's frames show the step count.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxseq.errors import ConfigError
from jaxseq.paths import check_output_file
from jaxseq.run_folder import reading_config

#: Why a family has no renderer.
NOT_RENDERED = {
    "tabular": "the tabular game's state is an index into a random transition table, with nothing to draw",
    "grf": (
        "gfootball draws only in its own window (render=True, which needs a display) inside the worker "
        "processes; to record games, create its env with write_video=True and a logdir (gfootball's own "
        "option) outside jaxseq"
    ),
    "pz": (
        "host environments run in worker processes, so their states are not part of the compiled episode; "
        "PettingZoo draws its own with render_mode='rgb_array'"
    ),
    "sc2": (
        "host environments run in worker processes, so their states are not part of the compiled episode; "
        "StarCraft II draws in its own client (SMAC's save_replay records a replay)"
    ),
}

#: What a machine without a display needs for MuJoCo's off-screen rendering.
GL_HELP = (
    "headless MuJoCo rendering needs MUJOCO_GL=egl (system package libegl1 with a GPU driver or Mesa, "
    "e.g. libegl-mesa0) or MUJOCO_GL=osmesa (system package libosmesa6, software rendering), set before jaxseq starts"
)


class Episode(NamedTuple):
    """One greedy episode: ``states`` [T + 1] env states (the reset's first), ``keys`` [T] the step
    keys, ``actions`` [T] the joint actions, ``rewards`` [T] the mean over agents; T = ``length``."""

    states: Any
    keys: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    length: int

    def state(self, t: int) -> Any:
        return jax.tree.map(lambda x: x[t], self.states)


def greedy_episode(eng, env, ts, key: jax.Array) -> tuple:
    """``max_steps`` greedy steps of one member's policy (``ts`` unstacked) in the adapter ``env``
    (a :class:`~jaxseq.envs.base.MultiAgentEnv`, no reset), from ``env.reset``. Returns the env
    states [max_steps + 1] (the reset's first), step keys, actions [max_steps, ...], mean rewards and
    ended flags [max_steps] (an episode's end; the steps after it are not part of it)."""
    n = eng.num_agents
    k_reset, k_steps = jax.random.split(key)
    inner, obs = env.reset(k_reset)

    def step(carry, k):
        inner, obs, actor_carry, start = carry
        actor_carry, logits = eng.actor.apply(ts.actor_params, actor_carry, obs.obs[None], jnp.full((1, n), start))
        actions = eng.policy.greedy(logits, obs.avail[None])[0]
        inner, tr = env.step(k, inner, actions)
        ended = tr.terminated | tr.truncated
        return (inner, tr.next_obs, actor_carry, jnp.zeros((), bool)), (inner, actions, jnp.mean(tr.reward), ended)

    keys = jax.random.split(k_steps, eng.spec.max_steps)
    init = (inner, obs, eng.actor.init_carry((1,)), jnp.ones((), bool))
    _, (states, actions, rewards, ended) = jax.lax.scan(step, init, keys)
    states = jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]), inner, states)
    return states, keys, actions, rewards, ended


def play(trainer, state, member: int) -> Episode:
    """Member ``member``'s greedy episode from the [M]-stacked ``state``, cut after its end."""
    ts = jax.tree.map(lambda x: x[member], state)
    eng = trainer.with_values(ts.hyper).engine
    key = jax.random.fold_in(ts.key, 0x4E4D)
    states, keys, actions, rewards, ended = jax.device_get(
        jax.jit(functools.partial(greedy_episode, eng, trainer.env.env))(ts, key)
    )
    length = int(np.argmax(ended)) + 1 if ended.any() else len(ended)
    return Episode(
        jax.tree.map(lambda x: x[: length + 1], states), keys[:length], actions[:length], rewards[:length], length
    )


def _animate(visualiser, out: Path) -> None:
    """Save a JaxMARL visualiser's animation as a GIF with matplotlib's Pillow writer."""
    import matplotlib
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"animation.writer": "pillow"}):
        visualiser.animate(save_fname=str(out), view=False)
    plt.close(visualiser.fig)


def mpe_gif(adapter, episode: Episode, out: Path) -> int:
    """JaxMARL's MPE visualiser over the states after each step; returns the frame count."""
    from jaxmarl.environments.mpe.mpe_visualizer import MPEVisualizer

    frames = [episode.state(t) for t in range(1, episode.length + 1)]
    with contextlib.redirect_stdout(io.StringIO()):  # it prints whether the agents communicate
        visualiser = MPEVisualizer(adapter.jaxmarl_env, frames)
    _animate(visualiser, out)
    return len(frames)


def smax_frames(adapter, episode: Episode) -> list[tuple]:
    """The episode's world sub-steps in the layout of ``HeuristicEnemySMAX.expand_state_seq``: per
    step the world state before it, then each sub-step's (key, world state, attack actions), from
    the step keys the episode used."""
    from jaxseq.envs.jaxmarl_adapter import unstack_actions

    env = adapter.jaxmarl_env
    frames = []
    for t in range(episode.length):
        before, key = episode.state(t), episode.keys[t]
        # step_env is compiled (get_state_sequence static): the world's sub-steps of this env step.
        worlds = jax.device_get(env.step_env(key, before, unstack_actions(episode.actions[t], adapter.agents), True))
        subs = [jax.tree.map(lambda x: x[i], worlds) for i in range(len(worlds.unit_alive))]
        attacks = {agent: subs[-1].prev_attack_actions[i] for i, agent in enumerate(env.all_agents)}
        frames += [(key, before.state, attacks)] + [(key, world, attacks) for world in subs]
    return frames


def smax_gif(adapter, episode: Episode, out: Path) -> int:
    """JaxMARL's SMAX visualiser over the expanded episode (:func:`smax_frames`); returns the frame count."""
    from jaxmarl.viz.visualizer import SMAXVisualizer

    frames = smax_frames(adapter, episode)
    visualiser = SMAXVisualizer(adapter.jaxmarl_env, frames)
    visualiser.have_expanded = True  # expanded above, with the episode's keys
    _animate(visualiser, out)
    return len(frames)


def check_gl() -> None:
    """ConfigError with :data:`GL_HELP` unless MuJoCo can create an off-screen OpenGL context."""
    import mujoco

    try:
        mujoco.Renderer(mujoco.MjModel.from_xml_string("<mujoco/>"), 8, 8).close()
    except Exception as err:  # FatalError, ImportError, AttributeError, RuntimeError: by GL backend
        gl = os.environ.get("MUJOCO_GL", "unset")
        message = f"MuJoCo cannot create an OpenGL context (MUJOCO_GL={gl}: {err}); {GL_HELP}"
        raise ConfigError("render", message) from None


def mujoco_gif(model, qpos: np.ndarray, out: Path, dt: float, size: tuple[int, int] = (320, 240)) -> int:
    """Frames of ``model`` at the joint positions ``qpos`` [T, nq] from a camera tracking the root
    body, as a GIF at the simulated pace (at most 50 frames per second); returns the frame count."""
    import mujoco
    from PIL import Image

    data = mujoco.MjData(model)
    camera = mujoco.MjvCamera()
    mujoco.mjv_defaultFreeCamera(model, camera)
    camera.type, camera.trackbodyid = mujoco.mjtCamera.mjCAMERA_TRACKING, 1
    camera.distance, camera.elevation = 4.0, -15.0  # the robots are 1-2 m; the floor sets the model's extent
    images = []
    with mujoco.Renderer(model, height=size[1], width=size[0]) as renderer:
        for q in qpos:
            data.qpos[:] = q
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, camera)
            images.append(Image.fromarray(renderer.render()))
    images[0].save(out, save_all=True, append_images=images[1:], duration=max(20, round(1000 * dt)), loop=0)
    return len(images)


def mamujoco_gif(adapter, episode: Episode, out: Path) -> int:
    """The robot after each step of the episode (:func:`mujoco_gif`); returns the frame count."""
    qpos = np.stack([np.asarray(adapter.qpos(episode.state(t))) for t in range(1, episode.length + 1)])
    return mujoco_gif(adapter.mj_model, qpos, out, adapter.dt)


#: family -> (check before anything loads, or None; writer(adapter, episode, out) -> frames).
RENDERERS: dict[str, tuple[Callable[[], None] | None, Callable[[Any, Episode, Path], int]]] = {
    "mpe": (None, mpe_gif),
    "smax": (None, smax_gif),
    "mamujoco": (check_gl, mamujoco_gif),
}


def render_run(run_dir: Path | str, out: Path | str, which: str = "best", seed_index: int = 0) -> dict:
    """Play member ``seed_index``'s greedy episode with checkpoint ``which`` of the run in ``run_dir``
    and write it to the GIF ``out``. Returns the chunk, the episode's length and return and the
    frame count. ConfigError for a missing run folder or checkpoint, a member out of range or an
    env family that cannot be rendered (:data:`NOT_RENDERED`, or MuJoCo without OpenGL)."""
    import matplotlib

    matplotlib.use("Agg")
    from jaxseq.evaluation import load_policy

    config = reading_config(Path(run_dir))
    check_output_file(out, "out")
    family = config.env.partition(":")[0]
    if family not in RENDERERS:
        reason = NOT_RENDERED.get(family, "it has no renderer")
        raise ConfigError("render", f"{config.env} cannot be rendered: {reason}")
    check, write = RENDERERS[family]
    if check is not None:
        check()
    if not 0 <= seed_index < config.num_members:
        raise ConfigError("seed_index", f"must lie in [0, {config.num_members}) (the run's members), got {seed_index}")
    trainer, chunk, state = load_policy(run_dir, which)
    episode = play(trainer, state, seed_index)
    frames = write(trainer.env.env, episode, Path(out))
    return {
        "out": str(out),
        "env": config.env,
        "checkpoint": which,
        "chunk": chunk,
        "seed_index": seed_index,
        "length": episode.length,
        "return": float(episode.rewards.sum()),
        "frames": frames,
    }
