"""Content-Security-Policy headers: our style allowed, nothing weakened."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditproxy.notice.csp import CspResult, allow_banner_styles
from support.inject import (
    HASH,
)

# =========================================================================================
# 4. Content-Security-Policy headers


def allow(*headers: str) -> CspResult:
    return allow_banner_styles(list(headers), HASH)


CSP_SHAPES = {
    # shape: (header values, expected values, styles allowed, style attributes allowed)
    "no policy": ([], [], True, True),
    "no style directive": (["script-src 'self'"], ["script-src 'self'"], True, True),
    "nonce only": (
        ["style-src 'nonce-r4nd0m'"],
        [f"style-src 'nonce-r4nd0m' {HASH}"],
        True,
        False,
    ),
    "hash only": (
        ["style-src 'sha256-abc='; img-src *"],
        [f"style-src 'sha256-abc=' {HASH}; img-src *"],
        True,
        False,
    ),
    "unsafe-inline: nothing to add": (
        ["style-src 'self' 'unsafe-inline'"],
        ["style-src 'self' 'unsafe-inline'"],
        True,
        True,
    ),
    "unsafe-inline switched off by a nonce": (
        ["style-src 'unsafe-inline' 'nonce-a'"],
        [f"style-src 'unsafe-inline' 'nonce-a' {HASH}"],
        True,
        False,
    ),
    "none": (["style-src 'none'"], [f"style-src {HASH}"], True, False),
    "NONE in capitals": (["STYLE-SRC 'NONE'"], [f"STYLE-SRC {HASH}"], True, False),
    "empty directive": (
        ["style-src; img-src 'self'"],
        [f"style-src {HASH}; img-src 'self'"],
        True,
        False,
    ),
    "default-src only": (
        ["default-src 'self' https://cdn.example"],
        [
            "default-src 'self' https://cdn.example; "
            f"style-src-elem 'self' https://cdn.example {HASH}"
        ],
        True,
        False,
    ),
    "default-src 'none'": (
        ["default-src 'none'; sandbox"],
        [f"default-src 'none'; sandbox; style-src-elem {HASH}"],
        True,
        False,
    ),
    "default-src with unsafe-inline": (
        ["default-src 'self' 'unsafe-inline'"],
        ["default-src 'self' 'unsafe-inline'"],
        True,
        True,
    ),
    "trailing semicolon": (
        ["default-src 'self';  "],
        [f"default-src 'self'; style-src-elem 'self' {HASH}"],
        True,
        False,
    ),
    "style-src-elem governs <style>": (
        ["style-src-elem 'self'; style-src 'unsafe-inline'"],
        [f"style-src-elem 'self' {HASH}; style-src 'unsafe-inline'"],
        True,
        True,
    ),
    "style-src-elem already inline": (
        ["style-src-elem 'unsafe-inline'; style-src 'self'"],
        ["style-src-elem 'unsafe-inline'; style-src 'self'"],
        True,
        False,
    ),
    "style-src-attr governs attributes": (
        ["style-src 'self'; style-src-attr 'unsafe-inline'"],
        [f"style-src 'self' {HASH}; style-src-attr 'unsafe-inline'"],
        True,
        True,
    ),
    "duplicate directive: the first counts": (
        ["style-src 'unsafe-inline'; style-src 'none'"],
        ["style-src 'unsafe-inline'; style-src 'none'"],
        True,
        True,
    ),
    "our hash already there": ([f"style-src {HASH}"], [f"style-src {HASH}"], True, False),
    "trusted types and sandbox are left alone": (
        ["require-trusted-types-for 'script'; style-src 'self'; sandbox allow-scripts"],
        [f"require-trusted-types-for 'script'; style-src 'self' {HASH}; sandbox allow-scripts"],
        True,
        False,
    ),
    "multiple headers": (
        ["default-src 'self'", "style-src 'unsafe-inline'", "img-src *"],
        [
            f"default-src 'self'; style-src-elem 'self' {HASH}",
            "style-src 'unsafe-inline'",
            "img-src *",
        ],
        True,
        False,
    ),
    "comma-joined policies, each on its own": (
        ["style-src 'unsafe-inline', style-src 'nonce-b',img-src *"],
        [f"style-src 'unsafe-inline', style-src 'nonce-b' {HASH},img-src *"],
        True,
        False,
    ),
    "a policy we cannot edit safely": (
        ["default-src 'self' https://b\u00fccher.example", "style-src 'nonce-a'"],
        ["default-src 'self' https://b\u00fccher.example", "style-src 'nonce-a'"],
        False,
        False,
    ),
}


@pytest.mark.parametrize("shape", CSP_SHAPES)
def test_csp_shapes(shape: str) -> None:
    headers, expected, styles, attributes = CSP_SHAPES[shape]
    result = allow(*headers)
    assert list(result.headers) == expected
    assert result.changed == (expected != headers)
    assert result.styles_allowed is styles
    assert result.style_attributes_allowed is attributes


def test_adding_the_hash_is_idempotent() -> None:
    for headers, *_ in CSP_SHAPES.values():
        once = allow(*headers)
        if once.styles_allowed:
            assert allow(*once.headers).headers == once.headers


_source = st.sampled_from(
    ["'self'", "'none'", "'unsafe-inline'", "'nonce-abc'", "'sha256-xyz='", "https:", "*", "data:"]
)
_directive = st.builds(
    lambda name, sources: " ".join([name, *sources]),
    st.sampled_from(
        [
            "default-src",
            "style-src",
            "style-src-elem",
            "style-src-attr",
            "script-src",
            "img-src",
            "sandbox",
        ]
    ),
    st.lists(_source, max_size=3),
)
_policy = st.lists(_directive, max_size=5).map("; ".join)


def _parse(policy: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for token in policy.split(";"):
        words = token.split()
        if words and words[0].lower() not in found:
            found[words[0].lower()] = [w.lower() for w in words[1:]]
    return found


@settings(max_examples=300)
@given(st.lists(st.lists(_policy, min_size=1, max_size=3).map(", ".join), max_size=3))
def test_csp_is_never_weakened(headers: list[str]) -> None:
    result = allow(*headers)
    assert len(result.headers) == len(headers)
    for before_header, after_header in zip(headers, result.headers, strict=True):
        before_policies, after_policies = before_header.split(","), after_header.split(",")
        assert len(before_policies) == len(after_policies)
        for before, after in zip(before_policies, after_policies, strict=True):
            old, new = _parse(before), _parse(after)
            assert set(old) <= set(new), "no directive removed"
            assert set(new) - set(old) <= {"style-src-elem"}
            for name, sources in new.items():
                added = set(sources) - set(old.get(name, old.get("default-src", [])))
                assert added <= {HASH.lower()}, f"{name}: only our hash is ever added"
                if name in old:
                    assert set(old[name]) - {"'none'"} <= set(sources), f"{name} lost a source"
                if "'unsafe-inline'" in old.get(name, []) and HASH.lower() in sources:
                    assert any(s.startswith(("'nonce-", "'sha")) for s in old[name])
