"""The dp_eval command line: offline with two checkpoints, bad input exit codes and messages."""
import json

from dp_eval import cli, synthetic


def test_offline_two_checkpoints_writes_a_comparison(bags, tiny_ckpt, tiny_state_ckpt, tmp_path,
                                                      capsys):
    out = tmp_path / 'out'
    rc = cli.main(['offline', tiny_ckpt, tiny_state_ckpt, '--bags', str(bags['mcap'][0]),
                   '--out', str(out), '--labels', 'image', 'state', '--backend', 'torch',
                   '--num-samples', '2', '--latency-probe', '2', '--max-steps', '12',
                   '--no-progress', '--no-warmup'])
    assert rc == 0
    data = json.loads((out / 'result.json').read_text())
    assert [r['label'] for r in data['results']] == ['image', 'state']
    assert all(r['metrics']['steps'] == 12 for r in data['results'])
    printed = capsys.readouterr().out
    assert '== image (offline)' in printed and '== state (offline)' in printed
    assert (out / 'report.html').is_file() and (out / 'report.md').is_file()


def test_offline_missing_topic_exit_2(bags, tiny_ckpt, tmp_path, capsys):
    rc = cli.main(['offline', tiny_ckpt, '--bags', str(bags['sqlite3'][0]), '--out',
                   str(tmp_path / 'o'), '--camera', 'camera:=/wrist/image_raw', '--no-progress',
                   '--no-warmup'])
    assert rc == 2
    err = capsys.readouterr().err
    assert '/wrist/image_raw' in err and '/camera/image_raw' in err


def test_offline_corrupt_bag_exit_1_with_partial_report(bags, tiny_ckpt, tmp_path):
    bad = synthetic.corrupt_bag(bags['mcap'][1], tmp_path / 'zz_bad', 0.4, 'garble')
    out = tmp_path / 'o'
    rc = cli.main(['offline', tiny_ckpt, '--bags', str(bags['mcap'][0]), str(bad), '--out',
                   str(out), '--backend', 'torch', '--num-samples', '2', '--latency-probe', '2',
                   '--no-progress', '--no-warmup'])
    assert rc == 1
    res = json.loads((out / 'result.json').read_text())['results'][0]
    assert res['partial'] and res['metrics']['steps'] > 0
    assert 'Partial results' in (out / 'report.html').read_text()




def test_report_command_rewrites_from_json(tmp_path, capsys):
    from dp_eval import report
    from dp_eval.episodes import EpisodeTracker, summarize_episodes
    tr = EpisodeTracker(0, 1, 0)
    tr.on_status(1, 2.0, 0.01, True, False, 'left', True)
    eps = [tr.result().to_dict()]
    res = {'kind': 'closed_loop', 'label': 'x', 'checkpoint': 'x.ckpt', 'episodes': eps,
           'metrics': summarize_episodes(eps), 'partial': False, 'errors': []}
    report.write_report([res], tmp_path / 'a')
    rc = cli.main(['report', str(tmp_path / 'a' / 'result.json'), '--out', str(tmp_path / 'b'),
                   '--title', 'again'])
    assert rc == 0
    assert '<h1>again</h1>' in (tmp_path / 'b' / 'report.html').read_text()
    assert 'success 1/1' in capsys.readouterr().out
