"""LeRobot dataset v3.0 import and export (dp_policy.data.lerobot): a round trip on episodes made
here (no download) gives the same episodes and the same training windows; the folder has
LeRobot v3.0's layout, info.json keys and columns (as huggingface/lerobot writes them, commit
7427f31 of src/lerobot/datasets/{utils,dataset_metadata,dataset_writer,video_utils}.py);
dp_bag_to_lerobot on a bag, then dp_train on the folder; v2.1 and broken folders are refused."""
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip('pyarrow')
pq = pytest.importorskip('pyarrow.parquet')
av = pytest.importorskip('av')

from dp_common.bags import BagWriter, msgs  # noqa: E402
from dp_common.images import image_fields  # noqa: E402
from dp_policy.data.episode import Episode, EpisodeSetMeta  # noqa: E402
from dp_policy.data.lerobot import LeRobotError, read_lerobot, write_lerobot  # noqa: E402
from dp_policy.data.lerobot import main as bag_to_lerobot  # noqa: E402

H, W = 32, 48
JOINTS = ['shoulder', 'elbow', 'wrist']
NS = 1_000_000_000


def smooth_frames(T: int, phase: float, h: int = H, w: int = W) -> np.ndarray:
    """(T, h, w, 3) uint8: low-frequency gradients moving ~10 levels a frame (a codec keeps them
    close; a frame off by one is ~10 levels away)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    k = np.arange(T, dtype=np.float64)[:, None, None]
    r = 128 + 60 * np.sin(xx / 10 + k / 4 + phase)
    g = 128 + 60 * np.cos(yy / 9 - k / 5)
    b = 100 + 3 * k + 0 * xx
    return np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8)


def make_episodes(lengths=(20, 33, 40), cameras=True):
    eps = []
    for i, T in enumerate(lengths):
        k = np.arange(T)
        state = np.stack([np.sin(k / 5 + i), np.cos(k / 7), 0.01 * k * (i + 1)], 1).astype(np.float32)
        action = np.roll(state, -1, 0) + np.float32(1e-3)
        eps.append(Episode(name=f'demo_{i}', t=1000.0 + 100 * i + 0.1 * k, state=state, action=action,
                           images={'front': smooth_frames(T, i)} if cameras else {}))
    meta = EpisodeSetMeta(JOINTS, ['front'] if cameras else [], (H, W) if cameras else None, 0.1)
    return eps, meta


def image_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def assert_images_close(orig: np.ndarray, back: np.ndarray) -> None:
    """yuv420p H.264 at crf 18 is lossy: chroma at half resolution, RGB -> limited-range BT.601
    YUV -> RGB rounding, the quantiser. On these smooth frames that costs ~2 levels on average
    and under 10 at the 99th percentile (measured: mean 2.1, p99 7, max 18); the bounds leave
    margin but stay well below what a wrong frame costs, which is checked directly: every frame
    is nearest to its own source frame, not to its neighbours (the exact frame per timestamp)."""
    assert orig.shape == back.shape and back.dtype == np.uint8
    err = image_error(orig, back)
    assert err.mean() <= 3.0 and np.percentile(err, 99) <= 10, (err.mean(), np.percentile(err, 99))
    for j in range(len(orig)):
        own = image_error(orig[j], back[j]).mean()
        for n in (j - 1, j + 1):
            if 0 <= n < len(orig):
                assert own < image_error(orig[n], back[j]).mean(), (j, n)


def windows(episodes, meta):
    from dp_policy.data.normalizer import MinMaxNormalizer
    from dp_policy.training.trainer import EpisodeWindows

    state_norm = MinMaxNormalizer.fit(np.concatenate([e.state for e in episodes]))
    action_norm = MinMaxNormalizer.fit(np.concatenate([e.action for e in episodes]))
    return EpisodeWindows(episodes, 2, 16, 8, state_norm, action_norm, meta.camera_names)


@pytest.mark.parametrize('lossless', [False, True], ids=['yuv420p', 'lossless'])
def test_round_trip_gives_the_same_episodes_and_training_windows(tmp_path, lossless):
    torch = pytest.importorskip('torch')
    eps, meta = make_episodes()
    root = write_lerobot(eps, meta, tmp_path / 'ds', lossless=lossless, task='reach')
    back, meta2 = read_lerobot(root)

    assert meta2.joint_names == JOINTS and meta2.camera_names == ['front']
    assert meta2.image_hw == (H, W) and meta2.dt_s == pytest.approx(0.1, abs=1e-12)
    assert len(back) == len(eps)
    for a, b in zip(eps, back):
        assert np.array_equal(a.state, b.state) and b.state.dtype == np.float32
        assert np.array_equal(a.action, b.action) and b.action.dtype == np.float32
        # LeRobot's timestamps start at 0 in each episode: the grid is kept, the bag's t0 is not
        np.testing.assert_allclose(b.t, a.t - a.t[0], atol=1e-9)
        if lossless:
            assert np.array_equal(a.images['front'], b.images['front'])
        else:
            assert_images_close(a.images['front'], b.images['front'])

    # the trainer's windows (what a training step samples) are the same
    w1, w2 = windows(eps, meta), windows(back, meta2)
    assert len(w1) == len(w2)
    assert torch.equal(w1.obs_idx, w2.obs_idx) and torch.equal(w1.act_idx, w2.act_idx)
    idx = torch.arange(len(w1))
    s1, im1, a1 = w1.batch(idx)
    s2, im2, a2 = w2.batch(idx)
    assert torch.equal(s1, s2) and torch.equal(a1, a2)
    if lossless:
        assert torch.equal(im1['front'], im2['front'])
    else:
        assert (im1['front'].float() - im2['front'].float()).abs().mean() <= 3.0

    # joints by name: a subset in another order
    sub, sub_meta = read_lerobot(root, joint_names=['wrist', 'shoulder'], camera_keys=[])
    assert sub_meta.joint_names == ['wrist', 'shoulder'] and sub_meta.camera_names == []
    assert np.array_equal(sub[1].state, eps[1].state[:, [2, 0]]) and not sub[1].images
    assert np.array_equal(sub[1].action, eps[1].action[:, [2, 0]])
    with pytest.raises(LeRobotError, match="no columns \\['knee'\\]"):
        read_lerobot(root, joint_names=['knee'])


def test_layout_info_and_columns_are_lerobot_v3(tmp_path):
    eps, meta = make_episodes()
    root = write_lerobot(eps, meta, tmp_path / 'ds', robot_type='arm3', task='reach the cube')
    key = 'observation.images.front'
    # utils.py: INFO_PATH, STATS_PATH, DEFAULT_TASKS_PATH, DEFAULT_EPISODES_PATH,
    # DEFAULT_DATA_PATH, DEFAULT_VIDEO_PATH
    for rel in ('meta/info.json', 'meta/stats.json', 'meta/tasks.parquet',
                'meta/episodes/chunk-000/file-000.parquet', 'data/chunk-000/file-000.parquet',
                f'videos/{key}/chunk-000/file-000.mp4'):
        assert (root / rel).is_file(), rel
    assert not (root / 'meta' / 'episodes.jsonl').exists()      # v2.1's

    info = json.loads((root / 'meta/info.json').read_text())
    # DatasetInfo's fields (to_dict drops `tools` when unset)
    assert set(info) == {'codebase_version', 'fps', 'features', 'total_episodes', 'total_frames',
                         'total_tasks', 'chunks_size', 'data_files_size_in_mb',
                         'video_files_size_in_mb', 'data_path', 'video_path', 'robot_type', 'splits'}
    assert info['codebase_version'] == 'v3.0' and info['fps'] == 10 and info['robot_type'] == 'arm3'
    assert info['data_path'] == 'data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet'
    assert info['video_path'] == 'videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4'
    assert (info['chunks_size'], info['data_files_size_in_mb'], info['video_files_size_in_mb']) == (1000, 100, 200)
    assert info['total_episodes'] == 3 and info['total_frames'] == 93 and info['total_tasks'] == 1
    assert info['splits'] == {'train': '0:3'}
    f = info['features']
    assert list(f)[-5:] == ['timestamp', 'frame_index', 'episode_index', 'index', 'task_index']
    assert f['timestamp'] == {'dtype': 'float32', 'shape': [1], 'names': None}
    assert all(f[k] == {'dtype': 'int64', 'shape': [1], 'names': None}
               for k in ('frame_index', 'episode_index', 'index', 'task_index'))
    for k in ('observation.state', 'action'):
        assert f[k] == {'dtype': 'float32', 'shape': [3], 'names': JOINTS}
    v = f[key]
    assert v['dtype'] == 'video' and v['shape'] == [H, W, 3]
    assert v['names'] == ['height', 'width', 'channels']
    assert {'video.height': H, 'video.width': W, 'video.codec': 'h264', 'video.pix_fmt': 'yuv420p',
            'video.fps': 10, 'video.channels': 3, 'has_audio': False,
            'is_depth_map': False}.items() <= v['info'].items()
    assert {'video.g', 'video.crf', 'video.preset', 'video.fast_decode', 'video.extra_options',
            'video.video_backend'} <= set(v['info'])

    data = pq.read_table(root / 'data/chunk-000/file-000.parquet')
    assert data.column_names == ['observation.state', 'action', 'timestamp', 'frame_index',
                                 'episode_index', 'index', 'task_index']
    assert pq.ParquetFile(root / 'data/chunk-000/file-000.parquet').num_row_groups == 3
    assert data.schema.field('observation.state').type == pa.list_(pa.float32(), 3)
    assert data.schema.field('timestamp').type == pa.float32()
    assert data.column('index').to_pylist() == list(range(93))
    assert data.column('frame_index').to_pylist()[20:23] == [0, 1, 2]
    np.testing.assert_allclose(data.column('timestamp').to_numpy()[20:23], [0, 0.1, 0.2], atol=1e-7)

    ep = pq.read_table(root / 'meta/episodes/chunk-000/file-000.parquet').to_pylist()
    assert [e['episode_index'] for e in ep] == [0, 1, 2] and [e['length'] for e in ep] == [20, 33, 40]
    assert [(e['dataset_from_index'], e['dataset_to_index']) for e in ep] == [(0, 20), (20, 53), (53, 93)]
    assert ep[1]['tasks'] == ['reach the cube']
    assert (ep[1]['data/chunk_index'], ep[1]['data/file_index']) == (0, 0)
    assert (ep[1]['meta/episodes/chunk_index'], ep[1]['meta/episodes/file_index']) == (0, 0)
    assert ep[1][f'videos/{key}/from_timestamp'] == pytest.approx(2.0)
    assert ep[1][f'videos/{key}/to_timestamp'] == pytest.approx(5.3)
    assert (ep[2][f'videos/{key}/chunk_index'], ep[2][f'videos/{key}/file_index']) == (0, 0)
    assert ep[1]['stats/observation.state/max'] == pytest.approx(eps[1].state.max(0).tolist())
    assert ep[1]['stats/observation.state/count'] == [33]
    assert np.array(ep[1][f'stats/{key}/mean']).shape == (3, 1, 1)

    tasks = pq.read_table(root / 'meta/tasks.parquet')
    assert tasks.to_pylist() == [{'task_index': 0, 'task': 'reach the cube'}]
    # LeRobot reads tasks.parquet with pandas and looks tasks up by the index named 'task'
    assert json.loads(tasks.schema.metadata[b'pandas'])['index_columns'] == ['task']

    stats = json.loads((root / 'meta/stats.json').read_text())
    assert set(stats) == set(f)
    for k in stats:
        assert {'min', 'max', 'mean', 'std', 'count', 'q01', 'q10', 'q50', 'q90', 'q99'} <= set(stats[k])
    allstate = np.concatenate([e.state for e in eps])
    np.testing.assert_allclose(stats['observation.state']['mean'], allstate.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats['observation.state']['std'], allstate.std(0), rtol=1e-5)
    assert stats['observation.state']['count'] == [93] and stats['index']['max'] == [92]
    assert np.array(stats[key]['mean']).shape == (3, 1, 1)
    assert 0 <= np.min(stats[key]['min']) and np.max(stats[key]['max']) <= 1

    # LeRobot's PyAV decoder: seek to the keyframe before from_timestamp + timestamp, decode
    # forward, take the frame within tolerance_s (1e-4 s) -- episode 2, frame 7
    query = ep[2][f'videos/{key}/from_timestamp'] + 0.7
    with av.open(str(root / f'videos/{key}/chunk-000/file-000.mp4')) as c:
        s = c.streams.video[0]
        c.seek(round(query / s.time_base) - 1, backward=True, any_frame=False, stream=s)
        for frame in c.decode(s):
            if float(frame.pts * s.time_base) >= query - 1e-4:
                break
    assert abs(float(frame.pts * s.time_base) - query) <= 1e-4
    assert image_error(frame.to_ndarray(format='rgb24'), eps[2].images['front'][7]).mean() <= 3


def test_image_features_and_motor_names_are_read(tmp_path):
    """Older datasets: `names` as {"motors": [...]}, camera frames as PNG images in the parquet
    (dtype 'image': a struct of bytes and path); read exactly."""
    from PIL import Image as PILImage

    eps, meta = make_episodes(lengths=(6, 5))
    root = write_lerobot(eps, meta, tmp_path / 'ds')
    info = json.loads((root / 'meta/info.json').read_text())
    info['features']['observation.state']['names'] = {'motors': JOINTS}
    info['features']['action']['names'] = {'motors': JOINTS}
    img = info['features'].pop('observation.images.front')
    info['features']['observation.image'] = dict(img, dtype='image', info=None)
    info['video_path'] = None
    (root / 'meta/info.json').write_text(json.dumps(info))
    shutil.rmtree(root / 'videos')
    data_file = root / 'data/chunk-000/file-000.parquet'
    data = pq.read_table(data_file)

    def png(a):
        buf = io.BytesIO()
        PILImage.fromarray(a).save(buf, format='PNG')
        return {'bytes': buf.getvalue(), 'path': None}
    cells = [png(a) for e in eps for a in e.images['front']]
    data = data.append_column('observation.image', pa.array(
        cells, pa.struct([('bytes', pa.binary()), ('path', pa.string())])))
    pq.write_table(data, data_file)

    back, meta2 = read_lerobot(root)
    assert meta2.camera_names == ['image'] and meta2.joint_names == JOINTS
    for a, b in zip(eps, back):
        assert np.array_equal(a.images['front'], b.images['image'])
        assert np.array_equal(a.state, b.state)
    small, m3 = read_lerobot(root, image_hw=(16, 24))
    assert m3.image_hw == (16, 24) and small[0].images['image'].shape == (6, 16, 24, 3)


@pytest.mark.skipif('libsvtav1' not in av.codecs_available, reason='no AV1 encoder in PyAV')
def test_reads_the_av1_video_lerobot_writes_by_default(tmp_path):
    """LeRobot's default encoding (video_utils.encode_video_frames with VideoEncoderConfig's
    defaults: libsvtav1, yuv420p, g 2, crf 30, preset 12, pts left to the encoder) is read."""
    eps = [Episode(f'e{i}', np.arange(n) * 0.1, np.zeros((n, 3), np.float32),
                   np.zeros((n, 3), np.float32), {'front': smooth_frames(n, i, 64, 96)})
           for i, n in enumerate((12, 9))]
    root = write_lerobot(eps, EpisodeSetMeta(JOINTS, ['front'], (64, 96), 0.1), tmp_path / 'ds')
    video = root / 'videos/observation.images.front/chunk-000/file-000.mp4'
    with av.open(str(video), 'w') as c:
        s = c.add_stream('libsvtav1', rate=10, options={'g': '2', 'crf': '30', 'preset': '12'})
        s.width, s.height, s.pix_fmt = 96, 64, 'yuv420p'
        for img in np.concatenate([e.images['front'] for e in eps]):
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format='rgb24')):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    back, _ = read_lerobot(root)
    for a, b in zip(eps, back):
        assert_images_close(a.images['front'], b.images['front'])


def write_bag(path, seconds=3.0, phase=0.0):
    frames = smooth_frames(int(seconds * 15) + 1, phase, 16, 24)
    with BagWriter(path, 'mcap') as w:
        for k in range(int(seconds * 30)):
            t = 50 * NS + k * NS // 30
            q = [np.sin(k / 30 + phase), np.cos(k / 30 + phase)]
            w.write('/joint_states', msgs.joint_state(t, ['j2', 'j1'], [q[1], q[0]]), t + 1000)
            if k % 3 == 0:
                w.write('/arm_controller/commands', msgs.float64_multi_array(q), t + 2000)
            if k % 2 == 0:
                w.write('/cam/image_raw', msgs.image(t, image_fields(frames[k // 2], 'rgb8')), t + 3000)
    return Path(path)


def test_bag_to_lerobot_then_dp_train_on_the_folder(tmp_path, capsys):
    pytest.importorskip('torch')
    from dp_policy.checkpoint import load_checkpoint
    from dp_policy.data.dataset import DatasetConfig, load_episodes
    from dp_policy.training.cli import main as train_main

    write_bag(tmp_path / 'demos' / 'a')
    write_bag(tmp_path / 'demos' / 'b', phase=0.7)
    out = tmp_path / 'lerobot'
    flags = ['--joint-names', 'j1,j2', '--camera', 'front=/cam/image_raw',
             '--command-topic', '/arm_controller/commands', '--cache-dir', str(tmp_path / 'cache')]
    rc = bag_to_lerobot([str(tmp_path / 'demos'), '--out', str(out), '--task', 'wave',
                         '--robot-type', 'two_joint', '--quiet'] + flags)
    text = capsys.readouterr()
    assert rc == 0, text.err
    assert '2 episode(s)' in text.out

    cfg = DatasetConfig(joint_names=['j1', 'j2'], cameras={'front': '/cam/image_raw'},
                        command_topic='/arm_controller/commands')
    bag_eps, bag_meta = load_episodes(tmp_path / 'demos', cfg, cache_dir=tmp_path / 'cache',
                                      progress=False)
    eps, meta = read_lerobot(out)
    assert meta.joint_names == ['j1', 'j2'] and meta.camera_names == ['front']
    assert meta.dt_s == pytest.approx(bag_meta.dt_s) and meta.image_hw == bag_meta.image_hw == (16, 24)
    assert [len(e) for e in eps] == [len(e) for e in bag_eps]
    for a, b in zip(bag_eps, eps):
        assert np.array_equal(a.state, b.state) and np.array_equal(a.action, b.action)
        assert image_error(a.images['front'], b.images['front']).mean() <= 3.0
    assert json.loads((out / 'meta/info.json').read_text())['robot_type'] == 'two_joint'
    # a second export into the same folder is refused (nothing overwritten)
    assert bag_to_lerobot([str(tmp_path / 'demos'), '--out', str(out), '--quiet'] + flags) == 2
    assert 'not an empty folder' in capsys.readouterr().err

    run = tmp_path / 'run'
    rc = train_main([str(out), '--out', str(run), '--preset', 'tiny', '--steps', '2',
                     '--batch-size', '4', '--quiet'])
    text = capsys.readouterr()
    assert rc == 0, text.err
    assert "cameras ['front']" in text.out and 'images 16x24' in text.out
    ckpt = load_checkpoint(run / 'policy.ckpt')
    assert ckpt.joint_names == ['j1', 'j2'] and ckpt.camera_names == ['front']
    assert tuple(ckpt.image_hw) == (16, 24) and ckpt.dt_s == pytest.approx(0.1)
    assert ckpt.train_steps == 2
    src = ckpt.extra['lerobot_dataset']
    assert src['root'] == str(out.resolve()) and src['codebase_version'] == 'v3.0'
    assert src['fps'] == 10 and src['total_episodes'] == 2 and 'dataset_config' not in ckpt.extra
    # dp_train flags that contradict the dataset or apply to bags only are refused
    rc = train_main([str(out), '--out', str(tmp_path / 'x'), '--dt', '0.05', '--quiet'])
    assert rc == 2 and 'LeRobot datasets are not resampled' in capsys.readouterr().err
    rc = train_main([str(out), '--out', str(tmp_path / 'x'), '--camera', 'front=/cam', '--quiet'])
    assert rc == 2 and '--camera apply to bags only' in capsys.readouterr().err


def v21_folder(root: Path) -> Path:
    """What a LeRobot v2.1 dataset looks like: codebase_version v2.1, one parquet per episode,
    meta/episodes.jsonl and tasks.jsonl."""
    (root / 'meta').mkdir(parents=True)
    (root / 'data' / 'chunk-000').mkdir(parents=True)
    (root / 'meta' / 'info.json').write_text(json.dumps({
        'codebase_version': 'v2.1', 'robot_type': 'so100', 'total_episodes': 1, 'total_frames': 3,
        'total_tasks': 1, 'total_videos': 0, 'total_chunks': 1, 'chunks_size': 1000, 'fps': 30,
        'splits': {'train': '0:1'},
        'data_path': 'data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet',
        'video_path': None,
        'features': {'action': {'dtype': 'float32', 'shape': [2], 'names': ['a', 'b']},
                     'observation.state': {'dtype': 'float32', 'shape': [2], 'names': ['a', 'b']}}}))
    (root / 'meta' / 'episodes.jsonl').write_text('{"episode_index": 0, "tasks": ["x"], "length": 3}\n')
    (root / 'meta' / 'tasks.jsonl').write_text('{"task_index": 0, "task": "x"}\n')
    pq.write_table(pa.table({'action': [[0.0, 0.0]] * 3, 'observation.state': [[0.0, 0.0]] * 3}),
                   root / 'data' / 'chunk-000' / 'episode_000000.parquet')
    return root


def test_v21_and_broken_folders_are_refused_with_the_reason(tmp_path, capsys):
    from dp_policy.training.cli import main as train_main

    old = v21_folder(tmp_path / 'old')
    with pytest.raises(LeRobotError) as e:
        read_lerobot(old)
    msg = str(e.value)
    assert str(old / 'meta' / 'info.json') in msg and "'v2.1'" in msg
    assert 'only LeRobot dataset v3.0' in msg and 'convert_dataset_v21_to_v30' in msg
    rc = train_main([str(old), '--out', str(tmp_path / 'run'), '--quiet'])
    err = capsys.readouterr().err
    assert rc == 2 and 'dp_train: error:' in err and 'v2.1' in err and 'Traceback' not in err

    with pytest.raises(LeRobotError, match='not a LeRobot dataset'):
        read_lerobot(tmp_path / 'nothing')

    eps, meta = make_episodes(lengths=(4, 4))
    root = write_lerobot(eps, meta, tmp_path / 'ds')
    video = root / 'videos/observation.images.front/chunk-000/file-000.mp4'
    saved = video.read_bytes()
    video.unlink()
    with pytest.raises(LeRobotError, match='video not found') as e:
        read_lerobot(root)
    assert str(video) in str(e.value)
    # a video shorter than the episodes say: the frame count is checked
    short, _ = make_episodes(lengths=(4, 3))
    write_lerobot(short, meta, tmp_path / 'short')
    shutil.copy(tmp_path / 'short/videos/observation.images.front/chunk-000/file-000.mp4', video)
    with pytest.raises(LeRobotError, match='episode 1 .* has 3 video frames .* for 4 rows'):
        read_lerobot(root)
    video.write_bytes(saved)
    (root / 'data/chunk-000/file-000.parquet').write_bytes(b'not parquet')
    with pytest.raises(LeRobotError, match='unreadable parquet'):
        read_lerobot(root)

    # what cannot be written is refused before anything is
    with pytest.raises(LeRobotError, match='whole number of frames per second'):
        write_lerobot(eps, EpisodeSetMeta(JOINTS, ['front'], (H, W), 0.03), tmp_path / 'f')
    odd = [Episode('o', np.arange(3) * 0.1, np.zeros((3, 3), np.float32), np.zeros((3, 3), np.float32),
                   {'front': np.zeros((3, 15, 20, 3), np.uint8)})]
    with pytest.raises(LeRobotError, match='even height and width'):
        write_lerobot(odd, EpisodeSetMeta(JOINTS, ['front'], (15, 20), 0.1), tmp_path / 'odd')
    assert not (tmp_path / 'f').exists()
