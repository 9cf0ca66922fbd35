"""Running a command in a private network namespace that has only loopback (no packet can leave the machine).

`isolated(argv)` wraps a command in `unshare -n` (+ `ip link set lo up`); with `hosts` it also gets a private
mount namespace in which /etc/hosts is replaced, so names such as metadata.google.internal resolve locally and
never reach a real DNS server.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

from tests.peer_required import missing_peer


def netns_available() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, check=False)
    return probe.returncode == 0


def require_netns() -> None:
    if not netns_available():
        missing_peer("a private network namespace", "run as root with util-linux unshare and iproute2 ip")


def isolated(argv: list[str], hosts: str | None = None) -> list[str]:
    """`argv` run in a loopback-only network namespace (and with `hosts` as /etc/hosts when given)."""
    command = "ip link set lo up"
    if hosts is not None:
        command += f" && mount --bind {shlex.quote(hosts)} /etc/hosts"
    command += " && exec " + " ".join(shlex.quote(part) for part in argv)
    flags = ["-n", "-m"] if hosts is not None else ["-n"]
    return ["unshare", *flags, "sh", "-c", command]


def environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "VEIL_"))}
    env.update(extra)
    return env
