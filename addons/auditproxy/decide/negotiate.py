"""Kerberos single sign-on for the proxy: validate ``Proxy-Authorization: Negotiate`` tokens.

The browser asks the department's KDC (Active Directory) for a ticket to
``HTTP/<proxy fqdn>`` and sends it, wrapped in SPNEGO, after a ``407``; we check it with
the service's keytab, without talking to the KDC, and learn who the person is.

Library: ``gssapi`` (python-gssapi over the system's MIT Kerberos), not ``pyspnego``. On
Linux pyspnego does Kerberos only through gssapi anyway (its own code covers NTLM), so it
would add a layer without removing the dependency, and hide what we need to type failures:
GSSAPI's status codes and the credential store (``keytab`` and ``rcache`` given per
acceptor, not through process-wide environment variables). Neither has a Linux wheel on
PyPI: installing the ``kerberos`` extra compiles gssapi (gcc and libkrb5-dev).

Replays: MIT's replay cache remembers every authenticator it accepted for the clock-skew
window, and refuses one seen before. The cache is named explicitly here (``replay_cache``),
because ``KRB5RCACHETYPE=none`` in the environment would silently turn off the default one.
It is per host: instances behind a balancer do not share it.

How a proxy uses this (connection-oriented in practice, RFC 4559 section 6): browsers
answer a ``407`` with one token on a client connection and send later requests on that
connection without one (curl sends a fresh token with every request); for HTTPS the token
comes with the ``CONNECT`` and the requests inside the tunnel never carry one. So the caller
keeps, per client connection (its id, never its address: NAT, VDI and balancers share
addresses), the principal and the header value that proved it; forgets both on
disconnect; validates a new value (a fresh token); reuses the principal when the same
value comes again (validating it twice would be refused as a replay); and answers
``challenge()`` when a connection without a principal brings no value. Accepting is local
CPU work, no KDC round trip (a KDC that is down only stops clients getting new tickets):
about 0.1 ms here, so a few workers keep up with thousands of new connections a second.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path

import gssapi
import gssapi.exceptions
import gssapi.raw

from auditproxy.decide.auth import Outcome
from auditproxy.decide.offload import Busy, Offload

SCHEME = "Negotiate"
# Active Directory tickets carry the PAC (group SIDs): Windows allows 48 000-byte tokens;
# a little more, then refused without decoding.
MAX_TOKEN_BYTES = 64 * 1024
_NTLM_SIGNATURE = b"NTLMSSP\x00"
_INITIAL_TOKEN = b"\x60"


@dataclass(frozen=True, slots=True)
class Result:
    """What one ``Proxy-Authorization`` value proved. ``detail`` is for the operator's log
    (the library's message, bounded); it never contains the token."""

    outcome: Outcome
    principal: str | None = None
    output_token: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    @property
    def user(self) -> str | None:
        """The principal without its realm (``alice`` for ``alice@EXAMPLE.TEST``)."""
        return None if self.principal is None else self.principal.rpartition("@")[0] or None

    @property
    def mutual_header(self) -> str | None:
        """``Negotiate <token>`` for ``Proxy-Authenticate`` on the answer that follows a
        success (mutual authentication); optional: browsers do not require it."""
        return f"{SCHEME} {self.output_token}" if self.output_token else None


def challenge(basic_realm: str | None = None) -> list[str]:
    """The ``Proxy-Authenticate`` values of a ``407``, one header each. Negotiate comes
    first (Chromium picks the strongest scheme whatever the order; some clients take the
    first); Basic only where the policy allows it, since it sends the password."""
    values = [SCHEME]
    if basic_realm is not None:
        quoted = basic_realm.replace("\\", "\\\\").replace('"', '\\"')
        values.append(f'Basic realm="{quoted}", charset="UTF-8"')
    return values


def scheme_of(header_value: str) -> str:
    """The authentication scheme of a credential, lower case (``negotiate``, ``basic``)."""
    return header_value.strip().partition(" ")[0].lower()


def decode(header_value: str) -> bytes | Result:
    """The token of a ``Negotiate`` credential, or the ``Result`` that refuses it."""
    scheme, _, data = header_value.strip().partition(" ")
    if scheme.lower() == "ntlm":
        return Result(Outcome.NOT_KERBEROS, detail="NTLM credential")
    if scheme.lower() != "negotiate":
        return Result(Outcome.BAD_TOKEN, detail="not a Negotiate credential")
    data = data.strip()
    if not data or len(data) > MAX_TOKEN_BYTES * 4 // 3 + 4:
        return Result(Outcome.BAD_TOKEN, detail="empty or oversized token")
    try:
        token = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return Result(Outcome.BAD_TOKEN, detail="token is not base64")
    if _NTLM_SIGNATURE in token:  # raw NTLM, or NTLM wrapped in SPNEGO
        return Result(Outcome.NOT_KERBEROS, detail="NTLM token (no Kerberos ticket)")
    if token[:1] != _INITIAL_TOKEN:
        # A first token is always GSS-API's InitialContextToken ([APPLICATION 0], RFC 2743
        # 3.1): SPNEGO's NegTokenInit or Kerberos' AP-REQ. MIT answers anything else with
        # an "unspecified failure" whose minor code says "Success".
        return Result(Outcome.BAD_TOKEN, detail="not a GSS-API initial context token")
    return token


# MIT's minor status messages (com_err tables, stable for decades; English under Python's
# default C locale for messages). The minor numbers themselves are remapped per process by
# the mechglue, so the text identifies the cause. Only the message's start is compared:
# what follows may name principals the client chose. Only refusals are typed from text.
_MESSAGES: tuple[tuple[str, Outcome], ...] = (
    ("request is a replay", Outcome.REPLAY),
    ("clock skew too great", Outcome.CLOCK_SKEW),
    ("ticket not yet valid", Outcome.CLOCK_SKEW),
    ("ticket expired", Outcome.EXPIRED),
    # The keytab lacks the ticket's service or key version, or its key does not decrypt
    # the ticket (an out-of-date keytab; rarely, a tampered ticket).
    ("cannot find key", Outcome.WRONG_KEY),
    ("no key table entry", Outcome.WRONG_KEY),
    ("key table entry not found", Outcome.WRONG_KEY),
    ("key version", Outcome.WRONG_KEY),
    ("the ticket isn't for us", Outcome.WRONG_KEY),
    ("wrong principal", Outcome.WRONG_KEY),
    ("cannot decrypt ticket", Outcome.WRONG_KEY),
    ("decrypt integrity check failed", Outcome.WRONG_KEY),
    ("token header is malformed", Outcome.BAD_TOKEN),
    ("asn.1", Outcome.BAD_TOKEN),
)
_MINOR = re.compile(r"Minor \(\d+\): ")
_PRINTABLE = re.compile(r"[^\x20-\x7e]")


def classify_error(error: gssapi.exceptions.GSSError) -> Result:
    """Turn a GSSAPI failure into a typed refusal."""
    detail = _PRINTABLE.sub("?", str(error))[:300]
    if isinstance(error, gssapi.exceptions.BadMechanismError):
        return Result(Outcome.NOT_KERBEROS, detail=detail)
    if isinstance(error, gssapi.raw.DuplicateTokenError):
        return Result(Outcome.REPLAY, detail=detail)
    if isinstance(error, gssapi.raw.ExpiredCredentialsError | gssapi.raw.ExpiredContextError):
        return Result(Outcome.EXPIRED, detail=detail)
    found = _MINOR.search(detail)
    minor = (detail[found.end() :] if found else detail).lower()
    for text, outcome in _MESSAGES:
        if minor.startswith(text):
            return Result(outcome, detail=detail)
    if isinstance(error, gssapi.raw.InvalidTokenError):
        return Result(Outcome.BAD_TOKEN, detail=detail)
    return Result(Outcome.ERROR, detail=detail)


class Acceptor:
    """Validates tokens for ``service`` (``HTTP/proxy.example.test``, realm optional; None
    accepts a ticket for any principal in the keytab) with the keys in ``keytab``.

    Construction reads the keytab once and raises ``ValueError`` (for ``OptionsError``)
    when it lacks the service; the file is read again for every token, so a rotated keytab
    needs no restart. ``replay_cache`` is a file (``file2`` type) or None for MIT's
    default (``KRB5RCACHEDIR``, or ``/var/tmp``; ``KRB5RCACHETYPE=none`` disables it).
    """

    def __init__(
        self,
        keytab: str | Path,
        service: str | None,
        *,
        replay_cache: str | Path | None,
        workers: int = 4,
        queue: int = 32,
        timeout: float = 2.0,
    ) -> None:
        store = {b"keytab": f"FILE:{Path(keytab).resolve()}".encode()}
        if replay_cache is not None:
            store[b"rcache"] = f"file2:{Path(replay_cache).resolve()}".encode()
        name = None
        if service is not None:
            name = gssapi.Name(service, gssapi.NameType.kerberos_principal)
        try:
            self._creds = gssapi.Credentials(name=name, usage="accept", store=store)
        except gssapi.exceptions.GSSError as exc:
            raise ValueError(f"cannot use keytab {keytab} for {service or 'any'}: {exc}") from exc
        self.timeout = timeout
        self._pool = Offload("negotiate", workers, queue)

    async def authenticate(self, header_value: str) -> Result:
        """Validate a ``Proxy-Authorization`` value off the event loop. Never raises: every
        failure, including a full pool (``BUSY``, at once) and the deadline, is a Result."""
        token = decode(header_value)
        if isinstance(token, Result):
            return token
        try:
            return await self._pool.run(lambda: self.accept(token), self.timeout)
        except Busy:
            return Result(Outcome.BUSY, detail=f"{self._pool.pending} validations pending")
        except TimeoutError:
            return Result(Outcome.TIMEOUT, detail=f"no answer within {self.timeout}s")
        except Exception as exc:  # a bug in the library binding: refuse, never raise
            return Result(Outcome.ERROR, detail=f"{type(exc).__name__}: {exc}"[:300])

    def accept(self, token: bytes) -> Result:
        """Validate one token (blocking; ``authenticate`` runs it in a worker)."""
        try:
            answer = gssapi.raw.accept_sec_context(token, self._creds)
        except gssapi.exceptions.GSSError as exc:
            return classify_error(exc)
        if answer.more_steps:
            # SPNEGO that did not carry a Kerberos ticket: it would need another round
            # trip, which browsers only do for NTLM. Refused, and no state kept.
            return Result(Outcome.NOT_KERBEROS, detail="negotiation needs another round trip")
        principal = str(gssapi.Name(answer.initiator_name))
        output = base64.b64encode(answer.token).decode("ascii") if answer.token else None
        return Result(Outcome.OK, principal=principal, output_token=output)

    @property
    def pending(self) -> int:
        """Validations running or queued now (a gauge for the caller's metrics)."""
        return self._pool.pending

    def close(self) -> None:
        self._pool.close()
