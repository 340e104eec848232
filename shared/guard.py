"""Network guard policy (pure): which addresses and ports a fetch may reach, and which hosts are IP literals;
the producer checks literal hosts at submit time, the consumer every resolved address at connect time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from shared.errors import BlockedAddress

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

#: Ports a fetch may use on public addresses by default (`SCRAPEQ_FETCH_ALLOWED_PORTS`); any inside allowed networks.
STANDARD_PORTS = frozenset({80, 443})

LOOPBACK = IPv4Address("127.0.0.1")

# Listed explicitly because `ipaddress` classification changed between 3.11 and 3.13 (gh-113171,
# gh-117566): with these blocked first, the stdlib checks below only ever agree across versions.
_BLOCKED_V4 = tuple(
    ip_network(net)
    for net in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host on Linux
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT, includes the Alibaba metadata address 100.100.100.200
        "127.0.0.0/8",
        "168.63.129.16/32",  # Azure's wire server (DHCP, DNS, VM agent): a public address only VMs reach
        "169.254.0.0/16",  # link-local, includes the 169.254.169.254 metadata address
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast: `is_global` is True for it on every version
        "240.0.0.0/4",  # reserved, includes broadcast 255.255.255.255
    )
)
_BLOCKED_V6 = tuple(
    ip_network(net)
    for net in (
        "::/96",  # unspecified, loopback and the deprecated IPv4-compatible form
        "64:ff9b::/96",  # NAT64 would relay to any IPv4 address, private ones included
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",  # IETF protocol assignments incl. Teredo 2001::/32; 3.13 made parts of it global
        "2001:db8::/32",
        "3fff::/20",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
# Only 2000::/3 is allocated for global unicast; anything else is reserved today.
_GLOBAL_UNICAST_V6 = ip_network("2000::/3")

_NUMBER = re.compile(r"(0x[0-9a-f]+|0[0-7]*|[1-9][0-9]*)")


class AddressPolicy:
    """Allows only globally routable unicast addresses, plus whatever lies inside `allow_networks`.

    `ports` are the ports allowed on public addresses; inside `allow_networks` every port is.
    """

    def __init__(self, allow_networks: Sequence[IPNetwork] = (), *, ports: Iterable[int] = STANDARD_PORTS) -> None:
        self._allow = tuple(allow_networks)
        self.ports = frozenset(ports)

    def is_exempt(self, ip: IPAddress) -> bool:
        """Whether `ip` (or the IPv4 address it wraps) is inside one of the allowed networks."""
        embedded = embedded_ipv4(ip)
        return any(ip in net or (embedded is not None and embedded in net) for net in self._allow)

    def is_allowed(self, ip: IPAddress) -> bool:
        return self.is_exempt(ip) or is_public(ip)

    def port_allowed(self, ip: IPAddress, port: int) -> bool:
        """Ports other than `ports` only inside allowed networks: no probing SSH, Redis... on the internet."""
        return port in self.ports or self.is_exempt(ip)

    def describe_ports(self) -> str:
        """The allowed ports, for refusal messages: "80 and 443"."""
        names = [str(port) for port in sorted(self.ports)] or ["none"]
        return " and ".join(names) if len(names) <= 2 else ", ".join(names[:-1]) + " and " + names[-1]


def is_public(ip: IPAddress) -> bool:
    """Whether `ip` is a globally routable unicast address; wrapped IPv4 addresses are judged as IPv4."""
    embedded = embedded_ipv4(ip)
    if embedded is not None:
        ip = embedded
    if isinstance(ip, IPv4Address):
        blocked: tuple[IPNetwork, ...] = _BLOCKED_V4
    elif ip in _GLOBAL_UNICAST_V6:
        blocked = _BLOCKED_V6
    else:
        return False
    return not any(ip in net for net in blocked) and ip.is_global and not ip.is_multicast


def embedded_ipv4(ip: IPAddress) -> IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d) or 6to4 (2002:aabb:ccdd::) address."""
    if isinstance(ip, IPv4Address):
        return None
    return ip.ipv4_mapped or ip.sixtofour


def literal_address(host: str) -> IPAddress | None:
    """The address a resolver reads from `host` without DNS (inet_aton forms, IPv6, localhost), else None."""
    name = _ascii_host(host)
    if name is None:
        return None
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    else:
        name = name.removesuffix(".")  # stricter than glibc, which would look "127.0.0.1." up in DNS
    if name == "localhost" or name.endswith(".localhost"):
        return LOOPBACK  # RFC 6761: resolvers answer these with loopback without asking DNS
    if ":" in name:
        try:
            return ip_address(name.split("%", 1)[0])  # the zone id does not change the verdict
        except ValueError:
            return None
    return _inet_aton(name)


def check_host(host: str, policy: AddressPolicy) -> None:
    """Raise `BlockedAddress` if `host` is a literal (or localhost) that `policy` refuses; names pass."""
    ip = literal_address(host)
    if ip is not None and not policy.is_allowed(ip):
        raise BlockedAddress(f"{host} is not a public address")


def _ascii_host(host: str) -> str | None:
    name = host.strip().lower()
    if name.isascii():
        return name
    try:  # IDNA maps full-width digits and ideographic dots to ASCII, as the URL normaliser does
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def _inet_aton(name: str) -> IPv4Address | None:
    """glibc's `inet_aton`: 1–4 parts, each decimal, 0x-hex or 0-octal; the last part fills the rest."""
    parts = name.split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUMBER.fullmatch(part) for part in parts):
        return None
    values = [_number(part) for part in parts]
    *head, last = values
    if any(value > 0xFF for value in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = last
    for index, value in enumerate(head):
        number |= value << (8 * (3 - index))
    return IPv4Address(number)


def _number(part: str) -> int:
    if part.startswith("0x"):
        return int(part[2:], 16)
    return int(part, 8) if part.startswith("0") else int(part)
