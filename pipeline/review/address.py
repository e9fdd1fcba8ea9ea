"""Decides which links `videobatch review --host` prints: addresses a teammate can open.

A server bound to every interface (0.0.0.0 or ::) is not reachable at "0.0.0.0": the link names
the machine's primary outbound address first (found without internet: a UDP socket "connected"
to a private address sends nothing, yet the kernel picks the interface it would use), then its
other non-loopback addresses, then the loopback link for this machine. A named host is its own link.
"""

from __future__ import annotations

import ipaddress
import socket

UNSPECIFIED = {"0.0.0.0", "::"}
# Private destinations for the routing question; no packet is sent to them.
PROBES = ((socket.AF_INET, "10.255.255.255"), (socket.AF_INET6, "fd00::1"))


def _primary(family: int, probe: str) -> str | None:
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.connect((probe, 9))
            return udp.getsockname()[0]
    except OSError:  # no route of that family
        return None


def _hostname_addresses() -> list[str]:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return [info[4][0] for info in infos]


def _reachable(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_unspecified or ip.is_link_local or ip.is_multicast)


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def reachable_hosts(host: str, *, probes=PROBES, named: list[str] | None = None) -> list[str]:
    """The addresses to print for a server bound to `host`, the best first; the last one is the
    loopback address when `host` is every interface."""
    if host not in UNSPECIFIED:
        return [host]
    families = (socket.AF_INET,) if host == "0.0.0.0" else (socket.AF_INET6, socket.AF_INET)
    found = [_primary(family, probe) for family in families for f, probe in probes if f == family]
    found += [a for a in (named if named is not None else _hostname_addresses())
              if host == "::" or ":" not in a]  # 0.0.0.0 serves IPv4 only
    hosts = list(dict.fromkeys(a for a in found if a and _reachable(a)))
    return hosts + ["127.0.0.1" if host == "0.0.0.0" else "::1"]


def links(host: str, port: int, suffix: str = "") -> list[str]:
    return [f"http://{url_host(h)}:{port}/{suffix}" for h in reachable_hosts(host)]
