"""Synthetic demonstration bags with known content, for tests and smoke runs (ROS-free).

What it is: writes rosbag2 folders (sqlite3 or mcap, with rosbags' Writer) that look like
`ros2 bag record` on a robot driven by a demonstrator: /joint_states (names shuffled, one extra
joint), the demonstrator's commands (forward_position_controller Float64MultiArray or a
JointTrajectory), and optionally a camera in bgr8 with padded rows (step > width * 3). The command
is a known smooth function, so tests can compute the right answers; `mode` (+1 / -1) bends the
second joint one way or the other (two demonstration modes, like passing an obstacle left or right).

Also: `corrupt_bag` truncates or overwrites the storage file of a bag (fault-injection tests).

What it is not: the simulation's demonstrator (dp_sim) or a recorder of live topics.
"""
from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

__all__ = ['SyntheticSpec', 'command_at', 'write_demo_bag', 'corrupt_bag', 'storage_file']

JOINTS = ('joint1', 'joint2', 'joint3')


@dataclass
class SyntheticSpec:
    duration_s: float = 3.0
    joint_rate_hz: float = 50.0
    command_rate_hz: float = 50.0
    camera_rate_hz: float = 10.0
    joint_names: Sequence[str] = JOINTS
    mode: int = 1                         # +1 / -1: which way joint2 bends
    t0_s: float = 1000.0                  # bag start time (seconds)
    state_lag_s: float = 0.05             # measured position = command this long ago
    command: str = 'forward'              # 'forward' (Float64MultiArray) or 'trajectory'
    joint_topic: str = '/joint_states'
    command_topic: Optional[str] = None   # default per `command`
    camera_topic: Optional[str] = '/camera/image_raw'   # None: no camera
    image_hw: tuple[int, int] = (24, 32)
    row_padding: int = 8                  # bytes of padding per image row (bgr8)
    extra_joint: str = 'gripper_joint'    # an extra /joint_states entry the policy does not use

    def topic_for_commands(self) -> str:
        if self.command_topic:
            return self.command_topic
        return ('/forward_position_controller/commands' if self.command == 'forward'
                else '/joint_trajectory_controller/joint_trajectory')


def command_at(t_rel: np.ndarray | float, mode: int = 1, n_joints: int = 3) -> np.ndarray:
    """The demonstrator's commanded positions at t_rel seconds after the bag start: (..., J)."""
    t = np.asarray(t_rel, dtype=np.float64)
    cols = [0.5 * np.sin(0.8 * t),
            mode * 0.6 * np.sin(math.pi * np.clip(t / 3.0, 0.0, 1.0)),
            0.3 * np.cos(0.5 * t)]
    while len(cols) < n_joints:
        cols.append(0.1 * len(cols) * np.sin(0.3 * t))
    return np.stack(cols[:n_joints], axis=-1)


def _image_for(t_rel: float, mode: int, hw: tuple[int, int]) -> np.ndarray:
    """RGB image whose content encodes time and mode (a bright column moving across)."""
    h, w = hw
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[..., 0] = 40 if mode > 0 else 200           # red channel tells the mode
    img[..., 2] = np.uint8(int(10 * t_rel) % 256)  # blue channel tells the time
    col = int(t_rel * 7) % w
    img[:, col, 1] = 255
    return img


def write_demo_bag(path: str | Path, spec: SyntheticSpec = SyntheticSpec(),
                   storage: str = 'sqlite3') -> Path:
    """Write one demonstration bag folder at `path` (must not exist). Returns the path."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from dp_eval.bagio import typestore
    ts = typestore()
    T = ts.types
    path = Path(path)
    plugin = {'sqlite3': StoragePlugin.SQLITE3, 'mcap': StoragePlugin.MCAP}[storage]

    def stamp(t: float):
        sec, ns = divmod(int(round(t * 1e9)), 1_000_000_000)
        return T['builtin_interfaces/msg/Time'](sec=sec, nanosec=ns)

    def header(t: float, frame: str = ''):
        return T['std_msgs/msg/Header'](stamp=stamp(t), frame_id=frame)

    names = list(spec.joint_names)
    J = len(names)
    events: list[tuple[float, str, str, object]] = []   # (t_abs, topic, type, msg)
    # /joint_states: shuffled names plus an extra joint
    order = list(reversed(names)) + [spec.extra_joint]
    for k in range(int(spec.duration_s * spec.joint_rate_hz) + 1):
        t = k / spec.joint_rate_hz
        q = command_at(max(0.0, t - spec.state_lag_s), spec.mode, J)
        pos = [float(q[names.index(n)]) if n in names else 0.02 for n in order]
        msg = T['sensor_msgs/msg/JointState'](
            header=header(spec.t0_s + t), name=order, position=np.array(pos),
            velocity=np.zeros(len(order)), effort=np.zeros(0))
        events.append((spec.t0_s + t, spec.joint_topic, 'sensor_msgs/msg/JointState', msg))
    # demonstrator commands
    ctopic = spec.topic_for_commands()
    for k in range(int(spec.duration_s * spec.command_rate_hz) + 1):
        t = k / spec.command_rate_hz
        q = command_at(t, spec.mode, J)
        if spec.command == 'forward':
            msg = T['std_msgs/msg/Float64MultiArray'](
                layout=T['std_msgs/msg/MultiArrayLayout'](dim=[], data_offset=0),
                data=np.asarray(q, dtype=np.float64))
            events.append((spec.t0_s + t, ctopic, 'std_msgs/msg/Float64MultiArray', msg))
        else:
            point = T['trajectory_msgs/msg/JointTrajectoryPoint'](
                positions=np.asarray(q, dtype=np.float64), velocities=np.zeros(0),
                accelerations=np.zeros(0), effort=np.zeros(0),
                time_from_start=T['builtin_interfaces/msg/Duration'](sec=0, nanosec=0))
            msg = T['trajectory_msgs/msg/JointTrajectory'](
                header=header(spec.t0_s + t), joint_names=names, points=[point])
            events.append((spec.t0_s + t, ctopic, 'trajectory_msgs/msg/JointTrajectory', msg))
    # camera, bgr8 with padded rows
    if spec.camera_topic:
        h, w = spec.image_hw
        step = w * 3 + spec.row_padding
        for k in range(int(spec.duration_s * spec.camera_rate_hz) + 1):
            t = k / spec.camera_rate_hz
            rgb = _image_for(t, spec.mode, spec.image_hw)
            buf = np.full((h, step), 0xAB, dtype=np.uint8)       # padding bytes are garbage
            buf[:, :w * 3] = rgb[..., ::-1].reshape(h, w * 3)    # bgr8
            msg = T['sensor_msgs/msg/Image'](
                header=header(spec.t0_s + t, 'camera'), height=h, width=w, encoding='bgr8',
                is_bigendian=0, step=step, data=buf.reshape(-1))
            events.append((spec.t0_s + t, spec.camera_topic, 'sensor_msgs/msg/Image', msg))
    events.sort(key=lambda e: e[0])
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for _, topic, typ, _ in events:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, typ, typestore=ts)
        for t, topic, typ, msg in events:
            writer.write(conns[topic], int(round(t * 1e9)), bytes(ts.serialize_cdr(msg, typ)))
    return path


def storage_file(path: str | Path) -> Path:
    files = sorted(p for p in Path(path).iterdir() if p.suffix in ('.db3', '.mcap'))
    if not files:
        raise FileNotFoundError(f'no .db3 or .mcap file in {path}')
    return files[0]


def corrupt_bag(src: str | Path, dst: str | Path, keep_fraction: float = 0.6,
                how: str = 'truncate') -> Path:
    """Copy bag `src` to `dst` and damage its storage file: 'truncate' cuts it at keep_fraction
    of its size; 'garble' overwrites the second part with junk bytes."""
    dst = Path(dst)
    shutil.copytree(src, dst)
    f = storage_file(dst)
    data = f.read_bytes()
    cut = int(len(data) * keep_fraction)
    if how == 'truncate':
        f.write_bytes(data[:cut])
    elif how == 'garble':
        rng = np.random.default_rng(0)
        f.write_bytes(data[:cut] + rng.integers(0, 256, len(data) - cut, dtype=np.uint8).tobytes())
    else:
        raise ValueError(f'unknown corruption {how!r}')
    return dst
