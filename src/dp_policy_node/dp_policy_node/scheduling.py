"""When policy_node runs the policy, and for which robots (ROS-free; the node wires it to ROS).

Trigger (`Trigger`, the one place the mode is decoded):
- 'timer': a tick every 1/policy_rate_hz of the node's clock; each tick takes every robot with a
  new, fresh observation.
- 'observation': a tick as soon as a robot's newest complete observation is due on its chunk grid
  (one period apart in observation time, `RobotSchedule.is_due`); robots due within half a period
  join the same batch (`robots_starting`), so one forward pass serves them all.

`select_batch` is the decision of one tick: which robots have an observation to infer on now, and
why the others have none (their `Skip`). The node samples nothing itself and publishes what the
policy returns for the robots selected here.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from dp_policy_node.observation import Observation, ObservationHistory, Skip

NS = 1_000_000_000
TRIGGERS = ('timer', 'observation')


class Trigger:
    """The trigger mode and its period."""

    def __init__(self, mode: str, rate_hz: float) -> None:
        if mode not in TRIGGERS:
            raise ValueError(f'trigger must be one of {TRIGGERS}, got {mode!r}')
        if not rate_hz > 0:
            raise ValueError(f'policy rate must be > 0, got {rate_hz}')
        self.mode = mode
        self.period_ns = int(NS / rate_hz)

    @property
    def on_observation(self) -> bool:
        return self.mode == 'observation'

    @property
    def grid_ns(self) -> int:
        """The chunk grid of trigger 'observation'; 0 for 'timer' (the tick sets the rate)."""
        return self.period_ns if self.on_observation else 0


class TimerTicks:
    """Trigger 'timer': ticks every period_ns of the node's clock (simulated time under
    use_sim_time). A clock that goes backwards (more than two periods) restarts the ticks; a tick
    that ends after the next one was due skips the ticks missed (counted as overruns)."""

    def __init__(self, period_ns: int) -> None:
        self.period_ns = int(period_ns)
        self.next_ns: Optional[int] = None

    def reset(self) -> None:
        """No clock (yet): the next time seen starts the ticks again."""
        self.next_ns = None

    def wait_s(self, now_ns: int) -> float:
        """Seconds until the next tick is due; 0 when it is due now."""
        if self.next_ns is None or now_ns < self.next_ns - 2 * self.period_ns:
            self.next_ns = now_ns                # first tick, or the clock went backwards
        return max(0, self.next_ns - now_ns) * 1e-9

    def ticked(self, now_ns: int) -> int:
        """A tick ran and ended at now_ns: the next one is due a period after it was, or, where
        that has passed, at the first grid point still ahead. Returns the ticks missed."""
        self.next_ns += self.period_ns
        if self.next_ns > now_ns:
            return 0
        missed = (now_ns - self.next_ns) // self.period_ns + 1
        self.next_ns += missed * self.period_ns
        return int(missed)


class RobotSchedule:
    """One robot's place in the schedule: the observations tried and published, the next due."""

    def __init__(self, grid_ns: int = 0) -> None:
        self.grid_ns = grid_ns
        self.last_t0_ns: Optional[int] = None   # stamp of the last chunk's newest observation
        self.tried_t0_ns: Optional[int] = None  # newest observation stamp last tried (chunk or not)
        self.due_ns: Optional[int] = None       # trigger observation: stamp the next chunk is due at
        self.epoch = 0                          # bumped by reset: drops chunks in flight
        self.last_skip = 'no observation yet'

    def forget(self) -> None:
        """The observation history restarted: no chunk, try or grid point to compare with."""
        self.last_t0_ns = self.tried_t0_ns = self.due_ns = None

    def reset(self) -> None:
        """The history was cleared (service, clock jump): chunks in flight are dropped."""
        self.epoch += 1
        self.forget()
        self.last_skip = 'history reset'

    def is_new(self, t0_ns: Optional[int]) -> bool:
        """An observation stamped t0_ns exists and is newer than the last one tried."""
        return t0_ns is not None and (self.tried_t0_ns is None or t0_ns > self.tried_t0_ns)

    def is_due(self, t0_ns: int, early_ns: Optional[int] = None) -> bool:
        """May the observation stamped t0_ns start a chunk? Chunks follow a grid of one period
        in observation time, each due from `early_ns` (default a quarter period) before its grid
        point, and never closer than half a period: so a camera whose frames do not divide the
        period (15 Hz for a 10 Hz policy) still gives policy_rate_hz on average (chunks 133 / 67
        ms apart), where 'at least 0.75 period apart' alone would give 7.5 Hz. Without a grid
        (trigger 'timer'): any new observation."""
        period = self.grid_ns
        if period <= 0 or self.due_ns is None or self.last_t0_ns is None:
            return True
        early = period // 4 if early_ns is None else early_ns
        return t0_ns >= self.due_ns - early and t0_ns >= self.last_t0_ns + period // 2

    def chunk_published(self, t0_ns: int) -> None:
        period = self.grid_ns
        self.last_t0_ns = t0_ns
        self.last_skip = ''
        if period > 0:
            nxt = t0_ns + period if self.due_ns is None else self.due_ns + period
            if nxt - period // 4 <= t0_ns:   # a whole period behind (frames missing, load):
                nxt = t0_ns + period          # the grid starts again from this observation
            self.due_ns = nxt


def robots_starting(candidates: list[tuple[RobotSchedule, int]], grid_ns: int) -> list[RobotSchedule]:
    """Of the robots with a new, fresh observation (schedule, its stamp), the ones that start a
    chunk now. On a grid: none unless at least one is due; then also every robot due within half
    a period, so that robots whose cameras are out of phase still share one batch (one forward
    pass per period instead of one per robot; each keeps its own grid, so its rate stays
    policy_rate_hz). Without a grid (trigger 'timer'): all of them."""
    if grid_ns <= 0:
        return [r for r, _ in candidates]
    if not any(r.is_due(t0) for r, t0 in candidates):
        return []
    return [r for r, t0 in candidates if r.is_due(t0, grid_ns // 2)]


def select_batch(robots: Sequence[tuple[Any, RobotSchedule, ObservationHistory]], now_ns: int,
                 grid_ns: int) -> tuple[list[tuple[Any, Observation, int]], list[tuple[Any, Skip]]]:
    """One tick's decision. `robots`: (key, schedule, history) per robot. Returns the robots to
    infer for now, (key, observation, schedule epoch at sampling), and the robots tried without
    an observation to infer on, (key, why). Robots whose newest observation is fresh but not new,
    or not due on the grid, are neither: they wait (their last reason stands)."""
    state = []                               # (key, schedule, history, newest stamp, fresh)
    for key, sched, history in robots:
        t0 = history.newest_common_ns()
        if t0 is not None and sched.tried_t0_ns is not None and t0 < sched.tried_t0_ns:
            sched.forget()                   # the history restarted
        state.append((key, sched, history, t0, t0 is not None and now_ns - t0 <= history.max_age_ns))
    starting = {id(s) for s in robots_starting(
        [(s, t0) for _, s, _, t0, fresh in state if fresh and s.is_new(t0)], grid_ns)}
    ready, skipped = [], []
    for key, sched, history, t0, fresh in state:
        if fresh and id(sched) not in starting:
            continue
        sched.tried_t0_ns = t0
        epoch = sched.epoch
        res = history.sample(now_ns)
        if isinstance(res, Skip):
            sched.last_skip = res.reason
            skipped.append((key, res))
        else:
            ready.append((key, res, epoch))
    return ready, skipped
