"""sim_node: the embedded MuJoCo simulation behind the same topics as Gazebo + gz_ros2_control.

Thin ROS wrapper around dp_sim.env.ArmTaskEnv (physics, rendering, task) and
dp_sim.jtc.JointTrajectoryFollower (joint_trajectory_controller semantics). A simulation thread
advances the physics in control periods, paced to `real_time_factor` x wall time, and publishes
/clock, /joint_states, the camera and the task status; the main thread spins the executor for the
command subscriptions and the reset service.

Time: the simulation clock starts at 0 and never goes backwards (an episode reset does not reset
it). With publish_clock every stamp is simulated time, and the other nodes run with use_sim_time.
Without it (real_time_factor must then be 1), stamps are wall-clock time at the simulated instant;
if the machine cannot keep up by more than 0.1 s, the simulated world skips ahead so that the
stamps stay near the wall clock.

Topics, parameters and services: see the package README.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rcl_interfaces.msg import SetParametersResult

from builtin_interfaces.msg import Time as TimeMsg
from dp_msgs.msg import Counter, TaskStatus
from dp_msgs.srv import ResetEpisode
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64, Float64MultiArray
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import MarkerArray

from dp_common.images import numpy_to_image
from dp_common.node_main import run_node
from dp_common.params import declare_parameters, load_parameter_table
from dp_common.stamps import sec_to_stamp
from dp_common.stamps import stamp_to_sec
from dp_common.trajectories import joint_trajectory_to_arrays

from .env import CAMERA_NAME, ArmTaskEnv, TaskConfig, model_path
from .jtc import DISTROS as JTC_DISTROS
from .jtc import JointTrajectoryFollower
from .markers import obstacle_markers

# name: (default, description), from parameters/sim_node.yaml: `ros2 param describe`, config/sim.yaml
# and the README say the same. The jtc_* entries (default None: unset) override jtc_distro's rules.
PARAMETERS = load_parameter_table('dp_sim', 'sim_node')
JTC_OVERRIDES = ('jtc_allow_nonzero_velocity_at_trajectory_end', 'jtc_interpolate_from_desired_state')


@dataclass
class SimNodeConfig:
    """sim_node's parameters, checked (defaults and meaning: PARAMETERS)."""

    control_rate_hz: float
    joint_state_rate_hz: float
    camera_rate_hz: float
    status_rate_hz: float
    image_width: int
    image_height: int
    publish_clock: bool
    real_time_factor: float
    seed: int
    max_episode_s: float
    done_after_success_s: float
    qos_depth: int
    jtc_distro: str
    speed_scaling_percent: float
    speed_scaling_topic: str
    post_xy_m: Optional[list]
    post_radius_m: float
    second_post_xy_m: Optional[list]
    second_post_radius_m: float
    obstacles_topic: str
    model: str = ''
    start_q_rad: Optional[list] = None

    def task_config(self) -> TaskConfig:
        """The simulation's task: image size, episode length and the post options."""
        start = tuple(float(v) for v in self.start_q_rad) if self.start_q_rad else None
        return TaskConfig(start_q_rad=start,          # None: the model's keyframe 'start'
                          image_width=self.image_width, image_height=self.image_height,
                          max_episode_s=self.max_episode_s,
                          post_xy_m=_xy(self.post_xy_m), post_radius_m=self.post_radius_m or None,
                          second_post_xy_m=_xy(self.second_post_xy_m),
                          second_post_radius_m=self.second_post_radius_m)

    def __post_init__(self) -> None:
        for name in ('control_rate_hz', 'joint_state_rate_hz', 'camera_rate_hz', 'status_rate_hz'):
            if getattr(self, name) <= 0:
                raise ValueError(f'{name} must be positive')
        if not self.publish_clock and self.real_time_factor != 1.0:
            raise ValueError('real_time_factor != 1 needs publish_clock (simulated time)')
        if self.real_time_factor < 0:
            raise ValueError('real_time_factor must be >= 0 (0: as fast as possible)')
        if self.image_width < 8 or self.image_height < 8:
            raise ValueError('image_width and image_height must be at least 8 px')
        if self.jtc_distro not in JTC_DISTROS:
            raise ValueError(f'jtc_distro must be one of {sorted(JTC_DISTROS)}')
        if not 0.0 <= self.speed_scaling_percent <= 100.0:
            raise ValueError('speed_scaling_percent must be in 0..100')
        if self.qos_depth < 1 or self.max_episode_s <= 0 or self.done_after_success_s < 0:
            raise ValueError('qos_depth >= 1, max_episode_s > 0 and done_after_success_s >= 0 needed')
        self.task_config()               # the post options' checks (TaskConfig's ValueError)


def _xy(value) -> Optional[tuple[float, float]]:
    """A dynamically typed [x, y] parameter (numbers, integers too); None where unset."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, '__len__') or len(value) != 2:
        raise ValueError(f'[x, y] expected, got {value!r}')
    return (float(value[0]), float(value[1]))


def _as_bool(name: str, value) -> bool:
    """A dynamically typed boolean parameter: true/false, or the strings 'true'/'false'."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ('true', 'false'):
        return value.strip().lower() == 'true'
    raise ValueError(f'{name} must be true or false, got {value!r}')


class SimNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('sim_node', **kwargs)
        values = declare_parameters(self, PARAMETERS)
        self.cfg = SimNodeConfig(**{n: v for n, v in values.items() if n not in JTC_OVERRIDES})
        cfg = self.cfg
        self.env = ArmTaskEnv(cfg.task_config(), model_path=model_path(cfg.model), seed=cfg.seed)
        overrides = {n[len('jtc_'):]: _as_bool(n, self.get_parameter(n).value)
                     for n in JTC_OVERRIDES if self.get_parameter(n).value is not None}
        self.jtc = JointTrajectoryFollower(self.env.joint_names, self.env.q, distro=cfg.jtc_distro,
                                           **overrides)
        self.jtc.scaling_factor = cfg.speed_scaling_percent / 100.0
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._lock = threading.Lock()
        self._wall_offset = 0.0 if cfg.publish_clock else time.time()
        self._success_time: float | None = None
        self.rejected = 0
        self.stale = 0  # commands published before the last reset, dropped
        self._reset_wall_ns = 0
        self._last_reject_log = -math.inf

        reliable10 = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        deep = QoSProfile(depth=cfg.qos_depth, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_clock = self.create_publisher(Clock, '/clock', deep) if cfg.publish_clock else None
        self.pub_js = self.create_publisher(JointState, 'joint_states', deep)
        self.pub_img = self.create_publisher(Image, 'camera/image_raw', deep)
        self.pub_info = self.create_publisher(CameraInfo, 'camera/camera_info', deep)
        self.pub_status = self.create_publisher(TaskStatus, 'task_status', latched)
        self.pub_rejected = self.create_publisher(Counter, '~/rejected_commands', latched)
        self.pub_scaling = (self.create_publisher(Float64, cfg.speed_scaling_topic, reliable10)
                            if cfg.speed_scaling_topic else None)
        self.create_subscription(Float64MultiArray, 'forward_position_controller/commands',
                                 self._on_forward, reliable10)
        self.create_subscription(JointTrajectory, 'joint_trajectory_controller/joint_trajectory',
                                 self._on_trajectory, reliable10)
        self.create_service(ResetEpisode, '~/reset_episode', self._on_reset)
        self.pub_obstacles = (self.create_publisher(MarkerArray, cfg.obstacles_topic, latched)
                              if cfg.obstacles_topic else None)
        if self.pub_obstacles is not None:
            self.pub_obstacles.publish(obstacle_markers(self.env.obstacles(), 'world',
                                                        self.sim_stamp()))

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='sim_loop', daemon=True)
        self._thread.start()
        self.get_logger().info(
            f'embedded simulation running: control {cfg.control_rate_hz} Hz, camera '
            f'{cfg.camera_rate_hz} Hz {cfg.image_width}x{cfg.image_height}, real_time_factor '
            f'{cfg.real_time_factor}, publish_clock {cfg.publish_clock}; trajectory controller: '
            f'{cfg.jtc_distro} rules (allow_nonzero_velocity_at_trajectory_end '
            f'{self.jtc.allow_nonzero_velocity_at_trajectory_end}, interpolate_from_desired_state '
            f'{self.jtc.interpolate_from_desired_state})')

    # ----------------------------------------------------------------- time
    def sim_stamp(self) -> TimeMsg:
        return sec_to_stamp(self.env.time + self._wall_offset)

    # ----------------------------------------------------------------- inputs
    def _on_set_parameters(self, params):
        """speed_scaling_percent may change at run time (the slider); nothing else does."""
        for p in params:
            if p.name != 'speed_scaling_percent':
                continue
            value = p.value
            if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 100.0:
                return SetParametersResult(successful=False,
                                           reason='speed_scaling_percent must be in 0..100')
            with self._lock:
                self.jtc.scaling_factor = float(value) / 100.0
        return SetParametersResult(successful=True)

    def _reject(self, why: str) -> None:
        self.rejected += 1
        now = time.monotonic()
        if now - self._last_reject_log > 2.0:
            self._last_reject_log = now
            self.get_logger().warning(f'rejected command ({self.rejected} so far): {why}')
        self.pub_rejected.publish(Counter(name='rejected_commands', count=self.rejected))

    def _stale(self, info) -> bool:
        """A command published before the last episode reset (still in flight then): ignored."""
        w = int(info.get('source_timestamp', 0) or 0) if info else 0
        if 0 < w < self._reset_wall_ns:
            self.stale += 1
            return True
        return False

    def _on_forward(self, msg: Float64MultiArray, info: dict) -> None:
        if self._stale(info):
            return
        q = np.asarray(msg.data, dtype=np.float64)
        if q.shape[0] != len(self.env.joint_names) or not np.all(np.isfinite(q)):
            self._reject(f'forward command needs {len(self.env.joint_names)} finite values, got '
                         f'{list(msg.data)}')
            return
        with self._lock:
            self.jtc.reset(np.clip(q, self.env.lower, self.env.upper))
            self.env.set_position_targets(q)

    def _on_trajectory(self, msg: JointTrajectory, info: dict) -> None:
        if self._stale(info):
            return
        try:
            names, t, pos, vel = joint_trajectory_to_arrays(msg)
            with self._lock:
                now = self.env.time
                stamp = stamp_to_sec(msg.header.stamp)
                if stamp != 0.0:
                    stamp -= self._wall_offset
                self.jtc.set_trajectory(now, names, stamp, t, pos, vel)
        except ValueError as e:
            self._reject(f'joint trajectory: {e}')

    def _on_reset(self, request: ResetEpisode.Request, response: ResetEpisode.Response):
        with self._lock:
            self._reset_wall_ns = time.time_ns()
            target = self.env.reset(seed=None if request.seed < 0 else int(request.seed))
            self.jtc.reset(self.env.q)
            self._success_time = None
            status = self._status_msg()
            self.pub_status.publish(status)
        response.success = True
        response.episode = status.episode
        response.target.x, response.target.y, response.target.z = (float(v) for v in target)
        response.message = f'episode {status.episode}, target ({target[0]:.3f}, {target[1]:.3f})'
        self.get_logger().info(response.message)
        return response

    # ----------------------------------------------------------------- outputs
    def _status_msg(self) -> TaskStatus:
        st = self.env.status()
        if st.success and self._success_time is None:
            self._success_time = self.env.time
        done = (st.episode > 0 and (
            st.episode_time_s >= self.cfg.max_episode_s - 1e-9
            or (self._success_time is not None
                and self.env.time - self._success_time >= self.cfg.done_after_success_s - 1e-9)))
        msg = TaskStatus()
        msg.header.stamp = self.sim_stamp()
        msg.header.frame_id = 'world'
        msg.episode = st.episode
        msg.episode_time_s = st.episode_time_s
        msg.target.x, msg.target.y, msg.target.z = (float(v) for v in st.target)
        msg.distance_m = st.distance_m
        msg.success = st.success
        msg.obstacle_contact = st.obstacle_contact
        msg.min_clearance_m = float(st.min_clearance_m)
        msg.side = st.side
        msg.done = bool(done)
        return msg

    def _joint_state_msg(self) -> JointState:
        msg = JointState()
        msg.header.stamp = self.sim_stamp()
        msg.name = list(self.env.joint_names)
        msg.position = self.env.q.tolist()
        msg.velocity = self.env.qd.tolist()
        msg.effort = self.env.effort.tolist()
        return msg

    def _camera_info_msg(self, stamp: TimeMsg) -> CameraInfo:
        fx, fy, cx, cy = self.env.camera_intrinsics()
        msg = CameraInfo()
        msg.header.stamp = stamp
        msg.header.frame_id = 'camera_optical_frame'
        msg.height, msg.width = self.cfg.image_height, self.cfg.image_width
        msg.distortion_model = 'plumb_bob'
        msg.d = [0.0] * 5
        msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
        msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        msg.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        return msg

    # ----------------------------------------------------------------- loop
    def _run(self) -> None:
        cfg = self.cfg
        period = 1.0 / cfg.control_rate_hz
        every = {name: max(1, int(round(cfg.control_rate_hz / getattr(cfg, name))))
                 for name in ('joint_state_rate_hz', 'camera_rate_hz', 'status_rate_hz')}
        tick = 0
        # Largest lag behind the pace before giving up catching up: generous with simulated
        # time (nobody else's clock), small with wall-clock stamps.
        max_lag_s = 1.0 if cfg.publish_clock else 0.1
        wall0 = time.monotonic()
        sim0 = self.env.time
        try:
            while not self._stop.is_set() and rclpy.ok(context=self.context):
                # Everything under the lock, publishing included: a reset (service callback in
                # the executor thread) can then never interleave with a tick, so no message of
                # the previous episode is published after the new episode's first status.
                with self._lock:
                    if self.jtc.active:   # a controller update at the state of this instant
                        q, _ = self.jtc.update(self.env.time, period, self.env.q, self.env.qd)
                        self.env.set_position_targets(q)
                    self.env.step(period)
                    tick += 1
                    now = self.sim_stamp()
                    if self.pub_clock is not None:
                        self.pub_clock.publish(Clock(clock=now))
                    if tick % every['joint_state_rate_hz'] == 0:
                        self.pub_js.publish(self._joint_state_msg())
                        if self.pub_scaling is not None:
                            self.pub_scaling.publish(
                                Float64(data=100.0 * self.jtc.scaling_factor))
                    if tick % every['camera_rate_hz'] == 0:
                        img = self.env.render(CAMERA_NAME)
                        self.pub_img.publish(numpy_to_image(img, 'rgb8', stamp=now,
                                                            frame_id='camera_optical_frame'))
                        self.pub_info.publish(self._camera_info_msg(now))
                    if tick % every['status_rate_hz'] == 0:
                        self.pub_status.publish(self._status_msg())
                    sim_elapsed = self.env.time - sim0
                if cfg.real_time_factor > 0:
                    delay = wall0 + sim_elapsed / cfg.real_time_factor - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    elif delay < -max_lag_s:  # fell behind: do not try to catch up
                        wall0 -= delay
                        if not cfg.publish_clock:
                            # Wall-clock stamps must stay near the wall clock (other nodes
                            # compare them with their own): the simulated world skips ahead.
                            with self._lock:
                                self._wall_offset -= delay
        except Exception as e:  # noqa: BLE001 - report and stop the node rather than die silently
            if rclpy.ok(context=self.context):
                self.get_logger().error(f'simulation loop failed: {e!r}')
                raise
        finally:
            self.env.close()  # the GL context belongs to this thread

    def destroy_node(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        super().destroy_node()


def main(args=None) -> int:
    return run_node(SimNode, args)


if __name__ == '__main__':
    main()
