"""bagio + synthetic: both storage formats, bgr8 padded cameras, missing topics, corrupt bags."""
import subprocess
import sys

import numpy as np
import pytest

from dp_eval import bagio, synthetic


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_reads_every_message_of_both_formats(bags, storage):
    bag = bags[storage][0]
    info = bagio.bag_info(bag)
    n = sum(1 for _ in bagio.iter_raw(bag))
    assert n == info['message_count'] > 0
    assert set(info['topics']) == {'/joint_states', '/forward_position_controller/commands',
                                   '/camera/image_raw'}
    stamps = [m.stamp_ns for m in bagio.iter_raw(bag, ['/joint_states'])]
    assert stamps == sorted(stamps) and len(stamps) == info['topics']['/joint_states']['count']


def test_bgr8_padded_rows_decode_to_the_written_rgb(bags):
    from dp_common.images import image_to_rgb8
    raw = next(bagio.iter_raw(bags['mcap'][0], ['/camera/image_raw']))
    msg = bagio.deserialize(raw)
    assert msg.encoding == 'bgr8' and msg.step > msg.width * 3
    rgb = image_to_rgb8(msg)
    assert np.array_equal(rgb, synthetic._image_for(0.0, 1, (msg.height, msg.width)))


def test_missing_topic_names_it_and_lists_present(bags):
    with pytest.raises(bagio.MissingTopicError) as err:
        bagio.require_topics(bags['sqlite3'][0], ['/joint_states', '/wrist/image_raw'])
    text = str(err.value)
    assert "'/wrist/image_raw' is missing" in text
    assert '/camera/image_raw (sensor_msgs/msg/Image)' in text and '/joint_states' in text


def test_not_a_bag(tmp_path):
    with pytest.raises(bagio.BagError, match='does not exist'):
        bagio.bag_info(tmp_path / 'nope')
    with pytest.raises(bagio.BagError, match='no metadata.yaml'):
        bagio.bag_info(tmp_path)


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
@pytest.mark.parametrize('how', ['truncate', 'garble'])
def test_corrupt_bag_is_a_clear_error(bags, tmp_path, storage, how):
    bad = synthetic.corrupt_bag(bags[storage][0], tmp_path / 'bad', 0.5, how)
    with pytest.raises(bagio.CorruptBagError) as err:
        for _ in bagio.iter_raw(bad):
            pass
    assert str(bad) in str(err.value) and 'truncated or corrupt' in str(err.value)


def test_core_modules_do_not_import_rclpy():
    code = ('import sys; import dp_eval.bagio, dp_common.metrics, dp_eval.offline, '
            'dp_eval.synthetic, dp_eval.player, dp_eval.progress; '
            "assert 'rclpy' not in sys.modules, 'rclpy imported'")
    subprocess.run([sys.executable, '-c', code], check=True)


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
@pytest.mark.parametrize('how', ['truncate', 'garble'])
def test_salvage_copies_the_messages_before_the_damage(bags, tmp_path, storage, how):
    good = bags[storage][0]
    bad = synthetic.corrupt_bag(good, tmp_path / 'bad', 0.6, how)
    fixed, n = bagio.salvage(bad, tmp_path / 'fixed')
    total = bagio.bag_info(good)['message_count']
    assert 0.3 * total < n < total
    copied = list(bagio.iter_raw(fixed))
    original = list(bagio.iter_raw(good))
    assert len(copied) == n
    # the same messages as the first n of the original (by topic, time and bytes)
    key = lambda m: (m.stamp_ns, m.topic, m.data)  # noqa: E731
    assert set(map(key, copied)) <= set(map(key, original))
    assert bagio.bag_info(fixed)['storage'] == storage


def test_salvage_of_nothing_is_an_error(bags, tmp_path):
    bad = synthetic.corrupt_bag(bags['mcap'][0], tmp_path / 'bad', 0.001, 'truncate')
    with pytest.raises(bagio.BagError, match='nothing could be salvaged'):
        bagio.salvage(bad, tmp_path / 'fixed')


def test_a_bag_recorded_before_a_message_gained_a_field_stays_readable():
    """test/data/reach_policy_chunks was recorded before TaskStatus gained min_clearance_m: its
    messages are read with the definition the bag stores, not today's (which expects 8 more
    bytes)."""
    from pathlib import Path
    bag = Path(__file__).resolve().parents[3] / 'test' / 'data' / 'reach_policy_chunks'
    if not bag.is_dir():
        pytest.skip(f'{bag} is not in this checkout')
    raws = list(bagio.iter_raw(bag, ['/task_status']))
    assert raws and 'min_clearance_m' not in raws[0].msgdef
    msgs = [bagio.deserialize(r) for r in raws]
    assert msgs[-1].episode >= 1 and not hasattr(msgs[-1], 'min_clearance_m')
    assert bagio.typestore().generate_msgdef('dp_msgs/msg/TaskStatus')[0].count('min_clearance_m')
