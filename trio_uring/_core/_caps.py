"""Process capabilities that decide what io_uring may do here."""

from __future__ import annotations

import functools


@functools.cache
def has_cap_net_admin() -> bool:
    """CAP_NET_ADMIN (bit 12) in the effective set: what zcrx registration checks."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> 12 & 1)
    except OSError:
        pass
    return False
