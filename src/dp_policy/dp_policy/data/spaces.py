"""Action and observation spaces of a training set: joint positions (as recorded) or end-effector
poses computed from them (dp_common.ee_space); and images with the robot painted out
(dp_common.robot_mask), so that a policy sees the scene, not the arm that recorded it.

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

__all__ = ['ACTION_SPACES', 'to_end_effector', 'mask_robot', 'space_of', 'fit_normalizer']


def fit_normalizer(data, action_space: dict | None):
    """The MinMaxNormalizer of (..., D) states or actions of a training set. Joint space: each
    column's range to [-1, 1]. End-effector space, as Diffusion Policy normalises absolute
    end-effector actions (diffusion_policy/common/normalize_util.py,
    robomimic_abs_action_only_normalizer_from_stat): the position by its range, the 6D rotation
    not at all (identity: its entries already lie in [-1, 1], and a range normalisation would
    blow a column that varies over 0.07 up to the weight of the whole workspace, the network then
    fitting the rotation at the expense of the position); a column that never changes stays
    pinned to its constant either way."""
    from dp_policy.data.normalizer import MinMaxNormalizer
    norm = MinMaxNormalizer.fit(data)
    if action_space is None:
        return norm
    lo, hi = norm.min.copy(), norm.max.copy()
    for i, column in enumerate(action_space['columns']):
        if column.startswith('r') and not norm.degenerate[i]:
            lo[i], hi[i] = -1.0, 1.0
    return MinMaxNormalizer(lo, hi)


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


def mask_robot(episodes: Sequence[Episode], meta: EpisodeSetMeta, urdf: str,
               specs: dict) -> tuple[list[Episode], EpisodeSetMeta]:
    """Paint the links moved by the episodes' joints out of the cameras of `specs` ({camera:
    dp_common.robot_mask.mask_spec}), each frame with the joint state of its step (the state
    columns must still be joint positions: before to_end_effector). ValueError: the URDF, a
    frame or a joint does not fit."""
    from dp_common.robot_mask import RobotMask
    if meta.action_space is not None:
        raise ValueError('mask the images before turning the episodes into end-effector poses')
    masks = {cam: RobotMask.from_spec(urdf, meta.joint_names, spec, meta.image_hw)
             for cam, spec in specs.items()}
    out = [dataclasses.replace(ep, images={cam: masks[cam].paint_frames(im, ep.state)
                                           if cam in masks else im
                                           for cam, im in ep.images.items()})
           for ep in episodes]
    return out, dataclasses.replace(meta, robot_mask={c: dict(s) for c, s in specs.items()})
