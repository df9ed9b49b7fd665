"""Google Research Football (gfootball 2.10) as a host environment: ``grf:5_vs_5``,
``grf:11_vs_11_stochastic`` and the academy scenarios.

- Agents: the left team's field players. The goalkeeper is left to the built-in AI (A2PO paper
  App. B.2.4): in 5_vs_5 the scenario makes it uncontrollable; where it is controllable (the
  11-vs-11 games) we control every player with action set v2 and always send it ``builtin_ai``.
  Agent i keeps the same player for the whole episode.
- Actions: gfootball's 19 default actions.
- Observation of agent i: gfootball's Simple115 encoding of its own view (positions and
  directions of all players, the ball, ownership, its own player one-hot, game mode), 115 floats.
  State of agent i: ``[obs_i, steps left / game length, goal difference / 5]``.
- Reward (shared by the team): scoring (+1 / -1) plus checkpoints: the opponent's half is cut into
  10 zones by the ball's distance to the goal (thresholds 0.99 - 0.8 k / 9); the first time in an
  episode the team carries the ball into a zone it earns 0.1, and a goal collects the zones not
  yet earned. gfootball's CheckpointRewardWrapper counts zones per controlled player; the team
  reward of the papers' setup (A2PO paper App. B.2.4) counts them once for the team.
- The game ends after its duration (3000 steps in the full game): a termination. ``won``: the
  team scored more.
- Behaviour metrics per episode (A2PO paper Table 3), from ball ownership: ``goals``,
  ``goals_conceded``, ``passes`` (a pass action by the ball carrier, then a teammate owns the
  ball next), ``pass_attempts`` (such pass actions whose next owner is anyone), ``pass_rate``
  (passes / attempts, NaN without attempts), ``assists`` (a goal whose scorer received the last
  completed pass), ``lost_balls`` (the opponents own the ball after a left player did).

Installing gfootball needs system libraries and a compiler: ``scripts/install_gfootball.sh``.
gfootball's ``create_environment`` breaks on gym 0.26, so we build ``FootballEnv`` directly.
"""

from __future__ import annotations

import random

import numpy as np

from jaxseq.hostenv import HostObs, HostSpec

OBS_WIDTH = 115
NUM_ACTIONS = 19  # gfootball's default action set
PASS_ACTIONS = (9, 10, 11)  # long, high, short pass
BUILTIN_AI = 19  # action set v2's extra action
#: Per scenario: (controllable left players, field players = agents). Where the goalkeeper is
#: controllable, it is controlled and given the built-in AI's action.
SCENARIOS = {
    "5_vs_5": (4, 4),
    "11_vs_11_stochastic": (11, 10),
    "11_vs_11_easy_stochastic": (11, 10),
    "11_vs_11_hard_stochastic": (11, 10),
    "academy_3_vs_1_with_keeper": (4, 3),
    "academy_pass_and_shoot_with_keeper": (3, 2),
    "academy_run_pass_and_shoot_with_keeper": (3, 2),
}
METRICS = ("goals", "goals_conceded", "assists", "passes", "pass_attempts", "pass_rate", "lost_balls")
_CHECKPOINTS, _CHECKPOINT_REWARD = 10, 0.1


def spec(scenario: str) -> HostSpec:
    n = SCENARIOS[scenario][1]
    return HostSpec(
        num_agents=n,
        obs_dim=OBS_WIDTH,
        state_dim=OBS_WIDTH + 2,
        num_actions=NUM_ACTIONS,
        obs_widths=(OBS_WIDTH,) * n,
        action_counts=(NUM_ACTIONS,) * n,
        has_win=True,
        episode_metrics=METRICS,
    )


def checkpoint_zones(ball_x: float, ball_y: float) -> int:
    """How many checkpoint zones the ball is inside (0..10): zone k is reached at distance
    <= 0.99 - 0.8 k / 9 from the opponent's goal at (1, 0)."""
    d = ((ball_x - 1.0) ** 2 + ball_y**2) ** 0.5
    return sum(d <= 0.99 - 0.8 * k / (_CHECKPOINTS - 1) for k in range(_CHECKPOINTS))


class BehaviourTracker:
    """Counts the metrics of the module docstring from one raw observation per step."""

    def __init__(self):
        self.counts = dict.fromkeys(METRICS, 0.0)
        self.owner: int | None = None  # left player index with the ball, or None
        self.pending_pass: int | None = None  # left player who issued a pass while owning the ball
        self.last_receiver: int | None = None

    def update(self, raw: dict, passer_actions: dict[int, int], scored: int, conceded: int) -> None:
        """raw: the first agent's raw observation after the step; passer_actions: {left player
        index: action} sent this step; scored / conceded: goals this step."""
        c = self.counts
        if self.owner is not None and passer_actions.get(self.owner) in PASS_ACTIONS:
            self.pending_pass = self.owner
        team, player = int(raw["ball_owned_team"]), int(raw["ball_owned_player"])
        if team == 0 and player != self.owner:
            if self.pending_pass is not None and player != self.pending_pass:
                c["passes"] += 1
                c["pass_attempts"] += 1
                self.last_receiver = player
            elif self.owner is not None:
                self.last_receiver = None
            self.pending_pass, self.owner = None, player
        elif team == 1:
            if self.owner is not None:
                c["lost_balls"] += 1
            if self.pending_pass is not None:
                c["pass_attempts"] += 1
            self.pending_pass, self.owner, self.last_receiver = None, None, None
        if scored:
            c["goals"] += scored
            if self.last_receiver is not None and self.last_receiver == self.owner:
                c["assists"] += scored
            self.pending_pass, self.owner, self.last_receiver = None, None, None
        c["goals_conceded"] += conceded

    def result(self) -> dict[str, float]:
        out = dict(self.counts)
        out["pass_rate"] = out["passes"] / out["pass_attempts"] if out["pass_attempts"] else float("nan")
        return out


class Football:
    """One gfootball game with the left team's field players as agents (module docstring)."""

    def __init__(self, scenario: str):
        from gfootball.env import config, football_env
        from gfootball.env.wrappers import Simple115StateWrapper

        self._encode = Simple115StateWrapper.convert_observation
        self.spec = spec(scenario)
        self._controlled = SCENARIOS[scenario][0]
        self.env = football_env.FootballEnv(
            config.Config(
                {
                    "level": scenario,
                    "players": [f"agent:left_players={self._controlled}"],
                    "action_set": "v2" if self._controlled > self.spec.num_agents else "default",
                    "real_time": False,
                    "write_video": False,
                    "dump_full_episodes": False,
                }
            )
        )

    def reset(self, seed: int) -> HostObs:
        random.seed(seed)  # gfootball draws the engine seed of each episode from Python's random
        raw = self.env.reset()
        roles = raw[0]["left_team_roles"]
        self._agents = [i for i, o in enumerate(raw) if int(roles[o["active"]]) != 0]  # not the goalkeeper
        self._duration = float(raw[0]["steps_left"])
        self._zones, self._tracker, self._score = 0, BehaviourTracker(), (0, 0)
        return self._observe(raw)

    def _observe(self, raw: list[dict]) -> HostObs:
        obs = self._encode(raw, True)[self._agents].astype(np.float32)
        first = raw[0]
        extra = np.asarray(
            [first["steps_left"] / self._duration, (first["score"][0] - first["score"][1]) / 5.0], np.float32
        )
        state = np.concatenate([obs, np.broadcast_to(extra, (len(obs), 2))], axis=1)
        n = self.spec.num_agents
        return HostObs(obs, state, np.ones((n, NUM_ACTIONS), bool), np.ones((n,), bool))

    def step(self, actions: np.ndarray):
        full = np.full((self._controlled,), BUILTIN_AI, np.int64)
        full[self._agents] = actions
        raw, _, done, _ = self.env.step(full.tolist())
        first = raw[0]
        left, right = int(first["score"][0]), int(first["score"][1])
        scored, conceded = left - self._score[0], right - self._score[1]
        self._score = (left, right)
        reward = float(scored - conceded)
        zones = (
            _CHECKPOINTS
            if scored
            else (
                max(self._zones, checkpoint_zones(*first["ball"][:2]))
                if int(first["ball_owned_team"]) == 0
                else self._zones
            )
        )
        reward += _CHECKPOINT_REWARD * (zones - self._zones)
        self._zones = zones
        players = {int(o["active"]): int(a) for o, a in zip((raw[i] for i in self._agents), actions)}
        self._tracker.update(first, players, scored, conceded)
        won = bool(done and left > right)
        return self._observe(raw), np.full((self.spec.num_agents,), reward, np.float32), bool(done), False, won

    def episode_metrics(self) -> dict[str, float]:
        return self._tracker.result()

    def close(self) -> None:
        self.env.close()
