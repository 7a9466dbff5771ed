from __future__ import annotations

import hashlib
import hmac
import os

import pytest

from auditproxy.decide.identity import (
    AddressSet,
    IdentityResolver,
    IgnoredHeader,
    Pseudonymizer,
    canonical_address,
    clean_name,
    load_key,
    user_fields,
)
from auditproxy.policy.load import parse_policy
from auditproxy.policy.model import IdentitySource, LogAs


@pytest.fixture
def resolver(small_policy_text) -> IdentityResolver:
    return IdentityResolver(parse_policy(small_policy_text).identity)


def test_proxy_auth_comes_first(resolver):
    identity = resolver.resolve("alice", "mallory", "10.9.9.9")
    assert (identity.name, identity.source) == ("alice", IdentitySource.PROXY_AUTH)


def test_header_only_from_trusted_front_proxy(resolver):
    trusted = resolver.resolve(None, "bob", "10.9.9.9")
    assert (trusted.name, trusted.source, trusted.untrusted_header) == (
        "bob",
        IdentitySource.HEADER,
        False,
    )
    spoofed = resolver.resolve(None, "bob", "10.1.2.3")
    assert (spoofed.name, spoofed.source) == ("10.1.2.3", IdentitySource.ADDRESS)
    assert spoofed.untrusted_header is True


def test_address_fallback_is_canonical(resolver):
    identity = resolver.resolve(None, None, "::ffff:10.1.2.3")
    assert (identity.name, identity.source) == ("10.1.2.3", IdentitySource.ADDRESS)


@pytest.mark.parametrize("bad", ["", "   ", "a\nb", "x\x00", "y" * 300])
def test_unusable_names_fall_through(resolver, bad):
    assert resolver.resolve(bad, None, "10.0.0.1").source is IdentitySource.ADDRESS
    assert resolver.resolve(None, bad, "10.9.9.9").source is IdentitySource.ADDRESS


def test_clean_name():
    assert clean_name("  alice ") == "alice"
    assert clean_name("\u00e9lise") == "\u00e9lise"
    assert clean_name(None) is None


def test_address_set_with_mapped_and_garbage():
    nets = parse_policy(
        "name: n\nurl: https://x.test\ntimezone: UTC\ncategories: {c: {action: log, sites: "
        "{s: [s.test]}}}\nclients: {allow: [10.0.0.0/8, '2001:db8::/32']}\n"
    ).clients
    allowed = AddressSet(nets)
    assert "10.20.30.40" in allowed
    assert "::ffff:10.20.30.40" in allowed
    assert "2001:db8::5" in allowed
    assert "192.168.1.1" not in allowed
    assert "not-an-ip" not in allowed
    assert "fe80::1%eth0" not in allowed


def test_pseudonym_is_hmac_sha256_with_key_id():
    key = bytes(range(32))
    pseudonymize = Pseudonymizer(key)
    expected = hmac.new(key, b"alice", hashlib.sha256).hexdigest()[:32]
    assert pseudonymize("alice") == expected
    assert pseudonymize("alice") == expected  # cached
    assert pseudonymize("bob") != expected
    assert len(pseudonymize.key_id) == 12
    other = Pseudonymizer(bytes(range(1, 33)))
    assert other("alice") != expected
    assert other.key_id != pseudonymize.key_id
    with pytest.raises(ValueError):
        Pseudonymizer(b"short")


def test_user_fields(resolver):
    identity = resolver.resolve("alice", None, "10.0.0.1")
    assert user_fields(identity, LogAs.NAME, None) == {"user.name": "alice"}
    p = Pseudonymizer(b"k" * 32)
    fields = user_fields(identity, LogAs.PSEUDONYM, p)
    assert fields == {"user.hash": p("alice"), "labels.user_key_id": p.key_id}
    assert "alice" not in str(fields)


def test_key_created_owner_only_and_stable(tmp_path):
    path = tmp_path / "sub" / "k.key"
    key = load_key(path, create=True)
    assert len(key) == 32
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_key(path, create=True) == key  # never regenerated


def test_key_missing_without_create(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_key(tmp_path / "nope.key")


def test_key_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "k.key"
    path.write_text("ab" * 32)
    os.chmod(path, 0o644)
    with pytest.raises(ValueError, match=r"readable by others.*chmod 600"):
        load_key(path)


def test_key_formats(tmp_path):
    hex_key = tmp_path / "hex.key"
    hex_key.write_text("00" * 32 + "\n")
    os.chmod(hex_key, 0o600)
    assert load_key(hex_key) == bytes(32)
    raw = tmp_path / "raw.key"
    raw.write_bytes(b"a passphrase that is long enough")
    os.chmod(raw, 0o400)
    assert load_key(raw) == b"a passphrase that is long enough"
    short = tmp_path / "short.key"
    short.write_text("abcd")
    os.chmod(short, 0o600)
    with pytest.raises(ValueError, match="too short"):
        load_key(short)


def test_canonical_address():
    assert canonical_address("::ffff:192.0.2.1") == "192.0.2.1"
    assert canonical_address("2001:DB8::1") == "2001:db8::1"
    assert canonical_address("garbage") == "garbage"


# --- identities that cannot be borrowed or confused ---------------------------------------


def test_a_user_named_like_an_address_is_not_that_address(resolver):
    user = resolver.resolve("127.0.0.1", None, "10.1.2.3")
    address = resolver.resolve(None, None, "127.0.0.1")
    assert user.name == address.name == "127.0.0.1"
    assert user.key != address.key  # they key pseudonyms and notices apart
    pseudonymize = Pseudonymizer(b"k" * 32)
    assert (
        user_fields(user, LogAs.PSEUDONYM, pseudonymize)["user.hash"]
        != user_fields(address, LogAs.PSEUDONYM, pseudonymize)["user.hash"]
    )


def test_names_are_normalised_before_they_key_anything(resolver):
    assert resolver.resolve("ALICE", None, "10.1.2.3").key == "alice"
    assert resolver.resolve("\uff41lice", None, "10.1.2.3").key == "alice"  # full-width a


def test_case_sensitive_directories_keep_case(small_policy_text):
    text = small_policy_text.replace("  log_as: name\n", "  log_as: name\n  case: sensitive\n")
    resolver = IdentityResolver(parse_policy(text).identity)
    assert resolver.resolve("ALICE", None, "10.1.2.3").name == "ALICE"


def test_a_name_mixing_scripts_is_flagged(resolver):
    lookalike = resolver.resolve("\u0430lice", None, "10.1.2.3")  # Cyrillic a
    assert lookalike.mixed_scripts == "cyrillic+latin"
    assert lookalike.key != resolver.resolve("alice", None, "10.1.2.3").key
    assert resolver.resolve("alice", None, "10.1.2.3").mixed_scripts is None


def test_inside_a_tunnel_only_the_connects_header_counts(resolver):
    inside = resolver.resolve(None, "mallory", "10.9.9.9", inner_header="the.director")
    assert inside.name == "mallory"
    assert inside.ignored_header is IgnoredHeader.INSIDE_TUNNEL
    same = resolver.resolve(None, "mallory", "10.9.9.9", inner_header="mallory")
    assert same.ignored_header is None
    no_connect_header = resolver.resolve(None, None, "10.9.9.9", inner_header="the.director")
    assert no_connect_header.source is IdentitySource.ADDRESS
    assert no_connect_header.ignored_header is IgnoredHeader.INSIDE_TUNNEL
