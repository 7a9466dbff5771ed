"""A request's path as it may be logged (`url.path`): the privacy rules for paths."""

from __future__ import annotations

import re

# Percent-encoded `?`, `#`, `;` and `.`, encoded once or more (`%3F`, `%253F`, ...): a
# server or framework that decodes the path (some do, twice) reads them as the real thing.
_ENCODED_QUERY = re.compile(r"%(?:25)*(?:3f|23)", re.IGNORECASE)
_ENCODED_SEMICOLON = re.compile(r"%(?:25)*3b", re.IGNORECASE)
_ENCODED_DOT = re.compile(r"%(?:25)*2e", re.IGNORECASE)


def strip_query(path: str) -> str:
    """A path as it may be logged: no query string or fragment, no matrix parameters (a
    `;jsessionid=...` is a credential), and its dot segments resolved (RFC 3986 5.2.4),
    so that `/;/../private/x` is logged as the `/private/x` a server serves for it. The
    same for their percent-encoded forms: what follows an encoded `?` is cut too (it may
    be a query to a server that decodes first), and `%2E` is a dot (RFC 3986 6.2.2.2)."""
    if "?" in path:
        path = path[: path.index("?")]
    if "#" in path:
        path = path[: path.index("#")]
    if "%" in path:
        query = _ENCODED_QUERY.search(path)
        if query is not None:
            path = path[: query.start()]
        path = _ENCODED_DOT.sub(".", _ENCODED_SEMICOLON.sub(";", path))
    if ";" not in path and "/." not in path and not path.startswith("."):
        return path  # the common case (no parameter, no dot segment), unchanged
    segments = [segment.partition(";")[0] for segment in path.split("/")]
    out: list[str] = []
    for segment in segments[1:] if path.startswith("/") else segments:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    if segments[-1] in (".", ".."):
        out.append("")  # `/a/..` is the folder `/`
    resolved = "/".join(out)
    return "/" + resolved if path.startswith("/") else resolved
