"""Hosts for cluster tests: network namespaces (iproute2, root) on one bridge, each with its own
IP address, host name and /etc/hosts naming all of them, as machines on a LAN with DNS.

The bridge lives in a namespace of its own, so nothing changes on the machine's own network;
every host sees the same file system (the pipeline root stands for a bucket). A command runs on
a host in that host's network namespace and a UTS namespace of its own: its host name is the
host's, which matters where a service tells its peers to call it back at `socket.getfqdn()` (a
Beam job service does).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator

# A private network: namespaces cannot reach the machine's own, so any range would do.
_SUBNET = "10.207.0"
# Numbers the networks this process makes: one may exist beside another (each has its own bridge).
_NETWORKS = itertools.count()


class Hosts:
    """Names → addresses of the hosts `hosts()` made, and how to run commands on them."""

    def __init__(self, prefix: str, names: list[str]):
        self._prefix = prefix
        self.address = {name: f"{_SUBNET}.{10 + index}" for index, name in enumerate(names)}

    def namespace(self, name: str) -> str:
        return f"{self._prefix}-{name}"

    def command(self, name: str, argv: list[str]) -> list[str]:
        """`argv` as run on host `name`."""
        return [
            *("ip", "netns", "exec", self.namespace(name), "unshare", "--uts"),
            *("sh", "-c", 'hostname "$0" && exec "$@"', name, *argv),
        ]

    def popen(self, name: str, argv: list[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.command(name, argv), **kwargs)

    def run(self, name: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(name, argv), **kwargs)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def hosts(names: list[str]) -> Iterator[Hosts]:
    """Hosts `names` on one bridge, removed again on exit with whatever still runs on them."""
    made = Hosts(f"agnews{os.getpid()}n{next(_NETWORKS)}", names)
    switch = made.namespace("switch")
    every = [switch, *(made.namespace(name) for name in names)]
    _remove(every)
    try:
        for namespace in every:
            _ip("netns", "add", namespace)
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        hosts_file = "127.0.0.1 localhost\n" + "".join(
            f"{address} {name}\n" for name, address in made.address.items()
        )
        for index, (name, address) in enumerate(made.address.items()):
            namespace, port = made.namespace(name), f"port{index}"
            _ip(
                "-n",
                switch,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "eth0",
                "netns",
                namespace,
            )
            _ip("-n", switch, "link", "set", port, "master", "br0", "up")
            _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            os.makedirs(f"/etc/netns/{namespace}", exist_ok=True)
            with open(f"/etc/netns/{namespace}/hosts", "w") as hosts_out:
                hosts_out.write(hosts_file)  # `ip netns exec` mounts it on /etc/hosts
        yield made
    finally:
        _remove(every)


def _remove(namespaces: list[str]) -> None:
    """Kills what still runs on each host (deleting a namespace would leave it running,
    unreachable), then deletes it."""
    for namespace in namespaces:
        found = subprocess.run(
            ["ip", "netns", "pids", namespace], capture_output=True, text=True, timeout=30
        )
        for pid in found.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, timeout=30)
        shutil.rmtree(f"/etc/netns/{namespace}", ignore_errors=True)
