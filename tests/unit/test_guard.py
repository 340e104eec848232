"""The address policy and literal-host parsing, pinned to fixed verdicts (not to the running stdlib's)."""

from __future__ import annotations

import socket
import sys
from ipaddress import ip_address, ip_network

import pytest
from pydantic import ValidationError

from shared.errors import BlockedAddress
from shared.guard import AddressPolicy, check_host, embedded_ipv4, is_public, literal_address
from shared.settings import Settings

DEFAULT = AddressPolicy()

# (address, allowed by the default policy). Every row holds on Python 3.11–3.14.
VERDICTS = [
    # public unicast
    ("93.184.216.34", True),
    ("8.8.8.8", True),
    ("1.1.1.1", True),
    ("2606:4700:4700::1111", True),
    ("2a00:1450:4001:830::200e", True),
    ("::ffff:8.8.8.8", True),  # IPv4-mapped: judged as the IPv4 address
    ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
    ("192.0.0.9", False),  # global since 3.12.4 (PCP anycast), blocked here with all of 192.0.0/24
    ("192.88.99.1", True),
    # IPv4 special ranges
    ("0.0.0.0", False),
    ("0.1.2.3", False),
    ("10.0.0.1", False),
    ("10.255.255.255", False),
    ("100.64.0.1", False),
    ("100.100.100.200", False),  # Alibaba metadata (CGNAT)
    ("100.127.255.254", False),
    ("127.0.0.1", False),
    ("127.255.255.254", False),
    ("169.254.169.254", False),  # AWS / GCP / Azure metadata
    ("168.63.129.16", False),  # Azure's wire server: public in form, reachable only from inside Azure
    ("168.63.129.17", True),
    ("fd00:ec2::254", False),  # AWS metadata over IPv6 (ULA)
    ("172.16.0.1", False),
    ("172.31.255.255", False),
    ("172.32.0.1", True),
    ("192.0.0.170", False),
    ("192.0.2.1", False),
    ("192.168.1.1", False),
    ("198.18.0.1", False),
    ("198.19.255.255", False),
    ("198.51.100.7", False),
    ("203.0.113.9", False),
    ("224.0.0.1", False),  # multicast: `is_global` says True on every version
    ("239.255.255.250", False),
    ("240.0.0.1", False),
    ("255.255.255.255", False),
    # IPv6 special ranges
    ("::", False),
    ("::1", False),
    ("::127.0.0.1", False),  # IPv4-compatible (::/96)
    ("::8.8.8.8", False),
    ("::ffff:127.0.0.1", False),
    ("::ffff:7f00:1", False),
    ("::ffff:169.254.169.254", False),
    ("::ffff:10.0.0.1", False),
    ("::ffff:0:7f00:1", False),  # IPv4-translated (::ffff:0:0:0/96), outside 2000::/3
    ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
    ("64:ff9b::808:808", False),  # NAT64 is refused whatever it wraps
    ("64:ff9b:1::1", False),
    ("100::1", False),
    ("2001::1", False),  # Teredo
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
    ("2001:20::1", False),  # ORCHIDv2: global since 3.12.4, blocked here with all of 2001::/23
    ("2001:3::1", False),
    ("2001:db8::1", False),
    ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1: is_global True on 3.11/3.12
    ("2002:a00:1::", False),  # 6to4 of 10.0.0.1
    ("2002:a9fe:a9fe::", False),  # 6to4 of 169.254.169.254
    ("3fff::1", False),
    ("fc00::1", False),
    ("fd12:3456:789a::1", False),
    ("fe80::1", False),
    ("fe80::1%eth0", False),
    ("fec0::1", False),
    ("ff02::1", False),
    ("ff0e::1", False),
    ("4000::1", False),  # reserved, outside 2000::/3
]


@pytest.mark.parametrize(("address", "allowed"), VERDICTS)
def test_default_policy_verdict(address: str, allowed: bool) -> None:
    assert DEFAULT.is_allowed(ip_address(address)) is allowed


@pytest.mark.parametrize(
    ("address", "embedded"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("2002:7f00:1::", "127.0.0.1"),
        ("2606:4700::1", None),
        ("127.0.0.1", None),
        ("64:ff9b::7f00:1", None),
    ],
)
def test_embedded_ipv4_unwraps_mapped_and_6to4_only(address: str, embedded: str | None) -> None:
    found = embedded_ipv4(ip_address(address))
    assert (str(found) if found else None) == embedded


# (host as written in a URL, the address a resolver reads from it without DNS)
LITERALS = [
    ("127.0.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0X7F000001", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0x7f.0.0.0x1", "127.0.0.1"),
    ("0", "0.0.0.0"),
    ("0.0.0.0", "0.0.0.0"),
    ("169.254.43518", "169.254.169.254"),
    ("0xa9fea9fe", "169.254.169.254"),
    ("4294967295", "255.255.255.255"),
    ("127.0.0.1.", "127.0.0.1"),
    ("１２７.０.０.１", "127.0.0.1"),  # full-width digits, which IDNA maps to ASCII
    ("127。0。0。1", "127.0.0.1"),  # ideographic full stops
    ("[::1]", "::1"),
    ("::1", "::1"),
    ("[::]", "::"),
    ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
    ("[0:0:0:0:0:ffff:7f00:1]", "::ffff:7f00:1"),
    ("[fe80::1%25eth0]", "fe80::1"),
    ("localhost", "127.0.0.1"),
    ("LOCALHOST", "127.0.0.1"),
    ("localhost.", "127.0.0.1"),
    ("app.localhost", "127.0.0.1"),
    ("a.b.localhost", "127.0.0.1"),
    ("8.8.8.8", "8.8.8.8"),
]
NAMES = [
    "example.com",
    "localhost.example.com",
    "notlocalhost",
    "127.0.0.1.nip.io",
    "4294967296",  # too large for inet_aton: glibc asks DNS
    "256.0.0.1",
    "08",  # not octal
    "0x",
    "1.2.3.4.5",
    "127..1",
    "[example.com]",
    "",
]


@pytest.mark.parametrize(("host", "address"), LITERALS)
def test_literal_address_reads_every_resolver_form(host: str, address: str) -> None:
    assert literal_address(host) == ip_address(address)


@pytest.mark.parametrize("host", NAMES)
def test_literal_address_is_none_for_names(host: str) -> None:
    assert literal_address(host) is None


INET_ATON_FORMS = [
    "127.0.0.1", "2130706433", "0x7f000001", "017700000001", "127.1", "0", "0x7f.1", "0177.0.0.1",
    "1.16777215", "1.2.65535", "1.2.65536", "4294967295", "4294967296", "08", "0x", "00x1", "1..2", ".1",
    "1.2.3.4.5", "0xff.0xff.0xff.0xff", "0x100.1.1.1", "09.1.1.1", "0.0.0.08",
]  # fmt: skip


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="compares with glibc's inet_aton")
@pytest.mark.parametrize("host", INET_ATON_FORMS)
def test_literal_address_agrees_with_inet_aton(host: str) -> None:
    try:
        expected = ip_address(socket.inet_aton(host))
    except OSError:
        expected = None
    assert literal_address(host) == expected


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "2130706433", "0x7f000001", "017700000001", "127.1", "0", "0x7f.1", "[::1]", "[::]",
     "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "localhost", "x.localhost", "169.254.169.254", "10.0.0.1",
     "100.100.100.200", "[fd00::1]", "[2002:7f00:1::]", "[64:ff9b::a00:1]"],
)  # fmt: skip
def test_check_host_refuses_private_literals(host: str) -> None:
    with pytest.raises(BlockedAddress, match="not a public address"):
        check_host(host, DEFAULT)


@pytest.mark.parametrize("host", ["example.com", "8.8.8.8", "[2606:4700:4700::1111]", "internal.corp"])
def test_check_host_passes_public_literals_and_names(host: str) -> None:
    check_host(host, DEFAULT)  # names are checked at connect time, after resolution


def test_allow_list_admits_its_networks_only() -> None:
    policy = AddressPolicy([ip_network("127.0.0.0/8"), ip_network("fd00::/8")])
    assert policy.is_allowed(ip_address("127.0.0.1"))
    assert policy.is_allowed(ip_address("127.9.9.9"))
    assert policy.is_allowed(ip_address("fd00::1"))
    assert not policy.is_allowed(ip_address("10.0.0.1"))
    assert not policy.is_allowed(ip_address("::1"))
    assert not policy.is_allowed(ip_address("169.254.169.254"))
    check_host("localhost", policy)
    check_host("2130706433", policy)


def test_allow_list_matches_the_unwrapped_ipv4_too() -> None:
    policy = AddressPolicy([ip_network("127.0.0.0/8")])
    assert policy.is_allowed(ip_address("::ffff:127.0.0.1"))
    assert policy.is_allowed(ip_address("2002:7f00:1::"))
    assert policy.is_exempt(ip_address("::ffff:127.0.0.1"))


def test_allow_list_matches_the_address_as_given() -> None:
    policy = AddressPolicy([ip_network("::ffff:0:0/96")])
    assert policy.is_allowed(ip_address("::ffff:10.0.0.1"))


@pytest.mark.parametrize(
    ("address", "port", "allowed"),
    [
        ("93.184.216.34", 80, True),
        ("93.184.216.34", 443, True),
        ("93.184.216.34", 8080, False),
        ("93.184.216.34", 22, False),
        ("127.0.0.1", 8080, True),  # inside the allow list below
        ("::ffff:127.0.0.1", 6379, True),
    ],
)
def test_other_ports_only_inside_allowed_networks(address: str, port: int, allowed: bool) -> None:
    policy = AddressPolicy([ip_network("127.0.0.0/8")])
    assert policy.port_allowed(ip_address(address), port) is allowed


def test_the_allowed_ports_can_be_configured() -> None:
    policy = AddressPolicy([ip_network("127.0.0.0/8")], ports=[443, 8443])
    assert policy.port_allowed(ip_address("93.184.216.34"), 8443)
    assert not policy.port_allowed(ip_address("93.184.216.34"), 80)
    assert policy.port_allowed(ip_address("127.0.0.1"), 80)  # any port inside the allowed networks
    assert (policy.describe_ports(), DEFAULT.describe_ports()) == ("443 and 8443", "80 and 443")
    assert AddressPolicy(ports=[80, 443, 8080]).describe_ports() == "80, 443 and 8080"


@pytest.mark.parametrize(("value", "ports"), [("80,443", (80, 443)), (" 443 , 8443 ", (443, 8443)), ("", ())])
def test_allowed_ports_setting_is_comma_separated(value: str, ports: tuple[int, ...]) -> None:
    assert Settings(fetch_allowed_ports=value).fetch_allowed_ports == ports  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["0", "65536", "http"])
def test_allowed_ports_setting_refuses_what_is_not_a_port(value: str) -> None:
    with pytest.raises(ValidationError):
        Settings(fetch_allowed_ports=value)  # type: ignore[arg-type]


def test_is_public_ignores_the_allow_list() -> None:
    assert not is_public(ip_address("127.0.0.1"))
    assert is_public(ip_address("8.8.8.8"))
