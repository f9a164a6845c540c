"""policy_node's messages, built and read without the node: the chunk it publishes (a
JointTrajectory of the actions to execute and the ActionChunk with the whole horizon), the
camera images it takes (cheap checks on arrival, then the decoder training uses) and the counters
and windows of its PolicyStatus (fill_status)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from dp_common.images import ImageFormatError, UnsupportedEncodingError, encoding_info, \
    resize_rgb8, to_rgb8
from dp_common.stamps import ns_to_stamp
from dp_common.trajectories import arrays_to_joint_trajectory

from .observation import ImageRejected


def chunk_messages(names: list, meta: Any, out: Any, b: int, stamp_ns: int,
                   publish_velocities: bool, robot_ns: str, sequence: int, age_s: float,
                   ee: Any = None):
    """(JointTrajectory, ActionChunk) of robot b of a PolicyOutput `out`: the trajectory holds
    the actions from the first one to execute (stamped with the newest observation, 0 s = that
    instant), the chunk the whole horizon (negative times for the observation steps) and how it
    was made. With `ee` (an EndEffectorSpace: the actions are tip pose vectors) there is no
    joint trajectory (None) and the chunk carries the poses (ee_chunk)."""
    from dp_msgs.msg import ActionChunk
    if ee is not None:
        chunk = ee_chunk(ee, meta, out, b, stamp_ns)
        traj = None
    else:
        traj, chunk = _joint_chunk(names, meta, out, b, stamp_ns, publish_velocities, ActionChunk)
    chunk.sequence = sequence
    chunk.robot_namespace = robot_ns
    chunk.dt_s = float(meta.dt_s)
    chunk.first_action_index = int(out.first_action_index)
    chunk.n_action_steps = int(meta.n_action_steps)
    chunk.inference_latency_s = float(out.latency_s)
    chunk.scheduler = str(out.scheduler)
    chunk.num_inference_steps = int(out.num_inference_steps)
    chunk.num_samples = int(out.samples.shape[1])
    chunk.chosen_sample = int(out.chosen[b])
    chunk.observation_age_s = age_s
    return traj, chunk


def ee_chunk(ee: Any, meta: Any, out: Any, b: int, stamp_ns: int):
    """The ActionChunk of an end-effector policy's actions (T, 9) for robot b: poses of
    ee.tip_link in ee.root_frame (header.frame_id), points with times only."""
    return ee_chunk_message(out.actions[b], stamp_ns, float(meta.dt_s), int(out.first_action_index),
                            ee.root_frame, ee.tip_link)


def ee_chunk_message(vectors: Any, stamp_ns: int, dt_s: float, first_action_index: int,
                     frame_id: str, ee_link: str):
    """An ActionChunk (action_space ee_pose) of tip pose vectors (T, 9) [xyz, rot6d]: pose i at
    header.stamp + (i - first_action_index) * dt_s, quaternions from the rotations."""
    from builtin_interfaces.msg import Duration
    from dp_msgs.msg import ActionChunk
    from geometry_msgs.msg import Pose
    from trajectory_msgs.msg import JointTrajectoryPoint

    from dp_common.rotations import matrix_to_quat, vector_to_pose

    T = vector_to_pose(np.asarray(vectors, dtype=np.float64))                    # (T, 4, 4)
    quats = matrix_to_quat(T[:, :3, :3])                                          # (T, 4) wxyz
    chunk = ActionChunk()
    chunk.header.stamp = ns_to_stamp(stamp_ns)
    chunk.header.frame_id = frame_id
    chunk.trajectory.header = chunk.header
    chunk.action_space = 'ee_pose'
    chunk.ee_link = ee_link
    chunk.dt_s = float(dt_s)
    chunk.first_action_index = int(first_action_index)
    for i in range(T.shape[0]):
        t_ns = int(round((i - first_action_index) * dt_s * 1e9))
        pt = JointTrajectoryPoint()
        pt.time_from_start = Duration(sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000)
        chunk.trajectory.points.append(pt)
        p = Pose()
        p.position.x, p.position.y, p.position.z = (float(v) for v in T[i, :3, 3])
        p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z = \
            (float(v) for v in quats[i])
        chunk.poses.append(p)
    return chunk


def _joint_chunk(names: list, meta: Any, out: Any, b: int, stamp_ns: int,
                 publish_velocities: bool, ActionChunk: Any):
    dt = float(meta.dt_s)
    fai = int(out.first_action_index)
    actions = np.asarray(out.actions[b], dtype=np.float64)                      # (T, A)
    stamp = ns_to_stamp(stamp_ns)

    def velocities(pos: np.ndarray) -> Optional[np.ndarray]:
        if not publish_velocities or pos.shape[0] < 2:
            return None
        return np.gradient(pos, dt, axis=0)

    future = actions[fai:]                                                       # (T - fai, A)
    traj = arrays_to_joint_trajectory(names, np.arange(future.shape[0]) * dt, future,
                                      velocities(future), stamp=stamp)
    chunk = ActionChunk()
    chunk.header = traj.header
    chunk.action_space = 'joint'
    chunk.trajectory = arrays_to_joint_trajectory(
        names, (np.arange(actions.shape[0]) - fai) * dt, actions, velocities(actions), stamp=stamp)
    return traj, chunk


def precheck_image(msg: Any, transport: str, image_hw: tuple[int, int], resize: bool) -> str:
    """Cheap checks on arrival (decoding waits until the image is used)."""
    if len(msg.data) == 0:
        return 'empty_image'
    if transport == 'compressed':
        return ''
    if msg.height == 0 or msg.width == 0:
        return 'empty_image'
    try:
        encoding_info(msg.encoding)
    except UnsupportedEncodingError:
        return 'unsupported_encoding'
    if not resize and (msg.height, msg.width) != tuple(image_hw):
        return 'wrong_image_size'
    return ''


def decode_image(msg: Any, transport: str, image_hw: tuple[int, int], resize: bool) -> np.ndarray:
    """Image / CompressedImage -> (H, W, 3) uint8 RGB of the checkpoint's size.

    Raises ImageRejected with a counter name ('unsupported_encoding', 'bad_image_format',
    'image_conversion_error', 'wrong_image_size')."""
    try:   # the decoder training uses (dp_common.images.to_rgb8): the same pixels
        arr = to_rgb8(msg, transport == 'compressed', image_hw if resize else None)
    except UnsupportedEncodingError as err:
        raise ImageRejected('unsupported_encoding', str(err)) from err
    except ImageFormatError as err:
        raise ImageRejected('bad_image_format', str(err)) from err
    except Exception as err:  # noqa: BLE001 - a message the decoder chokes on
        raise ImageRejected('image_conversion_error', f'{type(err).__name__}: {err}') from err
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or arr.size == 0:
        raise ImageRejected('bad_image_format', f'decoded to {arr.dtype} {arr.shape}')
    if tuple(arr.shape[:2]) != tuple(image_hw):
        if not resize:
            raise ImageRejected('wrong_image_size',
                                f'{arr.shape[1]}x{arr.shape[0]} instead of {image_hw[1]}x{image_hw[0]}')
        arr = resize_rgb8(arr, image_hw)
    return arr


def fill_status(msg: Any, book: Any, robots: list, now_ns: int) -> None:
    """PolicyStatus fields of the StatusBook (counters, rates, latency windows; the window is
    restarted) and of each robot's input streams (received, rate, age of the newest accepted
    stamp, messages held in the history)."""
    from dp_msgs.msg import Counter, InputStatus
    snap, elapsed = book.snapshot()
    for robot in robots:
        held = robot.history.sizes()
        for stream, stats in robot.stats.items():
            stats.mark(elapsed)
            age = float('nan') if stats.newest_ns is None else (now_ns - stats.newest_ns) * 1e-9
            msg.inputs.append(InputStatus(topic=stats.topic, received=stats.received,
                                          rate_hz=float(stats.rate_hz), age_s=age,
                                          buffered=int(held.get(stream, 0))))
    msg.chunks_published = snap.chunks_published
    msg.output_rate_hz = snap.output_rate_hz
    msg.rejected = [Counter(name=k, count=v) for k, v in sorted(snap.rejected.items())]
    msg.skipped = [Counter(name=k, count=v) for k, v in sorted(snap.skipped.items())]
    msg.latency_p50_s, msg.latency_p99_s = snap.latency_p50_s, snap.latency_p99_s
    msg.latency_max_s = snap.latency_max_s
    msg.observation_to_publish_p50_s = snap.observation_to_publish_p50_s
    msg.limit_margin_rad, msg.clearance_m = snap.limit_margin_rad, snap.clearance_m
    msg.selection_cost, msg.min_clearance_m = snap.selection_cost, snap.min_clearance_m
