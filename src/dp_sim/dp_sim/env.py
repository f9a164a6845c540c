"""ArmTaskEnv: MuJoCo physics, rendering and task bookkeeping of the embedded arm (ROS-free).

The task: the stylus tip of a planar 3-joint arm starts folded near the base and must reach a red
target disk on the table behind a blue post, passing the post on the left (+y) or on the right
(-y). The target position changes every episode and is visible only in the overhead camera image.

What this module is: the model (description/arm.mjcf.xml), joint-level position control (one
MuJoCo position actuator per joint, i.e. a PD loop in the physics), stepping, off-screen rendering,
and the task status (distance, success, obstacle contact, side passed, the smallest distance
between any geom of the moving arm and an obstacle post over the episode, by MuJoCo's
mj_geomDistance at every physics step).
What it is not: a ROS node (sim_node wraps it), a trajectory interpolator (jtc.py) or a
demonstrator (expert.py). Time here is simulated seconds since the environment was created; it
never jumps backwards (an episode reset does not reset it).

Units: metres, radians, seconds.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

os.environ.setdefault('MUJOCO_GL', 'egl')
import mujoco  # noqa: E402

JOINT_NAMES: tuple[str, ...] = ('joint1', 'joint2', 'joint3')   # the embedded (default) arm's
CAMERA_NAME = 'overhead'
CLEARANCE_MAX_M = 1.0      # arm-obstacle distances are measured up to this (beyond: reported as it)
DESCRIPTION_DIR = Path(__file__).resolve().parent.parent / 'description'


def _description_file(name: str) -> Path:
    """A file of description/: next to the sources, or in the package's share directory once
    installed."""
    candidates = [DESCRIPTION_DIR / name]
    try:  # installed layout: share/dp_sim/description
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory('dp_sim')) / 'description' / name)
    except Exception:  # noqa: BLE001 - ament_index missing or package not installed
        pass
    for c in candidates:
        if c.exists():
            return c
    raise FileNotFoundError(f'{name} not found in {[str(c) for c in candidates]}')


def default_model_path() -> Path:
    """The MJCF file of the arm and its task."""
    return _description_file('arm.mjcf.xml')


def default_urdf_path() -> Path:
    """The arm's URDF (the one the launch files publish as robot_description)."""
    return _description_file('arm.urdf')


def model_path(model: str) -> Path:
    """The MJCF of sim_node's `model` parameter: '' = the embedded 3-joint arm, a file name in
    description/ (arm4.mjcf.xml: the 4-joint arm of the cross-embodiment evaluation), or a path."""
    if not model:
        return default_model_path()
    p = Path(model)
    return p if p.is_absolute() or p.exists() else _description_file(model)


@dataclass
class TaskConfig:
    """Task layout and success criterion. Positions in the world frame (table top z = 0)."""

    # Arm pose at the start of every episode, plus uniform noise. None: the model's keyframe
    # 'start' (arm.mjcf.xml: (-0.924, 2.561, -1.636), stylus tip near (0.21, 0); arm4.mjcf.xml:
    # the same tip pose).
    start_q_rad: Optional[tuple[float, ...]] = None
    start_noise_rad: float = 0.02
    # Target disk centre drawn uniformly in this box each episode.
    target_x_range_m: tuple[float, float] = (0.39, 0.44)
    target_y_range_m: tuple[float, float] = (-0.10, 0.10)
    # Success: tip within tolerance of the target centre, tip speed below the limit, and no
    # contact with the post during the episode. Success is latched for the rest of the episode.
    success_tolerance_m: float = 0.025
    success_max_speed_m_s: float = 0.05
    require_no_contact: bool = True
    # The episode is done on success or after this much simulated time.
    max_episode_s: float = 10.0
    # Task variants the demonstrations never saw (safe-sampling evaluations): the post moved
    # and/or enlarged (None: the model's, at (0.31, 0) with radius 0.025 m), and a second post of
    # the same height (None: none). Contact with either counts; the side passed is the first's.
    post_xy_m: Optional[tuple[float, float]] = None
    post_radius_m: Optional[float] = None
    second_post_xy_m: Optional[tuple[float, float]] = None
    second_post_radius_m: float = 0.025
    image_height: int = 96
    image_width: int = 96

    def __post_init__(self) -> None:
        for name in ('target_x_range_m', 'target_y_range_m'):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f'{name}: lower bound above upper bound')
        if self.success_tolerance_m <= 0 or self.max_episode_s <= 0:
            raise ValueError('success_tolerance_m and max_episode_s must be positive')
        if self.image_height < 8 or self.image_width < 8:
            raise ValueError('image size must be at least 8x8')
        for name in ('post_xy_m', 'second_post_xy_m'):
            xy = getattr(self, name)
            if xy is not None and (len(xy) != 2 or not all(map(math.isfinite, xy))):
                raise ValueError(f'{name}: two finite numbers (x, y) expected')
        for name in ('post_radius_m', 'second_post_radius_m'):
            r = getattr(self, name)
            if r is not None and not 0.005 <= r <= 0.2:
                raise ValueError(f'{name}: between 0.005 and 0.2 m expected')


@dataclass
class TaskStatus:
    """Snapshot of the episode (mirrors dp_msgs/TaskStatus)."""

    episode: int
    episode_time_s: float
    target: np.ndarray            # (3,) target centre on the table
    tip: np.ndarray               # (3,) stylus tip
    distance_m: float
    success: bool
    obstacle_contact: bool
    side: str                     # 'left', 'right' or '' while undecided
    done: bool
    min_clearance_m: float = math.inf   # smallest arm-obstacle distance of the episode so far


@dataclass
class _EpisodeState:
    episode: int = 0
    start_time_s: float = 0.0
    success: bool = False
    contact: bool = False
    min_clearance_m: float = math.inf
    side: str = ''
    target: np.ndarray = field(default_factory=lambda: np.zeros(3))


class _DataView:
    """A read-only attribute of ArmTaskEnv: a copy of MjData.<field>[env.<index>] (the arm's
    joints, actuators or tip site), so that callers never hold live simulation memory."""

    def __init__(self, field: str, index: str, doc: str) -> None:
        self.field, self.index, self.__doc__ = field, index, doc

    def __get__(self, env, owner=None):
        if env is None:
            return self
        return getattr(env.data, self.field)[getattr(env, self.index)].copy()

    def __set__(self, env, value):
        raise AttributeError(f'{self.field} of the simulation is read-only here')


class ArmTaskEnv:
    """MuJoCo model + data of the arm and its task; step with position targets, render images."""

    def __init__(self, config: Optional[TaskConfig] = None, model_path: Optional[Path] = None,
                 seed: Optional[int] = None) -> None:
        self.config = config or TaskConfig()
        self.model = mujoco.MjModel.from_xml_path(str(model_path or default_model_path()))
        self.data = mujoco.MjData(self.model)
        self.rng = np.random.default_rng(seed)
        m = self.model
        # The arm's joints: those of its position actuators, in actuator order (each actuator is
        # named after its joint).
        self.joint_names = tuple(m.joint(int(m.actuator_trnid[i, 0])).name for i in range(m.nu))
        names = self.joint_names
        self._qadr = np.array([m.jnt_qposadr[m.joint(n).id] for n in names])
        self._dadr = np.array([m.jnt_dofadr[m.joint(n).id] for n in names])
        self._act = np.array([m.actuator(n).id for n in names])
        self.lower = np.array([m.jnt_range[m.joint(n).id][0] for n in names])
        self.upper = np.array([m.jnt_range[m.joint(n).id][1] for n in names])
        self.start_q = self._start_pose()
        self.effort_limit = np.array([m.actuator_forcerange[i][1] for i in self._act])
        self._tip = m.site('tool0').id
        self._stylus = m.geom('stylus').id
        self._post = m.geom('post').id
        self._post2 = m.geom('post2').id
        self._obstacle_geoms = {self._post}
        first = m.joint(names[0]).bodyid
        self._arm_geoms = [g for g in range(m.ngeom) if _descends(m, int(m.geom_bodyid[g]), first)]
        self._fromto = np.zeros(6)
        self._target_mocap = m.body_mocapid[m.body('target').id]
        self._place_posts()
        self.post_xy = np.array(m.body('post').pos[:2], dtype=np.float64)
        self.post_radius_m = float(m.geom_size[self._post][0])
        self.stylus_radius_m = float(m.geom_size[self._stylus][0])
        self.link_lengths_m = (0.20, 0.16, 0.10)   # the embedded arm's (planar_fk / planar_ik)
        self._renderer: Optional[mujoco.Renderer] = None
        self._ep = _EpisodeState()
        self._time_offset = 0.0  # simulated time carried over episode resets
        self._prev_tip = None
        self.reset(seed)
        self._ep.episode = 0  # episode 0: the idle state before the first reset request

    def _start_pose(self) -> np.ndarray:
        """TaskConfig.start_q_rad, or the model's keyframe 'start' where it is None."""
        m, q = self.model, self.config.start_q_rad
        if q is None:
            try:
                key = m.key('start')
            except KeyError:
                raise ValueError('start_q_rad is unset and the model has no keyframe '
                                 "'start'") from None
            q = m.key_qpos[key.id][self._qadr]
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (len(self.joint_names),):
            raise ValueError(f'start_q_rad needs one value per joint {list(self.joint_names)}, '
                             f'got {q.tolist()}')
        return q

    def _place_posts(self) -> None:
        """The task option's post positions and radii, written into the model (static bodies:
        MuJoCo reads their pose from the model at every step)."""
        cfg, m = self.config, self.model
        places = [('post', self._post, cfg.post_xy_m, cfg.post_radius_m)]
        if cfg.second_post_xy_m is not None:
            places.append(('post2', self._post2, cfg.second_post_xy_m, cfg.second_post_radius_m))
            self._obstacle_geoms.add(self._post2)
        for body, geom, xy, radius in places:
            if xy is not None:
                m.body_pos[m.body(body).id][:2] = xy
                m.body_pos[m.body(body).id][2] = 0.0
            if radius is not None:
                half_height = float(m.geom_size[geom][1])
                m.geom_size[geom][0] = radius
                m.geom_rbound[geom] = math.hypot(radius, half_height)     # broad phase bounds
                m.geom_aabb[geom][3:] = (radius, radius, half_height)

    def obstacles(self) -> list[tuple[str, tuple[float, float, float], float, float]]:
        """The posts in the scene: (name, centre (world frame, m), radius, half height)."""
        m = self.model
        return [(m.geom(g).name,
                 tuple(float(v) for v in m.body_pos[m.geom_bodyid[g]] + m.geom_pos[g]),
                 float(m.geom_size[g][0]), float(m.geom_size[g][1]))
                for g in sorted(self._obstacle_geoms)]

    # ------------------------------------------------------------------ state
    @property
    def time(self) -> float:
        """Simulated seconds since construction (monotonic over resets)."""
        return self._time_offset + float(self.data.time)

    q = _DataView('qpos', '_qadr', 'Joint positions (rad).')
    qd = _DataView('qvel', '_dadr', 'Joint velocities (rad/s).')
    effort = _DataView('actuator_force', '_act', 'Actuator torques (N m) applied at the last step.')
    position_targets = _DataView('ctrl', '_act', "The actuators' position targets (rad).")
    tip = _DataView('site_xpos', '_tip', 'Tip position in the world frame (m).')

    @property
    def target(self) -> np.ndarray:
        return self._ep.target.copy()

    @property
    def episode(self) -> int:
        return self._ep.episode

    # ------------------------------------------------------------------ control
    def reset(self, seed: Optional[int] = None, target_xy: Optional[np.ndarray] = None) -> np.ndarray:
        """Start a new episode: arm at the start pose (+noise), new target. Returns target (3,).

        seed: reseeds the environment's generator (reproducible episode); None continues it.
        target_xy: place the target there instead of drawing it (tests, evaluation grids).
        """
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        cfg = self.config
        self._time_offset = self.time
        mujoco.mj_resetData(self.model, self.data)
        q0 = self.start_q + self.rng.uniform(-1, 1, len(self.joint_names)) * cfg.start_noise_rad
        q0 = np.clip(q0, self.lower, self.upper)
        self.data.qpos[self._qadr] = q0
        self.data.ctrl[self._act] = q0
        if target_xy is None:
            target_xy = np.array([self.rng.uniform(*cfg.target_x_range_m),
                                  self.rng.uniform(*cfg.target_y_range_m)])
        target = np.array([float(target_xy[0]), float(target_xy[1]), 0.0])
        self.data.mocap_pos[self._target_mocap] = target
        mujoco.mj_forward(self.model, self.data)
        self._ep = _EpisodeState(episode=self._ep.episode + 1, start_time_s=self.time,
                                 target=target)
        self._prev_tip = self.tip
        return target.copy()

    def set_position_targets(self, q: np.ndarray) -> np.ndarray:
        """Joint position targets for the joint-level controllers, clipped to the limits.

        Raises ValueError on a wrong length or a non-finite value. Returns the applied targets.
        """
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        if q.shape[0] != len(self.joint_names):
            raise ValueError(f'expected {len(self.joint_names)} joint positions, got {q.shape[0]}')
        if not np.all(np.isfinite(q)):
            raise ValueError('non-finite joint position target')
        q = np.clip(q, self.lower, self.upper)
        self.data.ctrl[self._act] = q
        return q

    def step(self, duration_s: float) -> None:
        """Advance the physics by a whole number of steps covering duration_s (at least one)."""
        n = max(1, int(round(duration_s / self.model.opt.timestep)))
        for _ in range(n):
            mujoco.mj_step(self.model, self.data)
            self._update_task()

    def _update_task(self) -> None:
        ep = self._ep
        d = self.data
        for i in range(d.ncon):
            c = d.contact[i]
            if self._stylus in (c.geom1, c.geom2) and {c.geom1, c.geom2} & self._obstacle_geoms:
                ep.contact = True
                break
        for obstacle in self._obstacle_geoms:
            for g in self._arm_geoms:
                dist = mujoco.mj_geomDistance(self.model, d, g, obstacle, CLEARANCE_MAX_M,
                                              self._fromto)
                if dist < ep.min_clearance_m:
                    ep.min_clearance_m = float(dist)
        tip = d.site_xpos[self._tip]
        if not ep.side and self._prev_tip is not None:
            # Decided when the tip crosses the line through the post perpendicular to x.
            if (self._prev_tip[0] - self.post_xy[0]) < 0 <= (tip[0] - self.post_xy[0]):
                ep.side = 'left' if tip[1] > self.post_xy[1] else 'right'
        if not ep.success:
            dist = float(np.linalg.norm(tip[:2] - ep.target[:2]))
            speed = float(np.linalg.norm(tip - self._prev_tip)) / self.model.opt.timestep
            ok_contact = not (self.config.require_no_contact and ep.contact)
            if dist < self.config.success_tolerance_m and speed < self.config.success_max_speed_m_s \
                    and ok_contact:
                ep.success = True
        self._prev_tip = tip.copy()

    def status(self) -> TaskStatus:
        ep = self._ep
        tip = self.tip
        t_ep = self.time - ep.start_time_s
        return TaskStatus(
            episode=ep.episode, episode_time_s=t_ep, target=ep.target.copy(), tip=tip,
            distance_m=float(np.linalg.norm(tip[:2] - ep.target[:2])), success=ep.success,
            obstacle_contact=ep.contact, side=ep.side, min_clearance_m=ep.min_clearance_m,
            done=ep.success or t_ep >= self.config.max_episode_s - 1e-9)

    # ------------------------------------------------------------------ rendering
    def render(self, camera: str = CAMERA_NAME) -> np.ndarray:
        """RGB image (H, W, 3) uint8 from a named camera (off-screen, no shadows/reflections)."""
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.config.image_height,
                                             self.config.image_width)
            flags = self._renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
            flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = False
        self._renderer.update_scene(self.data, camera=camera)
        return self._renderer.render().copy()

    def camera_intrinsics(self, camera: str = CAMERA_NAME) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) in pixels of the pinhole model MuJoCo renders with (square pixels)."""
        fovy = math.radians(float(self.model.cam_fovy[self.model.camera(camera).id]))
        h, w = self.config.image_height, self.config.image_width
        f = 0.5 * h / math.tan(0.5 * fovy)
        return f, f, 0.5 * w, 0.5 * h

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ------------------------------------------------------------------ kinematics
    def forward_kinematics(self, q: np.ndarray) -> np.ndarray:
        """Stylus tip (x, y) for joint positions q (planar; base at the origin)."""
        return planar_fk(q, self.link_lengths_m)


def planar_fk(q: np.ndarray, lengths: tuple[float, float, float]) -> np.ndarray:
    """Tip (x, y) of a planar 3R chain rooted at the origin. q: (3,) or (N, 3)."""
    q = np.asarray(q, dtype=np.float64)
    a = np.cumsum(q, axis=-1)
    x = sum(L * np.cos(a[..., i]) for i, L in enumerate(lengths))
    y = sum(L * np.sin(a[..., i]) for i, L in enumerate(lengths))
    return np.stack([x, y], axis=-1)


def planar_ik(xy: np.ndarray, lengths: tuple[float, float, float], elbow_sign: float = 1.0,
              ) -> np.ndarray:
    """Joint positions putting the tip at xy with the last link pointing radially outwards.

    The redundancy of the 3R chain is resolved by pointing link 3 along the ray from the base to
    the tip (phi = atan2(y, x)); the elbow is bent to the side given by elbow_sign. xy: (2,) or
    (N, 2). Raises ValueError if a point is out of reach with that rule.
    """
    xy = np.asarray(xy, dtype=np.float64)
    L1, L2, L3 = lengths
    phi = np.arctan2(xy[..., 1], xy[..., 0])
    wx = xy[..., 0] - L3 * np.cos(phi)
    wy = xy[..., 1] - L3 * np.sin(phi)
    c2 = (wx ** 2 + wy ** 2 - L1 ** 2 - L2 ** 2) / (2 * L1 * L2)
    if np.any(np.abs(c2) > 1.0):
        raise ValueError('target out of reach')
    q2 = elbow_sign * np.arccos(c2)
    q1 = np.arctan2(wy, wx) - np.arctan2(L2 * np.sin(q2), L1 + L2 * np.cos(q2))
    q3 = phi - q1 - q2
    return np.stack([q1, q2, q3], axis=-1)


def _descends(m, body: int, ancestor: int) -> bool:
    """True when `body` is `ancestor` or one of its descendants in the model's body tree."""
    while body > 0:
        if body == ancestor:
            return True
        body = int(m.body_parentid[body])
    return ancestor == 0
