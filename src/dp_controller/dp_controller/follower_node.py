"""follower_node: managed (lifecycle) ROS 2 node around the ROS-free Follower core.

Thin by design: reads parameters into a FollowerConfig, converts messages to arrays
(dp_common.trajectories), calls the core, publishes. The command stream is produced by a
ControlLoop thread (absolute-time scheduling on the monotonic clock), not an executor timer;
plan evaluation uses the node clock (ROS time, or sim time with use_sim_time).

Lifecycle: configure reads parameters and builds the core and the ROS interfaces; activate starts
the control thread, which commands nothing until a joint state has been received, then holds that
position until a valid chunk arrives; deactivate stops the thread (no more commands). With the
`autostart` parameter (default true) the node configures and activates itself on start.

See README.md for the topics, QoS, parameters and services.
"""
from __future__ import annotations

import math
import os
import sys
import threading
import time

import numpy as np
import rclpy
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data)
from rcl_interfaces.msg import ParameterDescriptor
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64, Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from dp_common.joints import JointIndexer
from dp_common.node_main import run_node
from dp_common.polled import PolledCallbackGroup, take_all
from dp_common.stamps import sec_to_sec_nanosec, stamp_to_sec
from dp_common.trajectories import arrays_to_joint_trajectory, joint_trajectory_to_arrays
from dp_controller.config import OUTPUT_MODES, FollowerConfig
from dp_controller.control_loop import ControlLoop
from dp_controller.follower import (ACCEPTED, STATE_HOLDING, STATE_LABELS, STATE_STOPPED, STOP_DT_S,
                                    Follower)

PER_JOINT = ('position_lower_rad', 'position_upper_rad', 'max_velocity_rad_s',
             'max_acceleration_rad_s2')
SWITCH_INTERVAL_S = 0.00005     # sys.setswitchinterval of the follower_node process
JOINT_STATE_POLL_HZ = 100.0   # the control thread takes joint states at up to this rate
DEFAULT_CONTROLLERS = {'forward_command': 'forward_position_controller',
                       'joint_trajectory': 'joint_trajectory_controller'}

# name: (default, description). Per-joint lists accept one value (all joints) or one per joint.
PARAMETERS = {
    'joint_names': (['joint1', 'joint2', 'joint3'],
                    'Joints to command, in output order (chunks and joint states matched by name).'),
    'control_rate_hz': (500.0, 'Command rate of the control thread (Hz).'),
    'position_lower_rad': ([-3.14], 'Lower position limit per joint (rad); one value = all joints.'),
    'position_upper_rad': ([3.14], 'Upper position limit per joint (rad); one value = all joints.'),
    'max_velocity_rad_s': ([2.0], 'Velocity limit per joint (rad/s); one value = all joints.'),
    'max_acceleration_rad_s2': ([10.0], 'Acceleration limit per joint (rad/s^2); one value = all joints.'),
    'watchdog_timeout_s': (0.5, 'No valid chunk for this long: decelerate within limits and hold (s).'),
    'tracking_tolerance_rad': (0.25, 'Tracking supervision: measured position this far from the '
                                     'command on any joint (rad; 0 = off) ...'),
    'tracking_timeout_s': (0.25, '... for this long (s): restart the command from the measured '
                                 'state, brake and hold; chunks refused until ~/resume or the next '
                                 'activation (FollowerStatus hold_reason "tracking").'),
    'joint_state_timeout_s': (1.0, 'No valid joint state for this long while commanding: brake '
                                   'and hold likewise (hold_reason "joint_states_stale"; s, '
                                   '0 = off).'),
    'blend_window_s': (0.1, 'Cross-fade from the current plan to a new chunk over this window (s).'),
    'execution_mode': ('receding_horizon',
                       "'receding_horizon' (execute n_action_steps, then switch), 'latest' (switch "
                       "at once) or 'temporal_ensemble' (ACT-style weighted mean of overlapping chunks)."),
    'n_action_steps': (8, 'Receding horizon: actions of a chunk executed before switching (0 = all).'),
    'ensemble_decay': (0.01, 'Temporal ensemble: weight exp(-decay * i) of the i-th newer chunk.'),
    'max_stamp_age_s': (0.5, 'Reject chunks whose header stamp is older than this (s).'),
    'max_future_stamp_s': (0.1, 'Reject chunks whose header stamp is further ahead than this (s).'),
    'output_mode': ('forward_command',
                    "'forward_command' (Float64MultiArray to <controller>/commands at control_rate_hz) "
                    "or 'joint_trajectory' (JointTrajectory to <controller>/joint_trajectory)."),
    'controller_name': ('', "ros2_control controller to command; '' = forward_position_controller "
                            'or joint_trajectory_controller by output_mode.'),
    'controller_activity_topic': (
        'controller_manager/activity',
        "The controller manager's activity topic (controller_manager_msgs/ControllerManagerActivity, "
        "Jazzy and newer; '' = off). While the output controller is not active nothing is "
        'commanded; when it is active again the follower restarts from the measured position '
        '(no jump). Not watched where controller_manager_msgs is not installed (commands are '
        'then always sent).'),
    'trajectory_topic': ('trajectory', 'Input chunks (trajectory_msgs/JointTrajectory).'),
    'action_chunk_topic': ('', "Optional input chunks as dp_msgs/ActionChunk ('' = off)."),
    'joint_states_topic': ('joint_states', 'Measured joint states (sensor_msgs/JointState).'),
    'speed_scaling_topic': (
        '', "The robot's speed scaling in percent (std_msgs/Float64, as UR's "
            "speed_scaling_state_broadcaster publishes on "
            "/speed_scaling_state_broadcaster/speed_scaling; '' = off, always 100 %). The "
            "follower's plan time runs at this fraction of the clock (the pendant's slider at "
            '50 %: chunks executed at half speed). In joint_trajectory mode the command and the '
            "rolling trajectories run on plan time, which the controller must advance at the same "
            "factor itself: UR's scaled_joint_trajectory_controller, joint_trajectory_controller "
            'with speed scaling (Jazzy 4.39+, Kilted). Use jtc_stamp zero with it.'),
    'status_rate_hz': (10.0, 'Rate of ~/status (Hz).'),
    'jtc_rate_hz': (50.0, 'joint_trajectory mode: rate of the rolling trajectories (Hz).'),
    'jtc_horizon_s': (0.1, 'joint_trajectory mode: time span of each rolling trajectory (s).'),
    'jtc_points': (5, 'joint_trajectory mode: points per rolling trajectory.'),
    'jtc_stamp': ('zero',
                  "joint_trajectory mode: header.stamp of the rolling trajectories. 'zero': "
                  "joint_trajectory_controller starts each one when it reads it (robust to delivery "
                  "delay and to clock offsets between hosts; the arm lags by the delivery delay). "
                  "'clock': the follower's clock at the command instant (exact splice; needs one "
                  "clock and prompt delivery: a trajectory that arrives late is caught up at up to "
                  "several times the planned speed)."),
    'spin_wait_s': (0.0001, 'Control thread: busy-wait this long before each deadline (s).'),
    'realtime_priority': (50, 'Control thread: SCHED_FIFO priority (50 as ros2_control\'s '
                              'controller manager; 0 = normal scheduling); above 1 the executor '
                              'thread runs at this minus 1 (it holds the interpreter lock the '
                              'control thread needs). Falls back to normal priority with a warning '
                              'where not permitted (no CAP_SYS_NICE / rtprio limit). Wall time '
                              'only: with use_sim_time both threads run at normal priority.'),
    'log_throttle_s': (2.0, 'Minimum interval between two logs of the same rejection reason (s).'),
    'autostart': (True, 'Configure and activate on start (no lifecycle manager needed).'),
}


class FollowerNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__('follower_node', **kwargs)
        for name, (default, desc) in PARAMETERS.items():
            # Per-joint limits: a number or a list of numbers (ints allowed), so dynamic typing.
            dynamic = name in PER_JOINT
            self.declare_parameter(name, default, ParameterDescriptor(
                description=desc, dynamic_typing=dynamic))
        self.lifecycle_label = 'unconfigured'
        self.follower = None
        self.loop = None
        self._lock = threading.Lock()
        self._measured = None
        self._measured_v = None    # velocities of the last joint state, where it carries them
        self._measured_at = math.nan   # node clock when the last valid joint state was taken
        self._scaling_sub = None
        self._scaling_rejected = 0
        self._scaling_at = math.nan     # node clock of the last valid speed scaling
        self._activated_at = math.nan
        self._indexer = None
        self._js_rejected = {}       # joint states rejected by reason (control thread writes)
        self._last_log = {}
        self._jump_handle = None
        self._next_jtc_tau = -math.inf
        self._next_js_k = 0
        self._wall_time = False      # set at activation: no sim time -> now_s reads the system clock
        self._jtc_stamp_clock = False
        self._log_throttle = float(PARAMETERS['log_throttle_s'][0])
        # The output controller's lifecycle state from the controller manager's activity topic:
        # 'unknown' until a message names it (commands are sent), else its label ('active', ...).
        self._controller = ''
        self._controller_state = 'unknown'
        self._controller_deactivations = 0
        self._subs, self._pubs, self._srvs, self._timers = [], [], [], []

    # ------------------------------------------------------------------ parameters
    def _param(self, name):
        value = self.get_parameter(name).value
        if value is None:
            value = PARAMETERS[name][0]
        return list(value) if isinstance(value, (list, tuple, np.ndarray)) else value

    def _read_config(self) -> FollowerConfig:
        return FollowerConfig(
            joint_names=list(self._param('joint_names')),
            control_rate_hz=float(self._param('control_rate_hz')),
            position_lower_rad=self._param('position_lower_rad'),
            position_upper_rad=self._param('position_upper_rad'),
            max_velocity_rad_s=self._param('max_velocity_rad_s'),
            max_acceleration_rad_s2=self._param('max_acceleration_rad_s2'),
            watchdog_timeout_s=float(self._param('watchdog_timeout_s')),
            tracking_tolerance_rad=float(self._param('tracking_tolerance_rad')),
            tracking_timeout_s=float(self._param('tracking_timeout_s')),
            joint_state_timeout_s=float(self._param('joint_state_timeout_s')),
            blend_window_s=float(self._param('blend_window_s')),
            execution_mode=str(self._param('execution_mode')),
            n_action_steps=int(self._param('n_action_steps')),
            ensemble_decay=float(self._param('ensemble_decay')),
            max_stamp_age_s=float(self._param('max_stamp_age_s')),
            max_future_stamp_s=float(self._param('max_future_stamp_s')))

    def now_s(self) -> float:
        if self._wall_time:
            # The node clock without sim time is the system clock: the same value, ~40x cheaper
            # than get_clock().now() (0.2 vs 8.7 us), and this runs twice per control period.
            return time.time_ns() * 1e-9
        return self.get_clock().now().nanoseconds * 1e-9

    def set_executor_thread_priority(self) -> None:
        """With realtime_priority p > 1: SCHED_FIFO p - 1 for the calling thread, the one that spins
        this node's executor (follower_node's main does this). That thread holds the interpreter
        lock (GIL) while it runs a callback; at normal priority a busy core preempts it for a
        scheduler slice while it holds the lock, and the control thread waits for it at its
        deadline (p99 period error 0.7-1.2 ms with a busy core; 0.01 ms at p - 1)."""
        prio = int(self._param('realtime_priority'))
        if prio <= 1 or self.get_parameter('use_sim_time').value:
            return      # sim time: no wall-clock deadlines, and /clock may come at 1 kHz
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(prio - 1))
        except (OSError, AttributeError) as exc:
            self.get_logger().warning(
                f'executor thread at normal priority: SCHED_FIFO {prio - 1} not permitted ({exc})')

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self.cfg, self.output_mode = self._checked_config()
        except ValueError as exc:
            self.get_logger().error(f'configure failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        # Before the subscriptions exist: their callbacks may run while configure goes on (under
        # launch_ros a chunk came in before the end of configure and found no _log_throttle).
        self._log_throttle = float(self._param('log_throttle_s'))
        self.follower = Follower(self.cfg)
        self._indexer = JointIndexer(self.cfg.joint_names)
        controller = str(self._param('controller_name')) or DEFAULT_CONTROLLERS[self.output_mode]
        self._create_outputs(controller)
        self._create_inputs()
        # The controller manager names controllers without namespace.
        self._controller = controller.rstrip('/').split('/')[-1]
        self._controller_state = 'unknown'
        self._controller_deactivations = 0
        self._watch_controller(str(self._param('controller_activity_topic')))
        self._srvs = [self.create_service(Trigger, '~/hold', self._on_hold),
                      self.create_service(Trigger, '~/resume', self._on_resume)]
        self._timers = [self.create_timer(1.0 / float(self._param('status_rate_hz')),
                                          self._publish_status)]
        self._js_every = max(1, int(self.cfg.control_rate_hz // JOINT_STATE_POLL_HZ))
        self._prepare_jtc_message()
        self.lifecycle_label = 'inactive'
        self.get_logger().info(
            f'configured: {self.cfg.num_joints} joints, {self.cfg.control_rate_hz:g} Hz, '
            f'{self.cfg.execution_mode}, output {self.output_mode} on {self.output_topic}')
        self._publish_status()
        return TransitionCallbackReturn.SUCCESS

    def _checked_config(self):
        """(FollowerConfig, output mode) from the parameters; ValueError says what is wrong."""
        cfg = self._read_config()
        output_mode = str(self._param('output_mode'))
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f'output_mode must be one of {OUTPUT_MODES}')
        jtc_stamp = str(self._param('jtc_stamp'))
        if jtc_stamp not in ('zero', 'clock'):
            raise ValueError("jtc_stamp must be 'zero' or 'clock'")
        # The trajectory controller runs the command's time (speed scaling): plan time.
        cfg.scaled_time_output = output_mode == 'joint_trajectory'
        if cfg.scaled_time_output and self._param('speed_scaling_topic') and jtc_stamp == 'clock':
            raise ValueError('jtc_stamp clock with speed_scaling_topic: a stamped trajectory '
                             'is placed on the clock while its points are in the '
                             "controller's scaled time; use jtc_stamp zero")
        return cfg, output_mode

    def _create_outputs(self, controller: str) -> None:
        """The command publisher (forward_command or joint_trajectory) and ~/status."""
        reliable1 = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        if self.output_mode == 'forward_command':
            self.output_topic = f'{controller}/commands'
            self._cmd_pub = self.create_publisher(Float64MultiArray, self.output_topic, reliable1)
        else:
            self.output_topic = f'{controller}/joint_trajectory'
            self._jtc_stamp_clock = str(self._param('jtc_stamp')) == 'clock'
            self._cmd_pub = self.create_publisher(JointTrajectory, self.output_topic, reliable1)
        self._cmd_msg = Float64MultiArray()
        from dp_msgs.msg import FollowerStatus
        self._status_cls = FollowerStatus
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._status_pub = self.create_publisher(FollowerStatus, '~/status', latched)
        self._pubs = [self._cmd_pub, self._status_pub]

    def _create_inputs(self) -> None:
        """Chunks (JointTrajectory, optionally ActionChunk), joint states, speed scaling."""
        reliable1 = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self._subs = [
            self.create_subscription(JointTrajectory, str(self._param('trajectory_topic')),
                                     self._on_trajectory, reliable1),
            # Taken by the control thread (dp_common.polled; at most JOINT_STATE_POLL_HZ, every
            # period until the first one), not dispatched by the executor: no executor wake-up
            # and GIL hold per message. Under a driver faster than the poll, only the newest
            # `depth` (5) messages between two polls are seen (and validated).
            self.create_subscription(JointState, str(self._param('joint_states_topic')),
                                     self._on_joint_state, qos_profile_sensor_data,
                                     callback_group=PolledCallbackGroup())]
        self._js_sub = self._subs[1]
        self._scaling_sub = None
        if self._param('speed_scaling_topic'):
            # Taken by the control thread with the joint states (UR's broadcaster publishes it
            # at its state_publish_rate, 100 Hz by default): reliable as its publisher, depth 1.
            self._scaling_sub = self.create_subscription(
                Float64, str(self._param('speed_scaling_topic')), lambda _msg: None,
                reliable1, callback_group=PolledCallbackGroup())
            self._subs.append(self._scaling_sub)
        if self._param('action_chunk_topic'):
            from dp_msgs.msg import ActionChunk
            self._subs.append(self.create_subscription(
                ActionChunk, str(self._param('action_chunk_topic')), self._on_action_chunk,
                reliable1))

    def _prepare_jtc_message(self) -> None:
        """joint_trajectory mode: the rolling trajectories' period and their one reused message.

        Rolling trajectories go out every whole number of control periods (of plan time:
        _jtc_due). One JointTrajectory is reused for every send: names and the preview points'
        times fixed, the control thread fills stamp, positions and velocities (9 instead of 44 us
        per message), then the braking tail (Follower.preview: every joint brakes to rest, the
        last point at zero velocity), so that joint_trajectory_controller's default
        allow_nonzero_velocity_at_trajectory_end: false accepts every trajectory, and a stream
        that stops ends in a braked standstill. Points for the longest tail are made here."""
        cfg = self.cfg
        jtc_every = max(1, int(round(cfg.control_rate_hz / float(self._param('jtc_rate_hz')))))
        self._jtc_period = jtc_every / cfg.control_rate_hz
        n_pts = max(1, int(self._param('jtc_points')))
        self._jtc_tfs = np.linspace(0.0, float(self._param('jtc_horizon_s')), n_pts + 1)[1:]
        n_tail = int(math.ceil(float(np.max(cfg.vmax / cfg.amax)) / STOP_DT_S)) + 2
        zeros = np.zeros((n_pts + n_tail, cfg.num_joints))
        tfs = self._jtc_tfs[-1] + np.arange(n_pts + n_tail) * STOP_DT_S
        tfs[:n_pts] = self._jtc_tfs
        self._jtc_msg = arrays_to_joint_trajectory(cfg.joint_names, tfs, zeros, zeros)
        self._jtc_points = list(self._jtc_msg.points)
        self._jtc_preview_points = n_pts

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._next_jtc_tau = -math.inf
        self._scaling_at = math.nan     # heard again after this activation before it counts
        self._activated_at = math.nan   # set by the first supervision after activation
        self.follower.tracking_fault = False   # an activation is the operator's restart
        self._measured = None      # start from a joint state taken after the activation
        self._next_js_k = 0
        sim = bool(self.get_parameter('use_sim_time').value)
        self._wall_time = not sim
        # Sim time: deadlines on the ROS clock, woken by every /clock update (jump callback).
        self.loop = ControlLoop(self.cfg.control_rate_hz, self._tick,
                                spin_s=float(self._param('spin_wait_s')), name='follower_control',
                                now_fn=self.now_s if sim else None,
                                # sim time: paced by /clock, no wall-clock deadline to keep
                                priority=0 if sim else int(self._param('realtime_priority')))
        if sim:
            self._jump_handle = self.get_clock().create_jump_callback(
                JumpThreshold(min_forward=Duration(nanoseconds=1),
                              min_backward=Duration(nanoseconds=-1), on_clock_change=True),
                post_callback=lambda _jump: self.loop.notify())
        self.lifecycle_label = 'active'
        self.loop.start()
        if self.loop.priority_error:
            self.get_logger().warning(f'control thread at normal priority: {self.loop.priority_error}')
        self.get_logger().info(
            f'active ({"sim" if sim else "wall"} time): waiting for a joint state, then holding '
            'until a chunk')
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._stop_loop()
        self._wall_time = False      # use_sim_time may change before the next activation
        self.lifecycle_label = 'inactive'
        self._publish_status()
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._stop_loop()
        self._destroy_interfaces()
        self.lifecycle_label = 'unconfigured'
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._stop_loop()
        self.lifecycle_label = 'finalized'
        return TransitionCallbackReturn.SUCCESS

    def _stop_loop(self):
        if self._jump_handle is not None:
            self._jump_handle.unregister()
            self._jump_handle = None
        if self.loop is not None:
            self.loop.stop()
        if self.follower is not None:
            with self._lock:
                self.follower.stop()

    def _destroy_interfaces(self):
        for t in self._timers:
            self.destroy_timer(t)
        for s in self._subs:
            self.destroy_subscription(s)
        for p in self._pubs:
            self.destroy_publisher(p)
        for s in self._srvs:
            self.destroy_service(s)
        self._subs, self._pubs, self._srvs, self._timers = [], [], [], []
        self.follower = None

    # ------------------------------------------------------------------ inputs
    def _poll_joint_states(self) -> bool:
        """Control thread: take every joint state that arrived since the last poll. True when
        one of them was valid."""
        try:
            msgs = take_all(self._js_sub)
        except Exception:
            if self.context.ok():
                raise
            return False    # shutting down: the context went first
        if self._scaling_sub is not None:
            self._poll_speed_scaling()
        last = None
        for msg in msgs:
            if self._on_joint_state(msg):
                last = msg
        if last is None:
            return False
        # Once per poll, for the newest valid one: its velocities (used where a tracking fault
        # restarts the command) and when it was taken (joint_state_timeout_s).
        self._measured_v, _ = self._indexer.velocities(last.name, last.velocity)
        self._measured_at = self.now_s()
        return True

    def _poll_speed_scaling(self) -> None:
        """Control thread: the newest valid speed scaling (percent) since the last poll."""
        try:
            msgs = take_all(self._scaling_sub)
        except Exception:
            if self.context.ok():
                raise
            return
        for msg in reversed(msgs):
            percent = msg.data
            if math.isfinite(percent) and 0.0 <= percent <= 100.0 + 1e-6:
                with self._lock:
                    self.follower.set_speed_scaling(percent / 100.0)
                self._scaling_at = self.now_s()
                return
            self._scaling_rejected += 1
            self._log_throttled('speed_scaling', f'speed scaling ignored: {percent!r} % (not '
                                f'in 0..100; {self._scaling_rejected} so far); the last valid '
                                f'one ({100.0 * self.follower.speed_scaling:g} %) stays in use')

    def _supervise_scaling(self, now: float) -> None:
        """The speed scaling topic silent for joint_state_timeout_s after it had spoken: the
        factor in use may be stale (a pause that ended, a slider moved): hold as for silent joint
        states ('speed_scaling_stale'). Never heard since activation: a warning (commands at
        100 %; a robot that runs slower leaves the arm behind, which the tracking supervision
        catches)."""
        if math.isfinite(self._scaling_at):
            self._supervise_stale(now, self._scaling_at, 'speed_scaling_stale',
                                  self._scaling_sub.topic_name,
                                  f'the factor in use ({100.0 * self.follower.speed_scaling:g} %) '
                                  'may be stale')
            return
        if not math.isfinite(self._activated_at):
            self._activated_at = now
        elif self.follower.started and now - self._activated_at > max(
                2.0, self.cfg.joint_state_timeout_s):
            self._log_throttled('speed_scaling/none', (
                f'no speed scaling on {self._scaling_sub.topic_name} since activation: '
                'commanding at 100 %'), 10.0)

    def _supervise_stale(self, now: float, since: float, reason: str, topic: str,
                         consequence: str) -> None:
        """Follower.supervise_stale for one input, and the error log when it trips."""
        with self._lock:
            tripped = self.follower.supervise_stale(now, since, reason)
        if tripped:
            self.get_logger().error(
                f'nothing valid on {topic} for {now - since:.2f} s: {consequence}. Holding; '
                'chunks are refused until ~/resume (or the next activation).')

    def _supervise(self, now: float) -> None:
        """Control thread, after a valid joint state: tracking supervision (Follower.supervise)."""
        with self._lock:
            follower = self.follower
            command = follower.command[0].copy()
            tripped = follower.supervise(self._measured, now, self._measured_v)
        if tripped:
            err = command - self._measured
            worst = int(np.argmax(np.abs(err)))
            self.get_logger().error(
                f'tracking fault: {self.cfg.joint_names[worst]} is {err[worst]:+.3f} rad from '
                f'the command for {self.cfg.tracking_timeout_s:g} s (tolerance '
                f'{self.cfg.tracking_tolerance_rad:g} rad): the controller does not execute the '
                'commands or the arm is stopped. Holding at the measured position; chunks are '
                'refused until ~/resume (or the next activation).')

    def _on_joint_state(self, msg: JointState):
        q, reason = self._indexer.from_joint_state(msg)
        if q is None:
            # 'missing_joint:elbow' -> counter 'missing_joint'; the log names the joints.
            key = reason.split(':', 1)[0]
            with self._lock:
                self._js_rejected[key] = self._js_rejected.get(key, 0) + 1
                count = self._js_rejected[key]
            self._log_throttled('joint_states/' + key,
                                f'joint state ignored: {reason} ({count} so far); '
                                'the last valid one stays in use')
            return False
        self._measured = q
        return True

    def _on_trajectory(self, msg: JointTrajectory, n_action_steps=None):
        now = self.now_s()
        if self.follower is None:
            return
        try:
            names, t, pos, vel = joint_trajectory_to_arrays(msg)
        except ValueError:
            with self._lock:
                self.follower.count_rejection('bad_shape')
            self._log_reject('bad_shape')
            return
        stamp = stamp_to_sec(msg.header.stamp)
        with self._lock:
            result = self.follower.on_chunk(stamp, names, t, pos, vel, now,
                                            n_action_steps=n_action_steps)
        if result != ACCEPTED:
            self._log_reject(result, f'stamp {stamp:.3f} now {now:.3f}')

    def _on_action_chunk(self, msg):
        self._on_trajectory(msg.trajectory, n_action_steps=msg.n_action_steps or None)

    def _log_reject(self, reason: str, detail: str = ''):
        count = self.follower.rejected[reason] if self.follower else 0
        self._log_throttled(reason, f'chunk rejected: {reason} ({count} so far) {detail}')

    def _watch_controller(self, topic: str) -> None:
        if not topic:
            return
        try:
            from controller_manager_msgs.msg import ControllerManagerActivity
        except ImportError:
            self.get_logger().info(
                "controller_manager_msgs not installed: the output controller's state is not "
                'watched (commands are always sent)')
            return
        # The controller manager publishes it latched on every change of a controller's state;
        # depth 10: a quick inactive -> active pair must not reach us as one 'active'.
        latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._subs.append(self.create_subscription(
            ControllerManagerActivity, topic, self._on_controller_activity, latched))

    def _on_controller_activity(self, msg) -> None:
        state = 'not_loaded'
        for named in msg.controllers:
            if named.name == self._controller:
                state = named.state.label or f'state_{named.state.id}'
        with self._lock:
            previous = self._controller_state
            self._controller_state = state
            if state == previous or self.follower is None:
                return
            if state != 'active' and self.follower.started:
                # Nothing executes our commands now: stop planning ahead of an arm that stands
                # still, so that nothing jumps when the controller comes back.
                self.follower.stop()
                self._controller_deactivations += 1
        if state == 'active':
            if previous != 'unknown':
                self.get_logger().info(f'{self._controller} is active again: commanding from '
                                       'the measured position')
        else:
            self.get_logger().warning(f'{self._controller} is {state}: not commanding until it '
                                      'is active again')

    def _log_throttled(self, key: str, text: str, interval_s: float = 0.0):
        t = time.monotonic()
        if t - self._last_log.get(key, -math.inf) >= max(interval_s, self._log_throttle):
            self._last_log[key] = t
            self.get_logger().warning(text)

    def _on_hold(self, request, response):
        if self.follower is None or self.lifecycle_label != 'active':
            response.success, response.message = False, 'not active'
            return response
        with self._lock:
            self.follower.hold('hold_service')
        response.success, response.message = True, 'holding'
        return response

    def _on_resume(self, request, response):
        if self.follower is None:
            response.success, response.message = False, 'not configured'
            return response
        with self._lock:
            self.follower.resume()
        response.success, response.message = True, 'following the next valid chunk'
        return response

    # ------------------------------------------------------------------ control thread
    def _tick(self, k: int, mono_now: float):
        follower = self.follower
        if self._controller_state not in ('active', 'unknown'):
            # The output controller is not active (controller manager's activity): command
            # nothing; the next tick after it is active starts from the measured position.
            if k >= self._next_js_k:
                self._next_js_k = k + self._js_every
                self._poll_joint_states()
            return
        if not follower.started:
            self._poll_joint_states()
        now = self.now_s()
        with self._lock:
            if not follower.started:
                if self._measured is None or self._controller_state not in ('active', 'unknown'):
                    return   # (re-checked here: the activity callback stops under this lock)
                follower.start(self._measured, now)
            q, v, _ = follower.step(now)   # catches up on skipped periods (see Follower.step)
            if self.output_mode == 'joint_trajectory' and self._jtc_due(follower.plan_time(now)):
                pq, pv, stop = follower.preview(now, now + self._jtc_tfs, stop=True)
            else:
                pq = None
        try:
            if self.output_mode == 'forward_command':
                self._cmd_msg.data = q.tolist()
                self._cmd_pub.publish(self._cmd_msg)
            elif pq is not None:
                self._cmd_pub.publish(self._fill_jtc(now, pq, pv, stop))
        except Exception:
            if self.context.ok():
                raise   # a real failure; at shutdown the context goes first: stop quietly
        # After the command is out: the measured state for the status (tracking error), at most
        # JOINT_STATE_POLL_HZ (a take costs ~15-50 us here, mostly cold caches after the sleep).
        if k >= self._next_js_k:
            self._next_js_k = k + self._js_every
            if self._poll_joint_states():
                self._supervise(now)
            elif self._measured is not None:
                self._supervise_stale(now, self._measured_at, 'joint_states_stale',
                                      self._js_sub.topic_name,
                                      'the commands cannot be checked against the arm')
            if self._scaling_sub is not None:
                self._supervise_scaling(now)

    def _jtc_due(self, tau: float) -> bool:
        """A rolling trajectory is due every 1/jtc_rate_hz of plan time (of the clock at full
        speed; half a control period early, so that it keeps its period under jitter). Under
        speed scaling the controller executes the current one at the same rate, and at a factor
        of 0 nothing new is sent: a new trajectory would restart from the controller's state,
        which since Jazzy is sampled one (unscaled) period ahead, and so creep forward."""
        if tau >= self._next_jtc_tau or tau < self._next_jtc_tau - 2 * self._jtc_period:
            self._next_jtc_tau = tau + self._jtc_period - 0.5 * self.follower.dt
            return True
        return False

    def _fill_jtc(self, stamp: float, pq: np.ndarray, pv: np.ndarray, stop) -> JointTrajectory:
        """The rolling trajectory: the preview points at offsets jtc_tfs, then the braking tail.
        Times and velocities are the follower's plan time (Follower.preview with
        scaled_time_output), which is the controller's trajectory time: under speed scaling the
        controller advances it at the factor itself."""
        msg = self._jtc_msg
        if self._jtc_stamp_clock:   # else it stays zero: the controller starts it on reading
            msg.header.stamp.sec, msg.header.stamp.nanosec = sec_to_sec_nanosec(stamp)
        points = self._jtc_points
        for point, q, v in zip(points, pq, pv):
            point.positions = q.tolist()
            point.velocities = v.tolist()
        t_tail, q_tail, v_tail = stop
        n = self._jtc_preview_points
        for point, t, q, v in zip(points[n:], t_tail, q_tail, v_tail):
            point.positions = q.tolist()
            point.velocities = v.tolist()   # the last one exactly zero: the controller's check
            point.time_from_start.sec, point.time_from_start.nanosec = sec_to_sec_nanosec(
                t - stamp)
        msg.points = points[:n + min(len(t_tail), len(points) - n)]
        return msg

    # ------------------------------------------------------------------ status
    def _publish_status(self):
        if self.follower is None:
            return
        msg = self._status_cls()
        msg.header.stamp = self.get_clock().now().to_msg()
        with self._lock:
            f = self.follower
            state = f.state
            q = f.command[0].copy()
            jerk = f.pop_max_jerk()
            rejected = dict(f.rejected)
            rejected_js = dict(self._js_rejected)
            msg.chunks_accepted = f.chunks_accepted
            msg.watchdog_trips = f.watchdog_trips
            msg.tracking_faults = f.tracking_faults
            msg.speed_scaling = f.speed_scaling
            msg.speed_scaling_rejected = self._scaling_rejected
            msg.speed_scaling_age_s = (self.now_s() - self._scaling_at
                                       if math.isfinite(self._scaling_at) else math.nan)
            msg.hold_reason = f.hold_reason if state == STATE_HOLDING else ''
            # At the last control step: "following" always comes with since <= watchdog_timeout_s.
            since = f.time_since_last_chunk()
            last_stamp, last_accepted = f.last_accepted
        if self.loop is not None and self.loop.exception is not None:
            self.get_logger().error(f'control thread died: {self.loop.exception!r}')
        msg.state = state
        msg.state_label = STATE_LABELS[state]
        msg.lifecycle_state = self.lifecycle_label
        msg.output_mode = self.output_mode
        msg.output_topic = self.output_topic
        msg.controller_state = self._controller_state
        msg.controller_deactivations = self._controller_deactivations
        msg.joint_names = list(self.cfg.joint_names)
        if self._measured is not None and state != STATE_STOPPED:
            err = q - self._measured
            msg.tracking_error_rad = err.tolist()
            msg.max_abs_tracking_error_rad = float(np.max(np.abs(err)))
        else:
            msg.max_abs_tracking_error_rad = math.nan
        msg.command_jerk_max_rad_s3 = jerk
        if self.loop is not None:
            p50, p99, pmax = self.loop.period_error_stats(reset=True)
            msg.period_error_p50_s, msg.period_error_p99_s, msg.period_error_max_s = p50, p99, pmax
        else:
            msg.period_error_p50_s = msg.period_error_p99_s = msg.period_error_max_s = math.nan
        msg.time_since_last_chunk_s = float(since)
        if math.isfinite(last_stamp):
            msg.last_chunk_stamp.sec, msg.last_chunk_stamp.nanosec = sec_to_sec_nanosec(
                last_stamp)
            msg.last_chunk_accepted.sec, msg.last_chunk_accepted.nanosec = sec_to_sec_nanosec(
                last_accepted)
        from dp_msgs.msg import Counter as CounterMsg
        msg.rejected = [CounterMsg(name=k, count=int(c)) for k, c in sorted(rejected.items())]
        msg.rejected_joint_states = [CounterMsg(name=k, count=int(c))
                                     for k, c in sorted(rejected_js.items())]
        self._status_pub.publish(msg)


def main(args=None):
    # A short GIL switch interval: the control thread gets the interpreter back within ~50 us from
    # a callback running in the executor thread (0.2 ms: p99 period error 0.16 ms; 0.05 ms: 0.01 ms).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    return run_node(FollowerNode, args, after_create=_after_create,
                    cleanup=FollowerNode._stop_loop)


def _after_create(node: 'FollowerNode') -> None:
    node.set_executor_thread_priority()   # run_node spins the executor in this thread
    _autostart(node)


def _autostart(node: 'FollowerNode') -> None:
    if node.get_parameter('autostart').value:
        node.trigger_configure()
        if node.lifecycle_label == 'inactive':
            node.trigger_activate()


if __name__ == '__main__':
    main()
