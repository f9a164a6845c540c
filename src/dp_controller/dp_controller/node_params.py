"""follower_node's parameters: the table (name: (default, description), from
parameters/follower_node.yaml) and the FollowerConfig read from them.

Kept apart from the node so that a wrong value is
refused by `read_config` (ValueError, the node logs it and stays unconfigured) before anything of
the node exists. config/follower.yaml and the package README list the same parameters.
"""
from __future__ import annotations

from typing import Any, Callable

from dp_common.params import load_parameter_table
from dp_controller.config import OUTPUT_MODES, FollowerConfig

PER_JOINT = ('position_lower_rad', 'position_upper_rad', 'max_velocity_rad_s',
             'max_acceleration_rad_s2')
DEFAULT_CONTROLLERS = {'forward_command': 'forward_position_controller',
                       'joint_trajectory': 'joint_trajectory_controller',
                       'pose_stamped': ''}   # MoveIt Servo is no ros2_control controller

# name: (default, description), from parameters/follower_node.yaml. Per-joint lists accept one
# value (all joints) or one per joint.
PARAMETERS = load_parameter_table('dp_controller', 'follower_node')


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
        rtc_max_step_rad=float(param('rtc_max_step_rad')),
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
    if output_mode == 'pose_stamped':
        if not param('robot_description_file'):
            raise ValueError('output_mode pose_stamped needs robot_description_file: the tip pose '
                             'of each command is its forward kinematics')
        if not param('pose_command_topic'):
            raise ValueError('output_mode pose_stamped needs pose_command_topic')
        # The Cartesian controller solves its own inverse kinematics (another joint solution
        # of a redundant arm is no tracking error): joint-space tracking supervision is off.
        cfg.tracking_tolerance_rad = 0.0
    # The trajectory controller runs the command's time (speed scaling): plan time.
    cfg.scaled_time_output = output_mode == 'joint_trajectory'
    if cfg.scaled_time_output and param('speed_scaling_topic') and jtc_stamp == 'clock':
        raise ValueError('jtc_stamp clock with speed_scaling_topic: a stamped trajectory is placed '
                         "on the clock while its points are in the controller's scaled time; use "
                         'jtc_stamp zero')
    return cfg, output_mode
