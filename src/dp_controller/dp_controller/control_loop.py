"""ControlLoop: a thread that calls `tick` at a fixed rate with absolute-time scheduling.

ROS-free. Deadlines are k * period after the start on the monotonic clock (never "sleep one
period", so errors do not accumulate). Each wait is a coarse `time.sleep` until `spin_s` before
the deadline, then a short spin on the monotonic clock. A tick that overruns whole periods skips
them (counted in `overruns`) instead of bursting. Period errors (actual minus nominal period,
seconds) go into a ring buffer for `period_error_stats()`.

Two time bases:
- default: the monotonic clock (wall time; clock jumps of the ROS clock never disturb pacing);
- `now_fn` given (simulated time, use_sim_time): deadlines are on that clock, which only moves
  when /clock messages arrive. The loop then waits on an Event that the owner sets whenever the
  clock moves (`notify()`, e.g. from an rclpy clock jump callback), with a short polling timeout
  as a fallback; a clock that jumps backwards restarts the schedule at the new time (the tick
  then sees the jump and resets its plan), one that jumps far ahead resynchronises without
  counting overruns.

The thread sets its timer slack to 1 ns (Linux prctl PR_SET_TIMERSLACK; the default 50 us lets
the kernel wake a normal-priority sleeper up to 50 us late, and the spin-wait has to cover that):
sleeps then overshoot by ~25 us (p50) / ~80 us (p99) on this VM, so a 0.1 ms spin-wait suffices.

With `priority` > 0 the thread asks for SCHED_FIFO at that priority (Linux; like ros2_control's
controller manager). Where that is not permitted it runs on at normal priority and says so in
`priority_error` (the owner logs it once).

Not an executor timer: rclpy callbacks in other threads do not delay it (beyond the GIL;
follower_node lowers the switch interval).
"""
from __future__ import annotations

import ctypes
import math
import os
import sys
import threading
import time
from typing import Callable, Optional

import numpy as np

RESYNC_S = 1.0   # sim time: a forward jump larger than this resynchronises the schedule
PR_SET_TIMERSLACK = 29


def set_timer_slack(ns: int = 1) -> bool:
    """Timer slack of the calling thread (Linux); False where not available."""
    if not sys.platform.startswith('linux'):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, int(ns), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class ControlLoop:
    def __init__(self, rate_hz: float, tick: Callable[[int, float], None], spin_s: float = 0.0001,
                 name: str = 'control_loop', stats_size: int = 5000,
                 now_fn: Optional[Callable[[], float]] = None, poll_s: float = 0.005,
                 priority: int = 0):
        self.period = 1.0 / float(rate_hz)
        self.now_fn = now_fn
        self.poll_s = float(poll_s)
        self._wake = threading.Event()
        self.priority = int(priority)
        self.realtime = False
        self.priority_error = ''
        self._started = threading.Event()
        self.tick = tick
        self.spin_s = float(spin_s)
        self.name = name
        self.overruns = 0
        self.ticks = 0
        self._errors = np.zeros(stats_size)
        self._n_errors = 0
        self._stop = threading.Event()
        self._thread = None
        self.exception = None

    def start(self):
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        self._started.wait(2.0)   # priority_error is known once start() returns

    def stop(self, timeout: float = 2.0):
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def notify(self):
        """The (simulated) clock moved: wake the loop if it waits for a deadline on it."""
        self._wake.set()

    def _record(self, err: float):
        self._errors[self._n_errors % self._errors.shape[0]] = err
        self._n_errors += 1

    def _set_priority(self):
        set_timer_slack(1)
        if self.priority > 0:
            try:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.priority))
                self.realtime = True
            except (OSError, AttributeError) as exc:   # no permission, or not Linux
                self.priority_error = f'SCHED_FIFO {self.priority} not permitted ({exc})'
        self._started.set()

    def _run(self):
        self._set_priority()
        try:
            if self.now_fn is None:
                self._run_on_monotonic()
            else:
                self._run_on_clock()
        except Exception as exc:  # surfaced by the owner (node logs it and holds)
            self.exception = exc
            raise

    def _next(self, k: int, deadline: float, now: float, resync_s: float = math.inf):
        """After tick k: count it, and the next (k, deadline). Periods overrun as a whole are
        skipped (counted in overruns), keeping the phase; a deadline more than resync_s behind
        (a clock that jumped ahead) restarts one period from now."""
        self.ticks += 1
        deadline += self.period
        behind = now - deadline
        if behind > resync_s:
            return k + 1, now + self.period
        if behind > 0.0:
            skipped = int(behind // self.period) + 1
            self.overruns += skipped
            deadline += skipped * self.period
            k += skipped
        return k + 1, deadline

    def _run_on_monotonic(self):
        mono = time.monotonic
        sleep = time.sleep
        period, spin = self.period, self.spin_s
        deadline = mono() + period
        last = None
        k = 0
        while not self._stop.is_set():
            remaining = deadline - mono()
            if remaining > spin:
                sleep(remaining - spin)
            while mono() < deadline:
                pass
            t = mono()
            if last is not None:
                self._record((t - last) - period)
            last = t
            self.tick(k, t)
            k, deadline = self._next(k, deadline, mono())

    def _run_on_clock(self):
        now_fn, period, wake, stop = self.now_fn, self.period, self._wake, self._stop
        deadline = now_fn() + period
        last = None
        k = 0
        while not stop.is_set():
            wake.clear()
            now = now_fn()
            if now < deadline - period - 1e-9:       # clock jumped backwards: restart
                deadline = now
                last = None
            elif now < deadline:
                wake.wait(self.poll_s)
                continue
            if last is not None and now - last < RESYNC_S:
                self._record((now - last) - period)
            last = now
            self.tick(k, now)
            k, deadline = self._next(k, deadline, now_fn(), resync_s=RESYNC_S)

    def period_error_stats(self, reset: bool = False):
        """(p50, p99, max) of |actual - nominal period| in seconds over the buffer; NaN if empty."""
        n = min(self._n_errors, self._errors.shape[0])
        if n == 0:
            return float('nan'), float('nan'), float('nan')
        e = np.abs(self._errors[:n])
        out = (float(np.percentile(e, 50)), float(np.percentile(e, 99)), float(e.max()))
        if reset:
            self._n_errors = 0
        return out
