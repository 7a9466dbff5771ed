"""Is this request a top-level navigation that the person made? Fetch metadata. Pure.

Browsers send `Sec-Fetch-*` headers with every request to an https:// origin (never to
plain http://, where a frame's navigation looks like a page's), and a page's scripts can
neither set nor change them: that is what makes them evidence.

- `is_certain_page`: a response the browser will show as a top-level document
  (`Sec-Fetch-Dest: document`). Only such a page claims the notice's period.
- `is_top_level`: a top-level navigation (`Sec-Fetch-Mode: navigate`, `Sec-Fetch-Dest:
  document`): the only requests the proxy answers on its own paths. Anything else (a
  script's `fetch()`, an `<img>`, a frame, a request without fetch metadata) goes on to the
  site as if there were no proxy, so a page cannot learn from the answer that it is there.
- `person_navigation`: the request is a top-level navigation made by the person's own
  activation (`Sec-Fetch-User: ?1`), from this site or typed in (`Sec-Fetch-Site`
  same-origin, same-site or none). `any_site` accepts a navigation from anywhere: for a
  link that only opens the proxy's own confirmation page, which the person must then
  click. A script's `fetch()`, an `<img>`, a CORS request, a frame, a navigation a script
  started without a click, or a load from another site are refused, with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping

Headers = Mapping[bytes, bytes]  # request headers by lower-case name (first value)

_SITES = (b"same-origin", b"same-site", b"none")


def _value(headers: Headers, name: bytes) -> bytes | None:
    value = headers.get(name)
    return None if value is None else value.strip().lower()


def is_certain_page(headers: Headers) -> bool:
    """Fetch metadata says this is a top-level document (not a frame, not a subresource)."""
    return _value(headers, b"sec-fetch-dest") == b"document" and _value(
        headers, b"sec-fetch-mode"
    ) in (None, b"navigate")


def has_fetch_metadata(headers: Headers) -> bool:
    return any(_value(headers, name) is not None for name in (b"sec-fetch-dest", b"sec-fetch-mode"))


def is_top_level(headers: Headers) -> bool:
    """A top-level navigation, by fetch metadata (never true without it)."""
    return (
        _value(headers, b"sec-fetch-mode") == b"navigate"
        and _value(headers, b"sec-fetch-dest") == b"document"
    )


def person_navigation(headers: Headers, *, any_site: bool = False) -> str | None:
    """None for a top-level navigation the person made on this site (or from anywhere,
    with `any_site`); otherwise why not."""
    if not has_fetch_metadata(headers):
        return "no fetch metadata (plain HTTP or an old browser)"
    if _value(headers, b"sec-fetch-mode") != b"navigate":
        return "not a navigation (a script's fetch, an image, a CORS request)"
    if _value(headers, b"sec-fetch-dest") != b"document":
        return "not a top-level page (a frame or an embedded object)"
    if _value(headers, b"sec-fetch-user") != b"?1":
        return "not activated by the person (a navigation started by a script)"
    if any_site or _value(headers, b"sec-fetch-site") in _SITES:
        return None
    return "started by another site"
