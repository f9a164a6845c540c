"""Differentiable forward kinematics (torch) of a serial chain read from a URDF, and the arm's
collision geometry as spheres along capsules, for guided sampling (ROS-free).

The chain is dp_common.kinematics' (one URDF parser for the project): the same joints, origins and
axes, computed with torch so that a cost on link positions has a gradient with respect to the joint
positions of every action of a chunk:

    fk = TorchKinematics.from_urdf('arm.urdf', tip='tool0')
    pts, radii = fk.collision_points(q)   # q (..., J) -> (..., P, 3) world points, (P,) radii

Collision geometry: every <collision> element of the links on the chain (box, cylinder, sphere,
capsule) is bounded by a capsule: a cylinder by its axis segment and radius, a box by the segment
along its longest side and the half diagonal of the other two, a sphere by itself. A capsule is
covered by spheres centred on its segment, spaced at most its radius apart, each of radius
sqrt(r^2 + (s/2)^2) (s: the spacing): the union contains the capsule, so a distance measured
from these spheres never overstates the clearance of the link.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from dp_common.kinematics import KinematicChain, origin_transform


@dataclass
class LinkCapsule:
    """A capsule fixed to a link: segment from a to b (link frame, m), radius (m)."""
    link: str
    a: np.ndarray
    b: np.ndarray
    radius: float


def unbounded_collision_links(urdf: Union[str, Path], links: Sequence[str]) -> list[str]:
    """Those of `links` with a <collision> element that is not a primitive (a mesh): guidance
    has no distance for it, so obstacles cannot be kept away from that link."""
    text = str(urdf)
    if not text.lstrip().startswith('<'):
        text = Path(text).read_text()
    out = []
    for link in ET.fromstring(text).findall('link'):
        geoms = [c.find('geometry') for c in link.findall('collision')]
        if link.get('name') in links and any(g is None or not len(g) or _bounding_segment(g[0])
                                             is None for g in geoms):
            out.append(link.get('name'))
    return out


def collision_capsules(urdf: Union[str, Path], links: Sequence[str]) -> list[LinkCapsule]:
    """Bounding capsules of the <collision> geometry of `links` (in the link frames)."""
    text = str(urdf)
    if not text.lstrip().startswith('<'):
        text = Path(text).read_text()
    out = []
    for link in ET.fromstring(text).findall('link'):
        if link.get('name') not in links:
            continue
        for col in link.findall('collision'):
            T = origin_transform(col.find('origin'))
            geom = col.find('geometry')
            cap = _bounding_segment(geom[0]) if geom is not None and len(geom) else None
            if cap is None:
                continue
            (a, b), r = cap
            out.append(LinkCapsule(link.get('name'), T[:3, :3] @ a + T[:3, 3],
                                   T[:3, :3] @ b + T[:3, 3], r))
    return out


def _bounding_segment(el: ET.Element):
    """((a, b), radius) of a capsule containing the geometry (in the geometry's own frame)."""
    kind = el.tag
    if kind == 'sphere':
        r = float(el.get('radius'))
        return (np.zeros(3), np.zeros(3)), r
    if kind in ('cylinder', 'capsule'):
        r, h = float(el.get('radius')), float(el.get('length'))
        return (np.array([0.0, 0.0, -h / 2]), np.array([0.0, 0.0, h / 2])), r
    if kind == 'box':
        size = np.array([float(v) for v in el.get('size').split()])
        i = int(np.argmax(size))
        half = np.zeros(3)
        half[i] = size[i] / 2
        others = np.delete(size, i)
        return (-half, half), 0.5 * float(np.hypot(*others))
    return None     # mesh: not bounded here (give the link a primitive collision element)


class TorchKinematics:
    def __init__(self, chain: KinematicChain, capsules: Sequence[LinkCapsule] = (),
                 dtype: torch.dtype = torch.float64):
        self.chain = chain
        self.joint_names = list(chain.joint_names)
        self.lower = torch.tensor(chain.lower, dtype=dtype)
        self.upper = torch.tensor(chain.upper, dtype=dtype)
        self.dtype = dtype
        self._origins = [torch.tensor(j.origin, dtype=dtype) for j in chain.joints]
        self._axes = [torch.tensor(j.axis, dtype=dtype) for j in chain.joints]
        # Rodrigues, R(q) = I + sin(q) K + (1 - cos(q)) K^2 with K the axis' cross-product matrix
        # (homogeneous 4x4, zero outside the 3x3): three broadcast operations a joint.
        self._skew = [_skew(a) for a in self._axes]
        self._index = {n: i for i, n in enumerate(chain.link_names)}
        # Collision spheres: (link index, centre in the link frame), radius.
        idx, centres, radii = [], [], []
        for cap in capsules:
            length = float(np.linalg.norm(cap.b - cap.a))
            n = max(1, int(math.ceil(length / max(cap.radius, 1e-3)))) + 1
            spacing = length / (n - 1) if n > 1 else 0.0
            r = math.sqrt(cap.radius ** 2 + (spacing / 2) ** 2)
            for s in np.linspace(0.0, 1.0, n):
                idx.append(self._index[cap.link])
                centres.append(cap.a + s * (cap.b - cap.a))
                radii.append(r)
        self.sphere_links = torch.tensor(idx, dtype=torch.long)
        self.sphere_centres = torch.tensor(np.array(centres).reshape(-1, 3), dtype=dtype)
        self.sphere_radii = torch.tensor(radii, dtype=dtype)
        self.unbounded_links: list[str] = []    # links with mesh collision geometry (from_urdf)

    @classmethod
    def from_urdf(cls, urdf: Union[str, Path], tip: str = 'tool0',
                  collision_links: Optional[Sequence[str]] = None,
                  dtype: torch.dtype = torch.float64) -> 'TorchKinematics':
        """collision_links: links whose collision geometry is used (default: every link on the
        chain that moves, i.e. after the first non-fixed joint)."""
        chain = KinematicChain.from_urdf(urdf, tip=tip)
        if collision_links is None:
            first = next((i for i, j in enumerate(chain.joints) if j.type != 'fixed'),
                         len(chain.joints))
            collision_links = [j.child for j in chain.joints[first:]]
        fk = cls(chain, collision_capsules(urdf, collision_links), dtype)
        fk.unbounded_links = unbounded_collision_links(urdf, collision_links)
        return fk

    def link_poses(self, q: torch.Tensor) -> torch.Tensor:
        """(..., J) -> (..., L, 4, 4): the pose of every link of the chain in the root frame."""
        batch = q.shape[:-1]
        T = torch.eye(4, dtype=q.dtype).expand(*batch, 4, 4)
        out = [T]
        k = 0
        for joint, origin, axis in zip(self.chain.joints, self._origins, self._axes):
            T = T @ origin.to(q.dtype)
            if joint.type in ('revolute', 'continuous'):
                K, K2 = (m.to(q.dtype) for m in self._skew[len(out) - 1])
                angle = q[..., k, None, None]
                T = T @ (torch.eye(4, dtype=q.dtype) + torch.sin(angle) * K
                         + (1.0 - torch.cos(angle)) * K2)
                k += 1
            elif joint.type == 'prismatic':
                M = torch.eye(4, dtype=q.dtype).expand(*batch, 4, 4).clone()
                M[..., :3, 3] = axis.to(q.dtype) * q[..., k, None]
                T = T @ M
                k += 1
            out.append(T)
        return torch.stack(out, dim=-3)

    def position(self, q: torch.Tensor, link: Optional[str] = None) -> torch.Tensor:
        """Origin of `link` (default: the tip) in the root frame: (..., 3)."""
        i = len(self.chain.link_names) - 1 if link is None else self._index[link]
        return self.link_poses(q)[..., i, :3, 3]

    def collision_points(self, q: torch.Tensor):
        """Centres (..., P, 3) in the root frame and radii (P,) of the collision spheres."""
        poses = self.link_poses(q)[..., self.sphere_links, :, :]           # (..., P, 4, 4)
        c = self.sphere_centres.to(q.dtype)
        pts = (poses[..., :3, :3] @ c[..., None])[..., 0] + poses[..., :3, 3]
        return pts, self.sphere_radii.to(q.dtype)


def _skew(axis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, K @ K): the unit axis' cross-product matrix, embedded in 4x4 (zero 4th row/column)."""
    x, y, z = (float(v) for v in axis)
    K = torch.zeros(4, 4, dtype=axis.dtype)
    K[:3, :3] = torch.tensor([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]], dtype=axis.dtype)
    return K, K @ K
