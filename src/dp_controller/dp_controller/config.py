"""FollowerConfig: every setting of the trajectory follower core, validated in __post_init__.

ROS-free. follower_node reads its ROS parameters into this dataclass (same names, same units);
tests and benchmarks build it directly. Per-joint limits accept one value (broadcast to every
joint) or one value per joint.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

import numpy as np

EXECUTION_MODES = ('receding_horizon', 'latest', 'temporal_ensemble', 'rtc')
OUTPUT_MODES = ('forward_command', 'joint_trajectory', 'pose_stamped')

PerJoint = Union[float, Sequence[float]]


def _per_joint(name: str, value: PerJoint, n: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.shape[0] == 1:
        arr = np.full((n,), float(arr[0]))
    if arr.shape[0] != n:
        raise ValueError(f'{name}: {arr.shape[0]} values for {n} joints')
    if not np.all(np.isfinite(arr)):
        raise ValueError(f'{name} must be finite')
    return arr


@dataclass
class FollowerConfig:
    """Settings of the follower core. Units are in the names (SI: rad, s)."""

    joint_names: list = field(default_factory=lambda: ['joint1', 'joint2', 'joint3'])
    control_rate_hz: float = 500.0
    position_lower_rad: PerJoint = -3.14
    position_upper_rad: PerJoint = 3.14
    max_velocity_rad_s: PerJoint = 2.0
    max_acceleration_rad_s2: PerJoint = 10.0
    # Watchdog: no valid chunk for this long -> decelerate within limits and hold.
    watchdog_timeout_s: float = 0.5
    # Cross-fade from the current plan to a new chunk over this window (0: switch, still C1 via
    # the entry knot).
    blend_window_s: float = 0.1
    rtc_max_step_rad: float = 0.02     # rtc: a chunk this close to the plan at its next point is
                                       # entered without a cross-fade; farther, blended as 'latest'
    execution_mode: str = 'receding_horizon'
    # Receding horizon: actions of a chunk executed before a newer chunk takes over (0: whole chunk).
    n_action_steps: int = 8
    # Temporal ensemble (ACT): weight of the i-th newer overlapping chunk is exp(-decay * i), the
    # oldest has weight 1 (ACT's convention; a negative value favours newer chunks).
    ensemble_decay: float = 0.01
    max_ensemble_chunks: int = 16
    # Chunk stamps older than now - max_stamp_age_s or newer than now + max_future_stamp_s are rejected.
    max_stamp_age_s: float = 0.5
    max_future_stamp_s: float = 0.1
    # Chunk positions may exceed the limits by this much before the chunk is rejected (rounding).
    position_tolerance_rad: float = 1e-6
    # A clock step backwards larger than this resets the plan (hold).
    clock_jump_tolerance_s: float = 0.05
    # Periods skipped by a late control thread are stepped through (unpublished), at most this many.
    max_catch_up_steps: int = 10
    # Tracking supervision: the measured position farther than tracking_tolerance_rad from the
    # command (any joint) for tracking_timeout_s -> restart the command from the measured state,
    # brake, hold, and refuse chunks until resume() (0 tolerance: off).
    tracking_tolerance_rad: float = 0.25
    tracking_timeout_s: float = 0.25
    # No valid measured state for this long while started -> brake, hold and refuse chunks until
    # resume() (0: off). Drivers publish at 100-1000 Hz; a loaded 2-core machine was seen to
    # deliver none for 0.26 s.
    joint_state_timeout_s: float = 1.0
    # The output goes to a controller that advances its own trajectory time at the speed scaling
    # factor (joint_trajectory_controller with speed scaling, UR's scaled controller): the command
    # then runs on plan time (see follower.py, "Speed scaling"). follower_node sets it for its
    # joint_trajectory output.
    scaled_time_output: bool = False

    def __post_init__(self):
        self.joint_names = [str(n) for n in self.joint_names]
        n = len(self.joint_names)
        if n == 0 or len(set(self.joint_names)) != n:
            raise ValueError('joint_names must be non-empty and unique')
        self.lower = _per_joint('position_lower_rad', self.position_lower_rad, n)
        self.upper = _per_joint('position_upper_rad', self.position_upper_rad, n)
        self.vmax = _per_joint('max_velocity_rad_s', self.max_velocity_rad_s, n)
        self.amax = _per_joint('max_acceleration_rad_s2', self.max_acceleration_rad_s2, n)
        if np.any(self.lower >= self.upper):
            raise ValueError('position_lower_rad must be below position_upper_rad')
        if np.any(self.vmax <= 0) or np.any(self.amax <= 0):
            raise ValueError('velocity and acceleration limits must be positive')
        if not self.control_rate_hz > 0:
            raise ValueError('control_rate_hz must be positive')
        if self.execution_mode not in EXECUTION_MODES:
            raise ValueError(f'execution_mode must be one of {EXECUTION_MODES}')
        if self.watchdog_timeout_s <= 0:
            raise ValueError('watchdog_timeout_s must be positive')
        if not self.rtc_max_step_rad >= 0:
            raise ValueError('rtc_max_step_rad must be >= 0')
        if self.blend_window_s < 0 or self.n_action_steps < 0 or self.max_ensemble_chunks < 1:
            raise ValueError('blend_window_s, n_action_steps must be >= 0, max_ensemble_chunks >= 1')
        if self.max_catch_up_steps < 0:
            raise ValueError('max_catch_up_steps must be >= 0')
        if self.tracking_tolerance_rad < 0 or self.tracking_timeout_s < 0 or \
                self.joint_state_timeout_s < 0:
            raise ValueError('tracking_tolerance_rad, tracking_timeout_s and '
                             'joint_state_timeout_s must be >= 0')
        if self.max_stamp_age_s <= 0 or self.max_future_stamp_s < 0:
            raise ValueError('max_stamp_age_s must be > 0 and max_future_stamp_s >= 0')

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def period_s(self) -> float:
        return 1.0 / self.control_rate_hz
