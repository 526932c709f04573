"""Hosts on this one machine for tests: Linux network namespaces on a private bridge.

Each host is a network namespace with its own ``eth0`` and address on a /24 that exists only inside
the namespaces: the bridge lives in a namespace of its own (the "switch"), each host is joined to it
by a veth pair, and the machine's own namespace has no address on it, so nothing the hosts serve is
reachable from outside them, and nothing of the machine's network is changed. Processes started on a
host see its network only; they share the machine's file system (each host is given folders of its
own to stand for its disks).

A host is killed as a machine dies: SIGKILL to every process in its namespace (``ip netns pids``),
which is also how ``close()`` cleans up, so nothing started on a host can outlive the test, whatever
it forked. Names carry a random tag, so parallel test sessions do not collide.

Needs root (CAP_SYS_ADMIN) and iproute2's ``ip``; ``unavailable_reason()`` says why not.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None: tries one (and removes it)."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (.ci/run installs it with apt-get)"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    probe = f"rfprobe-{secrets.token_hex(3)}"
    done = _ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        return f"cannot create a network namespace: {done.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Network:
    """A bridge and the hosts on it: ``add(name)`` -> its address; ``popen``/``run`` on a host; ``kill`` a host; ``close()`` all."""

    def __init__(self, subnet: str = "10.77.0") -> None:
        self.subnet = subnet
        self.tag = secrets.token_hex(3)
        self.switch = f"rf{self.tag}-sw"
        self.hosts: dict[str, str] = {}  # name -> address
        self._namespaces: list[str] = []
        self._add_namespace(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def namespace(self, host: str) -> str:
        return f"rf{self.tag}-{host}"

    def add(self, host: str) -> str:
        """A new host joined to the bridge; returns its address (``<subnet>.<n>``, n from 2)."""
        ns = self.namespace(host)
        address = f"{self.subnet}.{len(self.hosts) + 2}"
        port = f"p{len(self.hosts)}"
        self._add_namespace(ns)
        _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", self.switch)
        _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        self.hosts[host] = address
        return address

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        """``argv`` as run on ``host``."""
        return ["ip", "netns", "exec", self.namespace(host), *argv]

    def popen(self, host: str, argv: Sequence[str], log: Path, env: dict[str, str], cwd: str | Path) -> subprocess.Popen:
        """Start ``argv`` on ``host`` in the background, its output to ``log``."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            return subprocess.Popen(self.command(host, argv), env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def run(self, host: str, argv: Sequence[str], env: dict[str, str], cwd: str | Path, timeout: float) -> subprocess.CompletedProcess:
        """Run ``argv`` on ``host`` to its end; its exit status and output."""
        return subprocess.run(self.command(host, argv), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def pids(self, host: str) -> list[int]:
        """The live processes on ``host`` (zombies, already dead, are left to their parents)."""
        done = _ip("netns", "pids", self.namespace(host), check=False)
        return [int(p) for p in done.stdout.split() if _alive(int(p))]

    def kill(self, host: str) -> list[int]:
        """SIGKILL every process on ``host`` (as when the machine dies), until none is left; the pids killed."""
        killed: list[int] = []
        deadline = time.monotonic() + 10
        while (pids := self.pids(host)) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed += pids
            time.sleep(0.1)
        return killed

    def close(self) -> None:
        """Kill every process on every host, then remove the namespaces (the veths and bridge go with them)."""
        for host in self.hosts:
            self.kill(host)
        for ns in reversed(self._namespaces):
            _ip("netns", "del", ns, check=False)
        self._namespaces.clear()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
