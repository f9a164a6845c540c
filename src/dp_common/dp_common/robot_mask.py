"""Where a robot's links appear in a camera image, from its URDF (numpy + Pillow; ROS-free).

A policy that must drive an arm it was not trained on (an end-effector checkpoint on another
embodiment) should not see the arm: the links look different on every robot, and an image of an
arm the network never saw changes its answer as much as a black image does (README, "End-effector
actions and a second arm"). `RobotMask` paints the robot out: each link's <visual> geometry
(box, cylinder, sphere) placed by the forward kinematics of the joint positions, seen through a
pinhole camera whose pose is a frame of the same URDF (REP 103 optical frame: z forward, x right,
y down, as a camera_info's K expects) and whose intrinsics are the camera_info's, with pixel
centres at i + 0.5 (cx = W/2 for a centred camera: MuJoCo's rendering, sim_node's camera_info;
a ROS/OpenCV calibration puts them at integers: add 0.5 to its cx and cy). A shape partly behind
the camera is skipped (overhead and fixed cameras, not wrist cameras).

    mask = RobotMask(urdf_text, ['joint1', 'joint2', 'joint3'], 'camera_optical_frame',
                     K=(fx, fy, cx, cy), size=(96, 96))
    covered = mask.pixels(q)             # (H, W) bool: the moving links' pixels, grown by margin_m
    clean = mask.paint(image, q)         # those pixels painted the median colour of the others

A checkpoint trained on masked images stores one `mask_spec` per camera (the optical frame, K
and the image size K is for, the margin); the policy node rebuilds the mask from the URDF of the
robot it drives (`RobotMask.from_spec`), so each arm is painted out by its own geometry.
The fill is the median colour of the pixels left, per image: on a plain table the painted arm
all but vanishes; on a textured scene its outline stays visible (no inpainting here).

Only links that a joint of `joint_names` moves are painted (what differs between embodiments;
the table, a fixed pedestal and the camera stay). A link with a <mesh> visual, or a shape behind
the camera, is refused at construction / skipped: the mask is convex hulls of primitive shapes.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np

from dp_common.kinematics import KinematicChain, origin_transform, parse_joints

__all__ = ['RobotMask', 'link_shapes', 'mask_spec']

_CIRCLE = 16      # points on each circle of a cylinder or sphere outline


@dataclass
class _Shape:
    link: str
    origin: np.ndarray      # (4, 4) visual frame in the link frame
    points: np.ndarray      # (P, 3) outline points in the visual frame (convex hull = the shape)


def _outline(geometry: ET.Element, margin: float) -> Optional[np.ndarray]:
    """Points whose convex hull contains the primitive grown by margin (None: no geometry).
    ValueError: a primitive without its size attributes."""
    box, cyl, sph = geometry.find('box'), geometry.find('cylinder'), geometry.find('sphere')
    try:
        if box is not None:
            half = np.array([float(v) for v in box.get('size').split()]) / 2 + margin
            if half.shape != (3,):
                raise ValueError
            signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
            return signs * half
        a = np.linspace(0, 2 * np.pi, _CIRCLE, endpoint=False)
        # a circumscribed polygon: its hull contains the circle
        ring = np.stack([np.cos(a), np.sin(a)], 1) / np.cos(np.pi / _CIRCLE)
        if cyl is not None:
            r = float(cyl.get('radius')) + margin
            h = float(cyl.get('length')) / 2 + margin
            return np.concatenate([np.c_[r * ring, np.full(_CIRCLE, z)] for z in (-h, h)])
        if sph is not None:
            # 7 latitudes 30 degrees apart, each circumscribed: grown by 1 / cos(15 deg) as well
            r = (float(sph.get('radius')) + margin) / np.cos(np.pi / 12)
            pts = [np.c_[r * ring[:, :1] * np.cos(e), r * ring[:, 1:] * np.cos(e),
                         np.full((_CIRCLE, 1), r * np.sin(e))]
                   for e in np.linspace(-np.pi / 2, np.pi / 2, 7)]
            return np.concatenate(pts)
    except (AttributeError, TypeError, ValueError):
        raise ValueError(f'a <{(box if box is not None else cyl if cyl is not None else sph).tag}> '
                         f'visual without valid size attributes') from None
    return None


def link_shapes(urdf: str, links: Sequence[str], margin_m: float = 0.0) -> list[_Shape]:
    """The <visual> primitives of `links` (URDF text). Raises ValueError on a mesh visual."""
    root = ET.fromstring(urdf)
    wanted = set(links)
    out = []
    for link in root.findall('link'):
        if link.get('name') not in wanted:
            continue
        for visual in link.findall('visual'):
            geometry = visual.find('geometry')
            if geometry is None:
                continue
            if geometry.find('mesh') is not None:
                raise ValueError(f'link {link.get("name")!r} has a mesh visual: the robot mask '
                                 f'draws boxes, cylinders and spheres only')
            pts = _outline(geometry, margin_m)
            if pts is not None:
                out.append(_Shape(link.get('name'), origin_transform(visual.find('origin')), pts))
    return out


def mask_spec(frame: str, K: Sequence[float], size: Sequence[int], margin_m: float = 0.01) -> dict:
    """A camera's mask settings as a checkpoint stores them: frame (the optical frame's link
    in the robot's URDF), K (fx, fy, cx, cy), size (height, width) of the image K is for, margin_m.
    Raises ValueError on a malformed one."""
    K = [float(v) for v in K]
    size = [int(v) for v in size]
    if not frame or len(K) != 4 or not all(np.isfinite(K)) or K[0] <= 0 or K[1] <= 0:
        raise ValueError(f'robot mask: need a frame and K = fx, fy, cx, cy with fx, fy > 0 '
                         f'(got frame {frame!r}, K {K})')
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f'robot mask: size must be (height, width), got {size}')
    if not 0 <= float(margin_m) < 1:
        raise ValueError(f'robot mask: margin_m must be in [0, 1) m, got {margin_m}')
    return {'frame': str(frame), 'K': K, 'size': size, 'margin_m': float(margin_m)}


def _hull(p: np.ndarray) -> np.ndarray:
    """Convex hull of (P, 2) points, counter-clockwise (Andrew's monotone chain)."""
    pts = sorted(set(map(tuple, np.asarray(p, dtype=np.float64).tolist())))
    if len(pts) < 3:
        return np.array(pts)

    def half(points):
        h: list = []
        for x, y in points:
            while len(h) >= 2 and ((h[-1][0] - h[-2][0]) * (y - h[-2][1]) -
                                   (h[-1][1] - h[-2][1]) * (x - h[-2][0])) <= 0:
                h.pop()
            h.append((x, y))
        return h[:-1]

    return np.array(half(pts) + half(pts[::-1]))


class RobotMask:
    """The pixels of one camera that the links moved by `joint_names` cover (module docstring).

    urdf: URDF text or path of the robot AND its camera frame; camera_frame: the optical frame's
    link name; K: (fx, fy, cx, cy) in pixels (camera_info K[0], K[4], K[2], K[5]); size: (height,
    width) of the images; margin_m: every shape grown by this much (rendering edges, calibration).
    """

    def __init__(self, urdf: Union[str, 'object'], joint_names: Sequence[str], camera_frame: str,
                 K: Sequence[float], size: tuple[int, int], margin_m: float = 0.005) -> None:
        from dp_common.ee_space import read_urdf
        self.urdf = read_urdf(urdf)
        self.joints = parse_joints(self.urdf)              # by child link
        self.joint_names = list(joint_names)
        by_name = {j.name: j for j in self.joints.values()}
        missing = [n for n in self.joint_names if n not in by_name]
        if missing:
            raise ValueError(f'joints {missing} are not in the URDF')
        if camera_frame not in self.joints:
            raise ValueError(f'camera frame {camera_frame!r} is not a link of the URDF (a child '
                             f'of a joint)')
        self.camera_frame = camera_frame
        self.fx, self.fy, self.cx, self.cy = (float(v) for v in K)
        self.height, self.width = int(size[0]), int(size[1])
        moving = {by_name[n].child for n in self.joint_names}
        self.links = [link for link in self.joints if self._moved(link, moving)]
        # the chains from the root to each painted link and to the camera (KinematicChain: it
        # refuses a joint type it cannot place)
        self._chains = {link: KinematicChain.from_urdf(self.urdf, link)
                        for link in self.links + [camera_frame]}
        self.shapes = link_shapes(self.urdf, self.links, margin_m)
        self.margin_m = float(margin_m)

    @classmethod
    def from_spec(cls, urdf, joint_names: Sequence[str], spec: dict,
                  size: Sequence[int]) -> 'RobotMask':
        """The mask of `spec` (mask_spec) for images of `size` (height, width): K scaled from the
        size it was given for."""
        spec = mask_spec(spec['frame'], spec['K'], spec['size'], spec.get('margin_m', 0.01))
        (h0, w0), (h, w) = spec['size'], (int(size[0]), int(size[1]))
        fx, fy, cx, cy = spec['K']
        K = (fx * w / w0, fy * h / h0, cx * w / w0, cy * h / h0)
        return cls(urdf, joint_names, spec['frame'], K, (h, w), spec['margin_m'])

    def _moved(self, link: str, moving: set) -> bool:
        while link in self.joints:
            if link in moving:
                return True
            link = self.joints[link].parent
        return False

    def _pose(self, link: str, q: dict) -> np.ndarray:
        """(4, 4) pose of `link` in the URDF root frame (joints not in q at 0)."""
        chain = self._chains[link]
        return chain.pose(np.array([q.get(n, 0.0) for n in chain.joint_names]))

    def polygons(self, q) -> list[np.ndarray]:
        """Pixel polygons (each (V, 2): u right, v down) of the shapes at joint positions q."""
        values = dict(zip(self.joint_names, np.asarray(q, dtype=np.float64).ravel()))
        world_to_cam = np.linalg.inv(self._pose(self.camera_frame, values))
        out = []
        poses = {}
        for s in self.shapes:
            if s.link not in poses:
                poses[s.link] = self._pose(s.link, values)
            T = world_to_cam @ poses[s.link] @ s.origin
            p = s.points @ T[:3, :3].T + T[:3, 3]
            if np.any(p[:, 2] <= 1e-3):     # behind or at the camera: not drawable as a hull
                continue
            uv = np.c_[self.fx * p[:, 0] / p[:, 2] + self.cx, self.fy * p[:, 1] / p[:, 2] + self.cy]
            out.append(_hull(uv))
        return out

    def pixels(self, q) -> np.ndarray:
        """(H, W) bool: the pixels (centres) the moving links cover at joint positions q."""
        from PIL import Image, ImageDraw
        img = Image.new('1', (self.width, self.height), 0)
        draw = ImageDraw.Draw(img)
        for poly in self.polygons(q):
            # pixel (i, j) has its centre at (i + 0.5, j + 0.5) in K's convention (cx = W / 2)
            draw.polygon([(float(u) - 0.5, float(v) - 0.5) for u, v in poly], fill=1)
        return np.asarray(img, dtype=bool)

    def paint(self, image: np.ndarray, q, fill=None) -> np.ndarray:
        """A copy of (H, W, 3) `image` with the robot's pixels set to `fill` (None: the median
        colour of the other pixels)."""
        if image.shape[:2] != (self.height, self.width):
            raise ValueError(f'image {image.shape[:2]} is not the mask size '
                             f'{(self.height, self.width)}')
        covered = self.pixels(q)
        out = image.copy()
        if fill is None:
            rest = image[~covered]
            fill = np.median(rest, axis=0) if len(rest) else np.zeros(image.shape[-1])
        out[covered] = np.asarray(fill).astype(image.dtype)
        return out

    def paint_frames(self, images: np.ndarray, q: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) images, (T, n) joint positions at each -> the painted images."""
        return np.stack([self.paint(im, qi) for im, qi in zip(images, q)]) if len(images) \
            else images.copy()
