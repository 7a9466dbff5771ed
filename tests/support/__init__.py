"""Test infrastructure for end-to-end tests: a fake internet, a test CA and proxy clients.

Typical use in a test module or ``conftest.py`` (``tests/conftest.py`` puts ``tests/`` on
``sys.path``, so the package imports as ``support``)::

    from support import CertAuthority, ProxyClient, Reply, Upstream

    @pytest.fixture(scope="session")
    def test_ca():
        with CertAuthority() as ca:
            yield ca

    @pytest.fixture
    def upstream(test_ca):
        with Upstream(test_ca) as server:   # listens on 127.0.0.1, ephemeral port
            yield server                    # proxy: --set mode=<server.proxy_mode>

See :mod:`support.upstream` for routes and records, :mod:`support.client` for
clients, :mod:`support.certs` for certificates and :mod:`support.ports`.
"""

from .certs import CA_FILE_NAME, CertAuthority, Leaf, cert_fingerprint, load_cert
from .client import (
    Headers,
    ProxyClient,
    ProxySession,
    Response,
    SlowResult,
    decode_body,
    encode_body,
)
from .ports import free_port, wait_for_http, wait_for_port
from .upstream import Reply, Request, Tunnel, Upstream, default_page

__all__ = [
    "CA_FILE_NAME",
    "CertAuthority",
    "Headers",
    "Leaf",
    "ProxyClient",
    "ProxySession",
    "Reply",
    "Request",
    "Response",
    "SlowResult",
    "Tunnel",
    "Upstream",
    "cert_fingerprint",
    "decode_body",
    "default_page",
    "encode_body",
    "free_port",
    "load_cert",
    "wait_for_http",
    "wait_for_port",
]
