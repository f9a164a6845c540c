"""Open a report in a real headless browser and say which images and videos failed to load.

    failures = check_report('out/demo/report.html')   # [] when everything loaded
    python -m dp_eval.browser out/demo/report.html     # prints them, exit 1 if any

What it does: copies report.html next to itself with a small script that waits for the page's load
event, then records for every <img> whether it decoded (complete, naturalWidth > 0) and for every
<video> whether its first frame decoded (readyState >= HAVE_CURRENT_DATA, videoWidth > 0, no
error); runs Chromium headless on that copy (`--dump-dom`, virtual time) and reads the record
back from the DOM. The report itself is not changed.

Chromium: Debian's `chromium` package (`apt-get install chromium`; `find_chromium()` also knows
chromium-browser and google-chrome). Without one, `find_chromium()` is None.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

__all__ = ['find_chromium', 'media_status', 'check_report']

_SCRIPT = '''<script>
window.addEventListener('load', async () => {
  const imgs = [...document.images].map(i => ({src: i.getAttribute('src'), kind: 'img',
    ok: i.complete && i.naturalWidth > 0}));
  const vids = await Promise.all([...document.querySelectorAll('video')].map(v =>
    new Promise(res => {
      const done = (why) => res({src: v.getAttribute('src'), kind: 'video', why: why,
        ok: !v.error && v.readyState >= 2 && v.videoWidth > 0, duration: v.duration});
      if (v.readyState >= 2 || v.error) return done('state');
      v.addEventListener('loadeddata', () => done('loadeddata'));
      v.addEventListener('error', () => done('error ' + (v.error && v.error.code)));
      setTimeout(() => done('timeout'), 10000);
    })));
  const pre = document.createElement('pre');
  pre.id = 'dp-media-check';
  pre.textContent = JSON.stringify(imgs.concat(vids));
  document.body.appendChild(pre);
});
</script>'''


def find_chromium() -> Optional[str]:
    for name in ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'):
        path = shutil.which(name)
        if path:
            return path
    return None


def media_status(report_html: str | Path, chromium: Optional[str] = None,
                 timeout_s: float = 120.0) -> list[dict]:
    """[{src, kind ('img'/'video'), ok, ...}] for every image and video of the page, as the
    browser loaded them. Raises RuntimeError when the browser gives no answer."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise RuntimeError('no Chromium found (apt-get install chromium)')
    page = Path(report_html).resolve()
    probe = page.with_name(f'.{page.stem}_media_check.html')
    probe.write_text(page.read_text().replace('</body>', _SCRIPT + '</body>'))
    try:
        proc = subprocess.run(
            [chromium, '--headless', '--no-sandbox', '--disable-gpu', '--mute-audio',
             '--no-first-run', '--virtual-time-budget=20000', '--dump-dom', probe.as_uri()],
            capture_output=True, text=True, timeout=timeout_s)
    finally:
        probe.unlink(missing_ok=True)
    m = re.search(r'<pre id="dp-media-check">(.*?)</pre>', proc.stdout, re.S)
    if m is None:
        raise RuntimeError(f'{chromium} gave no media record (exit {proc.returncode}): '
                           f'{proc.stderr[-2000:]}')
    import html
    return json.loads(html.unescape(m.group(1)))


def check_report(report_html: str | Path, chromium: Optional[str] = None) -> list[dict]:
    """The images and videos that did not load (empty: all did)."""
    return [m for m in media_status(report_html, chromium) if not m['ok']]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print('usage: python -m dp_eval.browser REPORT.html', file=sys.stderr)
        return 2
    status = media_status(argv[0])
    for m in status:
        print(f"{'ok    ' if m['ok'] else 'FAILED'} {m['kind']:5s} {m['src']}")
    return 0 if all(m['ok'] for m in status) else 1


if __name__ == '__main__':
    sys.exit(main())
