"""Reading a flow's request headers cheaply. mitmproxy imports, no state.

mitmproxy's `Headers` is a multidict that finds a name by lower-casing every field it
holds; the pipeline asks for a few names on every request (the host, the identity
header, `Sec-Fetch-Dest`), so it reads them from one lower-cased view made per request.
"""

from __future__ import annotations

from mitmproxy import http

_REQUEST_HEADERS = "auditproxy.request_headers"  # flow.metadata: the view


def request_headers(flow: http.HTTPFlow) -> dict[bytes, bytes]:
    """The request's headers by lower-case name (first value), made once per request.

    mitmproxy's `Headers` looks a name up by lower-casing every field it holds; the
    pipeline asks for a few names per request, so one pass here is cheaper.
    """
    view: dict[bytes, bytes] | None = flow.metadata.get(_REQUEST_HEADERS)
    if view is None:
        # Reversed, so that the first of a repeated header is the one that stays.
        view = {name.lower(): value for name, value in reversed(flow.request.headers.fields)}
        flow.metadata[_REQUEST_HEADERS] = view
    return view


def host_header(flow: http.HTTPFlow) -> str | None:
    """`Request.host_header`, read from the view: the :authority for HTTP/2 and 3."""
    request = flow.request
    if (request.is_http2 or request.is_http3) and request.authority:
        return request.authority
    host = request_headers(flow).get(b"host")
    return host.decode("utf-8", "surrogateescape") if host is not None else None
