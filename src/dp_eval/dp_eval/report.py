"""Reports of dp_eval results: JSON for machines, HTML and Markdown with PNG plots for people.

What it is (ROS-free; matplotlib with the Agg backend): `write_report(results, out_dir)` takes the
result dicts of offline replay, live replay and closed loop (one, or two to compare side by side;
any number works) and writes

    out_dir/result.json     {"results": [...]}  (NaN and infinities written as null)
    out_dir/report.html     tables side by side + the plots, self-contained but for the PNGs
    out_dir/report.md       the same tables and plots in Markdown
    out_dir/plots/*.png     offline: predicted vs recorded joint trajectories (per result), error
                            by horizon step, mode histograms; closed loop: success table,
                            per-episode outcome, time to target; all: latency histogram

What it is not: a computation of metrics (metrics.py, episodes.py) or a dashboard.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ['write_report', 'to_json', 'comparison_rows']


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars/arrays -> Python, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def to_json(results: Sequence[dict]) -> str:
    return json.dumps({'results': _clean(list(results))}, indent=1, allow_nan=False)


def _f(v, scale: float = 1.0, digits: int = 3, unit: str = '') -> str:
    if v is None:
        return '-'
    if isinstance(v, bool):
        return 'yes' if v else 'no'
    if isinstance(v, (int, np.integer)):
        return f'{int(v)}{unit}'
    try:
        x = float(v) * scale
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(x):
        return '-'
    return f'{x:.{digits}g}{unit}'


def _get(d: dict, path: str):
    cur: Any = d
    for key in path.split('.'):
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return cur


def _row_tables() -> dict[str, list[tuple[str, Any, float]]]:
    """report_rows.yaml: {kind: [(row label, path of the value in a result, scale to the unit of
    the label)]}."""
    import importlib.resources

    import yaml
    text = (importlib.resources.files('dp_eval') / 'report_rows.yaml').read_text(encoding='utf-8')
    return {kind: [(str(label), path, float(scale)) for label, path, scale in rows]
            for kind, rows in yaml.safe_load(text).items()}


ROWS = _row_tables()


def _cell(r: dict, label: str, path, scale: float) -> str:
    if label == 'RMSE first executed step (rad)':
        steps = _get(r, 'metrics.error.rmse_per_step') or []
        f = max(0, int(_get(r, 'policy.n_obs_steps') or 1) - 1)
        return _f(steps[f] if len(steps) > f else None)
    if label == 'RMSE last horizon step (rad)':
        steps = _get(r, 'metrics.error.rmse_per_step') or []
        return _f(steps[-1] if steps else None)
    if label == 'left / right (successes)':
        s = _get(r, 'metrics.side_of_successes') or {}
        return f"{s.get('left', 0)} / {s.get('right', 0)}"
    v = _get(r, path)
    if isinstance(v, list):
        return '[' + ', '.join(_f(x, digits=2) for x in v) + ']'
    return _f(v, scale)


def comparison_rows(results: Sequence[dict]) -> list[tuple[str, list[str]]]:
    """(row label, one cell per result) for the results' kinds, in a fixed order."""
    kinds = {r['kind'] for r in results}
    rows: list = []
    for kind, spec in ROWS.items():
        if kind in kinds:
            for label, path, scale in spec:
                rows.append((label, [_cell(r, label, path, scale) if r['kind'] == kind else ''
                                     for r in results]))
    return rows


# ---------------------------------------------------------------------------------- plots
def pyplot():
    """matplotlib.pyplot with the Agg backend (no display needed); imported on first use."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _column_names(r: dict, n: int) -> list[str]:
    """The action columns of a result: its policy's (joints, or an end-effector checkpoint's
    pose columns), else j0, j1, ..."""
    policy = r.get('policy') or {}
    names = policy.get('columns') or policy.get('joint_names') or []
    return list(names) if len(names) == n else [f'j{i}' for i in range(n)]


def _axis_label(column: str) -> str:
    if column in ('x', 'y', 'z'):
        return f'tip {column} (m)'
    if column.startswith('r') and column[1:].isdigit():
        return f'rot6d {column}'
    return f'{column} (rad)'


def _plot_traces(r: dict, path: Path) -> bool:
    traces = r.get('traces') or []
    if not traces:
        return False
    plt = pyplot()
    tr = traces[0]
    rec = np.asarray(tr['recorded'], dtype=float)
    t = np.asarray(tr['t'], dtype=float)
    names = _column_names(r, rec.shape[1])
    J = rec.shape[1]
    fig, axes = plt.subplots(J, 1, figsize=(8, 2.2 * J), sharex=True, squeeze=False)
    for j in range(J):
        ax = axes[j, 0]
        ax.plot(t, rec[:, j], 'k-', lw=2, label='recorded command')
        for c_i, ch in enumerate(tr['chunks']):
            p = np.asarray(ch['pred'], dtype=float)
            ax.plot(ch['t'], p[:, j], '-', lw=1, alpha=0.7, color=f'C{c_i % 10}',
                    label='predicted chunks' if c_i == 0 else None)
        ax.set_ylabel(_axis_label(names[j]))
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc='upper right', fontsize=8)
    axes[-1, 0].set_xlabel('time in episode (s)')
    fig.suptitle(f"{r.get('label')}: predicted vs recorded, {tr.get('episode', '')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def _plot_examples(r: dict, path: Path) -> bool:
    """Offline: per joint, the worst and the median step (by RMSE over the chunk): the recorded
    commands, the policy's samples and the chunk it chose, along the horizon."""
    ex = _get(r, 'metrics.examples') or _get(r, 'metrics.comparison.examples') or {}
    cases = [(name, ex[name]) for name in ('worst', 'median') if ex.get(name)]
    if not cases:
        return False
    plt = pyplot()
    truth0 = np.asarray(cases[0][1]['truth'], dtype=float)
    J = truth0.shape[1]
    names = _column_names(r, J)
    fig, axes = plt.subplots(J, len(cases), figsize=(5.5 * len(cases), 2.2 * J), sharex=True,
                             squeeze=False)
    for col, (name, e) in enumerate(cases):
        truth = np.asarray(e['truth'], dtype=float)
        mask = np.asarray(e['mask'], dtype=bool)
        t = np.arange(len(truth)) * float(e['dt_s'])
        for j in range(J):
            ax = axes[j, col]
            for k, smp in enumerate(np.asarray(e['samples'], dtype=float)):
                ax.plot(t, smp[:, j], '-', lw=0.8, alpha=0.35, color='C0',
                        label='samples' if k == 0 else None)
            ax.plot(t, np.asarray(e['pred'], dtype=float)[:, j], '-', lw=1.8, color='C1',
                    label='chosen chunk')
            ax.plot(t[mask], truth[mask, j], 'k.-', lw=1.5, ms=3, label='recorded')
            ax.set_ylabel(_axis_label(names[j]))
            ax.grid(alpha=0.3)
        axes[0, col].set_title(f"{name} step: {e['episode']} at {e['t']:.1f} s, RMSE "
                               f"{e['rmse']:.3f} rad", fontsize=9)
        axes[-1, col].set_xlabel('time along the chunk (s)')
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{r.get('label')}: predicted vs recorded, worst and median step", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def _per_step(r: dict):
    return _get(r, 'metrics.error.rmse_per_step') or _get(r, 'metrics.comparison.error.rmse_per_step')


def _plot_horizon(results: Sequence[dict], path: Path) -> bool:
    rs = [r for r in results if _per_step(r)]
    if not rs:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for r in rs:
        v = np.asarray([np.nan if x is None else x for x in _per_step(r)], dtype=float)
        f = max(0, int(_get(r, 'policy.n_obs_steps') or 1) - 1)
        ax.plot(np.arange(len(v)) - f, v, 'o-', ms=3, label=str(r.get('label')))
    ax.axvline(0, color='gray', lw=0.8, ls='--')
    ax.set_xlabel('horizon step (0 = the observation time)')
    ax.set_ylabel('RMSE (rad)')
    ax.set_title('error by horizon step')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def _plot_modes(results: Sequence[dict], path: Path) -> bool:
    rs = [r for r in results if _get(r, 'metrics.mode.demo_hist')]
    if not rs:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    modes = _get(rs[0], 'metrics.mode.modes')
    x = np.arange(len(modes))
    w = 0.8 / (len(rs) + 1)
    ax.bar(x, _get(rs[0], 'metrics.mode.demo_hist'), w, color='k', label='demonstrations')
    for i, r in enumerate(rs):
        h = _get(r, 'metrics.mode.pred_hist')
        ax.bar(x[:len(h)] + (i + 1) * w, h, w, label=f"{r.get('label')} (JS "
               f"{_f(_get(r, 'metrics.mode.js_bits'), digits=2)} bit)")
    ax.set_xticks(x + w * len(rs) / 2, modes)
    ax.set_ylabel('fraction')
    ax.set_title('mode coverage')
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def _latencies(r: dict) -> list[float]:
    if r['kind'] == 'offline':
        return [x for x in (_get(r, 'metrics.latency.samples_s') or []) if x is not None]
    if r['kind'] == 'closed_loop':
        return [x for e in r.get('episodes', []) for x in e.get('latency_s', []) if x is not None]
    return [x for x in (_get(r, 'metrics.comparison.latency_samples_s') or []) if x is not None]


def histograms(path: Path, data, bins, legend, xlabel: str, ylabel: str, title: str,
               vline: float | None = None) -> None:
    """Overlaid histograms, one per (label, values) of `data`, values clipped to the bins;
    `legend(label, values)` is each one's legend text."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for lab, d in data:
        ax.hist(np.clip(d, bins[0], bins[-1]), bins=bins, alpha=0.55, label=legend(lab, d))
    if vline is not None:
        ax.axvline(vline, color='tab:red', lw=1, ls='--')
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _plot_latency(results: Sequence[dict], path: Path) -> bool:
    data = [(r.get('label'), np.asarray(_latencies(r), dtype=float) * 1e3) for r in results]
    data = [(lab, d) for lab, d in data if len(d)]
    if not data:
        return False
    hi = max(float(np.percentile(d, 99.5)) for _, d in data)
    histograms(path, data, np.linspace(0, max(hi, 1e-3) * 1.05, 40),
               lambda lab, d: f'{lab} (p50 {np.median(d):.1f} ms, n {len(d)})',
               'inference latency per chunk (ms)', 'count', 'policy latency')
    return True


def _plot_success(results: Sequence[dict], path: Path) -> bool:
    rs = [r for r in results if r['kind'] == 'closed_loop' and r.get('episodes')]
    if not rs:
        return False
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    labels = [str(r.get('label')) for r in rs]
    x = np.arange(len(rs))
    m = [r['metrics'] for r in rs]
    ok_l = [mm['side_of_successes']['left'] for mm in m]
    ok_r = [mm['side_of_successes']['right'] for mm in m]
    other = [mm['successes'] - a - b for mm, a, b in zip(m, ok_l, ok_r)]
    fail_c = [sum(1 for e in r['episodes'] if not e['success'] and e['obstacle_contact']) for r in rs]
    fail_o = [mm['episodes'] - mm['successes'] - c for mm, c in zip(m, fail_c)]
    bottom = np.zeros(len(rs))
    for vals, lab, col in ((ok_l, 'success, left', 'C2'), (ok_r, 'success, right', 'C0'),
                           (other, 'success, side unknown', 'C8'),
                           (fail_c, 'failed, obstacle contact', 'C3'),
                           (fail_o, 'failed, other', 'C7')):
        axes[0].bar(x, vals, 0.6, bottom=bottom, label=lab, color=col)
        bottom += np.asarray(vals, dtype=float)
    axes[0].set_xticks(x, labels)
    axes[0].set_ylabel('episodes')
    axes[0].set_title('outcomes')
    axes[0].legend(fontsize=7)
    for i, r in enumerate(rs):
        tts = [e['time_to_success_s'] if e['time_to_success_s'] is not None else np.nan
               for e in r['episodes']]
        axes[1].plot(np.arange(len(tts)), tts, 'o', label=labels[i])
    axes[1].set_xlabel('episode')
    axes[1].set_ylabel('time to target (s, sim)')
    axes[1].set_title('time to target (failures not shown)')
    axes[1].grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def _plot_live(r: dict, path: Path) -> bool:
    tr = _get(r, 'metrics.comparison.trace')
    if not tr:
        return False
    plt = pyplot()
    rec = np.asarray(tr['recorded'], dtype=float)
    J = rec.shape[1]
    fig, axes = plt.subplots(J, 1, figsize=(8, 2.2 * J), sharex=True, squeeze=False)
    for j in range(J):
        ax = axes[j, 0]
        ax.plot(tr['t'], rec[:, j], 'k-', lw=2, label='bag command')
        for c_i, ch in enumerate(tr['chunks']):
            ax.plot(ch['t'], np.asarray(ch['pred'])[:, j], '-', lw=1, alpha=0.7,
                    color=f'C{c_i % 10}', label='live chunks' if c_i == 0 else None)
        ax.set_ylabel(f"{tr['joint_names'][j]} (rad)")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    axes[-1, 0].set_xlabel('bag time (s)')
    fig.suptitle('live replay: policy chunks vs the bag\'s commands', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def make_plots(results: Sequence[dict], plot_dir: Path) -> list[tuple[str, str]]:
    """Draw every plot that applies; returns (caption, path relative to the report)."""
    plot_dir.mkdir(parents=True, exist_ok=True)
    out = []

    def add(ok: bool, caption: str, name: str) -> None:
        if ok:
            out.append((caption, f'{plot_dir.name}/{name}'))

    for i, r in enumerate(results):
        if r['kind'] == 'offline':
            add(_plot_traces(r, plot_dir / f'traces_{i}.png'),
                f"{r.get('label')}: predicted chunks vs recorded commands", f'traces_{i}.png')
            add(_plot_examples(r, plot_dir / f'examples_{i}.png'),
                f"{r.get('label')}: worst and median step, per joint", f'examples_{i}.png')
        if r['kind'] == 'live':
            add(_plot_live(r, plot_dir / f'live_{i}.png'),
                f"{r.get('label')}: live chunks vs recorded commands", f'live_{i}.png')
            add(_plot_examples(r, plot_dir / f'examples_{i}.png'),
                f"{r.get('label')}: worst and median chunk, per joint", f'examples_{i}.png')
    add(_plot_horizon(results, plot_dir / 'error_by_horizon.png'), 'error by horizon step',
        'error_by_horizon.png')
    add(_plot_modes(results, plot_dir / 'modes.png'), 'mode coverage', 'modes.png')
    add(_plot_success(results, plot_dir / 'success.png'), 'closed-loop outcomes', 'success.png')
    add(_plot_latency(results, plot_dir / 'latency.png'), 'latency histogram', 'latency.png')
    return out


# ---------------------------------------------------------------------------------- documents
def _episode_rows(r: dict) -> list[list[str]]:
    rows = []
    for e in r.get('episodes', []):
        rows.append([str(e['index']), str(e['episode']), str(e['seed']),
                     'yes' if e['success'] else 'no', _f(e['time_to_success_s']),
                     e['side'] or '-', 'yes' if e['obstacle_contact'] else 'no',
                     _f(e['min_distance_m']), _f(e.get('min_clearance_m'), 1000),
                     str(e['chunks']), _f(e['jerk_rms_rad_s3']),
                     e['error'] or ''])
    return rows


EPISODE_HEAD = ['#', 'episode', 'seed', 'success', 'time to target (s)', 'side', 'contact',
                'min distance (m)', 'min clearance (mm)', 'chunks', 'jerk RMS (rad/s^3)', 'note']


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    def esc(s: str) -> str:
        return str(s).replace('|', '\\|')
    lines = ['| ' + ' | '.join(esc(h) for h in head) + ' |',
             '|' + '|'.join('---' for _ in head) + '|']
    lines += ['| ' + ' | '.join(esc(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines)


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    h = ''.join(f'<th>{html.escape(str(c))}</th>' for c in head)
    body = ''.join('<tr>' + ''.join(f'<td>{html.escape(str(c))}</td>' for c in row) + '</tr>'
                   for row in rows)
    return f'<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>'


def _sources(r: dict) -> list[str]:
    out = [f"checkpoint: {r.get('checkpoint', '')}"]
    if r['kind'] == 'offline':
        for b in r.get('bags', []):
            out.append(f"bag {b['path']} ({b['storage']}): {b['episodes']} episodes, {b['steps']} "
                       f"steps" + (f" - ERROR: {b['error']}" if b.get('error') else ''))
    if r.get('bag'):
        out.append(f"recorded run: {r['bag']}")
    for e in r.get('errors', []):
        out.append(f'error: {e}')
    return out


def _visual_html(v: dict) -> str:
    cap, rel = html.escape(v['caption']), html.escape(v['path'])
    if v['kind'] == 'video':
        return (f'<figure><video src="{rel}" controls muted loop playsinline preload="auto" '
                f'width="{int(v.get("width", 288))}"></video><figcaption>{cap} '
                f'(<a href="{rel}">file</a>)</figcaption></figure>')
    return f'<figure><img src="{rel}" alt="{cap}"><figcaption>{cap}</figcaption></figure>'


def write_report(results: Sequence[dict], out_dir: str | Path, title: str = 'dp_eval report',
                 visuals: Sequence[dict] = ()) -> dict[str, Path]:
    """Write result.json, report.html, report.md and plots/ into out_dir; returns their paths.

    `visuals`: figures and videos already written under out_dir (rollouts.py), each
    {'caption', 'path' (relative to out_dir), 'kind': 'image' or 'video', 'section'}; they are
    shown in their section ('Rollouts', 'Videos') after the plots."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = list(results)
    clean = _clean(results)
    (out / 'result.json').write_text(to_json(results))
    plots = make_plots(clean, out / 'plots')
    head = ['metric'] + [str(r.get('label')) for r in clean]
    rows = [[label] + cells for label, cells in comparison_rows(clean)]
    partial = any(r.get('partial') for r in clean)

    md = [f'# {title}', '']
    if partial:
        md += ['**Partial results**: a run ended early or a bag was unreadable; see the errors '
               'below. Everything computed before that is included.', '']
    md += ['## Summary', '', _md_table(head, rows), '']
    for r in clean:
        md += [f"## {r.get('label')} ({r['kind']})", '']
        md += [f'- {s}' for s in _sources(r)] + ['']
        if r['kind'] == 'closed_loop' and r.get('episodes'):
            md += [_md_table(EPISODE_HEAD, _episode_rows(r)), '']
    md += ['## Plots', '']
    for cap, rel in plots:
        md += [f'### {cap}', '', f'![{cap}]({rel})', '']
    sections = list(dict.fromkeys(v.get('section', 'Rollouts') for v in visuals))
    for sec in sections:
        md += [f'## {sec}', '']
        for v in visuals:
            if v.get('section', 'Rollouts') == sec:
                md += ([f"- [{v['caption']}]({v['path']})"] if v['kind'] == 'video' else
                       [f"### {v['caption']}", '', f"![{v['caption']}]({v['path']})", ''])
        md += ['']
    (out / 'report.md').write_text('\n'.join(md))

    css = ('body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}'
           'table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;'
           'padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}'
           '.warn{background:#fff3cd;padding:.5em 1em;border:1px solid #e0c060}'
           'img{max-width:100%}figure{display:inline-block;margin:.5em;vertical-align:top}'
           'figcaption{font-size:.85em;color:#555;max-width:300px}')
    h = [f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
         f'<style>{css}</style></head><body><h1>{html.escape(title)}</h1>']
    if partial:
        h.append('<p class="warn"><b>Partial results</b>: a run ended early or a bag was '
                 'unreadable; see the errors below. Everything computed before that is '
                 'included.</p>')
    h.append('<h2>Summary</h2>' + _html_table(head, rows))
    for r in clean:
        h.append(f"<h2>{html.escape(str(r.get('label')))} ({r['kind']})</h2><ul>"
                 + ''.join(f'<li>{html.escape(s)}</li>' for s in _sources(r)) + '</ul>')
        if r['kind'] == 'closed_loop' and r.get('episodes'):
            h.append(_html_table(EPISODE_HEAD, _episode_rows(r)))
    h.append('<h2>Plots</h2>')
    for cap, rel in plots:
        h.append(f'<h3>{html.escape(cap)}</h3><img src="{html.escape(rel)}" '
                 f'alt="{html.escape(cap)}">')
    for sec in sections:
        h.append(f'<h2>{html.escape(sec)}</h2>')
        h.extend(_visual_html(v) for v in visuals if v.get('section', 'Rollouts') == sec)
    h.append('<p><small>machine-readable: <a href="result.json">result.json</a></small></p>'
             '</body></html>')
    (out / 'report.html').write_text('\n'.join(h))
    return {'json': out / 'result.json', 'html': out / 'report.html', 'md': out / 'report.md',
            'plots': out / 'plots'}
