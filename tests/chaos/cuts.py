"""Cut one process off from one server, as a broken network or a firewall would, for seconds.

The kernel is asked to reset (`ss -K`, SOCK_DESTROY) every TCP connection the process holds to
the server, again every few milliseconds, so a reconnect lives no longer than one round: the
process sees its connections die with a reset and its new ones die as they open. Other
processes keep their connections to the same server, so only this one is cut off.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from urllib.parse import urlsplit

import psutil

ROUND = 0.01  # seconds between two sweeps: the longest a new connection survives the cut


def server_ports(url_or_addresses: str) -> set[int]:
    """The ports in a URL, or in a comma-separated list of URLs or host:port addresses."""
    ports = set()
    for part in url_or_addresses.split(","):
        part = part.strip()
        ports.add(urlsplit(part if "://" in part else f"tcp://{part}").port)
    return ports


def cut_off(pid: int, ports: set[int], seconds: float) -> int:
    """Reset every connection `pid` makes to `ports` for `seconds`; how many were reset."""
    ss = shutil.which("ss")
    if ss is None:
        raise RuntimeError("`ss` (Debian's iproute2) is needed to cut connections")
    process = psutil.Process(pid)
    server = " or ".join(f"dport = :{p}" for p in ports)
    reset: set[tuple[int, int]] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        held = {(c.laddr.port, c.raddr.port) for c in process.net_connections("tcp")
                if c.raddr and c.raddr.port in ports}  # fmt: skip
        if held:
            local = " or ".join(f"sport = :{port}" for port, _ in held)
            # Both ends in the filter: a local port alone may also be in use towards another host.
            subprocess.run([ss, "-K", "-t", f"( {local} ) and ( {server} )"],
                           capture_output=True, check=True)  # fmt: skip
            reset |= held
        time.sleep(ROUND)  # the sweep's pace: the cut lasts `seconds`, whatever happens
    return len(reset)
