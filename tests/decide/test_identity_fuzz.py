"""Who is asking, generated: client addresses in every spelling, empty, spoofed and hostile
identity headers and proxy-authentication names.

tests/test_identity.py has the named cases; here the properties for every input:
- nothing raises;
- the identity header is honoured only when the connection's own address is inside the
  policy's trusted front proxies (IPv4-mapped IPv6 counts as the IPv4 address);
- a name in the log is always printable text of bounded length; anything else falls back
  to the client's address;
- a header that came from anyone else is noted (`untrusted_header`), so the attempt is in
  the log; the client is identified by its own means.

Through the add-on's hooks: the header never reaches the origin, whoever sent it.
Longer runs: AUDITPROXY_FUZZ_SCALE=50.
"""

from __future__ import annotations

import ipaddress
import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from auditproxy.decide.identity import (
    MAX_NAME_LENGTH,
    AddressSet,
    IdentityResolver,
    canonical_address,
    clean_name,
    parse_address,
)
from auditproxy.decide.names import normalize_name
from auditproxy.policy.load import load_policy, parse_policy
from auditproxy.policy.model import IdentitySource, PolicyError
from support.fuzz import fuzz
from support.harness import harness_for
from support.paths import FIXTURES, POLICIES

SMALL = load_policy(POLICIES / "small.yaml")  # header X-Authenticated-User from 10.9.9.9/32
TRUSTED = ipaddress.ip_network("10.9.9.9/32")
HEADER = SMALL.identity.header


def is_trusted(address: str) -> bool:
    """The reference: the address as the socket gives it, mapped IPv6 read as IPv4."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip in TRUSTED


_near_trusted = st.sampled_from(
    [
        "10.9.9.9",
        "::ffff:10.9.9.9",
        "::ffff:a09:909",
        "10.9.9.9 ",
        " 10.9.9.9",
        "010.9.9.9",
        "10.9.9.09",
        "10.9.9.9.",
        "10.9.9.9:80",
        "10.9.9.9%eth0",
        "[10.9.9.9]",
        "10.9.9.8",
        "10.9.9.10",
        "::10.9.9.9",
        "64:ff9b::a09:909",
        "2002:a09:909::",
        "10.9.9.9/32",
        "167315721",
        "",
    ]
)
_address = st.one_of(
    _near_trusted,
    st.ip_addresses().map(str),
    st.ip_addresses(v=4).map(lambda ip: f"::ffff:{ip}"),
    st.text(max_size=40),
)
_name = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "alice", " bob ", "a\r\nb", "a\x00b", "a\u2028b", "é", "\t"]),
    st.text(max_size=300),
    st.text(min_size=250, max_size=300, alphabet="xy"),
)


def expected_name(value: str | None) -> str | None:
    """A name as logged: NFKC and case-folded (the policy's default), then cleaned."""
    return None if value is None else clean_name(normalize_name(value, True))


@fuzz(800)
@given(_address, _name, _name)
@example("10.9.9.9", None, "alice")
@example("::ffff:10.9.9.9", None, "alice")
@example("10.9.9.9 ", None, "alice")
@example("127.0.0.1", None, "admin")
@example("10.9.9.9", None, 'a\r\n{"user.name":"x"}')
def test_header_only_from_trusted_proxies_and_names_always_clean(
    address: str, proxyauth: str | None, header: str | None
) -> None:
    resolver = IdentityResolver(SMALL.identity)
    identity = resolver.resolve(proxyauth, header, address)
    name = identity.name
    if identity.source is IdentitySource.ADDRESS:
        assert name == canonical_address(address)
    else:
        assert name.isprintable() and 0 < len(name) <= MAX_NAME_LENGTH
        assert name == name.strip()
    if identity.source is IdentitySource.HEADER:
        assert is_trusted(address), f"header honoured from {address!r}"
        assert name == expected_name(header)
    if identity.source is IdentitySource.PROXY_AUTH:
        assert name == expected_name(proxyauth)
    if header is not None and not is_trusted(address) and identity.source is IdentitySource.ADDRESS:
        assert identity.untrusted_header, "a spoofed header went unnoted"


@fuzz(50)
@given(_address.filter(lambda a: not is_trusted(a)), st.sampled_from(["alice", "carol"]))
@example("127.0.0.1", "alice")
def test_a_spoofed_header_is_always_noted(address: str, user: str) -> None:
    """Even when proxy authentication decides the identity (found here, fixed)."""
    identity = IdentityResolver(SMALL.identity).resolve(user, "the-ceo", address)
    assert identity.source is IdentitySource.PROXY_AUTH and identity.name == user
    assert identity.untrusted_header


IDENTITIES = json.loads((FIXTURES / "corpus" / "identities.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", IDENTITIES, ids=[c["why"] for c in IDENTITIES])
def test_identity_corpus(case: dict) -> None:
    identity = IdentityResolver(SMALL.identity).resolve(
        case["proxyauth"], case["header"], case["client"]
    )
    got = (identity.source.value, identity.name, identity.untrusted_header)
    assert got == (case["source"], case["name"], case["noted"]), case["why"]


@fuzz(300)
@given(_address)
def test_address_helpers_never_raise(address: str) -> None:
    parsed = parse_address(address)
    canonical = canonical_address(address)
    if parsed is None:
        assert canonical == address
    else:
        assert canonical == str(parsed) and parse_address(canonical) == parsed
    assert (address in AddressSet((TRUSTED,))) is is_trusted(address)


@fuzz(200)
@given(st.text(max_size=400))
def test_clean_name(value: str) -> None:
    name = clean_name(value)
    if name is not None:
        assert name == value.strip() and name.isprintable() and len(name) <= MAX_NAME_LENGTH
        assert "\n" not in name and "\r" not in name and "\x00" not in name


def test_a_header_source_without_trusted_proxies_is_not_a_valid_policy() -> None:
    """Never "trust the header from anyone": the policy is refused with its line."""
    text = (POLICIES / "small.yaml").read_text()
    with pytest.raises(PolicyError, match="needs 'trusted_proxies'"):
        parse_policy(text.replace("trusted_proxies: [10.9.9.9/32]", "trusted_proxies: []"))


# ---------------------------------------------------------------------------------------
# Through the add-on's hooks


@pytest.fixture
def harness(tmp_path):
    yield from harness_for(tmp_path)


_header_value = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80),
    st.sampled_from(["", " ", "alice", "alice, bob", "🙂", "ö"]),
)


@fuzz(60)
@given(
    st.sampled_from(["10.1.2.3", "127.0.0.1", "10.9.9.8", "::ffff:10.1.2.3", "10.9.9.9"]),
    _header_value,
    st.sampled_from(["X-Authenticated-User", "x-authenticated-user", "X-AUTHENTICATED-USER"]),
)
def test_the_header_never_reaches_the_origin(tmp_path_factory, client, value, spelling) -> None:
    """Whoever sends it, in any case, the identity header is taken off the request."""
    for h in harness_for(tmp_path_factory.mktemp("h")):
        f = h.flow(client=client, headers={spelling: value, "Accept": "*/*"})
        h.exchange(f)
        assert HEADER not in f.request.headers
        (record,) = h.records("access")
        if is_trusted(client) and expected_name(value):
            assert record["labels.identity_source"] == "header"
            assert record["user.name"] == expected_name(value)
        else:
            assert record["labels.identity_source"] == "address"
            assert record["user.name"] == canonical_address(client)
            if not is_trusted(client):
                assert record["labels.identity_header"] == "ignored-untrusted-client"
