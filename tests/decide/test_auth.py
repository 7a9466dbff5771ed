"""Proxy authentication per connection (`decide.auth`): every step of the state machine."""

from __future__ import annotations

import pytest

from auditproxy.decide.auth import (
    NO_CREDENTIAL,
    ConnectionAuth,
    Kind,
    Outcome,
    challenge,
    next_step,
    scheme_of,
    validated,
)
from auditproxy.policy.model import AuthFailure, AuthMethod, AuthSettings

NEGOTIATE = AuthSettings((AuthMethod.NEGOTIATE,), AuthFailure.ADDRESS, "EXAMPLE.TEST")
REFUSE = AuthSettings((AuthMethod.NEGOTIATE,), AuthFailure.REFUSE)
TOKEN = "Negotiate YIIabc"


def signed_in(settings: AuthSettings = NEGOTIATE, address: str = "10.0.0.1") -> ConnectionAuth:
    auth = ConnectionAuth()
    step = next_step(auth, settings, TOKEN, address, in_tunnel=False)
    assert step.kind is Kind.VALIDATE and step.scheme is AuthMethod.NEGOTIATE
    after = validated(auth, settings, step, Outcome.OK, "alice@EXAMPLE.TEST", address)
    assert after.kind is Kind.USE
    return auth


def test_off_means_nothing_is_asked() -> None:
    step = next_step(ConnectionAuth(), AuthSettings(), None, "10.0.0.1", in_tunnel=False)
    assert step.kind is Kind.PASS


def test_challenge_once_then_the_address_when_the_client_has_no_ticket() -> None:
    auth = ConnectionAuth()
    first = next_step(auth, NEGOTIATE, None, "10.0.0.1", in_tunnel=False)
    assert (first.kind, first.reason) == (Kind.CHALLENGE, NO_CREDENTIAL)
    for _ in range(2):
        again = next_step(auth, NEGOTIATE, None, "10.0.0.1", in_tunnel=False)
        assert (again.kind, again.reason) == (Kind.FALLBACK, NO_CREDENTIAL)


def test_refuse_challenges_every_time() -> None:
    auth = ConnectionAuth()
    kinds = [next_step(auth, REFUSE, None, "10.0.0.1", in_tunnel=False).kind for _ in range(3)]
    assert kinds == [Kind.CHALLENGE] * 3


def test_the_same_credential_reuses_the_principal_and_a_new_one_is_checked() -> None:
    auth = signed_in()
    assert auth.user("EXAMPLE.TEST") == "alice" and auth.user(None) == "alice@EXAMPLE.TEST"
    assert next_step(auth, NEGOTIATE, TOKEN, "10.0.0.1", in_tunnel=False).kind is Kind.USE
    assert next_step(auth, NEGOTIATE, None, "10.0.0.1", in_tunnel=False).kind is Kind.USE
    fresh = next_step(auth, NEGOTIATE, "Negotiate YIInew", "10.0.0.1", in_tunnel=False)
    assert fresh.kind is Kind.VALIDATE
    assert auth.proof is not None and TOKEN.encode() not in auth.proof  # a digest only


@pytest.mark.parametrize("outcome", [o for o in Outcome if o is not Outcome.OK])
def test_a_failed_credential_forgets_the_principal(outcome: Outcome) -> None:
    auth = signed_in()
    step = next_step(auth, NEGOTIATE, "Negotiate YIIother", "10.0.0.1", in_tunnel=False)
    after = validated(auth, NEGOTIATE, step, outcome, None, "10.0.0.1")
    assert (after.kind, after.reason) == (Kind.FALLBACK, outcome.value)
    assert auth.principal is None
    # The connection stays on its address; no further challenge.
    assert next_step(auth, NEGOTIATE, None, "10.0.0.1", in_tunnel=False).kind is Kind.FALLBACK
    refused = ConnectionAuth()
    step = next_step(refused, REFUSE, TOKEN, "10.0.0.1", in_tunnel=False)
    assert validated(refused, REFUSE, step, outcome, None, "10.0.0.1").kind is Kind.CHALLENGE


@pytest.mark.parametrize(
    ("credential", "method"),
    [("Basic YWI6Yw==", AuthMethod.BASIC), ("NTLM TlRM", AuthMethod.NEGOTIATE), ("Bearer x", None)],
)
def test_schemes_the_policy_does_not_offer_are_failures(
    credential: str, method: AuthMethod | None
) -> None:
    assert scheme_of(credential) is method
    auth = ConnectionAuth()
    step = next_step(auth, NEGOTIATE, credential, "10.0.0.1", in_tunnel=False)
    if method is AuthMethod.NEGOTIATE:  # NTLM goes to the Negotiate check (not_kerberos)
        assert step.kind is Kind.VALIDATE
    else:
        assert (step.kind, step.reason) == (Kind.FALLBACK, Outcome.NOT_OFFERED.value)


def test_inside_a_tunnel_nothing_is_asked() -> None:
    auth = ConnectionAuth()
    assert next_step(auth, NEGOTIATE, None, "10.0.0.1", in_tunnel=True).kind is Kind.PASS
    assert next_step(signed_in(), NEGOTIATE, None, "10.0.0.1", in_tunnel=True).kind is Kind.USE


def test_another_forwarded_client_on_the_connection_starts_over() -> None:
    auth = signed_in(address="10.0.0.1")
    step = next_step(auth, NEGOTIATE, None, "10.0.0.2", in_tunnel=False)
    assert step.kind is Kind.CHALLENGE and auth.principal is None


def test_the_challenge_lists_the_policys_methods_in_order() -> None:
    both = AuthSettings((AuthMethod.NEGOTIATE, AuthMethod.BASIC))
    assert challenge(both, 'Dept "x"') == [
        "Negotiate",
        'Basic realm="Dept \\"x\\"", charset="UTF-8"',
    ]
    assert challenge(NEGOTIATE, "x") == ["Negotiate"]


def test_a_principal_of_another_realm_keeps_it() -> None:
    auth = ConnectionAuth(principal="bob@PARTNER.TEST")
    assert auth.user("EXAMPLE.TEST") == "bob@PARTNER.TEST"
    assert ConnectionAuth(principal="carol").user("EXAMPLE.TEST") == "carol"
