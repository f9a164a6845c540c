"""End-effector space of one arm: joint positions <-> end-effector pose vectors (numpy; ROS-free).

A policy trained with `action_space: ee_pose` observes and acts in pose vectors
[x, y, z, r1..r6] (dp_common.rotations: position in m, then the 6D rotation, the first two rows
of the rotation matrix) of the link `tip_link` in the URDF's root frame, instead of joint
positions. Training turns the demonstrations' joint states and commands into pose vectors with
the forward kinematics of the arm that recorded them; at run time the policy node turns the
measured joint states into pose vectors with the forward kinematics of the arm it runs on, and
the follower turns the chunk's poses back into joint positions with that arm's inverse
kinematics (damped least squares inside the joint limits, warm-started along the chunk). The
two arms need not be the same: a checkpoint trained on one arm's demonstrations can drive
another whose tip can reach the same poses (cross-embodiment), provided both URDFs put the tip
in the same root frame.

    space = EndEffectorSpace(urdf_text, 'tool0', ['joint1', 'joint2', 'joint3'])
    v = space.vectors(q)                    # (..., 9)
    ik = space.joint_path(v_chunk, q_start)  # IK along a chunk: q (N, n), errors (N,)

`to_dict()` is what a checkpoint stores (kind, tip link, root frame, joints, the URDF text);
`EndEffectorSpace.from_dict` rebuilds it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from dp_common.kinematics import KinematicChain
from dp_common.rotations import POSE_VECTOR_DIM, pose_to_vector, vector_to_pose

__all__ = ['ACTION_SPACES', 'EE_COLUMNS', 'EndEffectorSpace', 'IkPath', 'read_urdf']

ACTION_SPACES = ('joint', 'ee_pose')
EE_COLUMNS = ('x', 'y', 'z', 'r11', 'r12', 'r13', 'r21', 'r22', 'r23')   # rot6d: rows 1, 2 of R


def read_urdf(urdf: Union[str, Path]) -> str:
    """URDF text from a path or from the text itself."""
    text = str(urdf)
    if text.lstrip().startswith('<'):
        return text
    path = Path(text)
    if not path.is_file():
        raise ValueError(f'URDF file not found: {path}')
    return path.read_text()


@dataclass
class IkPath:
    q: np.ndarray                   # (N, n) joint positions, always inside the URDF limits
    position_error_m: np.ndarray    # (N,) |p_target - p(q)|
    orientation_error_rad: np.ndarray  # (N,) angle of R_target R(q)^T

    def worst(self) -> tuple[float, float]:
        return (float(np.max(self.position_error_m, initial=0.0)),
                float(np.max(self.orientation_error_rad, initial=0.0)))


class EndEffectorSpace:
    """Forward and inverse kinematics between `joint_names` (the order of q's columns) and the
    pose vector of `tip_link` in the URDF's root frame."""

    KIND = 'ee_pose'

    def __init__(self, urdf: Union[str, Path], tip_link: str,
                 joint_names: Optional[Sequence[str]] = None) -> None:
        self.urdf = read_urdf(urdf)
        self.tip_link = str(tip_link)
        self.chain = KinematicChain.from_urdf(self.urdf, self.tip_link)
        names = list(self.chain.joint_names if joint_names is None else joint_names)
        if sorted(names) != sorted(self.chain.joint_names):
            raise ValueError(f'the URDF chain from {self.root_frame!r} to {self.tip_link!r} moves '
                             f'joints {self.chain.joint_names}; the joints given are {names}')
        self.joint_names = names
        # columns of q (joint_names order) -> the chain's order, and back
        self._to_chain = np.array([names.index(n) for n in self.chain.joint_names])
        self._from_chain = np.argsort(self._to_chain)

    @property
    def root_frame(self) -> str:
        return self.chain.link_names[0]

    @property
    def dim(self) -> int:
        return POSE_VECTOR_DIM

    @property
    def lower(self) -> np.ndarray:
        return self.chain.lower[self._from_chain]

    @property
    def upper(self) -> np.ndarray:
        return self.chain.upper[self._from_chain]

    def restrict_limits(self, lower, upper) -> None:
        """Narrow the joint limits inverse kinematics keeps to (joint_names order; e.g. the
        follower's, inside the URDF's)."""
        lo = np.asarray(lower, dtype=np.float64)[self._to_chain]
        hi = np.asarray(upper, dtype=np.float64)[self._to_chain]
        self.chain.lower = np.maximum(self.chain.lower, lo)
        self.chain.upper = np.minimum(self.chain.upper, hi)

    def pose(self, q) -> np.ndarray:
        """(..., n) joint positions (joint_names order) -> (..., 4, 4) tip poses."""
        q = np.asarray(q, dtype=np.float64)
        if q.shape[-1] != len(self.joint_names):
            raise ValueError(f'{q.shape[-1]} joint values for {len(self.joint_names)} joints '
                             f'{self.joint_names}')
        return self.chain.pose(q[..., self._to_chain])

    def vectors(self, q) -> np.ndarray:
        """(..., n) joint positions (joint_names order) -> (..., 9) pose vectors of the tip."""
        return pose_to_vector(self.pose(q))

    def joint_path(self, vectors, q_start, *, position_tol_m: float = 1e-5,
                   orientation_tol_rad: float = 1e-4, max_iterations: int = 50,
                   orientation_weight: float = 0.2,
                   give_up: Optional[tuple[float, float]] = None) -> IkPath:
        """Inverse kinematics along (N, 9) pose vectors, each solve warm-started from the
        previous solution (the first from q_start, joint_names order): (N, n) joint positions,
        each inside the limits, with the pose errors left (an arm with fewer than 6 joints
        matches what it can: a planar arm x, y and the rotation about its axes).
        give_up (position m, orientation rad): stop after the first pose left farther than
        that (the path returned is then shorter than the targets)."""
        targets = vector_to_pose(np.asarray(vectors, dtype=np.float64).reshape(-1, POSE_VECTOR_DIM))
        q = np.asarray(q_start, dtype=np.float64)[self._to_chain]
        out_q, pe, oe = [], [], []
        for T in targets:
            r = self.chain.solve_ik(T, q, position_tol_m=position_tol_m,
                                    orientation_tol_rad=orientation_tol_rad,
                                    max_iterations=max_iterations,
                                    orientation_weight=orientation_weight)
            q = r.q
            out_q.append(r.q[self._from_chain])
            pe.append(r.position_error_m)
            oe.append(r.orientation_error_rad)
            if give_up is not None and (r.position_error_m > give_up[0] or
                                        r.orientation_error_rad > give_up[1]):
                break
        n = len(self.joint_names)
        return IkPath(np.array(out_q).reshape(-1, n), np.array(pe), np.array(oe))

    def to_dict(self) -> dict:
        return {'kind': self.KIND, 'tip_link': self.tip_link, 'root_frame': self.root_frame,
                'joint_names': list(self.joint_names), 'columns': list(EE_COLUMNS),
                'urdf': self.urdf}

    @classmethod
    def from_dict(cls, d: dict) -> 'EndEffectorSpace':
        if d.get('kind') != cls.KIND:
            raise ValueError(f"not an end-effector space: kind {d.get('kind')!r}")
        return cls(d['urdf'], d['tip_link'], d.get('joint_names'))
