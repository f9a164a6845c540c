"""follower_node's parameters: the table (name: (default, description)) and the FollowerConfig
read from them.

Kept apart from the node so that the table is read at a glance, and so that a wrong value is
refused by `read_config` (ValueError, the node logs it and stays unconfigured) before anything of
the node exists. config/follower.yaml and the package README list the same parameters.
"""
from __future__ import annotations

from typing import Any, Callable

from dp_controller.config import OUTPUT_MODES, FollowerConfig

PER_JOINT = ('position_lower_rad', 'position_upper_rad', 'max_velocity_rad_s',
             'max_acceleration_rad_s2')
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


def read_config(param: Callable[[str], Any]) -> tuple[FollowerConfig, str]:
    """(FollowerConfig, output mode) from the parameters (`param(name)` gives a value); a
    ValueError says what is wrong."""
    cfg = FollowerConfig(
        joint_names=list(param('joint_names')),
        control_rate_hz=float(param('control_rate_hz')),
        position_lower_rad=param('position_lower_rad'),
        position_upper_rad=param('position_upper_rad'),
        max_velocity_rad_s=param('max_velocity_rad_s'),
        max_acceleration_rad_s2=param('max_acceleration_rad_s2'),
        watchdog_timeout_s=float(param('watchdog_timeout_s')),
        tracking_tolerance_rad=float(param('tracking_tolerance_rad')),
        tracking_timeout_s=float(param('tracking_timeout_s')),
        joint_state_timeout_s=float(param('joint_state_timeout_s')),
        blend_window_s=float(param('blend_window_s')),
        execution_mode=str(param('execution_mode')),
        n_action_steps=int(param('n_action_steps')),
        ensemble_decay=float(param('ensemble_decay')),
        max_stamp_age_s=float(param('max_stamp_age_s')),
        max_future_stamp_s=float(param('max_future_stamp_s')))
    output_mode = str(param('output_mode'))
    if output_mode not in OUTPUT_MODES:
        raise ValueError(f'output_mode must be one of {OUTPUT_MODES}')
    jtc_stamp = str(param('jtc_stamp'))
    if jtc_stamp not in ('zero', 'clock'):
        raise ValueError("jtc_stamp must be 'zero' or 'clock'")
    # The trajectory controller runs the command's time (speed scaling): plan time.
    cfg.scaled_time_output = output_mode == 'joint_trajectory'
    if cfg.scaled_time_output and param('speed_scaling_topic') and jtc_stamp == 'clock':
        raise ValueError('jtc_stamp clock with speed_scaling_topic: a stamped trajectory is placed '
                         "on the clock while its points are in the controller's scaled time; use "
                         'jtc_stamp zero')
    return cfg, output_mode
