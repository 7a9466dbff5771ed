"""Content-Security-Policy: allow the notice's one style element, never weaken anything.

See `allow_banner_styles`: a hash is added only to the directive that governs `<style>`
elements, and only where that cannot switch off the page's own `'unsafe-inline'`. The same
applies to `Content-Security-Policy-Report-Only`: a violation there is not enforced but
reported to the site, which would learn about the notice.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_ELEMENT_DIRECTIVES = ("style-src-elem", "style-src", "default-src")  # govern <style>
_ATTRIBUTE_DIRECTIVES = ("style-src-attr", "style-src", "default-src")  # govern style=""
_HASH_OR_NONCE = ("'nonce-", "'sha256-", "'sha384-", "'sha512-")
_CSP_SPACE = re.compile(r"[\t\n\f\r ]+")
_EDITABLE = re.compile(r"[\t\x20-\x7e]*")


@dataclass(frozen=True, slots=True)
class CspResult:
    """What the page's policies allow for the notice, and the headers that allow it.

    If `styles_allowed` is False, `headers` are the originals: nothing is changed for a
    notice that could not be styled anyway. The caller then either inserts the unstyled
    variant (`Banner.markup(style_element=False)`, a plain `<details>`, readable and
    dismissable) or skips with `SkipReason.CSP`.
    """

    headers: tuple[str, ...]  # the Content-Security-Policy values to send, in order
    changed: bool
    styles_allowed: bool  # our <style> element applies under every enforced policy
    style_attributes_allowed: bool  # style="" applies (the light-DOM copy's pins)


@dataclass(frozen=True, slots=True)
class _Directive:
    name: str  # lower case
    written: str  # as the page wrote it
    sources: tuple[str, ...]
    start: int  # the directive's text in the policy
    end: int


@dataclass(frozen=True, slots=True)
class _PolicyOutcome:
    text: str
    styles_allowed: bool
    style_attributes_allowed: bool


def allow_banner_styles(csp_headers: Sequence[str], style_hash: str) -> CspResult:
    """Let our `<style>` (whose CSP hash source is `style_hash`) apply under every policy.

    Each header may hold several comma-separated policies, each enforced on its own. Per
    policy, the directive that governs `<style>` is the first of style-src-elem, style-src,
    default-src; none means unrestricted. If it allows all inline styles ('unsafe-inline'
    and no nonce or hash), nothing is added: a hash would switch 'unsafe-inline' off and
    break the page. Otherwise our hash is added to it ('none' is replaced); if it is
    default-src, a new style-src-elem copying default-src's sources plus our hash is added,
    which leaves every other kind of resource as it was. Nothing is ever removed or
    loosened beyond allowing this one stylesheet. Report-Only headers go through here too,
    on their own (they never change what is enforced).

    `sandbox` does not affect styles and the notice needs nothing it restricts (no script,
    no form, no popup); trusted types concern script sinks only: both are left alone.
    """
    outcomes = [[allow_in_policy(p, style_hash) for p in h.split(",")] for h in csp_headers]
    styles_allowed = all(o.styles_allowed for policies in outcomes for o in policies)
    attributes_allowed = all(o.style_attributes_allowed for ps in outcomes for o in ps)
    headers = tuple(csp_headers)
    if styles_allowed:
        headers = tuple(",".join(o.text for o in policies) for policies in outcomes)
    return CspResult(headers, headers != tuple(csp_headers), styles_allowed, attributes_allowed)


def allow_in_policy(policy: str, source: str) -> _PolicyOutcome:
    directives = _directives(policy)
    governing = _governing(directives, _ELEMENT_DIRECTIVES)
    if governing is None or _allows_inline(governing.sources) or source in governing.sources:
        return _PolicyOutcome(policy, True, _attributes_allowed(directives))
    if not _EDITABLE.fullmatch(policy):
        return _PolicyOutcome(policy, False, _attributes_allowed(directives))
    sources = " ".join([s for s in governing.sources if s.lower() != "'none'"] + [source])
    if governing.name == "default-src":
        new = _append_directive(policy, f"style-src-elem {sources}")
    else:
        new = _replace_directive(policy, governing, f"{governing.written} {sources}")
    return _PolicyOutcome(new, True, _attributes_allowed(_directives(new)))


def _directives(policy: str) -> dict[str, _Directive]:
    """The policy's directives as browsers parse them: the first of duplicates counts."""
    found: dict[str, _Directive] = {}
    pos = 0
    for token in policy.split(";"):
        start, pos = pos, pos + len(token) + 1
        words = _CSP_SPACE.split(token.strip("\t\n\f\r "))
        if words[0] and words[0].lower() not in found:
            name = words[0].lower()
            found[name] = _Directive(name, words[0], tuple(words[1:]), start, start + len(token))
    return found


def _governing(directives: dict[str, _Directive], chain: tuple[str, ...]) -> _Directive | None:
    return next((directives[name] for name in chain if name in directives), None)


def _allows_inline(sources: tuple[str, ...]) -> bool:
    lowered = [s.lower() for s in sources]
    return "'unsafe-inline'" in lowered and not any(s.startswith(_HASH_OR_NONCE) for s in lowered)


def _attributes_allowed(directives: dict[str, _Directive]) -> bool:
    governing = _governing(directives, _ATTRIBUTE_DIRECTIVES)
    return governing is None or _allows_inline(governing.sources)


def _append_directive(policy: str, directive: str) -> str:
    base = policy.rstrip("\t\n\f\r ")
    return f"{base}{' ' if base.endswith(';') else '; '}{directive}"


def _replace_directive(policy: str, directive: _Directive, text: str) -> str:
    token = policy[directive.start : directive.end]
    leading = token[: len(token) - len(token.lstrip("\t\n\f\r "))]
    trailing = token[len(token.rstrip("\t\n\f\r ")) :]
    return f"{policy[: directive.start]}{leading}{text}{trailing}{policy[directive.end :]}"
