"""The machine, for tests and benchmarks alike: free loopback ports and the CPU the host stole (/proc/stat)."""
from __future__ import annotations

import socket


def free_ports(n: int) -> list[int]:
    """`n` distinct loopback ports the OS says are free right now."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def cpu_stat() -> tuple[int, int]:
    """(busy, steal) jiffies of the whole machine from /proc/stat (steal = time the host gave to other guests)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except OSError:
        return 0, 0
    return sum(fields[:3]) + sum(fields[5:7]), fields[7] if len(fields) > 7 else 0


def steal_since(start: tuple[int, int]) -> float:
    """The share of the machine's CPU time the host stole since `start` (a cpu_stat())."""
    busy, steal = (b - a for a, b in zip(start, cpu_stat()))
    return steal / max(busy + steal, 1)
