"""Directory groups against a real OpenLDAP (Debian slapd), with nested groups, a cycle, a
deep chain, a read-only bind account, and real faults: a stopped server, a paused one
(SIGSTOP: it accepts connections and never answers), a wrong password.

Caching is checked with an injected clock (never the wall clock); filters, settings and
the cache's own rules need no server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("ldap3", reason="pip install 'auditproxy[directory]'")

from auditproxy.decide.directory import (
    ACTIVE_DIRECTORY_USER_FILTER,
    Directory,
    DirectorySettings,
    Membership,
    Nesting,
    Reason,
    in_chain_filter,
    user_filter,
)
from support.certs import CertAuthority
from support.ldap import (
    BASE,
    CHAIN,
    GROUPS,
    READER,
    READER_PASSWORD,
    LdapServer,
    group_dn,
    user_dn,
)
from support.ports import free_port

REALM = "EXAMPLE.TEST"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- without a server ----------------------------------------------------------------


def test_user_filter_escapes_every_value() -> None:
    assert user_filter("(uid={user})", f"alice@{REALM}") == "(uid=alice)"
    assert user_filter("(uid={user})", "*)(uid=*@R") == "(uid=\\2a\\29\\28uid=\\2a)"
    ad = user_filter(ACTIVE_DIRECTORY_USER_FILTER, "o'brien@EXAMPLE.TEST")
    assert "(userPrincipalName=o'brien@EXAMPLE.TEST)(sAMAccountName=o'brien)" in ad
    assert user_filter("(uid={user})", "no-realm") == "(uid=no-realm)"


def test_in_chain_filter_uses_the_matching_rule_and_escapes_the_dn() -> None:
    assert in_chain_filter("(objectClass=group)", "CN=Smith\\, J (x),DC=ad") == (
        "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:=CN=Smith\\5c, J \\28x\\29,DC=ad))"
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"url": "http://dc.example.test"},
        {"user_filter": "uid={user}"},
        {"user_filter": "(uid={username})"},
        {"user_filter": "(uid=alice)"},
        {"max_depth": 0},
        {"timeout": 0},
    ],
)
def test_bad_settings_are_refused_with_a_message(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DirectorySettings(**{"url": "ldap://dc", "base_dn": BASE, **changes})  # type: ignore[arg-type]


def test_the_password_never_appears_in_the_settings_repr() -> None:
    settings = DirectorySettings("ldap://dc", BASE, READER, "s3cret")
    assert "s3cret" not in repr(settings)


class Scripted(Directory):
    """A directory whose look-ups answer from a script (the cache and the bounds alone)."""

    def __init__(self, answers: list[Membership], clock: Clock, **settings: object) -> None:
        super().__init__(DirectorySettings("ldap://dc", BASE, **settings), clock=clock)  # type: ignore[arg-type]
        self.answers = answers
        self.calls: list[str] = []

    def lookup(self, principal: str) -> Membership:
        self.calls.append(principal)
        time.sleep(0.05)
        return self.answers.pop(0)


async def test_a_cached_answer_lasts_its_ttl_and_failures_a_shorter_one() -> None:
    clock = Clock()
    ok = Membership(Reason.OK, user_dn="uid=a")
    missing = Membership(Reason.USER_NOT_FOUND)
    directory = Scripted([ok, missing, ok, missing], clock, cache_ttl=300, failure_ttl=30)
    assert not (await directory.groups("a@R")).cached
    assert (await directory.groups("A@R")).cached  # principals compare without case
    assert (await directory.groups("nobody@R")).reason is Reason.USER_NOT_FOUND
    clock.now += 31
    assert (await directory.groups("a@R")).cached
    assert not (await directory.groups("nobody@R")).cached  # asked again
    clock.now += 270
    assert not (await directory.groups("a@R")).cached
    assert directory.calls == ["a@R", "nobody@R", "nobody@R", "a@R"]
    directory.close()


async def test_the_cache_is_bounded_least_recently_used_first() -> None:
    answers = [Membership(Reason.OK) for _ in range(5)]
    directory = Scripted(answers, Clock(), cache_size=2)
    for name in ("a", "b", "a", "c", "b"):
        await directory.groups(name)
    assert directory.calls == ["a", "b", "c", "b"]  # b was evicted by c; a stayed (recent)
    directory.close()


async def test_concurrent_look_ups_for_one_person_share_one_query() -> None:
    directory = Scripted([Membership(Reason.OK)], Clock())
    results = await asyncio.gather(*(directory.groups("a") for _ in range(5)))
    assert [r.reason for r in results] == [Reason.OK] * 5
    assert directory.calls == ["a"]
    directory.close()


async def test_a_full_pool_answers_busy_at_once_and_is_not_cached() -> None:
    answers = [Membership(Reason.OK) for _ in range(3)]
    directory = Scripted(answers, Clock(), workers=1, queue=0)
    first, second = await asyncio.gather(directory.groups("a"), directory.groups("b"))
    assert (first.reason, second.reason) == (Reason.OK, Reason.BUSY)
    assert (await directory.groups("b")).reason is Reason.OK
    directory.close()


# --- a real OpenLDAP ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory, test_ca: CertAuthority) -> Iterator[LdapServer]:
    # A certificate for a name: ldap3 checks host names with its own backport of Python
    # 3.4's match_hostname, which never accepts an IP address (name the server by DNS).
    with LdapServer(tmp_path_factory.mktemp("slapd"), tls=test_ca.leaf("localhost")) as server:
        yield server


@pytest.fixture
def server(slapd: LdapServer) -> Iterator[LdapServer]:
    """The module's server, running and answering again after each test."""
    if slapd.process is None:
        slapd.start()
    yield slapd
    if slapd.paused:
        slapd.resume()
    if slapd.process is None:
        slapd.start()


def settings_for(server: LdapServer, **changes: object) -> DirectorySettings:
    options: dict[str, object] = {
        "url": server.url,
        "base_dn": BASE,
        "bind_dn": READER,
        "bind_password": READER_PASSWORD,
    }
    options.update(changes)
    return DirectorySettings(**options)  # type: ignore[arg-type]


async def groups_of(server: LdapServer, principal: str, **changes: object) -> Membership:
    directory = Directory(settings_for(server, **changes))
    try:
        return await directory.groups(principal)
    finally:
        directory.close()


@pytest.mark.e2e
async def test_direct_groups_only_with_depth_one(server: LdapServer) -> None:
    found = await groups_of(server, f"alice@{REALM}", nesting=Nesting.ITERATIVE, max_depth=1)
    assert found.ok and found.names == {"comms"}
    assert found.user_dn == user_dn("alice")
    assert found.groups[0].dn == group_dn("comms")
    assert found.truncated  # the parents of comms were not searched


@pytest.mark.e2e
@pytest.mark.parametrize("nesting", [Nesting.AUTO, Nesting.ITERATIVE])
async def test_nested_groups_are_resolved(server: LdapServer, nesting: Nesting) -> None:
    alice = await groups_of(server, f"alice@{REALM}", nesting=nesting)
    assert alice.ok and alice.names == {"comms", "staff", "everyone"} and not alice.truncated
    bob = await groups_of(server, f"bob@{REALM}", nesting=nesting)
    assert bob.names == {"staff", "everyone"}
    carol = await groups_of(server, f"carol@{REALM}", nesting=nesting)
    assert carol.names == {"loop-a", "loop-b"}  # a cycle ends
    dave = await groups_of(server, f"dave@{REALM}", nesting=nesting)
    assert dave.ok and dave.groups == ()


@pytest.mark.e2e
async def test_the_walk_is_bounded_in_depth_and_count(server: LdapServer) -> None:
    deep = await groups_of(server, "dave-in-chain", max_depth=5)
    assert deep.names == {f"chain-{i}" for i in range(CHAIN - 4, CHAIN + 1)}
    assert deep.truncated
    whole = await groups_of(server, "dave-in-chain", max_depth=CHAIN + 1)
    assert len(whole.groups) == CHAIN and not whole.truncated
    few = await groups_of(server, f"alice@{REALM}", max_groups=2)
    assert len(few.groups) == 2 and few.truncated


@pytest.mark.e2e
async def test_in_chain_on_openldap_silently_finds_nothing_which_is_why_auto_asks(
    server: LdapServer,
) -> None:
    found = await groups_of(server, f"alice@{REALM}", nesting=Nesting.IN_CHAIN)
    assert found.ok and found.groups == ()


@pytest.mark.e2e
async def test_group_base_and_filter_limit_the_search(server: LdapServer) -> None:
    elsewhere = await groups_of(server, f"alice@{REALM}", group_base_dn=f"ou=people,{BASE}")
    assert elsewhere.ok and elsewhere.groups == ()
    only_comms = await groups_of(
        server, f"alice@{REALM}", group_filter="(&(objectClass=groupOfNames)(cn=comms))"
    )
    assert only_comms.names == {"comms"}
    assert (await groups_of(server, "alice", group_base_dn=GROUPS)).names >= {"comms"}


@pytest.mark.e2e
async def test_a_user_not_in_the_directory_fails_open(server: LdapServer) -> None:
    found = await groups_of(server, f"nobody@{REALM}")
    assert found.reason is Reason.USER_NOT_FOUND and found.groups == ()


@pytest.mark.e2e
async def test_filter_characters_in_a_principal_are_literal(server: LdapServer) -> None:
    # Unescaped, "(uid=*)" would match every person (and "(uid=star*)" two).
    assert (await groups_of(server, f"*@{REALM}")).reason is Reason.USER_NOT_FOUND
    star = await groups_of(server, f"star*@{REALM}")
    assert star.ok and star.user_dn == user_dn("star*")


@pytest.mark.e2e
async def test_a_wrong_bind_password_fails_open_as_bind_failed(server: LdapServer) -> None:
    found = await groups_of(server, f"alice@{REALM}", bind_password="wrong")
    assert found.reason is Reason.BIND_FAILED and found.groups == ()
    assert "invalidCredentials" in found.detail


async def test_a_server_that_is_down_fails_open_at_once() -> None:
    settings = DirectorySettings(f"ldap://127.0.0.1:{free_port()}", BASE, timeout=2)
    directory = Directory(settings)
    started = time.monotonic()
    found = await directory.groups(f"alice@{REALM}")
    assert found.reason is Reason.SERVER_DOWN and found.groups == ()
    assert time.monotonic() - started < 1.5
    directory.close()


@pytest.mark.e2e
async def test_a_paused_server_is_bounded_by_the_deadline_and_the_loop_keeps_running(
    server: LdapServer,
) -> None:
    clock = Clock()
    directory = Directory(settings_for(server, timeout=0.5, failure_ttl=30), clock=clock)
    server.pause()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    found = await directory.groups(f"alice@{REALM}")
    elapsed = time.monotonic() - started
    task.cancel()
    assert found.reason is Reason.TIMEOUT and found.groups == ()
    assert 0.4 < elapsed < 1.0
    assert ticks > 20  # the event loop was never blocked
    # Within failure_ttl, nobody else waits for the dead server: answered at once.
    started = time.monotonic()
    other = await directory.groups(f"bob@{REALM}")
    assert other.reason is Reason.TIMEOUT and other.cached
    assert time.monotonic() - started < 0.1
    server.resume()
    clock.now += 31
    assert (await directory.groups(f"bob@{REALM}")).ok
    directory.close()


@pytest.mark.e2e
async def test_cache_ttl_with_an_injected_clock_across_a_server_outage(
    server: LdapServer,
) -> None:
    clock = Clock()
    directory = Directory(settings_for(server, cache_ttl=300, failure_ttl=30), clock=clock)
    first = await directory.groups(f"alice@{REALM}")
    assert first.ok and not first.cached
    server.stop()
    clock.now += 299
    cached = await directory.groups(f"alice@{REALM}")
    assert cached.ok and cached.cached and cached.names == first.names
    clock.now += 2  # expired: asked again, and the server is gone
    gone = await directory.groups(f"alice@{REALM}")
    assert gone.reason is Reason.SERVER_DOWN and gone.groups == () and not gone.cached
    server.start()
    clock.now += 31
    again = await directory.groups(f"alice@{REALM}")
    assert again.ok and not again.cached
    directory.close()


@pytest.mark.e2e
async def test_start_tls_and_ldaps_verify_the_server_certificate(
    server: LdapServer, test_ca: CertAuthority, tmp_path: Path
) -> None:
    ca_file = str(test_ca.write_ca(tmp_path))
    by_name = server.url.replace("127.0.0.1", "localhost")
    ldaps_url = server.ldaps_url.replace("127.0.0.1", "localhost")
    start_tls = await groups_of(
        server, f"alice@{REALM}", start_tls=True, ca_file=ca_file, url=by_name
    )
    assert start_tls.ok and "staff" in start_tls.names
    ldaps = settings_for(server, ca_file=ca_file)
    directory = Directory(replace(ldaps, url=ldaps_url))
    assert (await directory.groups(f"alice@{REALM}")).names == start_tls.names
    directory.close()
    # Without our CA the certificate is refused, and the password never leaves.
    untrusted = Directory(replace(ldaps, url=ldaps_url, ca_file=None))
    refused = await untrusted.groups(f"alice@{REALM}")
    assert refused.reason is Reason.ERROR and "certificate" in refused.detail.lower(), refused
    untrusted.close()
    no_start_tls = await groups_of(server, f"alice@{REALM}", start_tls=True, url=by_name)
    assert no_start_tls.reason is Reason.ERROR, no_start_tls
