"""A small process starter: the nodes of a launch file as separate OS processes, without launch_ros.

What it is: a stand-in for `ros2 launch dp_bringup <file>` on machines where `launch` and
`launch_ros` cannot be installed (ROS 2 from PyPI wheels has neither). It starts the SAME
executables with the SAME parameter files as the launch files under launch/ (see graphs.py; a
test compares the two), each as its own process talking over DDS, prefixes their output with the
node name, forwards Ctrl-C, and stops everything when one required process dies.

What it is not: a launch system. No event handlers, substitutions or composition; the graphs are
plain Python lists of NodeSpec built by graphs.py from the launch arguments.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class NodeSpec:
    """One node process, in the terms of launch_ros.actions.Node."""

    package: str
    executable: str
    name: str
    namespace: str = ''
    params_files: list[str] = field(default_factory=list)  # applied in order, later ones win
    parameters: dict = field(default_factory=dict)  # -p overrides after the files
    remappings: list[tuple[str, str]] = field(default_factory=list)
    required: bool = True  # when it exits, the whole group stops (launch's on_exit=Shutdown)
    extra_args: list[str] = field(default_factory=list)  # plain CLI args before --ros-args

    def command(self) -> list[str]:
        cmd = [str(find_executable(self.package, self.executable)), *self.extra_args, '--ros-args',
               '-r', f'__node:={self.name}']
        if self.namespace:
            cmd += ['-r', f'__ns:=/{self.namespace.strip("/")}']
        for f in self.params_files:
            cmd += ['--params-file', str(f)]
        for key, value in self.parameters.items():
            cmd += ['-p', f'{key}:={_param_literal(value)}']
        for src, dst in self.remappings:
            cmd += ['-r', f'{src}:={dst}']
        return cmd


def _param_literal(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text[:-4].strip() if text.endswith('\n...') or text.endswith(' ...') else text


def find_executable(package: str, executable: str) -> Path:
    """Where `ros2 run package executable` would look: <prefix>/lib/<package>/<executable>."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    try:
        prefix = Path(get_package_prefix(package))
    except PackageNotFoundError as exc:
        raise FileNotFoundError(f'package {package!r} not found: is the workspace built and '
                                f'sourced (. scripts/env.sh)?') from exc
    exe = prefix / 'lib' / package / executable
    if not exe.exists():
        raise FileNotFoundError(f'executable {executable!r} not found in package {package!r} '
                                f'(looked for {exe})')
    return exe


def share_file(package: str, *parts: str) -> str:
    from ament_index_python.packages import get_package_share_directory
    return str(Path(get_package_share_directory(package), *parts))


def dds_environment(env: dict) -> dict:
    """`env` with FASTDDS_DEFAULT_PROFILES_FILE set to dp_bringup's config/fastdds.xml unless it is
    set already (the launch files do the same): Fast DDS's default 512 kB shared-memory segment
    drops camera frames larger than that (see the file)."""
    if 'FASTDDS_DEFAULT_PROFILES_FILE' not in env:
        profile = share_file('dp_bringup', 'config', 'fastdds.xml')
        if Path(profile).is_file():
            env['FASTDDS_DEFAULT_PROFILES_FILE'] = profile
    return env


class ProcessGroup:
    """Starts NodeSpecs, streams their output, stops them all on exit or on a required death."""

    def __init__(self, specs: list[NodeSpec], log_dir: str | None = None, quiet: bool = False,
                 env: dict | None = None):
        self.specs = specs
        self.log_dir = Path(log_dir) if log_dir else None
        self.quiet = quiet
        self.env = dds_environment(dict(os.environ if env is None else env))
        self.procs: dict[str, subprocess.Popen] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def __enter__(self) -> 'ProcessGroup':
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        for spec in self.specs:
            self.start_one(spec)

    def start_one(self, spec: NodeSpec) -> subprocess.Popen:
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        cmd = spec.command()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=self.env, text=True, bufsize=1, start_new_session=True)
        self.procs[spec.name] = proc
        log = open(self.log_dir / f'{spec.name}.log', 'w') if self.log_dir else None
        t = threading.Thread(target=self._pump, args=(spec.name, proc, log), daemon=True)
        t.start()
        self._threads.append(t)
        return proc

    def _pump(self, name: str, proc: subprocess.Popen, log) -> None:
        for line in proc.stdout:
            if log:
                log.write(line)
                log.flush()
            if not self.quiet:
                with self._lock:
                    sys.stdout.write(f'[{name}] {line}')
                    sys.stdout.flush()
        if log:
            log.close()

    def dead_required(self) -> list[str]:
        return [s.name for s in self.specs
                if s.required and s.name in self.procs and self.procs[s.name].poll() is not None]

    def kill(self, name: str, sig=signal.SIGKILL) -> None:
        """Send a signal to one node (tests use it to kill the policy mid-episode)."""
        self.procs[name].send_signal(sig)

    def wait(self, timeout_s: float | None = None) -> str | None:
        """Block until a required process dies (returns its name) or the timeout passes."""
        end = None if timeout_s is None else time.monotonic() + timeout_s
        while end is None or time.monotonic() < end:
            dead = self.dead_required()
            if dead:
                return dead[0]
            time.sleep(0.1)
        return None

    def stop(self, grace_s: float = 10.0) -> dict[str, int]:
        """SIGINT everyone (as Ctrl-C would), then SIGTERM, then SIGKILL. Returns exit codes."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for sig, wait_s in ((None, grace_s), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            if sig is not None:
                for proc in self.procs.values():
                    if proc.poll() is None:
                        proc.send_signal(sig)
            end = time.monotonic() + wait_s
            while time.monotonic() < end and any(p.poll() is None for p in self.procs.values()):
                time.sleep(0.05)
        for t in self._threads:
            t.join(timeout=1.0)
        return {name: proc.returncode for name, proc in self.procs.items()}
