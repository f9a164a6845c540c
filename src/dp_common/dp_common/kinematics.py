"""Forward kinematics of a serial chain read from a URDF (numpy; ROS-free).

What it is: `KinematicChain.from_urdf(path_or_xml, tip='tool0')` parses the URDF's joints (fixed,
revolute, continuous, prismatic; origin xyz + rpy, axis) from the root link down to `tip` and
computes, for joint positions q (any leading batch shape, joints in the chain's order
`joint_names`), the pose of every link on the chain in the root frame:

    chain = KinematicChain.from_urdf('arm.urdf', tip='tool0')
    T = chain.link_poses(q)          # (..., L, 4, 4), L = len(chain.link_names)
    p = chain.position(q, 'tool0')   # (..., 3)

URDF conventions (http://wiki.ros.org/urdf/XML/joint): a joint's <origin> places the child frame
in the parent frame, rpy are fixed-axis roll, pitch, yaw (R = Rz(yaw) Ry(pitch) Rx(roll)), and
the motion is about / along <axis> in the child frame (default x). Rotations via transforms3d.

Where it is checked: against MuJoCo's body and site positions of the embedded arm, whose MJCF is
kept consistent with the same URDF (src/dp_sim/test/test_kinematics.py).

Inverse kinematics (`solve_ik`, `solve_ik_path`): damped least squares on the geometric Jacobian
(`jacobian`), position and orientation weighted, every iterate clipped into the joint limits (so a
solution is never outside them, reached or not), warm-started along a path, with optional random
restarts where a start ends in a local minimum. For an arm with fewer
than 6 joints only the pose components it can reach are matched (a planar arm: x, y and yaw);
targets that came from the same kind of arm are reached exactly.

What it is not: collision geometry, or a URDF validator (mimic, floating and planar joints on the
chain are refused with a message; elsewhere in the file they are ignored).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import transforms3d

from dp_common.rotations import rotation_log

__all__ = ['IkResult', 'KinematicChain', 'UrdfJoint', 'origin_transform', 'parse_joints']

SUPPORTED = ('fixed', 'revolute', 'continuous', 'prismatic')


@dataclass
class UrdfJoint:
    name: str
    type: str
    parent: str
    child: str
    origin: np.ndarray          # (4, 4) child frame in the parent frame at q = 0
    axis: np.ndarray            # (3,) unit, in the child frame
    lower: float = -np.inf
    upper: float = np.inf
    velocity: float = np.inf     # <limit velocity> (rad/s or m/s); inf where not given


def origin_transform(el: Optional[ET.Element]) -> np.ndarray:
    """The (4, 4) transform of a URDF <origin xyz=".." rpy=".."/> element (identity if None)."""
    T = np.eye(4)
    if el is None:
        return T
    xyz = [float(v) for v in (el.get('xyz') or '0 0 0').split()]
    rpy = [float(v) for v in (el.get('rpy') or '0 0 0').split()]
    T[:3, :3] = transforms3d.euler.euler2mat(*rpy, axes='sxyz')
    T[:3, 3] = xyz
    return T


def parse_joints(urdf: Union[str, Path]) -> dict[str, UrdfJoint]:
    """Joints of a URDF (file path or XML text) by child link name (any type; the chain refuses
    the ones it cannot compute)."""
    text = str(urdf)
    if not text.lstrip().startswith('<'):
        text = Path(text).read_text()
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:      # a SyntaxError: callers catch ValueError
        raise ValueError(f'the URDF is not well-formed XML: {err}') from None
    out = {}
    for j in root.findall('joint'):
        kind = j.get('type')
        name = j.get('name')
        if j.find('mimic') is not None:
            kind = 'mimic'
        axis_el = j.find('axis')
        axis = np.array([float(v) for v in (axis_el.get('xyz') if axis_el is not None
                                            else '1 0 0').split()])
        norm = np.linalg.norm(axis)
        if kind in ('revolute', 'continuous', 'prismatic') and norm == 0:
            raise ValueError(f'joint {name}: zero axis')
        limit = j.find('limit')
        lower = float(limit.get('lower', '-inf')) if limit is not None and kind != 'continuous' \
            else -np.inf
        upper = float(limit.get('upper', 'inf')) if limit is not None and kind != 'continuous' \
            else np.inf
        velocity = float(limit.get('velocity', 'inf')) if limit is not None else np.inf
        child = j.find('child').get('link')
        out[child] = UrdfJoint(name, kind, j.find('parent').get('link'), child,
                               origin_transform(j.find('origin')), axis / (norm or 1.0), lower,
                               upper, velocity)
    return out


class KinematicChain:
    """The joints from the URDF's root link to `tip`, in order."""

    def __init__(self, joints: Sequence[UrdfJoint]):
        self.joints = list(joints)
        self.link_names = [self.joints[0].parent] + [j.child for j in self.joints]
        self.joint_names = [j.name for j in self.joints if j.type != 'fixed']
        self.lower = np.array([j.lower for j in self.joints if j.type != 'fixed'])
        self.upper = np.array([j.upper for j in self.joints if j.type != 'fixed'])
        self.velocity = np.array([j.velocity for j in self.joints if j.type != 'fixed'])
        self._index = {n: i for i, n in enumerate(self.link_names)}

    @classmethod
    def from_urdf(cls, urdf: Union[str, Path], tip: str = 'tool0') -> 'KinematicChain':
        by_child = parse_joints(urdf)
        if tip not in by_child:
            raise ValueError(f'link {tip!r} is not the child of any joint in the URDF '
                             f'(links: {sorted(by_child)})')
        chain, link = [], tip
        while link in by_child:
            joint = by_child[link]
            if joint.type not in SUPPORTED:
                raise ValueError(f'joint {joint.name} on the chain to {tip}: type {joint.type!r} '
                                 f'is not supported (one of {SUPPORTED})')
            chain.append(joint)
            link = joint.parent
            if len(chain) > len(by_child):
                raise ValueError('the URDF has a kinematic loop')
        return cls(chain[::-1])

    def link_poses(self, q) -> np.ndarray:
        """Pose of every link of the chain in the root frame: (..., L, 4, 4)."""
        q = np.asarray(q, dtype=np.float64)
        if q.shape[-1] != len(self.joint_names):
            raise ValueError(f'{q.shape[-1]} joint values for {len(self.joint_names)} joints '
                             f'{self.joint_names}')
        batch = q.shape[:-1]
        T = np.broadcast_to(np.eye(4), batch + (4, 4)).copy()
        out = [T]
        k = 0
        for j in self.joints:
            T = T @ j.origin
            if j.type in ('revolute', 'continuous'):
                T = T @ _rotation(j.axis, q[..., k])
                k += 1
            elif j.type == 'prismatic':
                M = np.broadcast_to(np.eye(4), batch + (4, 4)).copy()
                M[..., :3, 3] = j.axis * q[..., k, None]
                T = T @ M
                k += 1
            out.append(T)
        return np.stack(out, axis=-3)

    def position(self, q, link: Optional[str] = None) -> np.ndarray:
        """Origin of `link` (default: the tip) in the root frame: (..., 3)."""
        i = len(self.link_names) - 1 if link is None else self._index[link]
        return self.link_poses(q)[..., i, :3, 3]

    def pose(self, q, link: Optional[str] = None) -> np.ndarray:
        """Pose of `link` (default: the tip) in the root frame: (..., 4, 4)."""
        i = len(self.link_names) - 1 if link is None else self._index[link]
        return self.link_poses(q)[..., i, :, :]

    def jacobian(self, q, link: Optional[str] = None) -> np.ndarray:
        """Geometric Jacobian of `link` (default: the tip) at q (n,): (6, n), rows the linear
        then the angular velocity in the root frame, per unit joint velocity."""
        poses = self.link_poses(np.asarray(q, dtype=np.float64))
        i_end = len(self.link_names) - 1 if link is None else self._index[link]
        p_end = poses[i_end, :3, 3]
        J = np.zeros((6, len(self.joint_names)))
        k = 0
        for i, j in enumerate(self.joints, start=1):     # poses[i]: joint j's child frame
            if j.type == 'fixed':
                continue
            if i <= i_end:
                axis = poses[i, :3, :3] @ j.axis
                if j.type == 'prismatic':
                    J[:3, k] = axis
                else:
                    J[:3, k] = np.cross(axis, p_end - poses[i, :3, 3])
                    J[3:, k] = axis
            k += 1
        return J

    def solve_ik(self, target, q0, *, restarts: int = 0, seed: int = 0, **kw) -> IkResult:
        """_solve_ik from q0; where that ends in a local minimum, up to `restarts` more tries
        from random starts inside the limits (seeded); the best result (by weighted error)."""
        best = self._solve_ik(target, q0, **kw)
        rng = np.random.default_rng(seed)
        lo = np.where(np.isfinite(self.lower), self.lower, -np.pi)
        hi = np.where(np.isfinite(self.upper), self.upper, np.pi)
        w = kw.get('orientation_weight', 0.2)
        for _ in range(restarts):
            if best.converged:
                break
            r = self._solve_ik(target, rng.uniform(lo, hi), **kw)
            if r.converged or (np.hypot(r.position_error_m, w * r.orientation_error_rad) <
                               np.hypot(best.position_error_m, w * best.orientation_error_rad)):
                best = r
        return best

    def _solve_ik(self, target, q0, *, link: Optional[str] = None, orientation_weight: float = 0.2,
                  damping: float = 1e-3, max_iterations: int = 100, position_tol_m: float = 1e-9,
                  orientation_tol_rad: float = 1e-9, max_step_rad: float = 0.5) -> IkResult:
        """Joint positions that put `link` at the pose `target` (4, 4), from q0 (n,): damped
        least squares (dq = J^T (J J^T + damping^2 I)^-1 e on the error e = [dp, w * log(R_t R^T)],
        orientation weighted by `orientation_weight` m/rad), each step scaled down to at most
        max_step_rad on any joint (m for a prismatic one), halved while it does not lower the
        error, and clipped into
        [lower, upper]. Stops when both errors are under the tolerances or no step helps (a local
        minimum: converged False); the best iterate is returned."""
        target = np.asarray(target, dtype=np.float64)
        q = np.clip(np.asarray(q0, dtype=np.float64), self.lower, self.upper)
        w = np.array([1.0] * 3 + [float(orientation_weight)] * 3)

        def errors(q):
            T = self.pose(q, link)
            dp = target[:3, 3] - T[:3, 3]
            dr = rotation_log(target[:3, :3] @ T[:3, :3].T)
            return dp, dr

        dp, dr = errors(q)
        cost = float(np.sum((w * np.r_[dp, dr]) ** 2))
        lam2 = float(damping) ** 2
        it = 0
        for it in range(1, max_iterations + 1):
            if np.linalg.norm(dp) <= position_tol_m and np.linalg.norm(dr) <= orientation_tol_rad:
                it -= 1
                break
            J = w[:, None] * self.jacobian(q, link)
            e = w * np.r_[dp, dr]
            dq = J.T @ np.linalg.solve(J @ J.T + lam2 * np.eye(6), e)
            # scaled as a whole, not clipped per joint: near a singularity a clipped step turns
            # away from the least-squares direction and may not lower the error at any length
            dq *= min(1.0, max_step_rad / max(float(np.max(np.abs(dq))), 1e-300))
            for _ in range(8):            # halve a step that overshoots (near a singularity or
                q_new = np.clip(q + dq, self.lower, self.upper)           # a clipped limit)
                dp_new, dr_new = errors(q_new)
                cost_new = float(np.sum((w * np.r_[dp_new, dr_new]) ** 2))
                if cost_new < cost:
                    break
                dq = 0.5 * dq
            else:
                break                     # no step along dq helps: a local minimum
            q, dp, dr, cost = q_new, dp_new, dr_new, cost_new
        pe, oe = float(np.linalg.norm(dp)), float(np.linalg.norm(dr))
        return IkResult(q, pe, oe, it, pe <= position_tol_m and oe <= orientation_tol_rad)

    def solve_ik_path(self, targets, q0, **kw) -> list[IkResult]:
        """solve_ik along targets (N, 4, 4), each warm-started from the previous solution."""
        out, q = [], np.asarray(q0, dtype=np.float64)
        for T in np.asarray(targets, dtype=np.float64):
            r = self.solve_ik(T, q, **kw)
            out.append(r)
            q = r.q
        return out


@dataclass
class IkResult:
    q: np.ndarray                 # (n,) joint positions, always inside [lower, upper]
    position_error_m: float       # |p_target - p| at q
    orientation_error_rad: float  # angle of R_target R^T at q
    iterations: int
    converged: bool               # both errors under the tolerances


def _rotation(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Homogeneous rotations about a unit axis by angles (...,): Rodrigues, (..., 4, 4)."""
    x, y, z = axis
    c, s = np.cos(angle), np.sin(angle)
    C = 1.0 - c
    R = np.empty(np.shape(angle) + (4, 4))
    R[..., 0, 0] = c + x * x * C
    R[..., 0, 1] = x * y * C - z * s
    R[..., 0, 2] = x * z * C + y * s
    R[..., 1, 0] = y * x * C + z * s
    R[..., 1, 1] = c + y * y * C
    R[..., 1, 2] = y * z * C - x * s
    R[..., 2, 0] = z * x * C - y * s
    R[..., 2, 1] = z * y * C + x * s
    R[..., 2, 2] = c + z * z * C
    R[..., 3, :3] = 0.0
    R[..., :3, 3] = 0.0
    R[..., 3, 3] = 1.0
    return R
