"""report.py: files, JSON without NaN, side-by-side tables, plots."""
import json

import pytest

from dp_eval import offline, report
from dp_eval.episodes import EpisodeTracker, summarize_episodes


def _closed(label, outcomes):
    recs = []
    for i, (ok, side) in enumerate(outcomes):
        tr = EpisodeTracker(i, i + 1, i)
        tr.on_status(i + 1, 3.0, 0.01 if ok else 0.2, ok, not ok, side, True)
        tr.on_chunk(0.03)
        recs.append(tr.result())
    eps = [r.to_dict() for r in recs]
    return {'kind': 'closed_loop', 'label': label, 'checkpoint': f'{label}.ckpt', 'episodes': eps,
            'metrics': summarize_episodes(eps), 'partial': False, 'errors': []}


def test_closed_loop_report_two_side_by_side(tmp_path):
    a = _closed('diffusion', [(True, 'left'), (True, 'right'), (True, 'left')])
    b = _closed('mse', [(False, 'left'), (True, 'left'), (False, 'right')])
    b['partial'] = True
    b['errors'] = ['interrupted: results so far are kept']
    paths = report.write_report([a, b], tmp_path)
    data = json.loads(paths['json'].read_text())          # strict JSON: NaN written as null
    assert [r['label'] for r in data['results']] == ['diffusion', 'mse']
    assert data['results'][1]['metrics']['side_fraction_of_successes']['right'] == 0.0
    html = paths['html'].read_text()
    assert '<th>diffusion</th><th>mse</th>' in html and 'Partial results' in html
    md = paths['md'].read_text()
    assert '| success rate (%) | 100 | 33.3 |' in md
    assert '| left / right (successes) | 2 / 1 | 1 / 0 |' in md
    for name in ('success.png', 'latency.png'):
        png = tmp_path / 'plots' / name
        assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
        assert f'plots/{name}' in html and f'plots/{name}' in md


def test_offline_report_has_traces_examples_and_horizon_plot(bags, tiny_ckpt, tmp_path):
    cfg = offline.OfflineConfig(latency_probe=2, backend='torch', num_samples=2, max_steps=20,
                                warmup=False)
    res = offline.run_offline(tiny_ckpt, bags['sqlite3'][:1], cfg=cfg, progress=False)
    paths = report.write_report([res], tmp_path, title='t')
    for name in ('traces_0.png', 'examples_0.png', 'error_by_horizon.png', 'modes.png',
                 'latency.png'):
        assert (tmp_path / 'plots' / name).stat().st_size > 1000
    # The worst and the median step (by RMSE over the chunk), with where they were.
    ex = res['metrics']['examples']
    assert ex['worst']['rmse'] >= ex['median']['rmse'] > 0
    assert ex['worst']['episode'] and len(ex['worst']['samples']) == 2
    md = paths['md'].read_text()
    assert '| steps evaluated | 20 |' in md and 'RMSE last horizon step' in md


def test_clean_replaces_non_finite():
    assert report._clean({'a': float('nan'), 'b': [float('inf'), 1.0]}) == {'a': None,
                                                                            'b': [None, 1.0]}
    with pytest.raises(ValueError):
        json.dumps(float('nan'), allow_nan=False)
