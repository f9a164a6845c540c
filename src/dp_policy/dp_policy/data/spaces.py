"""Action and observation spaces of a training set: joint positions (as recorded) or end-effector
poses computed from them (dp_common.ee_space).

`to_end_effector(episodes, meta, urdf, tip_link)`: each episode's state (measured joint
positions) and action (commanded joint positions) become the pose vectors [x, y, z, rot6d] of
`tip_link` by the forward kinematics of `urdf` (the arm that recorded them); the meta records
the space (the checkpoint stores it). Images, times and names stay.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from dp_common.ee_space import ACTION_SPACES, EndEffectorSpace
from dp_policy.data.episode import Episode, EpisodeSetMeta

__all__ = ['ACTION_SPACES', 'to_end_effector', 'space_of']


def space_of(meta_or_spec) -> EndEffectorSpace | None:
    """The EndEffectorSpace of an EpisodeSetMeta or a stored spec dict (None: joint space)."""
    spec = getattr(meta_or_spec, 'action_space', meta_or_spec)
    return None if spec is None else EndEffectorSpace.from_dict(spec)


def to_end_effector(episodes: Sequence[Episode], meta: EpisodeSetMeta, urdf: str,
                    tip_link: str) -> tuple[list[Episode], EpisodeSetMeta]:
    """Joint-space episodes -> end-effector episodes (module docstring). Raises ValueError when
    the URDF chain to tip_link does not move exactly the episodes' joints."""
    if meta.action_space is not None:
        raise ValueError(f'the episodes are already in the {meta.space_kind} space')
    space = EndEffectorSpace(urdf, tip_link, meta.joint_names)
    out = [dataclasses.replace(ep, state=space.vectors(ep.state).astype(np.float32),
                               action=space.vectors(ep.action).astype(np.float32))
           for ep in episodes]
    return out, dataclasses.replace(meta, action_space=space.to_dict())
