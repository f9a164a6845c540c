"""What a closed-loop run did, seen: end-effector paths, clearance, sampled futures, videos.

What it is (ROS-free): `read_rollouts(bag)` reads a run recorded by `dp_eval closed-loop --record`
(/joint_states, /task_status, /policy_node/trajectory, /camera/camera_info) into one `Rollout` per
episode: the tip path by forward kinematics of the arm's URDF (dp_common.kinematics, the file the
launch files publish), the planned tip path of every chunk the policy published, the outcome, the
first contact and the minimum clearance to the obstacle post. From those:

    plot_paths(...)       top view, one panel per policy: every episode's tip path coloured by
                          side, targets, the post, contact points
    plot_clearance(...)   histogram of each episode's minimum clearance, per policy
    sample_fans(...)      at a few observations of the run, the K chunks the policy samples
                          (diffusion: a fan of futures; a regression: one line), as tip paths
    plot_fans(...)        those fans, one row per policy, in the same top view
    episode_videos(...)   the camera stream of chosen episodes (first successes, every failure) as
                          MP4 (video.py), the newest planned chunk projected into each frame with
                          the camera's pose from the URDF and its intrinsics from camera_info

Geometry of the embedded task (post position and radius, stylus radius) comes from dp_sim's model
(`task_geometry`); clearance = distance from the stylus axis to the post axis minus both radii
(the links pass above the post: only the stylus can touch it, see arm.urdf).

What it is not: the metrics of the summary table (episodes.py, from the live run) or a report
(report.py embeds what this writes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from dp_eval import bagio
from dp_eval.report import histograms, pyplot

__all__ = ['Rollout', 'TaskGeometry', 'task_geometry', 'read_rollouts', 'plot_paths',
           'plot_clearance', 'sample_fans', 'plot_fans', 'choose_video_episodes',
           'episode_videos', 'SIDE_COLOURS']

JOINT_STATES, STATUS, CHUNKS, IMAGES, CAMERA_INFO = (
    '/joint_states', '/task_status', '/policy_node/trajectory', '/camera/image_raw',
    '/camera/camera_info')
SIDE_COLOURS = {'left': 'tab:green', 'right': 'tab:blue', '': 'tab:gray', 'failed': 'tab:red'}
VIDEO_SCALE = 3          # frames are upscaled (nearest) so that the overlay is legible


@dataclass
class TaskGeometry:
    post_xy: np.ndarray
    post_radius_m: float
    stylus_radius_m: float


def task_geometry() -> Optional[TaskGeometry]:
    """The embedded task's obstacle, from dp_sim's MuJoCo model (None without dp_sim)."""
    try:
        import mujoco
        from dp_sim.env import default_model_path
    except ImportError:
        return None
    m = mujoco.MjModel.from_xml_path(str(default_model_path()))
    return TaskGeometry(np.array(m.body('post').pos[:2], dtype=float),
                        float(m.geom_size[m.geom('post').id][0]),
                        float(m.geom_size[m.geom('stylus').id][0]))


@dataclass
class Rollout:
    episode: int
    t0: float                   # first status of the episode (stamp, s)
    t1: float                   # its first done status (else the next episode's first, or inf)
    target_xy: np.ndarray
    success: bool = False
    side: str = ''
    contact: bool = False
    t: np.ndarray = field(default_factory=lambda: np.zeros(0))          # joint state stamps
    q: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    tip: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))   # (N, 3) m
    contact_xy: Optional[np.ndarray] = None
    clearance_m: float = math.nan
    # (stamp, t_abs (H,), tip (H, 3), published: log time of the recording, the run's clock)
    chunks: list = field(default_factory=list)

    @property
    def outcome(self) -> str:
        return self.side if self.success else 'failed'


def _stamp(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def _chain(urdf=None):
    from dp_common.kinematics import KinematicChain
    if urdf is None:
        from dp_sim.env import default_urdf_path
        urdf = default_urdf_path()
    return KinematicChain.from_urdf(urdf, tip='tool0')


def read_rollouts(bag: str | Path, urdf=None, geometry: Optional[TaskGeometry] = None,
                  episodes: Optional[Sequence[int]] = None) -> tuple[list[Rollout], Optional[object]]:
    """One Rollout per episode of a recorded closed-loop run (only those numbered in `episodes`
    if given: a run's bag may begin with the previous run's last status), and the first
    camera_info (or None). Raises bagio.MissingTopicError without joint states or task status."""
    bagio.require_topics(bag, [JOINT_STATES, STATUS])
    chain = _chain(urdf)
    present = bagio.bag_topics(bag)
    topics = [t for t in (JOINT_STATES, STATUS, CHUNKS, CAMERA_INFO) if t in present]
    statuses, js, chunks, info = [], [], [], None
    for raw in bagio.iter_raw(bag, topics):
        msg = bagio.deserialize(raw)
        if raw.topic == STATUS:
            statuses.append((_stamp(msg.header), msg))
        elif raw.topic == JOINT_STATES:
            names = list(msg.name)
            if len(msg.position) != len(names) or not all(j in names for j in chain.joint_names):
                continue
            idx = [names.index(j) for j in chain.joint_names]
            js.append((_stamp(msg.header), np.asarray(msg.position, dtype=float)[idx]))
        elif raw.topic == CHUNKS and msg.points:
            names = list(msg.joint_names)
            if all(j in names for j in chain.joint_names) and all(
                    len(p.positions) == len(names) for p in msg.points):
                idx = [names.index(j) for j in chain.joint_names]
                tfs = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9
                                for p in msg.points])
                pos = np.array([np.asarray(p.positions, dtype=float)[idx] for p in msg.points])
                # (stamp, log time = when it was published, in the run's clock, times, positions)
                chunks.append((_stamp(msg.header), raw.stamp_ns * 1e-9, tfs, pos))
        elif raw.topic == CAMERA_INFO and info is None:
            info = msg
    rollouts = _split(statuses)
    if episodes is not None:
        keep = {int(e) for e in episodes}
        rollouts = [r for r in rollouts if r.episode in keep]
    if not rollouts:
        return [], info
    js_t = np.array([t for t, _ in js])
    js_q = np.array([q for _, q in js]) if js else np.zeros((0, len(chain.joint_names)))
    ch_t = np.array([c[0] for c in chunks])
    for r in rollouts:
        # After the episode's first status, strictly: a joint state with the reset's own stamp
        # was taken before the reset moved the arm (seen in the embedded simulation).
        sel = (js_t > r.t0) & (js_t < r.t1)
        r.t, r.q = js_t[sel], js_q[sel]
        r.tip = chain.position(r.q) if len(r.q) else np.zeros((0, 3))
        lo, hi = np.searchsorted(ch_t, [r.t0, r.t1])
        for stamp, published, tfs, pos in chunks[lo:hi]:
            r.chunks.append((stamp, stamp + tfs, chain.position(pos), published))
        if geometry is not None and len(r.tip):
            d = np.linalg.norm(r.tip[:, :2] - geometry.post_xy, axis=1)
            r.clearance_m = float(d.min() - geometry.post_radius_m - geometry.stylus_radius_m)
        first_contact = next((t for t, m in statuses
                              if r.t0 <= t < r.t1 and m.episode == r.episode
                              and m.obstacle_contact), None)
        if first_contact is not None and len(r.t):
            r.contact_xy = r.tip[min(int(np.searchsorted(r.t, first_contact)), len(r.t) - 1), :2]
    return rollouts, info


def _split(statuses) -> list[Rollout]:
    """Episodes from the task status stream: each lasts from its first status to its first
    `done` one (or the next episode's first status); the outcome is what its statuses said until
    then."""
    out: list[Rollout] = []
    for t, m in sorted(statuses, key=lambda s: s[0]):
        if m.episode <= 0:
            continue
        if not out or out[-1].episode != m.episode:
            if out:
                out[-1].t1 = min(out[-1].t1, t)
            out.append(Rollout(int(m.episode), t, math.inf,
                               np.array([m.target.x, m.target.y], dtype=float)))
        r = out[-1]
        if m.done and math.isinf(r.t1):
            r.t1 = t           # done: what follows is the settling and the next reset
        if t > r.t1:
            continue
        r.success = r.success or bool(m.success)
        r.side = str(m.side) if m.side else r.side
        r.contact = r.contact or bool(m.obstacle_contact)
    return out


# ---------------------------------------------------------------------------------- plots
def _top_view(ax, geometry: Optional[TaskGeometry], title: str) -> None:
    """World x up, +y to the left: as the overhead camera sees the table."""
    if geometry is not None:
        import matplotlib.patches as mpatches
        ax.add_patch(mpatches.Circle((geometry.post_xy[1], geometry.post_xy[0]),
                                     geometry.post_radius_m, color='k', alpha=0.8, zorder=3))
        ax.add_patch(mpatches.Circle((geometry.post_xy[1], geometry.post_xy[0]),
                                     geometry.post_radius_m + geometry.stylus_radius_m,
                                     fill=False, ls=':', color='k', zorder=3))
    ax.plot([0], [0], 's', color='0.3', ms=9, zorder=3)            # the arm's base
    ax.set_aspect('equal')
    ax.set_xlim(0.25, -0.25)        # +y to the left
    ax.set_ylim(-0.03, 0.5)
    ax.set_xlabel('y (m, left +)')
    ax.set_ylabel('x (m)')
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)


def plot_paths(per_policy: Sequence[tuple[str, list[Rollout]]],
               geometry: Optional[TaskGeometry], path: Path) -> bool:
    """Every episode's tip path, one panel per policy, coloured by side (red: failed)."""
    per_policy = [(label, rs) for label, rs in per_policy if rs]
    if not per_policy:
        return False
    plt = pyplot()
    n = len(per_policy)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.8), squeeze=False)
    for ax, (label, rs) in zip(axes[0], per_policy):
        counts = {'left': 0, 'right': 0, 'failed': 0, '': 0}
        for r in rs:
            if len(r.tip):
                ax.plot(r.tip[:, 1], r.tip[:, 0], '-', lw=1, alpha=0.6,
                        color=SIDE_COLOURS[r.outcome])
            ax.plot(r.target_xy[1], r.target_xy[0], 'x', color='k', ms=5, alpha=0.7)
            if r.contact_xy is not None:
                ax.plot(r.contact_xy[1], r.contact_xy[0], '*', color='tab:red', ms=11, zorder=4)
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
        _top_view(ax, geometry, f'{label}: {len(rs)} episodes, left {counts["left"]}, right '
                  f'{counts["right"]}, failed {counts["failed"]}')
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=SIDE_COLOURS['left'], label='success, left'),
               Line2D([], [], color=SIDE_COLOURS['right'], label='success, right'),
               Line2D([], [], color=SIDE_COLOURS['failed'], label='failed'),
               Line2D([], [], ls='', marker='x', color='k', label='target'),
               Line2D([], [], ls='', marker='*', color='tab:red', ms=10, label='first contact')]
    axes[0, 0].legend(handles=handles, fontsize=7, loc='lower left')
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def plot_clearance(per_policy: Sequence[tuple[str, list[Rollout]]], path: Path) -> bool:
    data = [(label, np.array([r.clearance_m for r in rs if math.isfinite(r.clearance_m)]))
            for label, rs in per_policy]
    data = [(label, d) for label, d in data if len(d)]
    if not data:
        return False
    lo = min(0.0, min(float(d.min()) for _, d in data))
    hi = max(float(d.max()) for _, d in data)
    hi = max(hi, lo + 1e-3)
    bins = np.linspace(lo, hi + 0.05 * (hi - lo), 30) * 1e3
    histograms(path, [(label, d * 1e3) for label, d in data], bins,
               lambda label, d: f'{label} (min {d.min():.1f} mm, median {np.median(d):.1f} mm)',
               'minimum clearance of the stylus to the post per episode (mm; <= 0: contact)',
               'episodes', 'clearance to the obstacle', vline=0.0)
    return True


def sample_fans(checkpoint: str | Path, bag: str | Path, count: int = 3, at_s: float = 0.3,
                samples: int = 16, seed: int = 0, urdf=None,
                episodes: Optional[Sequence[int]] = None) -> list[dict]:
    """For the first `count` episodes of a recorded run (of those numbered in `episodes` if
    given), the observation `at_s` seconds into
    the episode (the policy decides left or right early) goes through the checkpoint with
    `samples` samples: returns [{episode, t, tip (3,) at the observation, fan (K, H, 3)}]. The
    observations are decoded by the training dataset's decoder (what training and the node see)."""
    from dp_eval.offline import dataset_config_for
    from dp_policy.data.dataset import decode_bag
    from dp_policy.policy import DiffusionPolicy
    if urdf is None:
        from dp_sim.env import default_urdf_path
        urdf = default_urdf_path()
    chain = _chain(urdf)
    policy = DiffusionPolicy.from_checkpoint(str(checkpoint), num_samples=samples, seed=seed,
                                             backend='torch')
    meta = policy.meta
    # The run's camera topic (sim.launch.py remaps the policy's camera to it), as the node saw it.
    cameras = {meta.camera_names[0]: IMAGES} if len(meta.camera_names) == 1 else None
    cfg = dataset_config_for(meta, cameras=cameras, episode_topic=STATUS)
    # The policy's joints in the chain's order (the checkpoint's order may differ).
    missing = [j for j in chain.joint_names if j not in meta.joint_names]
    if missing:
        raise ValueError(f'the URDF chain joints {missing} are not joints of the checkpoint '
                         f'({meta.joint_names})')
    cols = [list(meta.joint_names).index(j) for j in chain.joint_names]
    # an end-effector checkpoint: its state is the tip pose of the recorded joints, its samples
    # tip poses (their first three columns the position)
    ee = None
    if meta.action_space is not None:
        from dp_policy.data.spaces import space_of
        ee = space_of(meta.action_space)
    # a checkpoint trained with the arm painted out sees the run's arm painted out (the node did)
    masks = {}
    if meta.robot_mask:
        from dp_common.robot_mask import RobotMask
        masks = {c: RobotMask.from_spec(str(urdf), meta.joint_names, spec, meta.image_hw)
                 for c, spec in meta.robot_mask.items()}
    keep = None if episodes is None else {int(e) for e in episodes}
    n = meta.n_obs_steps
    out = []
    for ep in decode_bag(bag, cfg):
        number = str(ep.name).rsplit('#ep', 1)[-1]
        if len(out) >= count or len(ep) < n or (keep is not None and number.isdigit()
                                                 and int(number) not in keep):
            continue
        k = int(np.clip(round(at_s / meta.dt_s), n - 1, len(ep) - 1))
        state = ep.state[None, k - n + 1:k + 1]
        state = (state if ee is None else ee.vectors(state)).astype(np.float32)
        images = {}
        for c in meta.camera_names:
            window = ep.images[c][k - n + 1:k + 1]
            if c in masks:
                window = masks[c].paint_frames(window, ep.state[k - n + 1:k + 1])
            images[c] = window[None]
        res = policy.predict(state, images, stamps=ep.t[[k]], robot_ids=['fan'])
        policy.reset()
        samples = np.asarray(res.samples[0], dtype=float)
        fan = chain.position(samples[..., cols]) if ee is None else samples[..., :3]  # (K, H, 3)
        out.append({'episode': f'episode {number}', 't': float(ep.t[k] - ep.t[0]),
                    'tip': chain.position(ep.state[k, cols]), 'fan': fan})
    return out


def plot_fans(per_policy: Sequence[tuple[str, list[dict]]], geometry: Optional[TaskGeometry],
              path: Path) -> bool:
    """One row per policy, one panel per observation: the tip at the observation (black) and the
    K sampled chunks as tip paths."""
    per_policy = [(label, fans) for label, fans in per_policy if fans]
    if not per_policy:
        return False
    plt = pyplot()
    cols = max(len(f) for _, f in per_policy)
    fig, axes = plt.subplots(len(per_policy), cols, figsize=(3.6 * cols, 3.8 * len(per_policy)),
                             squeeze=False)
    for row, (label, fans) in enumerate(per_policy):
        for col in range(cols):
            ax = axes[row, col]
            if col >= len(fans):
                ax.axis('off')
                continue
            f = fans[col]
            for k, tip in enumerate(f['fan']):
                ax.plot(tip[:, 1], tip[:, 0], '-', lw=1, alpha=0.7, color=f'C{k % 10}')
            ax.plot(f['tip'][1], f['tip'][0], 'ko', ms=6, zorder=4)
            spread = float(np.max(np.ptp(f['fan'][:, -1, :2], axis=0)))
            _top_view(ax, geometry, f"{label}: {f['episode']} at {f['t']:.1f} s\n"
                      f"{len(f['fan'])} samples, end spread {spread * 100:.1f} cm")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------- videos
def choose_video_episodes(rollouts: Sequence[Rollout], successes: int = 2,
                          max_videos: int = 6) -> list[Rollout]:
    """The first `successes` successful episodes and every failure, at most `max_videos`
    (failures first: they are what one looks for)."""
    failed = [r for r in rollouts if not r.success]
    good = [r for r in rollouts if r.success][:successes]
    chosen = (failed + good)[:max_videos]
    return sorted(chosen, key=lambda r: r.episode)


def _frames(bag, windows: Sequence[tuple[float, float]]) -> list[list[tuple[float, np.ndarray]]]:
    """Camera frames (stamp, rgb8) inside each window, from the bag's camera topic."""
    from dp_common.images import image_to_rgb8
    out: list[list] = [[] for _ in windows]
    if IMAGES not in bagio.bag_topics(bag):
        return out
    for raw in bagio.iter_raw(bag, [IMAGES]):
        msg = bagio.deserialize(raw)
        t = _stamp(msg.header)
        for i, (lo, hi) in enumerate(windows):
            if lo <= t < hi:
                out[i].append((t, image_to_rgb8(msg)))
    return out


class _Camera:
    """Pinhole projection: pose of camera_info's frame from the URDF, K from camera_info."""

    def __init__(self, info, urdf=None):
        from dp_common.kinematics import KinematicChain
        if urdf is None:
            from dp_sim.env import default_urdf_path
            urdf = default_urdf_path()
        frame = info.header.frame_id
        T = KinematicChain.from_urdf(urdf, tip=frame).pose(np.zeros(0))
        self.world_to_cam = np.linalg.inv(T)
        self.K = np.asarray(info.k, dtype=float).reshape(3, 3)

    def project(self, p_world: np.ndarray) -> np.ndarray:
        """Pixel coordinates (N, 2); NaN for points not in front of the camera."""
        p = p_world @ self.world_to_cam[:3, :3].T + self.world_to_cam[:3, 3]
        uvw = p @ self.K.T
        with np.errstate(invalid='ignore', divide='ignore'):
            uv = uvw[:, :2] / uvw[:, 2:3]
        uv[p[:, 2] <= 1e-6] = np.nan
        return uv


def _draw(frame: np.ndarray, camera: Optional[_Camera], r: Rollout, t: float) -> np.ndarray:
    from PIL import Image, ImageDraw
    img = Image.fromarray(frame).resize((frame.shape[1] * VIDEO_SCALE,
                                         frame.shape[0] * VIDEO_SCALE), Image.NEAREST)
    d = ImageDraw.Draw(img)
    if camera is not None:
        s = VIDEO_SCALE
        done = camera.project(r.tip[(r.t <= t)]) * s
        done = done[np.all(np.isfinite(done), axis=1)]
        if len(done) > 1:
            d.line([tuple(p) for p in done], fill=(255, 255, 255), width=1)
        # The newest chunk published by then (not by its observation stamp: it appears once the
        # policy has computed it).
        chunk = next((c for c in reversed(r.chunks) if c[3] <= t), None)
        if chunk is not None:
            pts = camera.project(chunk[2]) * s
            pts = pts[np.all(np.isfinite(pts), axis=1)]
            if len(pts) > 1:
                d.line([tuple(p) for p in pts], fill=(255, 210, 0), width=2)
            for p in pts:
                d.ellipse([p[0] - 1.5, p[1] - 1.5, p[0] + 1.5, p[1] + 1.5], fill=(255, 120, 0))
    d.text((4, 2), f'episode {r.episode}  {t - r.t0:4.1f} s', fill=(255, 255, 255))
    return np.asarray(img)


def episode_videos(bag: str | Path, rollouts: Sequence[Rollout], info, out_dir: Path,
                   prefix: str, urdf=None) -> list[tuple[Rollout, Path, int]]:
    """A video per rollout (camera frames of its episode at the camera's rate, the executed tip
    path in white, the newest published chunk in yellow); returns (rollout, path, width in
    pixels) for those with frames. Without camera_info, or with a camera frame the URDF does
    not have, the frames are shown without the overlay."""
    from dp_eval.video import write_video
    camera = None
    if info is not None and info.header.frame_id:
        try:
            camera = _Camera(info, urdf)
        except ValueError:
            camera = None
    frames = _frames(bag, [(r.t0, r.t1) for r in rollouts])
    out = []
    for r, fr in zip(rollouts, frames):
        if not fr:
            continue
        drawn = [_draw(img, camera, r, t) for t, img in fr]
        stamps = np.array([t for t, _ in fr])
        fps = 1.0 / float(np.median(np.diff(stamps))) if len(stamps) > 2 else 20.0
        path = write_video(drawn, Path(out_dir) / f'{prefix}_episode_{r.episode}',
                           fps=float(np.clip(fps, 1.0, 120.0)))
        out.append((r, path, int(drawn[0].shape[1])))
    return out


# ---------------------------------------------------------------------------------- all of it
def robot_urdf(result: dict) -> Optional[str]:
    """The URDF of the arm a closed-loop result ran, where its robot config names one
    (robot_description_file of the follower or the policy node), else None (the default arm)."""
    import yaml

    from dp_common.params import resolve_path
    config = ((result.get('config') or {}).get('launch_args') or {}).get('robot_config')
    if not config or not Path(config).is_file():
        return None
    data = yaml.safe_load(Path(config).read_text()) or {}
    for node in ('follower_node', 'policy_node'):
        given = ((data.get(node) or {}).get('ros__parameters') or {}).get('robot_description_file')
        if given:
            return resolve_path(str(given))
    return None


def closed_loop_visuals(results: Sequence[dict], out_dir: str | Path, fans: int = 3,
                        fan_samples: int = 16, video_successes: int = 2, max_videos: int = 6,
                        log=print) -> list[dict]:
    """The figures and videos of closed-loop results that have a recorded bag (`--record`),
    written under out_dir/plots and out_dir/videos; returns the visuals for report.write_report
    and adds a 'rollouts' block (per-episode clearance, video files) to each result. A result
    whose bag cannot be read gets the reason in its errors, the others go on."""
    out = Path(out_dir)
    plots, videos = out / 'plots', out / 'videos'
    plots.mkdir(parents=True, exist_ok=True)
    geometry = task_geometry()
    per_policy, fan_sets, visuals = [], [], []
    for i, r in enumerate(results):
        if r.get('kind') != 'closed_loop' or not r.get('bag') or not Path(r['bag']).is_dir():
            continue
        label = str(r.get('label'))
        episodes = [e['episode'] for e in r.get('episodes', [])] or None
        urdf = robot_urdf(r)       # the arm that ran (another than the default: its own FK)
        try:
            rollouts, info = read_rollouts(r['bag'], urdf=urdf, geometry=geometry,
                                           episodes=episodes)
        except Exception as exc:    # noqa: BLE001 - a figure must not sink the report
            r.setdefault('errors', []).append(f'rollouts of {r["bag"]}: {exc!r}')
            continue
        per_policy.append((label, rollouts))
        block = {'clearance_m': {str(x.episode): x.clearance_m for x in rollouts}, 'videos': []}
        r['rollouts'] = block
        try:
            chosen = choose_video_episodes(rollouts, video_successes, max_videos)
            for x, path, width in episode_videos(r['bag'], chosen, info, videos, f'{i}_{label}'):
                rel = str(path.relative_to(out))
                block['videos'].append(rel)
                visuals.append({'kind': 'video' if path.suffix == '.mp4' else 'image',
                                'path': rel, 'section': 'Videos', 'width': width,
                                'caption': f'{label}, episode {x.episode}: '
                                           f'{"success, " + x.side if x.success else "failed"}'
                                           f'{", obstacle contact" if x.contact else ""}'})
        except Exception as exc:    # noqa: BLE001
            r.setdefault('errors', []).append(f'videos: {exc!r}')
        if fans > 0 and r.get('checkpoint') and urdf is not None and \
                _chain(urdf).joint_names != _chain().joint_names:
            log(f'{label}: no sampled futures: the run\'s arm ({urdf}) is not the one the '
                'demonstration decoder reads')
        elif fans > 0 and r.get('checkpoint'):
            try:
                fan_sets.append((label, sample_fans(r['checkpoint'], r['bag'], fans,
                                                    samples=fan_samples, episodes=episodes)))
            except Exception as exc:    # noqa: BLE001
                r.setdefault('errors', []).append(f'sampled futures: {exc!r}')
    try:
        visuals[:0] = _figures(per_policy, fan_sets, geometry, plots, fan_samples)
    except Exception as exc:    # noqa: BLE001
        for r in results:
            r.setdefault('errors', []).append(f'rollout figures: {exc!r}')
    return visuals


def _figures(per_policy, fan_sets, geometry, plots: Path, fan_samples: int) -> list[dict]:
    visuals = []
    if plot_paths(per_policy, geometry, plots / 'paths.png'):
        visuals.append({'kind': 'image', 'path': 'plots/paths.png', 'section': 'Rollouts',
                        'caption': 'end-effector paths (top view, as the camera sees the '
                                   'table), coloured by side'})
    if plot_clearance(per_policy, plots / 'clearance.png'):
        visuals.append({'kind': 'image', 'path': 'plots/clearance.png', 'section': 'Rollouts',
                        'caption': 'minimum clearance to the obstacle per episode'})
    if plot_fans(fan_sets, geometry, plots / 'fans.png'):
        visuals.append({'kind': 'image', 'path': 'plots/fans.png', 'section': 'Rollouts',
                        'caption': f'{fan_samples} sampled chunks at the same observation '
                                   '(the fan of futures), per policy'})
    return visuals
