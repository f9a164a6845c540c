"""Episode: one demonstration resampled onto the policy's time grid (ROS-free).

This is the contract between the rosbag2 reader (`dataset.py`, which produces episodes) and the
training code (`trainer.py`, which consumes them). It is not a torch Dataset and knows nothing
about bags: it is plain arrays, already aligned on header stamps and resampled to `dt_s`.

Units: seconds, radians. Joint columns follow `joint_names`, camera keys follow `camera_names`
of the dataset the episode belongs to.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass
class Episode:
    """One demonstration on a uniform time grid."""

    name: str                      # e.g. "demos/ep_0007" or "bag#segment3"; used in error messages
    t: np.ndarray                  # (T,) float64, seconds (bag stamps), uniform spacing dt_s
    state: np.ndarray              # (T, S) float32, measured joint positions (rad), joint_names order
    action: np.ndarray             # (T, A) float32, demonstrator's commanded positions (rad)
    images: dict[str, np.ndarray] = field(default_factory=dict)  # cam -> (T, H, W, 3) uint8 RGB

    def __post_init__(self) -> None:
        T = len(self.t)
        if T == 0:
            raise ValueError(f'episode {self.name}: empty')
        if self.state.shape[0] != T or self.action.shape[0] != T:
            raise ValueError(f'episode {self.name}: state {self.state.shape} / action '
                             f'{self.action.shape} do not match {T} time steps')
        for cam, img in self.images.items():
            if img.shape[0] != T or img.ndim != 4 or img.shape[-1] != 3 or img.dtype != np.uint8:
                raise ValueError(f'episode {self.name}: camera {cam} has images {img.shape} '
                                 f'{img.dtype}, expected ({T}, H, W, 3) uint8')
        for arr_name in ('state', 'action'):
            arr = getattr(self, arr_name)
            if not np.all(np.isfinite(arr)):
                bad = int(np.argwhere(~np.isfinite(arr))[0][0])
                raise ValueError(f'episode {self.name}: non-finite {arr_name} at t={self.t[bad]:.3f}s')

    def __len__(self) -> int:
        return len(self.t)


def common_image_hw(episodes) -> tuple[int, int] | None:
    """The (H, W) that every camera of every episode has (None without cameras); ValueError
    naming the first episode and camera that differ."""
    hw = None
    for ep in episodes:
        for cam, img in ep.images.items():
            this = (int(img.shape[1]), int(img.shape[2]))
            if hw is None:
                hw = this
            elif this != hw:
                raise ValueError(f'{ep.name}: camera {cam!r} images are {this}, others {hw}')
    return hw


@dataclass
class EpisodeSetMeta:
    """What every episode of a set shares; goes into the checkpoint."""

    joint_names: list[str]         # state and action columns
    camera_names: list[str]        # image keys (may be empty: state-only policy)
    image_hw: tuple[int, int] | None  # (H, W) of every camera after decoding, None without cameras
    dt_s: float                    # grid spacing (0.1 s = 10 Hz by default)
    fingerprint: str = ''          # hash of the source bags and decode settings
    # None: state and action columns are the joints (joint_names order). An end-effector space
    # (dp_common.ee_space.EndEffectorSpace.to_dict(): kind 'ee_pose', URDF, tip link, the joints
    # it was computed from): state and action are tip pose vectors [x, y, z, rot6d] (spaces.py).
    action_space: Optional[dict] = None
    # None, or {camera name: dp_common.robot_mask.mask_spec}: the moving links were painted out
    # of those cameras' images (spaces.mask_robot); the policy node paints its own robot out.
    robot_mask: Optional[dict] = None

    @property
    def dim(self) -> int:
        """Columns of state and action."""
        return len(self.joint_names) if self.action_space is None else len(self.action_space['columns'])

    @property
    def space_kind(self) -> str:
        return 'joint' if self.action_space is None else str(self.action_space['kind'])
