"""The training report: what a run did, next to its checkpoint (ROS-free).

    EvalLog(out, start_step).add(step, metrics, elapsed_s)      # eval.csv, held-out numbers
    write_report(out, summary)                                 # report.png + report.html
    Scalars(out).add(step, {'loss': ..., ...})                 # TensorBoard, when installed

report.png: four panels over the run: training loss (log scale), learning rate, held-out error
(executed steps, whole chunk) with mode coverage (JS divergence) on a second axis and the best
step marked, and samples/s. report.html: the figure and a table of the summary (steps, time,
precision, best step and score, final loss) and of every held-out evaluation. Both are rewritten
from loss.csv and eval.csv, so a resumed run's report covers the whole run.

TensorBoard: scalars under out/tensorboard when the `tensorboard` package is installed
(requirements-extras.txt); silently nothing otherwise.
"""
from __future__ import annotations

import csv
import html
import math
import os
from pathlib import Path
from typing import Optional

__all__ = ['EvalLog', 'Scalars', 'read_csv', 'write_report']


def read_csv(path: Path) -> list[dict]:
    """The rows of a log whose step and numbers parse (a run killed while writing leaves a
    partial last line, which is dropped)."""
    if not path.is_file():
        return []
    out = []
    with open(path) as f:
        for r in csv.DictReader(f):
            try:
                int(r['step'])
                [float(v) for k, v in r.items() if k != 'step']
            except (TypeError, ValueError, KeyError):
                continue
            out.append(r)
    return out


class EvalLog:
    """eval.csv: one row per held-out evaluation (rows past a resumed step are dropped)."""

    FIELDS = ('step', 'rmse', 'rmse_executed', 'mode_js_bits', 'score', 'elapsed_s', 'eval_s')

    def __init__(self, out: Path, start_step: int):
        self.csv = Path(out) / 'eval.csv'
        rows = [r for r in read_csv(self.csv) if int(r['step']) <= start_step] if start_step > 0 else []
        with open(self.csv, 'w', newline='') as f:
            w = csv.writer(f)
            w.writerow(self.FIELDS)
            for r in rows:
                w.writerow([r[k] for k in self.FIELDS])

    def add(self, step: int, m: dict, elapsed_s: float) -> None:
        with open(self.csv, 'a', newline='') as f:
            csv.writer(f).writerow([step, f"{m['rmse']:.6g}", f"{m['rmse_executed']:.6g}",
                                    f"{m['mode_js_bits']:.6g}", f"{m['score']:.6g}",
                                    f'{elapsed_s:.2f}', f"{m.get('eval_s', math.nan):.2f}"])


class Scalars:
    """TensorBoard scalars, when torch's SummaryWriter can be made (the `tensorboard` package)."""

    def __init__(self, out: Path):
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(Path(out) / 'tensorboard'))
        except Exception:   # noqa: BLE001 - ImportError, or tensorboard's own import errors
            self.writer = None

    def add(self, step: int, values: dict) -> None:
        if self.writer is not None:
            for k, v in values.items():
                if v is not None and math.isfinite(float(v)):
                    self.writer.add_scalar(k, float(v), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _floats(rows: list[dict], key: str) -> list[float]:
    return [float(r[key]) for r in rows]


def _figure(out: Path, loss: list[dict], evals: list[dict], best_step: Optional[int]) -> bool:
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    if not loss:
        return False
    steps = [int(r['step']) for r in loss]
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5))
    ax = axes[0, 0]
    ax.plot(steps, _floats(loss, 'loss'), lw=1)
    ax.set_yscale('log')
    ax.set_title('training loss (mean over the log interval)', fontsize=10)
    ax = axes[0, 1]
    ax.plot(steps, _floats(loss, 'lr'), lw=1, color='C1')
    ax.set_title('learning rate', fontsize=10)
    ax = axes[1, 0]
    if evals:
        es = [int(r['step']) for r in evals]
        ax.plot(es, [1e3 * v for v in _floats(evals, 'rmse_executed')], 'o-', ms=3,
                label='executed steps')
        ax.plot(es, [1e3 * v for v in _floats(evals, 'rmse')], 's--', ms=3, label='whole chunk')
        ax.set_ylabel('held-out RMSE (mrad)')
        ax2 = ax.twinx()
        ax2.plot(es, _floats(evals, 'mode_js_bits'), '^:', ms=3, color='C3', label='mode JS')
        ax2.set_ylabel('mode JS divergence (bit)', color='C3')
        ax2.set_ylim(0, max(0.2, max(_floats(evals, 'mode_js_bits')) * 1.2))
        if best_step is not None:
            ax.axvline(best_step, color='k', lw=0.8, ls=':', label=f'kept: step {best_step}')
        ax.legend(fontsize=7, loc='upper right')
    else:
        ax.text(0.5, 0.5, 'no held-out evaluation\n(--holdout 0)', ha='center', va='center',
                transform=ax.transAxes)
    ax.set_title('held-out error and mode coverage', fontsize=10)
    ax = axes[1, 1]
    ax.plot(steps, _floats(loss, 'samples_per_s'), lw=1, color='C2')
    ax.set_title('training samples/s', fontsize=10)
    for a in axes.flat:
        a.set_xlabel('step')
        a.grid(alpha=0.3)
    fig.tight_layout()
    tmp = out / 'report.tmp.png'
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, out / 'report.png')
    return True


def write_report(out: str | os.PathLike, summary: dict) -> Path:
    """report.png and report.html from loss.csv, eval.csv and the run's summary."""
    out = Path(out)
    loss, evals = read_csv(out / 'loss.csv'), read_csv(out / 'eval.csv')
    drew = _figure(out, loss, evals, summary.get('best_step'))
    rows = ''.join(f'<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>'
                   for k, v in summary.items())
    ev = ''
    if evals:
        head = ''.join(f'<th>{h}</th>' for h in EvalLog.FIELDS)
        body = ''.join('<tr>' + ''.join(f'<td>{html.escape(r[h])}</td>' for h in EvalLog.FIELDS)
                       + '</tr>' for r in evals)
        ev = f'<h2>Held-out evaluations</h2><table><tr>{head}</tr>{body}</table>'
    css = ('body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:'
           'collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}'
           'img{max-width:100%}')
    page = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>training report</title>'
            f'<style>{css}</style></head><body><h1>Training report: {html.escape(out.name)}</h1>'
            + ('<img src="report.png" alt="training curves">' if drew else '')
            + f'<h2>Summary</h2><table>{rows}</table>{ev}'
            '<p><small>data: <a href="loss.csv">loss.csv</a>, <a href="eval.csv">eval.csv</a>'
            '</small></p></body></html>')
    (out / 'report.html').write_text(page)
    return out / 'report.html'
