"""Proxy authentication by the proxy itself, per client connection: what to do with the
`Proxy-Authorization` a request brings. Pure: the hooks (`addon_identity.py`) validate
credentials off the event loop (`decide.negotiate`, a Basic checker) and apply the steps.

Browsers answer a `407` with one Negotiate token on a connection and send the later
requests of that connection without one; for HTTPS the token comes with the `CONNECT`, and
the requests inside the tunnel never carry one (curl sends a fresh token every time). So:

- the principal belongs to the client connection (never to an address: NAT, VDI and
  balancers share addresses), and is forgotten with it;
- the same credential seen again on the connection reuses the principal (validating a
  Negotiate token twice would be refused as a replay); a new one is validated;
- a request without a credential on a connection without a principal is challenged
  (`407`), once: after that, or when a credential fails or cannot be checked in time, the
  policy's `on_failure` says whether it goes on identified by its address (`address`) or
  is challenged again (`refuse`);
- inside a tunnel nothing is challenged (a `407` there would seem to come from the site):
  the tunnel has what its `CONNECT` proved;
- behind a balancer, a connection is the balancer's: a request forwarded for another
  client address than the one that authenticated it does not get the principal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from auditproxy.policy.model import AuthFailure, AuthMethod, AuthSettings


class Outcome(StrEnum):
    """Why a credential was accepted or refused: one value per metric label, never a user."""

    OK = "ok"
    BAD_TOKEN = "bad_token"  # not base64, empty, too large, not a GSSAPI token, corrupted
    NOT_KERBEROS = "not_kerberos"  # NTLM, or SPNEGO that needs another round trip
    EXPIRED = "expired"  # the ticket's end time has passed
    WRONG_KEY = "wrong_key"  # a ticket for another service, or a key the keytab lacks
    REPLAY = "replay"  # this authenticator was accepted before
    CLOCK_SKEW = "clock_skew"  # the client's clock (or ours) is off by more than allowed
    INVALID = "invalid"  # Basic: unknown user or wrong password
    NOT_OFFERED = "not_offered"  # a scheme the policy does not offer (Basic when off...)
    TIMEOUT = "timeout"  # no answer within the deadline
    BUSY = "busy"  # every worker busy and the queue full: refused at once
    ERROR = "error"  # anything else the library reported


NO_CREDENTIAL = "no_credential"  # a challenged connection that came back without one
FALLBACK_REASONS = (NO_CREDENTIAL, *(o.value for o in Outcome if o is not Outcome.OK))


class Kind(StrEnum):
    PASS = "pass"  # authentication is not asked for (off, or inside a tunnel without one)
    USE = "use"  # the connection's principal
    VALIDATE = "validate"  # check `credential` with `scheme`'s validator, then `result`
    CHALLENGE = "challenge"  # answer 407
    FALLBACK = "fallback"  # go on identified by the address; `reason` says why


@dataclass(frozen=True, slots=True)
class Step:
    kind: Kind
    reason: str | None = None  # CHALLENGE, FALLBACK: an Outcome value or NO_CREDENTIAL
    scheme: AuthMethod | None = None  # VALIDATE
    credential: str | None = None  # VALIDATE


PASS = Step(Kind.PASS)
USE = Step(Kind.USE)


@dataclass(slots=True)
class ConnectionAuth:
    """One client connection's authentication."""

    principal: str | None = None  # as proven: `alice@EXAMPLE.TEST`, or a Basic user name
    scheme: AuthMethod | None = None
    proof: bytes | None = None  # SHA-256 of the credential that proved it (never the value)
    address: str | None = None  # the (forwarded) client address it was proven from
    challenged: bool = False  # a 407 went out on this connection
    failure: str | None = None  # it fell back to its address, for this reason

    def forget(self) -> None:
        self.principal = self.scheme = self.proof = self.failure = None
        self.challenged = False

    def user(self, realm: str | None) -> str | None:
        """The principal as a person's name: without `@REALM` for the policy's realm."""
        principal = self.principal
        if principal is None or realm is None:
            return principal
        name, at, its_realm = principal.rpartition("@")
        return name if at and name and its_realm.upper() == realm else principal


def digest(credential: str) -> bytes:
    return hashlib.sha256(credential.strip().encode("utf-8", "surrogateescape")).digest()


def scheme_of(credential: str) -> AuthMethod | None:
    """The method a credential is for: Negotiate (and NTLM, refused by it), Basic, or None."""
    word = credential.strip().partition(" ")[0].lower()
    if word in ("negotiate", "ntlm"):
        return AuthMethod.NEGOTIATE
    if word == "basic":
        return AuthMethod.BASIC
    return None


def next_step(
    auth: ConnectionAuth,
    settings: AuthSettings,
    credential: str | None,
    address: str,
    *,
    in_tunnel: bool,
) -> Step:
    """What to do with one request (or `CONNECT`) on the connection."""
    if not settings.methods:
        return PASS
    if auth.address is not None and address != auth.address:
        auth.forget()  # another client behind the same balancer connection: start over
        auth.address = None
    if in_tunnel:
        return USE if auth.principal is not None else PASS
    if credential is not None and credential.strip():
        if auth.principal is not None and auth.proof == digest(credential):
            return USE
        scheme = scheme_of(credential)
        if scheme is None or scheme not in settings.methods:
            return failed(auth, settings, Outcome.NOT_OFFERED.value)
        return Step(Kind.VALIDATE, scheme=scheme, credential=credential)
    if auth.principal is not None:
        return USE
    if auth.failure is not None:
        return Step(Kind.FALLBACK, auth.failure)
    if auth.challenged:
        return failed(auth, settings, NO_CREDENTIAL)
    auth.challenged = True
    return Step(Kind.CHALLENGE, NO_CREDENTIAL)


def validated(
    auth: ConnectionAuth,
    settings: AuthSettings,
    step: Step,
    outcome: Outcome,
    principal: str | None,
    address: str,
) -> Step:
    """The step after a VALIDATE step's check: the new principal, or the failure."""
    assert step.kind is Kind.VALIDATE and step.credential is not None
    if outcome is Outcome.OK and principal:
        auth.principal, auth.scheme = principal, step.scheme
        auth.proof, auth.address, auth.failure = digest(step.credential), address, None
        return USE
    auth.principal = auth.scheme = auth.proof = None  # a failed new credential: no one
    return failed(auth, settings, outcome.value)


def failed(auth: ConnectionAuth, settings: AuthSettings, reason: str) -> Step:
    if settings.on_failure is AuthFailure.ADDRESS:
        auth.failure = reason
        return Step(Kind.FALLBACK, reason)
    auth.challenged = True
    return Step(Kind.CHALLENGE, reason)


def challenge(settings: AuthSettings, basic_realm: str) -> list[str]:
    """The `Proxy-Authenticate` values of a 407, in the policy's order (one header each)."""
    values = []
    for method in settings.methods:
        if method is AuthMethod.NEGOTIATE:
            values.append("Negotiate")
        else:
            quoted = basic_realm.replace("\\", "\\\\").replace('"', '\\"')
            values.append(f'Basic realm="{quoted}", charset="UTF-8"')
    return values


@dataclass(frozen=True, slots=True)
class AuthNote:
    """What proxy authentication says about one request, for its decision and record."""

    user: str | None = None  # the proven person's name (before normalisation)
    scheme: AuthMethod | None = None  # how it was proven
    failure: str | None = None  # it fell back to the address: why (`labels.auth_failure`)
