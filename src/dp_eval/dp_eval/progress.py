"""Progress bars: tqdm when it is installed, else a small text bar on stderr (ROS-free).

`bar(total, desc, unit, enabled)` returns an object with update(n), reset(), set_postfix_str(s)
and close(); with enabled=False every call is a no-op. Output goes to stderr so that the JSON or
tables a command prints on stdout stay clean.
"""
from __future__ import annotations

import sys
import time
from typing import Optional

__all__ = ['bar', 'SimpleBar', 'NullBar']


class NullBar:
    def update(self, n: int = 1) -> None: ...
    def reset(self, total: Optional[int] = None) -> None: ...
    def set_postfix_str(self, s: str) -> None: ...
    def close(self) -> None: ...


class SimpleBar:
    """`desc: 12/40 step [3.1 s] postfix`, redrawn at most 4 times a second."""

    def __init__(self, total: Optional[int], desc: str = '', unit: str = 'it', stream=None):
        self.total, self.desc, self.unit = total, desc, unit
        self.n = 0
        self.postfix = ''
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()
        self._last = 0.0

    def _draw(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < 0.25:
            return
        self._last = now
        tot = f'/{self.total}' if self.total else ''
        pct = f' {100 * self.n / self.total:3.0f}%' if self.total else ''
        line = f'\r{self.desc}:{pct} {self.n}{tot} {self.unit} [{now - self.t0:.1f} s] {self.postfix}'
        self.stream.write(line)
        if final:
            self.stream.write('\n')
        self.stream.flush()

    def update(self, n: int = 1) -> None:
        self.n += n
        self._draw()

    def reset(self, total: Optional[int] = None) -> None:
        self.n = 0
        if total is not None:
            self.total = total

    def set_postfix_str(self, s: str) -> None:
        self.postfix = s
        self._draw()

    def close(self) -> None:
        self._draw(final=True)


def bar(total: Optional[int], desc: str, unit: str = 'it', enabled: bool = True):
    if not enabled:
        return NullBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return SimpleBar(total, desc, unit)
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)
