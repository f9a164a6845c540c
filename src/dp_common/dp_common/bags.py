"""rosbags type stores that know dp_ros's own interfaces (dp_msgs), for reading and writing bags.

`rosbags` ships the standard ROS 2 message types; dp_msgs types are registered here from their
`.msg` text, found in the installed package (share/dp_msgs/msg via ament_index_python) or, in a
source checkout without an install space, in src/dp_msgs/msg. Type hashes computed by rosbags from
that text match rosidl's, so bags written with this store replay with `ros2 bag play`.

ROS-free: no rclpy import (ament_index_python is plain Python, and optional).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

__all__ = ['dp_msgs_dir', 'typestore', 'BagWriter', 'msgs']

_STORES = {'kilted': 'ROS2_KILTED', 'jazzy': 'ROS2_JAZZY', 'humble': 'ROS2_HUMBLE',
           'latest': 'LATEST'}


def dp_msgs_dir() -> Optional[Path]:
    """The folder holding dp_msgs' .msg files: the installed share/dp_msgs/msg, else the source."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        try:
            share = Path(get_package_share_directory('dp_msgs')) / 'msg'
            if share.is_dir():
                return share
        except (PackageNotFoundError, ValueError, LookupError, OSError):
            pass
    except ImportError:
        pass
    # src/dp_common/dp_common/bags.py -> src/dp_msgs/msg (resolve: symlink installs)
    src = Path(__file__).resolve().parents[2] / 'dp_msgs' / 'msg'
    return src if src.is_dir() else None


@functools.lru_cache(maxsize=None)
def typestore(distro: str = 'kilted'):
    """A rosbags Typestore of `distro` ('kilted', 'jazzy', 'humble', 'latest') plus dp_msgs.

    dp_msgs types are skipped silently when their .msg files cannot be found (a bag that embeds
    its definitions, as rosbag2 >= Iron records them, is read without this store anyway).
    """
    from rosbags.typesys import Stores, get_types_from_msg
    from rosbags.typesys import get_typestore as _get

    try:
        store = _get(getattr(Stores, _STORES[distro]))
    except KeyError:
        raise ValueError(f'unknown ROS distro {distro!r}; choose one of {sorted(_STORES)}') from None
    folder = dp_msgs_dir()
    if folder is not None:
        types = {}
        for path in sorted(folder.glob('*.msg')):
            types.update(get_types_from_msg(path.read_text(), f'dp_msgs/msg/{path.stem}'))
        store.register(types)
    return store


class BagWriter:
    """A small rosbag2 writer on top of rosbags': one connection per topic, added on first write.

        with BagWriter('demo_bag', storage='mcap') as w:
            w.write('/joint_states', msg, log_time_ns)

    Messages are rosbags dataclasses of `store` (default: `typestore()`), for example
    `typestore().types['sensor_msgs/msg/JointState'](...)`; `msgs()` builds the common ones.
    """

    def __init__(self, path: str | Path, storage: str = 'sqlite3', store=None) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugins = {'sqlite3': StoragePlugin.SQLITE3, 'mcap': StoragePlugin.MCAP}
        if storage not in plugins:
            raise ValueError(f"storage must be 'sqlite3' or 'mcap', got {storage!r}")
        self.store = store if store is not None else typestore()
        self._writer = Writer(Path(path), version=9, storage_plugin=plugins[storage])
        self._conns: dict[str, object] = {}

    def __enter__(self) -> 'BagWriter':
        self._writer.open()
        return self

    def __exit__(self, *exc) -> None:
        self._writer.close()

    def add_topic(self, topic: str, msgtype: str):
        """The topic's connection, added to the bag on first use (a topic may stay empty)."""
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=self.store)
            self._conns[topic] = conn
        return conn

    def write(self, topic: str, msg: object, log_ns: int) -> None:
        msgtype = msg.__msgtype__
        self.write_raw(topic, msgtype, self.store.serialize_cdr(msg, msgtype), log_ns)

    def write_raw(self, topic: str, msgtype: str, data: bytes, log_ns: int) -> None:
        """Write already serialized CDR bytes (what a recorder gets from rclpy)."""
        self._writer.write(self.add_topic(topic, msgtype), int(log_ns), data)


class msgs:
    """Builders of rosbags message dataclasses for the types dp_ros records (tests, tools)."""

    @staticmethod
    def _t(name: str, store=None):
        return (store or typestore()).types[name]

    @classmethod
    def header(cls, t_ns: int, frame_id: str = '', store=None):
        Time = cls._t('builtin_interfaces/msg/Time', store)
        sec, nanosec = divmod(int(t_ns), 1_000_000_000)
        return cls._t('std_msgs/msg/Header', store)(stamp=Time(sec=sec, nanosec=nanosec),
                                                    frame_id=frame_id)

    @classmethod
    def joint_state(cls, t_ns: int, names, positions, velocities=(), store=None):
        import numpy as np
        return cls._t('sensor_msgs/msg/JointState', store)(
            header=cls.header(t_ns, store=store), name=[str(n) for n in names],
            position=np.asarray(positions, np.float64), velocity=np.asarray(velocities, np.float64),
            effort=np.zeros(0, np.float64))

    @classmethod
    def image(cls, t_ns: int, fields: dict, frame_id: str = 'camera', store=None):
        """`fields` as made by dp_common.images.image_fields (a padded step may be patched in)."""
        import numpy as np
        return cls._t('sensor_msgs/msg/Image', store)(
            header=cls.header(t_ns, frame_id, store), height=fields['height'], width=fields['width'],
            encoding=fields['encoding'], is_bigendian=fields['is_bigendian'], step=fields['step'],
            data=np.asarray(fields['data'], np.uint8))

    @classmethod
    def compressed_image(cls, t_ns: int, fields: dict, frame_id: str = 'camera', store=None):
        """`fields` as made by dp_common.images.compressed_fields."""
        import numpy as np
        return cls._t('sensor_msgs/msg/CompressedImage', store)(
            header=cls.header(t_ns, frame_id, store), format=fields['format'],
            data=np.asarray(fields['data'], np.uint8))

    @classmethod
    def float64_multi_array(cls, values, store=None):
        import numpy as np
        layout = cls._t('std_msgs/msg/MultiArrayLayout', store)(dim=[], data_offset=0)
        return cls._t('std_msgs/msg/Float64MultiArray', store)(
            layout=layout, data=np.asarray(values, np.float64))

    @classmethod
    def joint_trajectory(cls, t_ns: int, names, t_from_start_s, positions, store=None):
        """t_ns 0 gives the zero stamp ("start now")."""
        import numpy as np
        Point = cls._t('trajectory_msgs/msg/JointTrajectoryPoint', store)
        Duration = cls._t('builtin_interfaces/msg/Duration', store)
        points = []
        for tfs, q in zip(t_from_start_s, positions):
            sec, nanosec = divmod(int(round(float(tfs) * 1e9)), 1_000_000_000)
            empty = np.zeros(0, np.float64)
            points.append(Point(positions=np.asarray(q, np.float64), velocities=empty,
                                accelerations=empty, effort=empty,
                                time_from_start=Duration(sec=sec, nanosec=nanosec)))
        return cls._t('trajectory_msgs/msg/JointTrajectory', store)(
            header=cls.header(t_ns, store=store), joint_names=[str(n) for n in names], points=points)

    @classmethod
    def task_status(cls, t_ns: int, episode: int, done: bool = False, store=None):
        Point = cls._t('geometry_msgs/msg/Point', store)
        return cls._t('dp_msgs/msg/TaskStatus', store)(
            header=cls.header(t_ns, store=store), episode=int(episode), episode_time_s=0.0,
            target=Point(x=0.0, y=0.0, z=0.0), distance_m=0.0, success=False,
            obstacle_contact=False, min_clearance_m=float('inf'), side='', done=bool(done))
