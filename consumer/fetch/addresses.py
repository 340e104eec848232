"""The connect-time address check: resolve a host, refuse it if any answer or the port is not allowed."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

import httpcore

from shared.guard import AddressPolicy, IPAddress, literal_address

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""`(host, port) -> addresses`; every answer is checked, and the connection goes to one of them."""


class AddressRefused(httpcore.ConnectError):
    """The guard refused a destination; httpx re-raises it as `httpx.ConnectError` with it as `__cause__`."""

    def __init__(self, message: str, *, host: str, port: int, address: IPAddress | None) -> None:
        super().__init__(message)
        self.host, self.port, self.address = host, port, address

    @classmethod
    def found_in(cls, exc: BaseException) -> AddressRefused | None:
        """The guard's refusal in the chain of causes of `exc` (httpx and aiohttp each wrap it once or twice)."""
        seen: BaseException | None = exc
        for _ in range(5):
            if seen is None or isinstance(seen, cls):
                return seen
            seen = seen.__cause__ or seen.__context__
        return None


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """All A and AAAA answers of the system resolver, in its order, without duplicates."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: dict[IPAddress, None] = {}
    for *_, sockaddr in infos:
        addresses[ipaddress.ip_address(sockaddr[0])] = None
    return list(addresses)


def check_addresses(policy: AddressPolicy, host: str, port: int, addresses: list[IPAddress]) -> None:
    """Refuse the connection (`AddressRefused`) if ANY address of the host, or the port, is not allowed."""
    # A host name's resolved address stays out of the message: it would tell tenants about internal DNS.
    literal = literal_address(host) is not None
    for ip in addresses:
        if not policy.is_allowed(ip):
            reason = f"{ip} is not a public address" if literal else f"{host} resolves to a non-public address"
        elif not policy.port_allowed(ip, port):
            reason = f"port {port} is not allowed (only {policy.describe_ports()})"
        else:
            continue
        raise AddressRefused(reason, host=host, port=port, address=ip)
