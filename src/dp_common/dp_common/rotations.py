"""Rotations and end-effector pose vectors (numpy; ROS-free).

The 6D rotation representation (Zhou et al. 2019, "On the Continuity of Rotation Representations
in Neural Networks") is what Diffusion Policy uses for end-effector actions: continuous (unlike
quaternions, which flip sign, and Euler angles, which wrap), so a network can regress it. We follow
the convention of the implementation Diffusion Policy calls (pytorch3d's matrix_to_rotation_6d /
rotation_6d_to_matrix): the 6 numbers are the first two ROWS of the rotation matrix, and a matrix
comes back by Gram-Schmidt on them, the third row their cross product. (Zhou et al. write it with
columns; rows of R are the columns of R^T, the same construction.)

An end-effector pose vector is [x, y, z, r1..r6] (9 numbers: position in m, then rot6d).

Quaternions are (w, x, y, z) as transforms3d and geometry_msgs/Quaternion's fields name them
(the message orders them x, y, z, w: `quat_to_msg_order` / `quat_from_msg_order`).
"""
from __future__ import annotations

import numpy as np
import transforms3d

__all__ = ['matrix_to_rot6d', 'rot6d_to_matrix', 'matrix_to_quat', 'quat_to_matrix',
           'pose_to_vector', 'vector_to_pose', 'rotation_log', 'POSE_VECTOR_DIM']

POSE_VECTOR_DIM = 9


def matrix_to_rot6d(R) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 6): their first two rows."""
    R = np.asarray(R, dtype=np.float64)
    return R[..., :2, :].reshape(R.shape[:-2] + (6,)).copy()


def rot6d_to_matrix(d6) -> np.ndarray:
    """(..., 6) -> (..., 3, 3) rotation matrices: Gram-Schmidt on the two rows (any nonzero,
    non-parallel pair maps to a rotation; an exact rot6d of a rotation maps back to it)."""
    d6 = np.asarray(d6, dtype=np.float64)
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = a1 / np.linalg.norm(a1, axis=-1, keepdims=True)
    b2 = a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1
    b2 = b2 / np.linalg.norm(b2, axis=-1, keepdims=True)
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=-2)


def matrix_to_quat(R) -> np.ndarray:
    """(..., 3, 3) -> (..., 4) unit quaternions (w, x, y, z), w >= 0 (transforms3d)."""
    R = np.asarray(R, dtype=np.float64)
    flat = R.reshape(-1, 3, 3)
    q = np.array([transforms3d.quaternions.mat2quat(m) for m in flat]).reshape(R.shape[:-2] + (4,))
    return np.where(q[..., :1] < 0, -q, q)


def quat_to_matrix(q) -> np.ndarray:
    """(..., 4) quaternions (w, x, y, z), any norm > 0 -> (..., 3, 3) (transforms3d)."""
    q = np.asarray(q, dtype=np.float64)
    flat = q.reshape(-1, 4)
    flat = flat / np.linalg.norm(flat, axis=-1, keepdims=True)
    return np.array([transforms3d.quaternions.quat2mat(v) for v in flat]).reshape(q.shape[:-1] + (3, 3))


def pose_to_vector(T) -> np.ndarray:
    """(..., 4, 4) homogeneous poses -> (..., 9) [position, rot6d]."""
    T = np.asarray(T, dtype=np.float64)
    return np.concatenate([T[..., :3, 3], matrix_to_rot6d(T[..., :3, :3])], axis=-1)


def vector_to_pose(v) -> np.ndarray:
    """(..., 9) [position, rot6d] -> (..., 4, 4) homogeneous poses."""
    v = np.asarray(v, dtype=np.float64)
    if v.shape[-1] != POSE_VECTOR_DIM:
        raise ValueError(f'a pose vector has {POSE_VECTOR_DIM} numbers (xyz + rot6d), got '
                         f'{v.shape[-1]}')
    T = np.zeros(v.shape[:-1] + (4, 4))
    T[..., :3, :3] = rot6d_to_matrix(v[..., 3:])
    T[..., :3, 3] = v[..., :3]
    T[..., 3, 3] = 1.0
    return T


def rotation_log(R) -> np.ndarray:
    """(..., 3, 3) rotations -> (..., 3) rotation vectors (axis * angle, angle in [0, pi]): the
    orientation error of inverse kinematics. Accurate near 0 and near pi."""
    R = np.asarray(R, dtype=np.float64)
    cos = np.clip((np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    skew = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0],
                     R[..., 1, 0] - R[..., 0, 1]], axis=-1)                       # 2 sin(a) axis
    sin = np.sin(angle)
    small = sin < 1e-6
    with np.errstate(invalid='ignore', divide='ignore'):
        general = skew * (angle / (2.0 * np.where(small, 1.0, sin)))[..., None]
    out = np.where(small[..., None], 0.5 * skew, general)        # near 0: angle ~ sin(angle)
    near_pi = small & (cos < 0.0)
    if np.any(near_pi):
        # R = 2 a a^T - I at angle pi: the axis from the largest diagonal term, sign from skew
        for idx in zip(*np.nonzero(near_pi)) if near_pi.ndim else [()]:
            M = R[idx]
            k = int(np.argmax(np.diag(M)))
            a = M[:, k] + np.eye(3)[k]
            a = a / np.linalg.norm(a)
            if np.dot(a, skew[idx]) < 0.0:        # below pi the skew part gives the direction
                a = -a
            out[idx] = a * angle[idx]
    return out
