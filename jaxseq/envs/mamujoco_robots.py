"""Multi-agent MuJoCo's robots: each robot's actuated joints, joint graph, partitions among agents
(A2PO paper Fig. 9 / FP3O paper Tab. 1, with gymnasium-robotics' ``mamujoco_v1`` joint graph and
agent order wherever it defines the partition) and observation categories, as data; the tasks
``Robot-partition`` they make. Plain data: listing the tasks does not import MuJoCo or brax.
The environment built from them is :mod:`jaxseq.envs.mamujoco`.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Robot:
    """A robot's joint graph and partitions.

    joints: node label -> joint name in the model, for every actuated joint (labels as in
      ``mamujoco_v1``). edges: hyperedges over labels (a set of mutually adjacent joints).
    partitions: partition name -> per agent, the labels of its joints (the action order).
    local_categories: categories observed at depth 0, 1, ... (the last repeats for deeper k).
    global_items: (category, joint, lo, hi): entries lo:hi of that joint's qpos / qvel span.
    bodies: node label -> bodies whose ``cinert`` / ``cvel`` / ``cfrc_ext`` the node observes; a
      name, or ``@joint`` for the (unnamed) body that carries that joint.
    """

    brax_name: str
    joints: dict[str, str]
    edges: tuple[tuple[str, ...], ...]
    partitions: dict[str, tuple[tuple[str, ...], ...]]
    local_categories: tuple[tuple[str, ...], ...]
    global_items: tuple[tuple[str, str, int, int], ...]
    bodies: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    qvel_clip: float | None = None  # Hopper: every qvel item clipped to +/- 10
    body_clip: float | None = None  # Ant: every body item (cfrc_ext) clipped to +/- 1
    angle_qpos: bool = False  # Reacher: an actuated hinge's qpos is observed as (sin, cos)
    fingertip_labels: tuple[str, ...] = ()  # Reacher: nodes that observe fingertip - target


#: Planar walkers' globals: root z and pitch positions (the x position left out), all three root velocities.
_PLANAR_ROOT = (
    ("qpos", "rootz", 0, 1),
    ("qpos", "rooty", 0, 1),
    ("qvel", "rootx", 0, 1),
    ("qvel", "rootz", 0, 1),
    ("qvel", "rooty", 0, 1),
)


_FREE_ROOT = (("qpos", "root", 2, 7), ("qvel", "root", 0, 6))  # torso height + orientation, 6-d velocity


def _chain(*labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(zip(labels[:-1], labels[1:]))


def _singles(labels) -> tuple[tuple[str, ...], ...]:
    return tuple((label,) for label in labels)


_CHEETAH = ("bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot")
_ANT_LEGS = {f"hip{i}": f"hip_{i}" for i in range(1, 5)} | {f"ankle{i}": f"ankle_{i}" for i in range(1, 5)}
_WALKER = ("thigh_joint", "leg_joint", "foot_joint", "thigh_left_joint", "leg_left_joint", "foot_left_joint")
_HUMANOID = (
    "abdomen_y",
    "abdomen_z",
    "abdomen_x",
    "right_hip_x",
    "right_hip_z",
    "right_hip_y",
    "right_knee",
    "left_hip_x",
    "left_hip_z",
    "left_hip_y",
    "left_knee",
    "right_shoulder1",
    "right_shoulder2",
    "right_elbow",
    "left_shoulder1",
    "left_shoulder2",
    "left_elbow",
)
_HUMANOID_UPPER = (
    "abdomen_x",
    "abdomen_y",
    "abdomen_z",
    "right_shoulder1",
    "right_shoulder2",
    "right_elbow",
    "left_shoulder1",
    "left_shoulder2",
    "left_elbow",
)
_HUMANOID_LOWER = (
    "right_hip_x",
    "right_hip_y",
    "right_hip_z",
    "right_knee",
    "left_hip_x",
    "left_hip_y",
    "left_hip_z",
    "left_knee",
)
_ABDOMEN, _R_HIP, _L_HIP = ("abdomen_x", "abdomen_y", "abdomen_z"), _HUMANOID_LOWER[:3], _HUMANOID_LOWER[4:7]
_R_ARM, _L_ARM = (
    ("right_elbow", "right_shoulder1", "right_shoulder2"),
    ("left_elbow", "left_shoulder1", "left_shoulder2"),
)
_HUMANOID_EDGES = (
    _ABDOMEN,
    _R_HIP,
    _L_HIP,
    _L_ARM,
    _R_ARM,
    ("left_knee",) + _L_HIP,
    ("right_knee",) + _R_HIP,
    _L_ARM[1:] + _ABDOMEN,
    _R_ARM[1:] + _ABDOMEN,
    _ABDOMEN + _L_HIP,
    _ABDOMEN + _R_HIP,
)
_HUMANOID_BODIES = {
    "abdomen_y": ("torso", "lwaist", "pelvis"),
    "abdomen_z": ("torso", "lwaist", "pelvis"),
    "abdomen_x": ("pelvis", "right_thigh", "left_thigh"),
    **{j: ("right_thigh", "right_shin") for j in _R_HIP},
    "right_knee": ("right_shin", "right_foot"),
    **{j: ("left_thigh", "left_shin") for j in _L_HIP},
    "left_knee": ("left_shin", "left_foot"),
    **{j: ("torso", "right_upper_arm", "right_lower_arm") for j in _R_ARM[1:]},
    "right_elbow": ("right_lower_arm",),
    **{j: ("torso", "left_upper_arm", "left_lower_arm") for j in _L_ARM[1:]},
    "left_elbow": ("left_lower_arm",),
}


def _humanoid(brax_name: str) -> Robot:
    return Robot(
        brax_name=brax_name,
        joints={j: j for j in _HUMANOID},
        edges=_HUMANOID_EDGES,
        partitions={"9|8": (_HUMANOID_UPPER, _HUMANOID_LOWER), "17x1": _singles(_HUMANOID)},
        local_categories=(("qpos", "qvel", "cinert", "cvel", "qfrc_actuator", "cfrc_ext"), ("qpos",)),
        global_items=_FREE_ROOT,
        bodies=_HUMANOID_BODIES,
    )


ROBOTS: dict[str, Robot] = {
    "HalfCheetah": Robot(
        brax_name="halfcheetah",
        joints={j: j for j in _CHEETAH},
        edges=_chain("bfoot", "bshin", "bthigh", "fthigh", "fshin", "ffoot"),
        partitions={
            "2x3": (_CHEETAH[:3], _CHEETAH[3:]),
            "6x1": _singles(_CHEETAH),
            # Not in mamujoco_v1: the original MA-MuJoCo's pairs along the chain.
            "3x2": (("bfoot", "bshin"), ("bthigh", "ffoot"), ("fshin", "fthigh")),
        },
        local_categories=(("qpos", "qvel"), ("qpos",)),
        global_items=_PLANAR_ROOT,
    ),
    "Ant": Robot(
        brax_name="ant",
        joints=_ANT_LEGS,
        edges=(
            ("ankle4", "hip4"),
            ("ankle1", "hip1"),
            ("ankle2", "hip2"),
            ("ankle3", "hip3"),
            ("hip4", "hip1", "hip2", "hip3"),
        ),
        partitions={
            "2x4": (("hip1", "ankle1", "hip2", "ankle2"), ("hip3", "ankle3", "hip4", "ankle4")),
            "2x4d": (("hip1", "ankle1", "hip4", "ankle4"), ("hip2", "ankle2", "hip3", "ankle3")),
            "4x2": tuple((f"hip{i}", f"ankle{i}") for i in range(1, 5)),
            # Not in mamujoco_v1: one joint per agent.
            "8x1": _singles((f"hip{i}" if k == 0 else f"ankle{i}") for i in range(1, 5) for k in range(2)),
        },
        local_categories=(("qpos", "qvel", "cfrc_ext"), ("qpos",)),
        global_items=_FREE_ROOT,
        bodies={
            **{
                f"hip{i}": ("torso", leg)
                for i, leg in enumerate(("front_left_leg", "front_right_leg", "back_leg", "right_back_leg"), 1)
            },
            **{
                f"ankle{i}": (leg, f"aux_{i}", f"@ankle_{i}")
                for i, leg in enumerate(("front_left_leg", "front_right_leg", "back_leg", "right_back_leg"), 1)
            },
        },
        body_clip=1.0,
    ),
    "Hopper": Robot(
        brax_name="hopper",
        joints={j: j for j in _WALKER[:3]},
        edges=_chain("foot_joint", "leg_joint", "thigh_joint"),
        partitions={"3x1": _singles(_WALKER[:3])},
        local_categories=(("qpos", "qvel"), ("qpos",)),
        global_items=_PLANAR_ROOT,
        qvel_clip=10.0,
    ),
    "Walker2d": Robot(
        brax_name="walker2d",
        joints={j: j for j in _WALKER},
        edges=_chain("foot_joint", "leg_joint", "thigh_joint", "thigh_left_joint", "leg_left_joint", "foot_left_joint"),
        partitions={
            "2x3": (
                ("foot_joint", "leg_joint", "thigh_joint"),
                ("foot_left_joint", "leg_left_joint", "thigh_left_joint"),
            ),
            # Not in mamujoco_v1: one joint per agent, and neighbouring pairs along the
            # foot-leg-thigh-thigh-leg-foot chain (as HalfCheetah's 3x2).
            "6x1": _singles(_WALKER),
            "3x2": (
                ("foot_joint", "leg_joint"),
                ("thigh_joint", "thigh_left_joint"),
                ("leg_left_joint", "foot_left_joint"),
            ),
        },
        local_categories=(("qpos", "qvel"), ("qpos",)),
        global_items=_PLANAR_ROOT,
    ),
    "Humanoid": _humanoid("humanoid"),
    "HumanoidStandup": _humanoid("humanoidstandup"),
    "Reacher": Robot(
        brax_name="reacher",
        joints={"joint0": "joint0", "joint1": "joint1"},
        edges=(("joint0", "joint1"),),
        partitions={"2x1": (("joint0",), ("joint1",))},
        local_categories=(("qpos", "qvel", "fingertip_dist"), ("qpos",)),
        global_items=(("qpos", "target_x", 0, 1), ("qpos", "target_y", 0, 1)),
        angle_qpos=True,
        fingertip_labels=("joint1",),
    ),
}


def task_names() -> list[str]:
    """Every ``Robot-partition`` task, e.g. ``HalfCheetah-6x1``."""
    return sorted(f"{robot}-{part}" for robot, r in ROBOTS.items() for part in r.partitions)
