"""rosbag2 demonstrations -> `Episode`s on the policy's time grid (ROS-free; reads bags with rosbags).

What it does, per bag (sqlite3 or mcap storage, a folder with metadata.yaml):

1. Reads the configured topics with `rosbags.highlevel.AnyReader`: joint states, the
   demonstrator's commands, camera images (Image or CompressedImage), and optionally a
   dp_msgs/TaskStatus topic whose `episode` field splits the bag into episodes.
2. Puts every stream on its own time axis: the messages' **header stamps** (never arrival order);
   the only exception is std_msgs/Float64MultiArray (forward_command_controller commands), which
   has no header, so its bag log time is its time.
3. Resamples onto a uniform grid t0 + k * dt_s over the span where all streams exist:
   joint positions linearly interpolated; images the newest frame at or before t; commands the
   command in force at t (zero-order hold of the newest Float64MultiArray at or before t, or the
   newest JointTrajectory evaluated at t: linear between its points, holding the last point;
   before its first point it moves linearly from the previous command in force, as
   joint_trajectory_controller does; a zero header stamp means "start at log time").
4. Matches joints by name (`joint_names` gives the columns); commands without names
   (Float64MultiArray) take their order from `command_joint_names`.

Where the actions come from (`action_source`):
- 'command' (default): the demonstrator's commands on `command_topic`, as above.
- 'joint_states': the bag's joint states alone (kinesthetic teaching; recordings where the
  commands never reached a topic). The action at grid time t is the measured position at
  t + future_steps * dt_s: where the arm actually went, which a position controller reaches about
  one control lag after its command, so these actions run `future_steps * dt_s` (0.1 s by default)
  later than a command would; the last `future_steps` grid steps of an episode have no action and
  are dropped.
- 'leader': a leader arm's JointState (`leader_topic`, e.g. /leader/joint_states of low-cost
  leader-follower arms): the action at t is the leader's position at t (linearly interpolated),
  its joints matched by `leader_joint_names` (the leader's names for `joint_names`, in order;
  [] = the same names).
With 'joint_states' and 'leader', an episode whose actions move less than `min_motion_rad` (the
largest range of any joint) is skipped with a message naming the bag, the topic and the
episode, and a bag with no episode left is refused the same way.

Decoded episodes are cached as one .npz per bag, keyed by the bag's files and the decode settings,
written atomically. Bad input raises `DatasetError` naming the bag, the topic and the time.

Not here: the torch Dataset / windowing / normalization (training/trainer.py), recording bags (the
recorder), or any ROS graph access.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from dp_common.images import ImageFormatError, UnsupportedEncodingError, to_rgb8
from dp_common.joints import JointIndexer
from dp_common.stamps import stamp_to_ns
from dp_common.trajectories import joint_trajectory_to_arrays
from dp_policy.data.episode import Episode, EpisodeSetMeta, common_image_hw
from dp_policy.data.spaces import ACTION_SPACES, mask_robot, to_end_effector

__all__ = ['DatasetError', 'DatasetConfig', 'find_bags', 'bag_fingerprint', 'decode_bag',
           'load_episodes', 'infer_joint_names', 'CACHE_VERSION']

CACHE_VERSION = 1

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'
JOINT_STATE = 'sensor_msgs/msg/JointState'
FLOAT_ARRAY = 'std_msgs/msg/Float64MultiArray'
TRAJECTORY = 'trajectory_msgs/msg/JointTrajectory'
TASK_STATUS = 'dp_msgs/msg/TaskStatus'
_COMMAND_TYPES = {'auto': None, 'float64_multi_array': FLOAT_ARRAY, 'joint_trajectory': TRAJECTORY,
                  FLOAT_ARRAY: FLOAT_ARRAY, TRAJECTORY: TRAJECTORY,
                  'std_msgs/Float64MultiArray': FLOAT_ARRAY,
                  'trajectory_msgs/JointTrajectory': TRAJECTORY}


ACTION_SOURCES = ('command', 'joint_states', 'leader')


class DatasetError(ValueError):
    """A bag cannot be turned into episodes; the message names the bag, topic and time."""


@dataclass
class DatasetConfig:
    """Which topics of the demonstration bags make the observations and actions, and the grid."""

    joint_names: list[str]                      # policy's joint order (state and action columns)
    cameras: dict[str, str] = field(default_factory=dict)  # camera name -> Image/CompressedImage topic
    joint_states_topic: str = '/joint_states'   # sensor_msgs/JointState (header stamps)
    command_topic: str = '/forward_position_controller/commands'  # the demonstrator's commands
    command_type: str = 'auto'                  # 'auto' (from the bag), 'float64_multi_array', 'joint_trajectory'
    command_joint_names: list[str] = field(default_factory=list)  # Float64MultiArray order; [] = joint_names
    action_source: str = 'command'              # 'command' | 'joint_states' | 'leader' (module docstring)
    future_steps: int = 1                       # joint_states: the action at t is the state at t + future_steps * dt_s
    leader_topic: str = '/leader/joint_states'  # leader: the leader arm's sensor_msgs/JointState
    leader_joint_names: list[str] = field(default_factory=list)  # leader: its names for joint_names, in order; [] = the same
    min_motion_rad: float = 0.01                # joint_states / leader: episodes whose actions move less are skipped
    dt_s: float = 0.1                           # grid spacing (10 Hz)
    image_hw: Optional[tuple[int, int]] = None  # resize every camera to (H, W); None keeps the size
    episode_topic: str = ''                     # dp_msgs/TaskStatus: `episode` changes split the bag; '' = one bag, one episode
    min_episode_steps: int = 2                  # shorter segments (of a split bag) are skipped
    distro: str = 'kilted'                      # message definitions for bags that embed none
    action_space: str = 'joint'                 # 'joint' | 'ee_pose': state and action as tip pose vectors (data/spaces.py)
    urdf: str = ''                              # ee_pose: URDF of the arm that recorded the bags (path)
    tip_link: str = 'tool0'                     # ee_pose: the link whose pose is the action
    # Paint the robot out of cameras' images (spaces.mask_robot), from `urdf` and the joint states:
    # camera name -> {frame: its optical frame in the URDF, K: [fx, fy, cx, cy] (camera_info),
    # size: [height, width] that K is for, margin_m (default 0.01)}. {} = no masking.
    robot_mask: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.joint_names = [str(n) for n in self.joint_names]
        if not self.joint_names or len(set(self.joint_names)) != len(self.joint_names):
            raise ValueError(f'joint_names must be non-empty and unique, got {self.joint_names}')
        if not isinstance(self.cameras, dict):
            raise ValueError(f'cameras must map camera name -> topic, got {self.cameras!r}')
        self.cameras = {str(k): str(v) for k, v in self.cameras.items()}
        for name, topic in self.cameras.items():
            if not name or not topic:
                raise ValueError(f'camera {name!r}: name and topic must be non-empty')
        if len(set(self.cameras.values())) != len(self.cameras):
            raise ValueError(f'two cameras share a topic: {self.cameras}')
        if self.action_source not in ACTION_SOURCES:
            raise ValueError(f'action_source must be one of {ACTION_SOURCES}, got '
                             f'{self.action_source!r}')
        if not self.joint_states_topic:
            raise ValueError('joint_states_topic must be set')
        if self.action_source == 'command' and not self.command_topic:
            raise ValueError("command_topic must be set (action_source 'command')")
        if self.action_source == 'leader' and not self.leader_topic:
            raise ValueError("leader_topic must be set (action_source 'leader')")
        if self.action_source == 'leader' and self.leader_topic == self.joint_states_topic:
            raise ValueError(f'leader_topic and joint_states_topic are both {self.leader_topic}: '
                             f"for the arm's own joint states use action_source 'joint_states'")
        self.future_steps = int(self.future_steps)
        if self.future_steps < 1:
            raise ValueError(f'future_steps must be >= 1, got {self.future_steps}')
        self.leader_joint_names = [str(n) for n in self.leader_joint_names]
        if self.leader_joint_names and (len(self.leader_joint_names) != len(self.joint_names) or
                                        len(set(self.leader_joint_names)) != len(self.joint_names)):
            raise ValueError(f'leader_joint_names {self.leader_joint_names} must name each of the '
                             f'{len(self.joint_names)} joints {self.joint_names} once, in order')
        self.min_motion_rad = float(self.min_motion_rad)
        if not self.min_motion_rad >= 0:
            raise ValueError(f'min_motion_rad must be >= 0, got {self.min_motion_rad}')
        if self.command_type not in _COMMAND_TYPES:
            raise ValueError(f"command_type must be 'auto', 'float64_multi_array' or "
                             f"'joint_trajectory', got {self.command_type!r}")
        self.command_joint_names = [str(n) for n in self.command_joint_names]
        if self.command_joint_names:
            missing = [n for n in self.joint_names if n not in self.command_joint_names]
            if missing or len(set(self.command_joint_names)) != len(self.command_joint_names):
                raise ValueError(f'command_joint_names {self.command_joint_names} must be unique and '
                                 f'contain every joint of joint_names (missing: {missing})')
        if not (self.dt_s > 0 and np.isfinite(self.dt_s)):
            raise ValueError(f'dt_s must be > 0, got {self.dt_s}')
        if self.image_hw is not None:
            hw = tuple(int(v) for v in self.image_hw)
            if len(hw) != 2 or min(hw) < 1:
                raise ValueError(f'image_hw must be (H, W) with positive sizes, got {self.image_hw}')
            self.image_hw = hw
        if self.min_episode_steps < 1:
            raise ValueError(f'min_episode_steps must be >= 1, got {self.min_episode_steps}')
        if self.action_space not in ACTION_SPACES:
            raise ValueError(f'action_space must be one of {ACTION_SPACES}, got '
                             f'{self.action_space!r}')
        if self.action_space == 'ee_pose' and not self.urdf:
            raise ValueError("action_space 'ee_pose' needs urdf: the URDF of the arm that "
                             'recorded the demonstrations (forward kinematics)')
        if self.robot_mask:
            from dp_common.robot_mask import mask_spec
            if not self.urdf:
                raise ValueError('robot_mask needs urdf: the URDF of the arm (and camera frame) '
                                 'that recorded the demonstrations')
            if not isinstance(self.robot_mask, dict) or \
                    not all(isinstance(v, dict) for v in self.robot_mask.values()):
                raise ValueError('robot_mask must map camera name -> {frame, K, size, margin_m}, '
                                 f'got {self.robot_mask!r}')
            unknown = sorted(set(self.robot_mask) - set(self.cameras))
            if unknown:
                raise ValueError(f'robot_mask: cameras {unknown} are not among {self.camera_names}')
            self.robot_mask = {str(c): mask_spec(v.get('frame', ''), v.get('K', ()),
                                                 v.get('size', ()), v.get('margin_m', 0.01))
                               for c, v in self.robot_mask.items()}

    @property
    def camera_names(self) -> list[str]:
        return list(self.cameras)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d['image_hw'] = list(self.image_hw) if self.image_hw is not None else None
        return d

    @classmethod
    def from_dict(cls, data: dict) -> 'DatasetConfig':
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f'dataset config: unknown keys {unknown}; known: {sorted(names)}')
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> 'DatasetConfig':
        import yaml

        with open(path) as f:
            data = yaml.safe_load(f) or {}
        if 'dataset' in data and isinstance(data['dataset'], dict):
            data = data['dataset']
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as err:
            raise ValueError(f'{path}: {err}') from err


# ---------------------------------------------------------------------------------------------
# Finding bags, fingerprints


def find_bags(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Bag folders (with metadata.yaml) named by `paths`: a bag folder itself, a bag's storage
    file, or any folder (every bag below it, sorted). Raises DatasetError when none is found."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_file() and (p.parent / 'metadata.yaml').is_file():
            p = p.parent
        if (p / 'metadata.yaml').is_file():
            found = [p]
        elif p.is_dir():
            found = sorted(m.parent for m in p.rglob('metadata.yaml')
                           if not any(part.startswith('.') for part in m.relative_to(p).parts))
            if not found:
                raise DatasetError(f'{p}: no rosbag2 folder (with metadata.yaml) below it')
        else:
            raise DatasetError(f'{p}: not a rosbag2 folder (no metadata.yaml) and not a directory')
        for b in found:
            if b.resolve() not in {o.resolve() for o in out}:
                out.append(b)
    if not out:
        raise DatasetError('no bags given')
    return out


def bag_fingerprint(bag: Path) -> str:
    """Hash of a bag folder's files (name, size, mtime) and of its metadata.yaml's content."""
    h = hashlib.sha256()
    for f in sorted(bag.iterdir()):
        if f.is_file() and not f.name.startswith('.'):
            st = f.stat()
            h.update(f'{f.name}:{st.st_size}:{st.st_mtime_ns};'.encode())
    h.update((bag / 'metadata.yaml').read_bytes())
    return h.hexdigest()


SPACE_KEYS = ('action_space', 'urdf', 'tip_link', 'robot_mask')   # applied after the cache: not in its key


def _cache_key(bag: Path, cfg: DatasetConfig) -> str:
    decode = {k: v for k, v in cfg.to_dict().items() if k not in SPACE_KEYS}
    blob = json.dumps({'v': CACHE_VERSION, 'bag': bag_fingerprint(bag), 'cfg': decode},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Decoding one bag


def _sec(t_ns: int) -> str:
    return f't={t_ns * 1e-9:.3f}s'


class _Bag:
    """Error-message helper bound to one bag."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, topic: str, t_ns: Optional[int], what: str) -> DatasetError:
        where = f'{self.path}: topic {topic}' + (f' at {_sec(t_ns)}' if t_ns is not None else '')
        return DatasetError(f'{where}: {what}')


def _header_ns(bag: _Bag, topic: str, msg: Any, log_ns: int) -> int:
    t = stamp_to_ns(msg.header.stamp)
    if t == 0:
        raise bag.error(topic, log_ns, 'header stamp is zero (log time shown): streams are aligned '
                        'on header stamps, so the publisher must stamp its messages')
    return t


def _dedupe_sorted(t: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sort by t (stable) and keep the last sample of equal stamps."""
    order = np.argsort(t, kind='stable')
    t = t[order]
    keep = np.ones(len(t), bool)
    keep[:-1] = t[1:] != t[:-1]
    return (t[keep],) + tuple(v[order][keep] for v in values)


class _Trajectories:
    """The JointTrajectory commands of a bag, evaluated as joint_trajectory_controller would."""

    def __init__(self, starts: np.ndarray, trajs: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.starts = starts          # (K,) int64 ns, sorted
        self.trajs = trajs            # [(tfs (N,) s, pos (N, J))], matching starts

    @staticmethod
    def _eval(tfs: np.ndarray, pos: np.ndarray, s: float) -> np.ndarray:
        return np.array([np.interp(s, tfs, pos[:, j]) for j in range(pos.shape[1])])

    def prepare(self, state_at) -> None:
        """Prepend the command in force at each trajectory's start (JTC starts from there)."""
        prev = None
        for k, (tfs, pos) in enumerate(self.trajs):
            if tfs[0] > 0:
                if prev is None:
                    q0 = state_at(int(self.starts[k]))
                    q0 = pos[0] if q0 is None else q0
                else:
                    ptfs, ppos = prev
                    q0 = self._eval(ptfs, ppos, (self.starts[k] - self.starts[k - 1]) * 1e-9)
                tfs = np.concatenate([[0.0], tfs])
                pos = np.concatenate([q0[None], pos])
                self.trajs[k] = (tfs, pos)
            prev = self.trajs[k]

    def at(self, grid_ns: np.ndarray) -> np.ndarray:
        k = np.searchsorted(self.starts, grid_ns, side='right') - 1
        out = np.empty((len(grid_ns), self.trajs[0][1].shape[1]))
        for i, (ki, t) in enumerate(zip(k, grid_ns)):
            tfs, pos = self.trajs[ki]
            out[i] = self._eval(tfs, pos, (t - self.starts[ki]) * 1e-9)
        return out


def _pick_command_type(bag: _Bag, cfg: DatasetConfig, bag_type: str) -> str:
    want = _COMMAND_TYPES[cfg.command_type]
    if bag_type not in (FLOAT_ARRAY, TRAJECTORY):
        raise bag.error(cfg.command_topic, None, f'command type {bag_type} is not supported; '
                        f'expected {FLOAT_ARRAY} or {TRAJECTORY}')
    if want is not None and want != bag_type:
        raise bag.error(cfg.command_topic, None, f'has type {bag_type}, but command_type is '
                        f'{cfg.command_type!r}')
    return bag_type


def decode_bag(path: str | os.PathLike, cfg: DatasetConfig) -> list[Episode]:
    """Decode one bag folder into episodes (no cache). Raises DatasetError on bad input."""
    from rosbags.highlevel import AnyReader, AnyReaderError

    from dp_common.bags import typestore

    path = Path(path)
    bag = _Bag(path)
    try:
        reader = AnyReader([path], default_typestore=typestore(cfg.distro))
        reader.open()
    except (AnyReaderError, FileNotFoundError) as err:
        raise DatasetError(f'{path}: cannot open as a rosbag2: {err}') from err
    try:
        return _decode_open(bag, reader, cfg)
    finally:
        reader.close()


def _decode_open(bag: _Bag, reader: Any, cfg: DatasetConfig) -> list[Episode]:
    d = _BagDecoder(bag, reader, cfg)
    d.read_streams()                       # pass 1: everything but image pixels
    grids = d.episode_grids(*d.overlap())
    picks = d.read_frames(grids)           # pass 2: the image frames the grids use
    return d.resample(grids, picks)


class _BagDecoder:
    """One open bag -> episodes: checks its topics, reads the streams (pass 1), cuts the span
    where all exist into episode grids, reads the frames those grids use (pass 2), resamples."""

    def __init__(self, bag: _Bag, reader: Any, cfg: DatasetConfig):
        self.bag, self.reader, self.cfg = bag, reader, cfg
        self.by_topic: dict[str, list] = {}
        for c in reader.connections:
            self.by_topic.setdefault(c.topic, []).append(c)
        self.types = {t: cs[0].msgtype for t, cs in self.by_topic.items()}
        self.need(cfg.joint_states_topic, 'joint states', [JOINT_STATE])
        self.source = cfg.action_source
        self.cmd_type = None
        if self.source == 'command':
            self.cmd_type = _pick_command_type(bag, cfg, self.need(cfg.command_topic, 'command',
                                                                   [FLOAT_ARRAY, TRAJECTORY]))
        elif self.source == 'leader':
            self.need(cfg.leader_topic, 'leader joint states', [JOINT_STATE])
            self.leader_joints = JointIndexer(cfg.leader_joint_names or cfg.joint_names)
        self.action_topic = {'command': cfg.command_topic, 'joint_states': cfg.joint_states_topic,
                             'leader': cfg.leader_topic}[self.source]
        self.cam_types = {cam: self.need(topic, f'camera {cam!r}', [IMAGE, COMPRESSED])
                          for cam, topic in cfg.cameras.items()}
        if cfg.episode_topic:
            self.need(cfg.episode_topic, 'episode (TaskStatus)', [TASK_STATUS])
        self.joints = JointIndexer(cfg.joint_names)
        self.cmd_names = cfg.command_joint_names or cfg.joint_names
        self.topic_cam = {topic: cam for cam, topic in cfg.cameras.items()}
        self.js_t, self.js_q, self.cmd_t, self.cmd_q = [], [], [], []
        self.lead_t, self.lead_q = [], []
        self.traj_starts, self.trajs, self.ep_t, self.ep_v = [], [], [], []
        self.cam_stamps: dict[str, list[int]] = {cam: [] for cam in cfg.cameras}

    def need(self, topic: str, what: str, allowed: Sequence[str]) -> str:
        if topic not in self.types:
            present = ', '.join(f'{t} ({self.types[t]})' for t in sorted(self.types)) or 'none'
            raise self.bag.error(topic, None, f'{what} topic not found in the bag; topics present: '
                                 f'{present}')
        if self.types[topic] not in allowed:
            raise self.bag.error(topic, None, f'{what} topic has type {self.types[topic]}, expected '
                                 f'{" or ".join(allowed)}')
        return self.types[topic]

    def empty(self, topic: str, what: str) -> DatasetError:
        return self.bag.error(topic, None, f'{what} topic has no usable messages')

    # ------------------------------------------------------------------ pass 1
    def read_streams(self) -> None:
        cfg, bag = self.cfg, self.bag
        wanted = [cfg.joint_states_topic, *cfg.cameras.values()]
        if self.source != 'joint_states':
            wanted.append(self.action_topic)
        if cfg.episode_topic:
            wanted.append(cfg.episode_topic)
        conns = [c for t in wanted for c in self.by_topic[t]]
        for conn, log_ns, raw in self.reader.messages(connections=conns):
            topic = conn.topic
            msg = self.reader.deserialize(raw, conn.msgtype)
            if topic == cfg.joint_states_topic:
                self.on_joint_state(topic, msg, log_ns)
            elif self.source == 'leader' and topic == cfg.leader_topic:
                self.on_leader(topic, msg, log_ns)
            elif self.source == 'command' and topic == cfg.command_topic and \
                    self.cmd_type == FLOAT_ARRAY:
                self.on_command(topic, msg, log_ns)
            elif self.source == 'command' and topic == cfg.command_topic:
                self.on_trajectory(topic, msg, log_ns)
            elif topic in self.topic_cam:
                self.cam_stamps[self.topic_cam[topic]].append(_header_ns(bag, topic, msg, log_ns))
            elif topic == cfg.episode_topic:
                self.ep_t.append(stamp_to_ns(msg.header.stamp) or log_ns)
                self.ep_v.append(int(msg.episode))
        self.arrange_streams()

    def on_joint_state(self, topic: str, msg: Any, log_ns: int) -> None:
        t = _header_ns(self.bag, topic, msg, log_ns)
        self.js_t.append(t)
        self.js_q.append(self.positions(topic, t, msg.name, msg.position, 'joint state', (
            f'message joints: {list(msg.name)}, policy joints: {self.cfg.joint_names}')))

    def on_leader(self, topic: str, msg: Any, log_ns: int) -> None:
        t = _header_ns(self.bag, topic, msg, log_ns)
        q, reason = self.leader_joints.positions(msg.name, msg.position)
        if q is None:
            raise self.bag.error(topic, t, f'leader joint state unusable ({reason}); message '
                                 f'joints: {list(msg.name)}, leader joints for the policy\'s '
                                 f'{self.cfg.joint_names}: {self.leader_joints.joint_names}')
        self.lead_t.append(t)
        self.lead_q.append(q)

    def on_command(self, topic: str, msg: Any, log_ns: int) -> None:
        self.cmd_t.append(log_ns)   # Float64MultiArray has no header: the bag's log time
        self.cmd_q.append(self.positions(topic, log_ns, self.cmd_names, msg.data, 'command', (
            f'command_joint_names: {self.cmd_names}, {len(msg.data)} values')))

    def positions(self, topic: str, t: int, names, values, what: str, context: str):
        q, reason = self.joints.positions(names, values)
        if q is None:
            raise self.bag.error(topic, t, f'{what} unusable ({reason}); {context}')
        return q

    def on_trajectory(self, topic: str, msg: Any, log_ns: int) -> None:
        bag = self.bag
        t = stamp_to_ns(msg.header.stamp) or log_ns
        try:
            names, tfs, pos, _ = joint_trajectory_to_arrays(msg)
        except ValueError as err:
            raise bag.error(topic, t, f'malformed JointTrajectory: {err}') from err
        if len(tfs) == 0:
            return  # an empty trajectory changes nothing here
        idx, reason = self.joints.indices(names)
        if idx is None:
            raise bag.error(topic, t, f'trajectory unusable ({reason}); its joints: {names}')
        pos = pos[:, idx]
        if not np.all(np.isfinite(pos)) or not np.all(np.isfinite(tfs)):
            raise bag.error(topic, t, 'trajectory has non-finite positions or times')
        if np.any(np.diff(tfs) < 0):
            raise bag.error(topic, t, f'trajectory time_from_start not increasing: {tfs.tolist()}')
        self.traj_starts.append(t)
        self.trajs.append((tfs, pos))

    def arrange_streams(self) -> None:
        """The streams read as sorted arrays (duplicates dropped), frames ordered by stamp."""
        cfg, J = self.cfg, len(self.cfg.joint_names)
        if not self.js_t:
            raise self.empty(cfg.joint_states_topic, 'joint states')
        self.js_t_a, self.js_q_a = _dedupe_sorted(np.array(self.js_t, np.int64),
                                                  np.array(self.js_q).reshape(-1, J))
        if self.source == 'leader':
            if not self.lead_t:
                raise self.empty(cfg.leader_topic, 'leader joint states')
            self.lead_t_a, self.lead_q_a = _dedupe_sorted(np.array(self.lead_t, np.int64),
                                                          np.array(self.lead_q).reshape(-1, J))
        elif self.source == 'joint_states':
            pass
        elif self.cmd_type == FLOAT_ARRAY:
            if not self.cmd_t:
                raise self.empty(cfg.command_topic, 'command')
            self.cmd_t_a, self.cmd_q_a = _dedupe_sorted(np.array(self.cmd_t, np.int64),
                                                        np.array(self.cmd_q).reshape(-1, J))
            self.cmd_first = int(self.cmd_t_a[0])
        else:
            if not self.trajs:
                raise self.empty(cfg.command_topic, 'command (JointTrajectory)')
            order = np.argsort(np.array(self.traj_starts, np.int64), kind='stable')
            self.traj = _Trajectories(np.array(self.traj_starts, np.int64)[order],
                                      [self.trajs[i] for i in order])
            self.traj.prepare(self.state_at)
            self.cmd_first = int(self.traj.starts[0])
        self.cam_sorted: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for cam, stamps in self.cam_stamps.items():
            if not stamps:
                raise self.empty(cfg.cameras[cam], f'camera {cam!r}')
            st = np.array(stamps, np.int64)
            order = np.argsort(st, kind='stable')  # ordinal of each frame in reading order
            self.cam_sorted[cam] = (st[order], order)

    def state_at(self, t_ns: int) -> Optional[np.ndarray]:
        """Joint positions at t_ns, interpolated; None outside the joint states."""
        t, q = self.js_t_a, self.js_q_a
        if t_ns < t[0] or t_ns > t[-1]:
            return None
        return np.array([np.interp(t_ns, t, q[:, j]) for j in range(q.shape[1])])

    # ------------------------------------------------------------------ episodes
    def overlap(self) -> tuple[int, int]:
        """The span (ns) where every stream exists."""
        cfg = self.cfg
        starts = {cfg.joint_states_topic: int(self.js_t_a[0])}
        ends = {cfg.joint_states_topic: int(self.js_t_a[-1])}
        if self.source == 'command':
            starts[cfg.command_topic] = self.cmd_first
        elif self.source == 'leader':
            starts[cfg.leader_topic] = int(self.lead_t_a[0])
            ends[cfg.leader_topic] = int(self.lead_t_a[-1])
        else:       # the action at t is the state future_steps later: the grid ends that early
            ends[cfg.joint_states_topic] -= self.future_ns
        for cam, (st, _) in self.cam_sorted.items():
            starts[cfg.cameras[cam]] = int(st[0])
            ends[cfg.cameras[cam]] = int(st[-1])
        t0, t1 = max(starts.values()), min(ends.values())
        if t1 < t0:
            spans = '; '.join(f'{t} from {_sec(starts[t])} to {_sec(ends[t]) if t in ends else "end"}'
                              for t in starts)
            hint = (' (commands are on bag log time: record with --use-sim-time when the graph runs '
                    'on simulated time)' if self.cmd_type == FLOAT_ARRAY else '')
            raise self.bag.error(', '.join(starts), None, f'the streams never overlap: {spans}{hint}')
        return t0, t1

    @property
    def future_ns(self) -> int:
        return int(round(self.cfg.future_steps * self.cfg.dt_s * 1e9))

    def episode_grids(self, t0: int, t1: int) -> list[tuple[str, np.ndarray]]:
        """(name, grid stamps in ns) per episode: the TaskStatus segments (or the whole span)
        of at least min_episode_steps, on the dt_s grid."""
        cfg, bag = self.cfg, self.bag
        dt_ns = int(round(cfg.dt_s * 1e9))
        if cfg.episode_topic:
            if not self.ep_t:
                raise self.empty(cfg.episode_topic, 'episode (TaskStatus)')
            et, ev = _dedupe_sorted(np.array(self.ep_t, np.int64), np.array(self.ep_v, np.int64))
            change = np.flatnonzero(np.concatenate([[True], ev[1:] != ev[:-1]]))
            segments = []
            for i, c in enumerate(change):
                seg_end = int(et[change[i + 1]]) - 1 if i + 1 < len(change) else t1
                if self.source == 'joint_states' and i + 1 < len(change):
                    seg_end -= self.future_ns     # its actions stay in the episode (t1 already)
                segments.append((f'{bag.path}#ep{int(ev[c])}', max(t0, int(et[c])), min(t1, seg_end)))
        else:
            segments = [(str(bag.path), t0, t1)]
        grids = []
        for name, s, e in segments:
            n = (e - s) // dt_ns + 1 if e >= s else 0
            if n >= cfg.min_episode_steps:
                grids.append((name, s + dt_ns * np.arange(n, dtype=np.int64)))
        if not grids:
            raise bag.error(cfg.episode_topic or cfg.joint_states_topic, t0,
                            f'no episode of at least {cfg.min_episode_steps} steps of {cfg.dt_s}s in '
                            f'the span {_sec(t0)}..{_sec(t1)} where all streams exist '
                            f'({len(segments)} segment(s))')
        return grids

    # ------------------------------------------------------------------ pass 2
    def read_frames(self, grids) -> dict[str, list[np.ndarray]]:
        """Decodes the frames the grids pick (newest at or before each grid time); returns the
        picked frame ordinals per camera and grid (self.frames: ordinal -> RGB)."""
        cfg = self.cfg
        self.frames: dict[str, dict[int, np.ndarray]] = {cam: {} for cam in cfg.cameras}
        picks: dict[str, list[np.ndarray]] = {cam: [] for cam in cfg.cameras}
        for cam, (st, order) in self.cam_sorted.items():
            for _, g in grids:
                picks[cam].append(order[np.searchsorted(st, g, side='right') - 1])
        if not cfg.cameras:
            return picks
        needed = {cam: set(np.concatenate(p).tolist()) for cam, p in picks.items()}
        counters = {cam: 0 for cam in cfg.cameras}
        cam_conns = [c for t in cfg.cameras.values() for c in self.by_topic[t]]
        for conn, _log_ns, raw in self.reader.messages(connections=cam_conns):
            cam = self.topic_cam[conn.topic]
            ordinal = counters[cam]
            counters[cam] += 1
            if ordinal in needed[cam]:
                self.frames[cam][ordinal] = self.decode_frame(
                    cam, conn.topic, self.reader.deserialize(raw, conn.msgtype))
        return picks

    def decode_frame(self, cam: str, topic: str, msg: Any) -> np.ndarray:
        try:
            rgb = to_rgb8(msg, self.cam_types[cam] != IMAGE, self.cfg.image_hw)
        except (UnsupportedEncodingError, ImageFormatError) as err:
            raise self.bag.error(topic, stamp_to_ns(msg.header.stamp), str(err)) from err
        first = next(iter(self.frames[cam].values()), None)
        if first is not None and first.shape != rgb.shape:
            raise self.bag.error(topic, stamp_to_ns(msg.header.stamp),
                                 f'image size changed from {first.shape[:2]} to {rgb.shape[:2]}; '
                                 f'set image_hw to resize every frame')
        return rgb

    # ------------------------------------------------------------------ resample
    def resample(self, grids, picks) -> list[Episode]:
        """State interpolated at each grid time, action the command in force, images picked."""
        episodes = []
        base = int(self.js_t_a[0])
        xp = (self.js_t_a - base) * 1e-9
        for gi, (name, g) in enumerate(grids):
            x = (g - base) * 1e-9
            state = np.stack([np.interp(x, xp, q) for q in self.js_q_a.T], axis=1)
            if self.source == 'joint_states':
                xf = (g + self.future_ns - base) * 1e-9
                action = np.stack([np.interp(xf, xp, q) for q in self.js_q_a.T], axis=1)
            elif self.source == 'leader':
                lx = (self.lead_t_a - base) * 1e-9
                action = np.stack([np.interp(x, lx, q) for q in self.lead_q_a.T], axis=1)
            elif self.cmd_type == FLOAT_ARRAY:
                action = self.cmd_q_a[np.searchsorted(self.cmd_t_a, g, side='right') - 1]
            else:
                action = self.traj.at(g)
            if self.source != 'command' and not _moves(name, action, self.action_topic,
                                                       self.cfg.min_motion_rad):
                continue
            images = {cam: np.stack([self.frames[cam][int(o)] for o in picks[cam][gi]])
                      for cam in self.cfg.cameras}
            try:
                episodes.append(Episode(name=name, t=g * 1e-9, state=state.astype(np.float32),
                                        action=action.astype(np.float32), images=images))
            except ValueError as err:
                raise DatasetError(f'{self.bag.path}: {err}') from err
        if not episodes:
            raise self.bag.error(self.action_topic, None,
                                 f'no episode moves by {self.cfg.min_motion_rad} rad or more '
                                 f'(min_motion_rad) in its actions ({self.source}): nothing to '
                                 f'learn from this bag')
        return episodes



def _moves(name: str, action: np.ndarray, topic: str, min_motion_rad: float) -> bool:
    """Whether an episode's actions move by min_motion_rad (the largest range of a joint); if
    not, a line naming it (it is skipped)."""
    motion = float(np.max(np.ptp(action, axis=0))) if len(action) else 0.0
    if motion >= min_motion_rad:
        return True
    print(f'[dataset] {name}: skipped, its actions from {topic} move by {motion:.4g} rad at most '
          f'(min_motion_rad {min_motion_rad})', file=sys.stderr)
    return False


# ---------------------------------------------------------------------------------------------
# Cache and the public entry point


def _save_cache(file: Path, episodes: list[Episode]) -> None:
    arrays: dict[str, np.ndarray] = {}
    meta = {'v': CACHE_VERSION, 'episodes': []}
    for i, ep in enumerate(episodes):
        meta['episodes'].append({'name': ep.name, 'cameras': list(ep.images)})
        arrays[f'e{i}__t'] = ep.t
        arrays[f'e{i}__state'] = ep.state
        arrays[f'e{i}__action'] = ep.action
        for c, (cam, img) in enumerate(ep.images.items()):
            arrays[f'e{i}__img{c}'] = img
    arrays['meta'] = np.array(json.dumps(meta))
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.parent / f'.{file.name}.{os.getpid()}.tmp'
    try:
        with open(tmp, 'wb') as f:
            np.savez(f, **arrays)
        os.replace(tmp, file)
    finally:
        if tmp.exists():
            tmp.unlink()


def _load_cache(file: Path) -> Optional[list[Episode]]:
    try:
        with np.load(file, allow_pickle=False) as z:
            meta = json.loads(str(z['meta']))
            if meta.get('v') != CACHE_VERSION:
                return None
            return [Episode(name=m['name'], t=z[f'e{i}__t'], state=z[f'e{i}__state'],
                            action=z[f'e{i}__action'],
                            images={cam: z[f'e{i}__img{c}'] for c, cam in enumerate(m['cameras'])})
                    for i, m in enumerate(meta['episodes'])]
    except (OSError, ValueError, KeyError) as err:  # damaged or foreign file: decode again
        print(f'[dataset] ignoring unreadable cache {file}: {err}', file=sys.stderr)
        return None


def load_episodes(bag_paths: Sequence[str | os.PathLike] | str | os.PathLike, cfg: DatasetConfig,
                  cache_dir: Optional[str | os.PathLike] = None, progress: bool = True
                  ) -> tuple[list[Episode], EpisodeSetMeta]:
    """Bags (folders, or folders of bags) -> (episodes, EpisodeSetMeta).

    Each bag's episodes are cached in `cache_dir` (default: <first bag's parent>/.dp_cache) as one
    .npz named after the bag and keyed by its files and `cfg`; a later call with the same bags and
    settings loads them without reading the bag. Raises DatasetError on bad input.
    """
    if isinstance(bag_paths, (str, os.PathLike)):
        bag_paths = [bag_paths]
    bags = find_bags(bag_paths)
    cache = Path(cache_dir) if cache_dir is not None else bags[0].parent / '.dp_cache'
    episodes: list[Episode] = []
    keys = []
    t_start = time.monotonic()
    for n, bag in enumerate(bags, 1):
        key = _cache_key(bag, cfg)
        keys.append(key)
        file = cache / f'{bag.name}-{key[:20]}.npz'
        t0 = time.monotonic()
        eps = _load_cache(file) if file.is_file() else None
        source = 'cache'
        if eps is None:
            eps = decode_bag(bag, cfg)
            _save_cache(file, eps)
            source = f'decoded in {time.monotonic() - t0:.1f}s'
        episodes.extend(eps)
        if progress:
            print(f'[dataset] {n}/{len(bags)} {bag}: {len(eps)} episode(s), '
                  f'{sum(len(e) for e in eps)} steps ({source})', file=sys.stderr)

    try:
        image_hw = common_image_hw(episodes)
    except ValueError as err:
        raise DatasetError(f'{err}; set image_hw so that every camera has one size') from None
    meta = EpisodeSetMeta(joint_names=list(cfg.joint_names), camera_names=cfg.camera_names,
                          image_hw=image_hw, dt_s=float(cfg.dt_s),
                          fingerprint=hashlib.sha256(''.join(keys).encode()).hexdigest()[:16])
    if cfg.robot_mask:
        try:
            episodes, meta = mask_robot(episodes, meta, cfg.urdf, cfg.robot_mask)
        except ValueError as err:
            raise DatasetError(f'robot_mask ({cfg.urdf}): {err}') from None
    if cfg.action_space == 'ee_pose':
        try:
            episodes, meta = to_end_effector(episodes, meta, cfg.urdf, cfg.tip_link)
        except ValueError as err:
            raise DatasetError(f'action_space ee_pose ({cfg.urdf}, tip {cfg.tip_link}): {err}') \
                from None
    if progress:
        print(f'[dataset] {len(episodes)} episode(s), {sum(len(e) for e in episodes)} samples from '
              f'{len(bags)} bag(s) in {time.monotonic() - t_start:.1f}s'
              f'{"; end-effector poses of " + cfg.tip_link if meta.action_space else ""}',
              file=sys.stderr)
    return episodes, meta


def infer_joint_names(bag: str | os.PathLike, topic: str = '/joint_states',
                      distro: str = 'kilted') -> list[str]:
    """The joint names of the first sensor_msgs/JointState on `topic` (message order): the
    default joint order when none is configured. Raises DatasetError when there is none."""
    from rosbags.highlevel import AnyReader

    from dp_common.bags import typestore

    path = Path(bag)
    with AnyReader([path], default_typestore=typestore(distro)) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            present = ', '.join(sorted({c.topic for c in reader.connections})) or 'none'
            raise DatasetError(f'{path}: topic {topic}: joint states topic not found in the bag; '
                               f'topics present: {present}')
        for conn, _, raw in reader.messages(connections=conns):
            names = [str(n) for n in reader.deserialize(raw, conn.msgtype).name]
            if names:
                return names
    raise DatasetError(f'{path}: topic {topic}: no JointState with joint names')
