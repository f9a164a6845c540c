"""LeRobot dataset v3.0 <-> `Episode`s (ROS-free: numpy, pyarrow, PyAV).

    read_lerobot(root)                      a LeRobot v3.0 folder -> (episodes, EpisodeSetMeta)
    write_lerobot(episodes, meta, root)     episodes -> a LeRobot v3.0 folder
    dp_bag_to_lerobot BAGS... --out DIR     rosbag2 demonstrations -> a LeRobot v3.0 folder

The format, as written by LeRobot itself (our own code; nothing copied). Followed:
huggingface/lerobot at commit 7427f31801f944f5ec9ce53cda02862ce7d1638b,
`src/lerobot/datasets/utils.py` (path templates, DatasetInfo fields and defaults),
`src/lerobot/utils/constants.py` (DEFAULT_FEATURES), `src/lerobot/datasets/dataset_metadata.py`
(CODEBASE_VERSION "v3.0", the episodes parquet rows), `src/lerobot/datasets/dataset_writer.py`
(data rows, video shards and their from/to timestamps), `src/lerobot/datasets/dataset_reader.py`
(frames of an episode: rows dataset_from_index..dataset_to_index, video frame at
`videos/<key>/from_timestamp` + the row's `timestamp`), `src/lerobot/datasets/video_utils.py`
(the `info` of a video feature, PyAV decoding with a 1e-4 s tolerance),
`src/lerobot/datasets/compute_stats.py` (stats.json), `src/lerobot/configs/video.py` (encoder
info keys) and `src/lerobot/scripts/convert_dataset_v21_to_v30.py` (v2.1 vs v3.0 layout).

    meta/info.json                               codebase_version "v3.0", fps (int), features,
                                                 totals, chunks_size, *_files_size_in_mb,
                                                 data_path, video_path, robot_type, splits
    meta/stats.json                              {feature: {min, max, mean, std, count, q01..q99}}
    meta/tasks.parquet                           task_index, task (the pandas index)
    meta/episodes/chunk-000/file-000.parquet     one row per episode: episode_index, tasks, length,
                                                 data/chunk_index, data/file_index,
                                                 dataset_from_index, dataset_to_index,
                                                 videos/<key>/{chunk_index,file_index,
                                                 from_timestamp,to_timestamp}, stats/<f>/<stat>,
                                                 meta/episodes/{chunk_index,file_index}
    data/chunk-000/file-000.parquet              one row per frame: the non-video features +
                                                 timestamp, frame_index, episode_index, index,
                                                 task_index (one row group per episode)
    videos/<key>/chunk-000/file-000.mp4          one camera, the episodes one after another

What maps to what: `observation.state` -> Episode.state and `action` -> Episode.action, their
columns matched by the features' `names` (our joint names; a `{"motors": [...]}` names dict is
read too); `observation.images.<cam>` (video, or image features stored in the parquet) ->
Episode.images[<cam>]; fps -> dt_s = 1 / fps; Episode.t = frame_index / fps (LeRobot's
timestamps start at 0 in every episode, so the bags' absolute stamps are not kept).

Video: written with libx264 (H.264), yuv420p, crf 18, GOP 2 (LeRobot's default GOP, which keeps
its random-access reader fast); LeRobot itself writes AV1 by default, and any codec PyAV decodes
is read. yuv420p is lossy (chroma at half resolution, limited-range BT.601 YUV, the crf
quantiser): a round trip moves pixels by a few levels. `lossless=True` writes H.264 RGB
(libx264rgb, qp 0): bit-exact, several times larger, and a pix_fmt (gbrp) that LeRobot's encoder
settings and browsers do not expect -- for our own round trips only.

Not supported: depth-map video features, v2.x and older datasets (LeRobot's
convert_dataset_v21_to_v30 converts them), language/tool columns, writing image (PNG-in-parquet)
features, splitting files at the *_files_size_in_mb limits (we write one file of each kind;
LeRobot's readers follow the episodes' indices and do not need the split).
"""
from __future__ import annotations

import argparse
import fractions
import hashlib
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from dp_common.images import resize_rgb8
from dp_policy.data.episode import Episode, EpisodeSetMeta, common_image_hw

__all__ = ['LeRobotError', 'read_lerobot', 'write_lerobot', 'is_lerobot_dataset',
           'dataset_summary', 'main', 'CODEBASE_VERSION']

CODEBASE_VERSION = 'v3.0'
INFO_PATH = 'meta/info.json'
STATS_PATH = 'meta/stats.json'
TASKS_PATH = 'meta/tasks.parquet'
EPISODES_DIR = 'meta/episodes'
CHUNK_FILE = 'chunk-{chunk_index:03d}/file-{file_index:03d}'
EPISODES_PATH = EPISODES_DIR + '/' + CHUNK_FILE + '.parquet'
DATA_PATH = 'data/' + CHUNK_FILE + '.parquet'
VIDEO_PATH = 'videos/{video_key}/' + CHUNK_FILE + '.mp4'
CHUNKS_SIZE = 1000            # LeRobot's defaults (utils.py), recorded in info.json
DATA_FILES_SIZE_MB = 100
VIDEO_FILES_SIZE_MB = 200
DEFAULT_FEATURES = {          # lerobot.utils.constants.DEFAULT_FEATURES, in that order
    'timestamp': {'dtype': 'float32', 'shape': [1], 'names': None},
    'frame_index': {'dtype': 'int64', 'shape': [1], 'names': None},
    'episode_index': {'dtype': 'int64', 'shape': [1], 'names': None},
    'index': {'dtype': 'int64', 'shape': [1], 'names': None},
    'task_index': {'dtype': 'int64', 'shape': [1], 'names': None},
}
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)   # compute_stats.DEFAULT_QUANTILES -> q01 .. q99
TOLERANCE_S = 1e-4            # LeRobotDataset's default tolerance_s (timestamps and video frames)
IMAGE_PREFIXES = ('observation.images.', 'observation.')
VIDEO_CRF = 18
VIDEO_GOP = 2


class LeRobotError(ValueError):
    """A LeRobot dataset cannot be read or written; the message names the folder and the file."""


# ---------------------------------------------------------------------------------------------
# Reading


def is_lerobot_dataset(path: str | os.PathLike) -> bool:
    """True for a folder holding meta/info.json (any version: read_lerobot says what it refuses)."""
    return (Path(path) / INFO_PATH).is_file()


def _pq():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:  # pragma: no cover - pyarrow is in requirements.txt
        raise LeRobotError('LeRobot datasets need pyarrow (pip install pyarrow; it is in '
                           'requirements.txt)') from err
    return pa, pq


def _load_info(root: Path) -> dict:
    file = root / INFO_PATH
    if not file.is_file():
        raise LeRobotError(f'{root}: not a LeRobot dataset ({INFO_PATH} not found)')
    try:
        info = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise LeRobotError(f'{file}: unreadable JSON: {err}') from err
    if not isinstance(info, dict):
        raise LeRobotError(f'{file}: expected a JSON object')
    version = str(info.get('codebase_version', ''))
    major = version.lstrip('v').split('.')[0]
    if major != '3':
        hint = ''
        if major == '2':
            hint = (f'; convert it with LeRobot: python -m '
                    f'lerobot.scripts.convert_dataset_v21_to_v30 '
                    f"--repo-id=<id> --root={root} --push-to-hub=false")
        raise LeRobotError(f'{file}: codebase_version {version or "(missing)"!r} is not supported: '
                           f'only LeRobot dataset {CODEBASE_VERSION} is read (v2.x keeps one '
                           f'parquet/mp4 per episode and meta/episodes.jsonl){hint}')
    for key in ('fps', 'features'):
        if key not in info:
            raise LeRobotError(f'{file}: no {key!r}')
    if not isinstance(info['features'], dict):
        raise LeRobotError(f'{file}: features must be an object')
    try:
        fps = float(info['fps'])
    except (TypeError, ValueError):
        fps = 0.0
    if not (fps > 0 and np.isfinite(fps)):
        raise LeRobotError(f'{file}: fps must be a positive number, got {info["fps"]!r}')
    return info


def dataset_summary(root: str | os.PathLike) -> dict:
    """What a checkpoint records of the LeRobot dataset it was trained from (info.json)."""
    root = Path(root)
    info = _load_info(root)
    return {'root': str(root.resolve()), 'codebase_version': info.get('codebase_version'),
            'fps': info.get('fps'), 'robot_type': info.get('robot_type'),
            'total_episodes': info.get('total_episodes'), 'total_frames': info.get('total_frames')}


def _feature_names(ft: dict) -> Optional[list[str]]:
    """A vector feature's `names`: a list of strings, or a dict holding one such list
    (older datasets: {"motors": [...]}); None where absent or not one name per column."""
    names = ft.get('names')
    if isinstance(names, dict) and len(names) == 1:
        names = next(iter(names.values()))
    shape = ft.get('shape') or [0]
    if isinstance(names, list) and len(names) == shape[0] and \
            all(isinstance(n, str) for n in names):
        return list(names)
    return None


def _camera_name(key: str) -> str:
    for prefix in IMAGE_PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            return key[len(prefix):]
    return key


def _is_depth(ft: dict) -> bool:
    info = ft.get('info') or {}
    video_info = ft.get('video_info') or {}
    return bool(info.get('is_depth_map') or info.get('video.is_depth_map')
                or video_info.get('video.is_depth_map'))


def _pick_cameras(root: Path, features: dict,
                  camera_keys: Optional[Sequence[str]]) -> dict[str, str]:
    """Camera name -> feature key."""
    visual = {k: ft for k, ft in features.items() if ft.get('dtype') in ('video', 'image')}
    if camera_keys is None:
        keys = [k for k, ft in visual.items() if not _is_depth(ft)]
    else:
        by_name = {_camera_name(k): k for k in visual}
        keys = []
        for k in camera_keys:
            key = k if k in visual else by_name.get(k)
            if key is None:
                raise LeRobotError(f'{root / INFO_PATH}: no video or image feature {k!r}; '
                                   f'present: {sorted(visual) or "none"}')
            if _is_depth(visual[key]):
                raise LeRobotError(f'{root / INFO_PATH}: {key} is a depth map; depth cameras are '
                                   f'not supported')
            keys.append(key)
    cams = {_camera_name(k): k for k in keys}
    if len(cams) != len(keys):
        raise LeRobotError(f'{root / INFO_PATH}: cameras {keys} do not have distinct names')
    for key in keys:
        shape = list(visual[key].get('shape') or [])
        if len(shape) != 3 or 3 not in (shape[-1], shape[0]):
            raise LeRobotError(f'{root / INFO_PATH}: {key} has shape {shape}; only RGB images '
                               f'(H, W, 3) are supported')
    return cams


def _columns(root: Path, info: dict, key: str, joint_names: Optional[list[str]],
             role: str) -> tuple[list[int], Optional[list[str]]]:
    """Column indices of `key` for joint_names (by the feature's names; in order where it has
    none), and the names it has."""
    ft = info['features'].get(key)
    where = root / INFO_PATH
    if ft is None:
        vec = sorted(k for k, f in info['features'].items() if len(f.get('shape') or []) == 1)
        raise LeRobotError(f'{where}: no {role} feature {key!r}; vector features: {vec}')
    shape = list(ft.get('shape') or [])
    if len(shape) != 1 or not str(ft.get('dtype', '')).startswith(('float', 'int')):
        raise LeRobotError(f'{where}: {role} feature {key!r} must be a numeric vector, got '
                           f'dtype {ft.get("dtype")!r} shape {shape}')
    names = _feature_names(ft)
    if joint_names is None:
        return list(range(shape[0])), names
    if names is None:
        if len(joint_names) != shape[0]:
            raise LeRobotError(f'{where}: {role} feature {key!r} has {shape[0]} unnamed columns, '
                               f'{len(joint_names)} joint names given {joint_names}')
        return list(range(shape[0])), names
    missing = [j for j in joint_names if j not in names]
    if missing:
        raise LeRobotError(f'{where}: {role} feature {key!r} has no columns {missing}; its names: '
                           f'{names}')
    return [names.index(j) for j in joint_names], names


def _vectors(table, key: str, n: int, file: Path) -> np.ndarray:
    """A parquet column of numbers or of fixed-length lists -> (n, D) float64."""
    pa, _ = _pq()
    col = table.column(key).combine_chunks()
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or \
            pa.types.is_fixed_size_list(col.type):
        flat = np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float64)
        if n == 0 or flat.size % n:
            raise LeRobotError(f'{file}: column {key!r} has rows of different lengths')
        return flat.reshape(n, -1)
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64).reshape(n, 1)


def _read_table(file: Path, columns: Optional[list[str]] = None):
    _, pq = _pq()
    if not file.is_file():
        raise LeRobotError(f'{file}: not found')
    try:
        if columns is not None:
            have = set(pq.read_schema(file).names)
            missing = [c for c in columns if c not in have]
            if missing:
                raise LeRobotError(f'{file}: no column(s) {missing}')
        return pq.read_table(file, columns=columns)
    except LeRobotError:
        raise
    except Exception as err:  # pyarrow raises ArrowInvalid / OSError for damaged files
        raise LeRobotError(f'{file}: unreadable parquet: {err}') from err


def _episodes_table(root: Path, video_keys: list[str]) -> dict[str, np.ndarray]:
    pa, _ = _pq()
    files = sorted((root / EPISODES_DIR).glob('*/*.parquet'))
    if not files:
        raise LeRobotError(f'{root}: no episodes metadata ({EPISODES_DIR}/chunk-*/file-*.parquet)')
    cols = ['episode_index', 'length', 'data/chunk_index', 'data/file_index',
            'dataset_from_index', 'dataset_to_index']
    for key in video_keys:
        cols += [f'videos/{key}/{c}' for c in ('chunk_index', 'file_index', 'from_timestamp',
                                                'to_timestamp')]
    table = pa.concat_tables([_read_table(f, cols) for f in files])
    out = {c: table.column(c).to_numpy() for c in cols}
    order = np.argsort(out['episode_index'], kind='stable')
    return {c: v[order] for c, v in out.items()}


def _decode_png(cell: Any, root: Path, file: Path, key: str) -> np.ndarray:
    from PIL import Image as PILImage

    data = cell.get('bytes') if isinstance(cell, dict) else None
    if data is None and isinstance(cell, dict) and cell.get('path'):
        path = root / cell['path']
        if not path.is_file():
            raise LeRobotError(f'{file}: {key}: image file {path} not found')
        data = path.read_bytes()
    if data is None:
        raise LeRobotError(f'{file}: {key}: an image cell without bytes or path')
    with PILImage.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert('RGB'), dtype=np.uint8).copy()


def _decode_videos(root: Path, info: dict, key: str, eps: dict[str, np.ndarray],
                   slots: list[int], timestamps: list[np.ndarray],
                   image_hw: Optional[tuple[int, int]]) -> list[np.ndarray]:
    """The frames of episodes `slots` (rows of `eps`) of video feature `key` at their
    `timestamps` -> one (T, H, W, 3) uint8 array per slot, in order."""
    import av

    template = info.get('video_path') or VIDEO_PATH
    out: list[Optional[np.ndarray]] = [None] * len(slots)
    files: dict[tuple[int, int], list[int]] = {}
    for n, s in enumerate(slots):
        cf = (int(eps[f'videos/{key}/chunk_index'][s]), int(eps[f'videos/{key}/file_index'][s]))
        files.setdefault(cf, []).append(n)
    for (chunk, fidx), members in sorted(files.items()):
        file = root / template.format(video_key=key, chunk_index=chunk, file_index=fidx)
        if not file.is_file():
            raise LeRobotError(f'{file}: video not found (feature {key})')
        starts = [float(eps[f'videos/{key}/from_timestamp'][slots[n]]) for n in members]
        ends = [float(eps[f'videos/{key}/to_timestamp'][slots[n]]) for n in members]
        q_t = np.concatenate([starts[m] + timestamps[n].astype(np.float64)
                              for m, n in enumerate(members)])
        q_owner = np.concatenate([np.full(len(timestamps[n]), m) for m, n in enumerate(members)])
        q_row = np.concatenate([np.arange(len(timestamps[n])) for n in members])
        order = np.argsort(q_t, kind='stable')
        q_t, q_owner, q_row = q_t[order], q_owner[order], q_row[order]
        best = np.full(len(q_t), np.inf)
        frames: list[list[Optional[np.ndarray]]] = [[None] * len(timestamps[n]) for n in members]
        frame_times = []
        try:
            with av.open(str(file)) as container:
                if not container.streams.video:
                    raise LeRobotError(f'{file}: no video stream')
                stream = container.streams.video[0]
                stream.thread_type = 'AUTO'
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    ft = float(frame.pts * stream.time_base)
                    frame_times.append(ft)
                    lo = int(np.searchsorted(q_t, ft - TOLERANCE_S, 'left'))
                    hi = int(np.searchsorted(q_t, ft + TOLERANCE_S, 'right'))
                    if lo < hi:
                        rgb = resize_rgb8(frame.to_ndarray(format='rgb24'), image_hw)
                        for j in range(lo, hi):
                            d = abs(ft - q_t[j])
                            if d < best[j]:
                                best[j] = d
                                frames[q_owner[j]][q_row[j]] = rgb
        except LeRobotError:
            raise
        except Exception as err:  # av.error.* for damaged or unsupported files
            raise LeRobotError(f'{file}: cannot decode: {err}') from err
        ft_all = np.sort(np.asarray(frame_times))
        for m, n in enumerate(members):
            s = slots[n]
            length = len(timestamps[n])
            count = int(np.searchsorted(ft_all, ends[m] - TOLERANCE_S, 'left') -
                        np.searchsorted(ft_all, starts[m] - TOLERANCE_S, 'left'))
            missing = [i for i, f in enumerate(frames[m]) if f is None]
            if missing or count != length:
                i = missing[0] if missing else 0
                raise LeRobotError(
                    f'{file}: episode {int(eps["episode_index"][s])} ({key}) has {count} video '
                    f'frames in [{starts[m]:.4f}, {ends[m]:.4f}) s for {length} rows'
                    + (f'; no frame within {TOLERANCE_S}s of t={starts[m] + timestamps[n][i]:.4f}s'
                       if missing else ''))
            out[n] = np.stack(frames[m])
    return out  # type: ignore[return-value]


def _episode_rows(root: Path, file: Path, sub, ep_index: int, length: int, fps: float, state,
                  action, image_keys: list[str], image_hw) -> dict:
    """One episode's rows of a data file (`sub`, in any order) -> its timestamps, state and action
    columns (state/action: (key, columns)), images stored in the parquet, and the file; checked
    against the episodes metadata and the fps grid."""
    (state_key, s_idx), (action_key, a_idx) = state, action
    frame_index = sub.column('frame_index').to_numpy()
    order = np.argsort(frame_index, kind='stable')
    sub, frame_index = sub.take(order), frame_index[order]
    n = len(frame_index)
    if n != length or not np.array_equal(frame_index, np.arange(n)):
        raise LeRobotError(f'{file}: episode {ep_index} has {n} rows (frame_index '
                           f'{frame_index[:3].tolist()}..), the episodes metadata says '
                           f'{length} frames 0..{length - 1}')
    ts = sub.column('timestamp').to_numpy().astype(np.float64)
    off = np.abs(ts - ts[:1] - frame_index / fps)   # 1/fps apart, as LeRobot checks
    if n and off.max() > TOLERANCE_S:
        k = int(np.argmax(off))
        raise LeRobotError(f'{file}: episode {ep_index} frame {k}: timestamp {ts[k]:.6f}s '
                           f'is off the {fps:g} fps grid ({ts[0] + k / fps:.6f}s)')
    state = _vectors(sub, state_key, n, file)
    action = _vectors(sub, action_key, n, file)
    images = {}
    for key in image_keys:
        frames = [resize_rgb8(_decode_png(c, root, file, key), image_hw)
                  for c in sub.column(key).to_pylist()]
        images[key] = np.stack(frames)
    return {'ts': ts, 'state': state[:, s_idx], 'action': action[:, a_idx],
            'images': images, 'file': file}


def read_lerobot(root: str | os.PathLike, joint_names: Optional[Sequence[str]] = None,
                 state_key: str = 'observation.state', action_key: str = 'action',
                 camera_keys: Optional[Sequence[str]] = None,
                 image_hw: Optional[tuple[int, int]] = None, progress: bool = False
                 ) -> tuple[list[Episode], EpisodeSetMeta]:
    """A LeRobot v3.0 dataset folder -> (episodes, EpisodeSetMeta).

    joint_names: the state/action columns to keep, by the features' `names` (default: every
    column of `state_key`, named by its `names`, else joint_0..). camera_keys: video or image
    features (keys, or camera names such as 'front' for observation.images.front); default all
    of them but depth maps; [] = none. image_hw: resize every frame (dp_common's resize).
    Raises LeRobotError naming the folder and the file.
    """
    root = Path(root)
    t_start = time.monotonic()
    info = _load_info(root)
    fps = float(info['fps'])
    features = info['features']
    given = [str(j) for j in joint_names] if joint_names else None
    s_idx, s_names = _columns(root, info, state_key, given, 'state')
    names = given or s_names or [f'joint_{i}' for i in range(len(s_idx))]
    a_idx, _ = _columns(root, info, action_key, given or s_names, 'action')
    if len(a_idx) != len(s_idx):
        raise LeRobotError(f'{root / INFO_PATH}: {state_key} has {len(s_idx)} columns, '
                           f'{action_key} {len(a_idx)}: name the joints both share '
                           f'(joint_names / --joint-names)')
    if image_hw is not None:
        image_hw = (int(image_hw[0]), int(image_hw[1]))
    cams = _pick_cameras(root, features, camera_keys)
    video_keys = [k for k in cams.values() if features[k].get('dtype') == 'video']
    image_keys = [k for k in cams.values() if features[k].get('dtype') == 'image']
    eps = _episodes_table(root, video_keys)
    n_eps = len(eps['episode_index'])
    if n_eps == 0:
        raise LeRobotError(f'{root / EPISODES_DIR}: no episodes')

    data_template = info.get('data_path') or DATA_PATH
    rows: list[dict] = [dict() for _ in range(n_eps)]
    by_file: dict[tuple[int, int], list[int]] = {}
    for s in range(n_eps):
        by_file.setdefault((int(eps['data/chunk_index'][s]), int(eps['data/file_index'][s])),
                           []).append(s)
    cols = ['episode_index', 'frame_index', 'timestamp', state_key, action_key] + image_keys
    for (chunk, fidx), members in sorted(by_file.items()):
        file = root / data_template.format(chunk_index=chunk, file_index=fidx)
        table = _read_table(file, cols)
        ep_col = table.column('episode_index').to_numpy()
        for s in members:
            rows[s] = _episode_rows(root, file, table.take(np.flatnonzero(
                ep_col == int(eps['episode_index'][s]))), int(eps['episode_index'][s]),
                int(eps['length'][s]), fps, (state_key, s_idx), (action_key, a_idx), image_keys,
                image_hw)

    decoded: dict[str, list[np.ndarray]] = {}
    for key in video_keys:
        decoded[key] = _decode_videos(root, info, key, eps, list(range(n_eps)),
                                      [r['ts'] for r in rows], image_hw)

    episodes = []
    for s in range(n_eps):
        ep_index = int(eps['episode_index'][s])
        imgs = {cam: decoded[key][s] if key in decoded else rows[s]['images'][key]
                for cam, key in cams.items()}
        n = len(rows[s]['ts'])
        try:
            episodes.append(Episode(name=f'{root.name}/episode_{ep_index:06d}',
                                    t=np.arange(n, dtype=np.float64) / fps,
                                    state=rows[s]['state'].astype(np.float32),
                                    action=rows[s]['action'].astype(np.float32), images=imgs))
        except ValueError as err:
            raise LeRobotError(f'{rows[s]["file"]}: {err}') from err
    try:
        image_size = common_image_hw(episodes)
    except ValueError as err:
        raise LeRobotError(f'{err}; give image_hw (--image-size) to resize them') from None
    settings = json.dumps({'joints': names, 'state': state_key, 'action': action_key,
                           'cams': cams, 'hw': image_hw}, sort_keys=True)
    meta = EpisodeSetMeta(joint_names=list(names), camera_names=list(cams), image_hw=image_size,
                          dt_s=1.0 / fps, fingerprint=_fingerprint(root, settings))
    if progress:
        print(f'[lerobot] {root}: {len(episodes)} episode(s), {sum(len(e) for e in episodes)} '
              f'frames at {fps:g} fps, joints {names}, cameras {list(cams) or "none"} '
              f'({time.monotonic() - t_start:.1f}s)', file=sys.stderr)
    return episodes, meta


def _fingerprint(root: Path, settings: str) -> str:
    h = hashlib.sha256((root / INFO_PATH).read_bytes())
    for sub in ('meta', 'data', 'videos'):
        for f in sorted((root / sub).rglob('*')):
            if f.is_file():
                h.update(f'{f.relative_to(root)}:{f.stat().st_size};'.encode())
    h.update(settings.encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Writing


def _stats(x: np.ndarray) -> dict[str, Any]:
    """(N, D) -> min, max, mean, std (population), count, q01..q99 per column (compute_stats'
    keys; the quantiles exact rather than from histograms)."""
    x = np.asarray(x, dtype=np.float64)
    out = {'min': x.min(0), 'max': x.max(0), 'mean': x.mean(0), 'std': x.std(0),
           'count': np.array([len(x)])}
    for q, v in zip(QUANTILES, np.quantile(x, QUANTILES, axis=0)):
        out[f'q{int(round(q * 100)):02d}'] = v
    return {k: v.tolist() for k, v in out.items()}


def _image_stats(videos: list, max_frames: int = 100) -> dict[str, Any]:
    """Frames of one camera, as a list of (T_i, H, W, 3) uint8 arrays (episodes) -> per-channel
    stats in [0, 1], shaped (3, 1, 1) as LeRobot's, on at most `max_frames` evenly spaced frames
    (as LeRobot samples them; picked without concatenating the episodes); count = frames."""
    total = sum(len(v) for v in videos)
    idx = np.unique(np.linspace(0, total - 1, min(total, max_frames)).round().astype(int))
    starts = np.cumsum([0] + [len(v) for v in videos])
    ep = np.searchsorted(starts, idx, side='right') - 1
    px = np.stack([videos[e][i - starts[e]] for e, i in zip(ep, idx)])
    px = px.reshape(-1, 3).astype(np.float64) / 255.0
    out = {k: [[[c]] for c in v] for k, v in _stats(px).items()}
    out['count'] = [total]
    return out


def _write_parquet(path: Path, tables: list, pandas_index: Optional[str] = None) -> None:
    pa, pq = _pq()
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = tables[0].schema
    if pandas_index is not None:
        pandas = json.dumps(_pandas_meta(schema, pandas_index)).encode()
        schema = schema.with_metadata({b'pandas': pandas})
    with pq.ParquetWriter(path, schema, compression='snappy') as w:
        for t in tables:      # one row group per table (per episode, as LeRobot writes them)
            w.write_table(t.cast(schema))


def _pandas_meta(schema, index: str) -> dict:
    """The b'pandas' schema metadata that makes pandas.read_parquet take `index` as the index
    (LeRobot reads tasks.parquet with pandas and looks tasks up by that index)."""
    import pyarrow as pa

    def col(field):
        if pa.types.is_string(field.type):
            return {'name': field.name, 'field_name': field.name, 'pandas_type': 'unicode',
                    'numpy_type': 'object', 'metadata': None}
        return {'name': field.name, 'field_name': field.name, 'pandas_type': str(field.type),
                'numpy_type': str(field.type), 'metadata': None}
    return {'index_columns': [index],
            'column_indexes': [{'name': None, 'field_name': None, 'pandas_type': 'unicode',
                                'numpy_type': 'object', 'metadata': {'encoding': 'UTF-8'}}],
            'columns': [col(f) for f in schema if f.name != index] +
                       [col(schema.field(index))],
            'creator': {'library': 'pyarrow', 'version': pa.__version__},
            'pandas_version': '2.2.3'}


def _encode_video(path: Path, episodes: Sequence[Episode], cam: str, fps: int, crf: int,
                  lossless: bool) -> dict:
    """All episodes' frames of `cam` into one mp4, pts = global frame index / fps. Returns the
    feature's `info` (video_utils.get_video_info's keys plus the encoder settings)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = episodes[0].images[cam].shape[1:3]
    codec, pix_fmt = ('libx264rgb', 'rgb24') if lossless else ('libx264', 'yuv420p')
    options = {'g': str(VIDEO_GOP)}
    options.update({'qp': '0'} if lossless else {'crf': str(int(crf)), 'preset': 'medium'})
    pts = 0
    with av.open(str(path), 'w') as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        stream.codec_context.time_base = fractions.Fraction(1, fps)
        for ep in episodes:
            for img in ep.images[cam]:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format='rgb24')
                frame.pts = pts
                pts += 1
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(path)) as container:
        s = container.streams.video[0]
        vinfo = {'video.height': s.height, 'video.width': s.width,
                 'video.codec': s.codec.canonical_name, 'video.pix_fmt': s.pix_fmt,
                 'video.fps': int(s.base_rate) if s.base_rate else fps, 'video.channels': 3,
                 'has_audio': bool(container.streams.audio)}
    vinfo.update({'video.g': VIDEO_GOP, 'video.crf': None if lossless else int(crf),
                  'video.preset': None if lossless else 'medium', 'video.fast_decode': 0,
                  'video.extra_options': {'qp': 0} if lossless else {},
                  'video.video_backend': 'pyav', 'is_depth_map': False})
    return vinfo


def _checked_fps(episodes: Sequence[Episode], meta: EpisodeSetMeta, root: Path,
                 fps: Optional[int], lossless: bool) -> int:
    """The dataset's fps (1 / meta.dt_s, a whole number), after checking that every episode has
    the joints and cameras of `meta` and images the codec can take."""
    rate = 1.0 / float(meta.dt_s)
    fps = int(round(rate)) if fps is None else int(fps)
    if fps <= 0 or abs(fps * float(meta.dt_s) - 1.0) > 1e-6:
        raise LeRobotError(f'{root}: the episodes are on a {meta.dt_s} s grid ({rate:g} Hz); '
                           f'LeRobot needs a whole number of frames per second equal to it '
                           f'(fps={fps}): decode the bags with --dt 1/N')
    joints, cams = list(meta.joint_names), list(meta.camera_names)
    for ep in episodes:
        if ep.state.shape[1] != len(joints) or ep.action.shape[1] != len(joints):
            raise LeRobotError(f'{ep.name}: state {ep.state.shape} / action {ep.action.shape} do '
                               f'not have the {len(joints)} joints {joints}')
        if sorted(ep.images) != sorted(cams):
            raise LeRobotError(f'{ep.name}: cameras {sorted(ep.images)}, expected {sorted(cams)}')
        for cam, img in ep.images.items():
            if img.shape[1:3] != episodes[0].images[cam].shape[1:3]:
                raise LeRobotError(f'{ep.name}: camera {cam!r} images are {img.shape[1:3]}, '
                                   f'in {episodes[0].name} {episodes[0].images[cam].shape[1:3]}')
            if not lossless and (img.shape[1] % 2 or img.shape[2] % 2):
                raise LeRobotError(f'{root}: camera {cam!r} images are {img.shape[1]}x'
                                   f'{img.shape[2]}; yuv420p H.264 needs an even height and '
                                   f'width (resize them, e.g. --image-size, or lossless)')
    return fps


def _feature_arrays(ep_list, fps: int, first_index: int, first_episode: int) -> dict:
    """The non-video features of episodes as (n, d) arrays, for their stats."""
    n = sum(len(ep) for ep in ep_list)
    frame = np.concatenate([np.arange(len(ep)) for ep in ep_list])
    out = {'observation.state': np.concatenate([ep.state for ep in ep_list]),
           'action': np.concatenate([ep.action for ep in ep_list]),
           'timestamp': (frame / fps).astype(np.float32)[:, None],
           'frame_index': frame[:, None],
           'episode_index': np.concatenate([np.full(len(ep), first_episode + i)
                                            for i, ep in enumerate(ep_list)])[:, None],
           'index': np.arange(first_index, first_index + n)[:, None],
           'task_index': np.zeros((n, 1))}
    return out


def _write_stats_and_episodes(root: Path, episodes: Sequence[Episode], fps: int,
                              video_keys: dict, ep_rows: list, task: str) -> None:
    """stats.json (over the dataset), the episodes parquet (with each episode's stats) and
    tasks.parquet."""
    pa, _ = _pq()
    all_stats = {k: _stats(v) for k, v in _feature_arrays(episodes, fps, 0, 0).items()}
    for cam, key in video_keys.items():
        all_stats[key] = _image_stats([ep.images[cam] for ep in episodes])
    for e, ep in enumerate(episodes):
        st = {k: _stats(v) for k, v in _feature_arrays(
            [ep], fps, ep_rows[e]['dataset_from_index'], e).items()}
        for cam, key in video_keys.items():
            st[key] = _image_stats([ep.images[cam]])
        for feat, d in st.items():
            for name, value in d.items():
                ep_rows[e][f'stats/{feat}/{name}'] = value
        ep_rows[e].update({'meta/episodes/chunk_index': 0, 'meta/episodes/file_index': 0})
    _write_parquet(root / EPISODES_PATH.format(chunk_index=0, file_index=0),
                   [pa.Table.from_pylist(ep_rows)])
    _write_parquet(root / TASKS_PATH, [pa.table({'task_index': pa.array([0], pa.int64()),
                                                 'task': pa.array([task], pa.string())})],
                   pandas_index='task')
    (root / STATS_PATH).write_text(json.dumps(all_stats, indent=4))


def write_lerobot(episodes: Sequence[Episode], meta: EpisodeSetMeta, root: str | os.PathLike,
                  fps: Optional[int] = None, robot_type: str = '',
                  task: str = 'demonstration', crf: int = VIDEO_CRF, lossless: bool = False,
                  progress: bool = False) -> Path:
    """Episodes -> a LeRobot v3.0 dataset in `root` (a new or empty folder). See the module
    docstring for the layout and the codec. fps: default 1 / meta.dt_s, which must be a whole
    number of frames per second (LeRobot stores fps as an integer). Returns `root`."""
    pa, _ = _pq()
    root = Path(root)
    t_start = time.monotonic()
    if not episodes:
        raise LeRobotError(f'{root}: no episodes to write')
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise LeRobotError(f'{root}: exists and is not an empty folder; choose a new --out')
    fps = _checked_fps(episodes, meta, root, fps, lossless)
    joints, cams = list(meta.joint_names), list(meta.camera_names)
    video_keys = {cam: f'observation.images.{cam}' for cam in cams}
    root.mkdir(parents=True, exist_ok=True)

    features: dict[str, dict] = {
        'observation.state': {'dtype': 'float32', 'shape': [len(joints)], 'names': joints},
        'action': {'dtype': 'float32', 'shape': [len(joints)], 'names': joints}}
    for cam, key in video_keys.items():
        h, w = episodes[0].images[cam].shape[1:3]
        features[key] = {'dtype': 'video', 'shape': [int(h), int(w), 3],
                         'names': ['height', 'width', 'channels'], 'info': None}
    features.update({k: dict(v) for k, v in DEFAULT_FEATURES.items()})

    # data: one row per frame, one row group per episode
    tables, ep_rows, index = [], [], 0
    for e, ep in enumerate(episodes):
        n = len(ep)
        cols = {
            'observation.state': pa.FixedSizeListArray.from_arrays(
                pa.array(ep.state.astype(np.float32).ravel()), len(joints)),
            'action': pa.FixedSizeListArray.from_arrays(
                pa.array(ep.action.astype(np.float32).ravel()), len(joints)),
            'timestamp': pa.array((np.arange(n) / fps).astype(np.float32)),
            'frame_index': pa.array(np.arange(n, dtype=np.int64)),
            'episode_index': pa.array(np.full(n, e, dtype=np.int64)),
            'index': pa.array(np.arange(index, index + n, dtype=np.int64)),
            'task_index': pa.array(np.zeros(n, dtype=np.int64))}
        tables.append(pa.table(cols))
        ep_rows.append({'episode_index': e, 'tasks': [task], 'length': n,
                        'data/chunk_index': 0, 'data/file_index': 0,
                        'dataset_from_index': index, 'dataset_to_index': index + n})
        index += n
    _write_parquet(root / DATA_PATH.format(chunk_index=0, file_index=0), tables)

    # videos: one file per camera, the episodes one after another
    for cam, key in video_keys.items():
        features[key]['info'] = _encode_video(
            root / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0), episodes, cam,
            fps, crf, lossless)
        offset = 0
        for e, ep in enumerate(episodes):
            ep_rows[e].update({f'videos/{key}/chunk_index': 0, f'videos/{key}/file_index': 0,
                               f'videos/{key}/from_timestamp': offset / fps,
                               f'videos/{key}/to_timestamp': (offset + len(ep)) / fps})
            offset += len(ep)

    _write_stats_and_episodes(root, episodes, fps, video_keys, ep_rows, task)

    info = {'codebase_version': CODEBASE_VERSION, 'fps': fps, 'features': features,
            'total_episodes': len(episodes), 'total_frames': index, 'total_tasks': 1,
            'chunks_size': CHUNKS_SIZE, 'data_files_size_in_mb': DATA_FILES_SIZE_MB,
            'video_files_size_in_mb': VIDEO_FILES_SIZE_MB, 'data_path': DATA_PATH,
            'video_path': VIDEO_PATH if cams else None, 'robot_type': robot_type or None,
            'splits': {'train': f'0:{len(episodes)}'}}
    (root / INFO_PATH).write_text(json.dumps(info, indent=4))
    if progress:
        print(f'[lerobot] wrote {root}: {len(episodes)} episode(s), {index} frames at {fps} fps, '
              f'joints {joints}, cameras {cams or "none"} ({time.monotonic() - t_start:.1f}s)',
              file=sys.stderr)
    return root


# ---------------------------------------------------------------------------------------------
# dp_bag_to_lerobot


EPILOG = """\
the bags are decoded exactly as dp_train decodes them (same flags, same cache), then written as a
LeRobot v3.0 dataset: observation.state and action (named by the joints), one H.264 video per
camera (observation.images.NAME), fps = 1 / --dt (a whole number). `dp_train DIR --out RUN`
trains on the folder; LeRobot reads it with LeRobotDataset(repo_id, root=DIR). The keys of
--dataset-config are DatasetConfig's (dp_train --help lists them).

example:
  dp_bag_to_lerobot demos/ --out lerobot/pick --joint-names shoulder,elbow,wrist \\
      --camera front=/camera/image_raw --image-size 96x96 --task "pick the cube"
"""


def build_parser() -> argparse.ArgumentParser:
    from dp_policy.training.cli import _dataset_args

    p = argparse.ArgumentParser(
        prog='dp_bag_to_lerobot', description='Write rosbag2 demonstrations as a LeRobot v3.0 '
        'dataset (parquet + mp4).', epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('bags', nargs='+', metavar='BAG_OR_FOLDER')
    p.add_argument('--out', required=True, metavar='DIR', help='the dataset folder (new or empty)')
    _dataset_args(p)
    o = p.add_argument_group('LeRobot dataset')
    o.add_argument('--task', default='demonstration', help='the task string of every episode')
    o.add_argument('--robot-type', default='', help="info.json's robot_type")
    o.add_argument('--crf', type=int, default=VIDEO_CRF,
                   help=f'H.264 quality, lower is better (default {VIDEO_CRF})')
    o.add_argument('--lossless', action='store_true',
                   help='bit-exact H.264 RGB video (large; not the yuv420p LeRobot expects)')
    o.add_argument('--quiet', action='store_true', help='no progress output')
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from dp_policy.data.dataset import DatasetError, load_episodes
    from dp_policy.training.cli import dataset_config

    try:
        cfg = dataset_config(args)
        episodes, meta = load_episodes(args.bags, cfg, cache_dir=args.cache_dir,
                                       progress=not args.quiet)
        write_lerobot(episodes, meta, args.out, robot_type=args.robot_type, task=args.task,
                      crf=args.crf, lossless=args.lossless, progress=not args.quiet)
    except (DatasetError, LeRobotError, ValueError, OSError) as err:
        print(f'dp_bag_to_lerobot: error: {err}', file=sys.stderr)
        return 2
    print(f'[dp_bag_to_lerobot] {args.out}: {len(episodes)} episode(s), '
          f'{sum(len(e) for e in episodes)} frames, joints {meta.joint_names}, cameras '
          f'{meta.camera_names or "none"}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
