"""follower_node's ~/status (dp_msgs/FollowerStatus) from the follower core, the node's inputs and
the control loop. `snapshot` runs under the node's lock (copies only: the control thread waits for
that lock); `fill` builds the message from the copies outside it.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from dp_common.stamps import sec_to_sec_nanosec
from dp_controller.follower import STATE_HOLDING, STATE_LABELS, STATE_STOPPED, Follower
from dp_controller.node_inputs import JointStateInput, SpeedScalingInput


def snapshot(f: Follower, joint_states: JointStateInput, scaling: Optional[SpeedScalingInput],
             now: float) -> dict:
    """What the status reports of the core and the inputs (to be called under the lock)."""
    last_stamp, last_accepted = f.last_accepted
    return dict(
        state=f.state, command=f.command[0], jerk=f.pop_jerk(), boundary=f.pop_boundary_step(),
        rejected=dict(f.rejected),
        rejected_js=dict(joint_states.rejected), measured=joint_states.positions,
        chunks_accepted=f.chunks_accepted, watchdog_trips=f.watchdog_trips,
        tracking_faults=f.tracking_faults, speed_scaling=f.speed_scaling,
        scaling_rejected=scaling.rejected if scaling is not None else 0,
        scaling_age=scaling.age(now) if scaling is not None else math.nan,
        hold_reason=f.hold_reason if f.state == STATE_HOLDING else '',
        # At the last control step: "following" always comes with since <= watchdog_timeout_s.
        since=f.time_since_last_chunk(), last_stamp=last_stamp, last_accepted=last_accepted)


def fill(msg, snap: dict, loop) -> None:
    """The FollowerStatus fields of the snapshot and of the control loop's period errors (since
    the last status; NaN without a loop)."""
    from dp_msgs.msg import Counter
    state = snap['state']
    msg.state = state
    msg.state_label = STATE_LABELS[state]
    msg.hold_reason = snap['hold_reason']
    for name in ('chunks_accepted', 'watchdog_trips', 'tracking_faults', 'speed_scaling'):
        setattr(msg, name, snap[name])
    msg.speed_scaling_rejected = snap['scaling_rejected']
    msg.speed_scaling_age_s = snap['scaling_age']
    measured = snap['measured']
    if measured is not None and state != STATE_STOPPED:
        err = snap['command'] - measured
        msg.tracking_error_rad = err.tolist()
        msg.max_abs_tracking_error_rad = float(np.max(np.abs(err)))
    else:
        msg.max_abs_tracking_error_rad = math.nan
    msg.command_jerk_max_rad_s3, msg.command_jerk_rms_rad_s3, msg.command_jerk_terms = snap['jerk']
    msg.boundary_step_max_rad = snap['boundary']
    errors = loop.period_error_stats(reset=True) if loop is not None else (math.nan,) * 3
    msg.period_error_p50_s, msg.period_error_p99_s, msg.period_error_max_s = errors
    msg.time_since_last_chunk_s = float(snap['since'])
    if math.isfinite(snap['last_stamp']):
        msg.last_chunk_stamp.sec, msg.last_chunk_stamp.nanosec = sec_to_sec_nanosec(
            snap['last_stamp'])
        msg.last_chunk_accepted.sec, msg.last_chunk_accepted.nanosec = sec_to_sec_nanosec(
            snap['last_accepted'])
    msg.rejected = [Counter(name=k, count=int(c)) for k, c in sorted(snap['rejected'].items())]
    msg.rejected_joint_states = [Counter(name=k, count=int(c))
                                 for k, c in sorted(snap['rejected_js'].items())]
