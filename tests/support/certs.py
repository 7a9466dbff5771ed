"""A throw-away certificate authority for end-to-end tests, made with ``trustme``.

Everything is generated at run time (nothing is ever committed): one CA per test session or
fixture, and a leaf certificate per host name, signed by that CA and cached. Keys are
trustme's default, EC P-256, which takes well under a millisecond to generate, so a test can
mint certificates for as many hosts as it likes. trustme's certificates are valid from 2000
to 3000, so a session whose clock is shifted (support.clock) never sees them expire.

The CA certificate is what mitmproxy is told to trust for its upstream connections
(``--set ssl_verify_upstream_trusted_ca=PATH``), and what a client trusts when it expects a
*bypassed* tunnel, where the TLS session ends at the test upstream rather than at the proxy.
"""

from __future__ import annotations

import contextlib
import hashlib
import ssl
import threading
import weakref
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

CA_FILE_NAME = "test-ca.pem"

_PEM_MARKER = b"-----BEGIN CERTIFICATE-----"


def cert_fingerprint(cert: bytes | str | x509.Certificate) -> str:
    """Return the SHA-256 fingerprint (lower-case hex, no colons) of a certificate.

    Accepts DER bytes (what ``SSLSocket.getpeercert(binary_form=True)`` returns), PEM text or
    bytes, or a ``cryptography`` certificate, so tests can compare what a client saw with what
    a CA issued without caring about the encoding.
    """
    if isinstance(cert, x509.Certificate):
        der = cert.public_bytes(serialization.Encoding.DER)
    else:
        raw = cert.encode("ascii") if isinstance(cert, str) else cert
        der = ssl.PEM_cert_to_DER_cert(raw.decode("ascii")) if _PEM_MARKER in raw else raw
    return hashlib.sha256(der).hexdigest()


def load_cert(cert: bytes | str) -> x509.Certificate:
    """Parse a DER or PEM certificate, e.g. a peer certificate a client received."""
    raw = cert.encode("ascii") if isinstance(cert, str) else cert
    if _PEM_MARKER in raw:
        return x509.load_pem_x509_certificate(raw)
    return x509.load_der_x509_certificate(raw)


def _normalise_host(host: str) -> str:
    """Certificates are cached per host; case and a trailing dot do not make another host."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ValueError("a certificate needs a host name or an IP address")
    return host


@dataclass(frozen=True)
class Leaf:
    """One issued server certificate (its only subject alternative name is ``host``)."""

    host: str
    issued: trustme.LeafCert = field(repr=False, compare=False)

    @property
    def cert_pem(self) -> bytes:
        return self.issued.cert_chain_pems[0].bytes()

    @property
    def key_pem(self) -> bytes:
        return self.issued.private_key_pem.bytes()

    @cached_property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def fingerprint(self) -> str:
        return cert_fingerprint(self.cert)


class CertAuthority:
    """A test CA that issues cached leaf certificates for any host name or IP address.

    ``name`` is the CA's organisational unit (trustme's CA subject has no common name).
    Thread-safe: the upstream server asks for certificates from its connection threads.
    """

    def __init__(self, name: str = "auditproxy test CA") -> None:
        self.name = name
        self._ca = trustme.CA(organization_name="auditproxy tests", organization_unit_name=name)
        self.cert_pem = self._ca.cert_pem.bytes()
        self.cert = x509.load_pem_x509_certificate(self.cert_pem)
        self._leaves: dict[str, Leaf] = {}
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._sni: weakref.WeakKeyDictionary[ssl.SSLSocket, str] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    @property
    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def fingerprint(self) -> str:
        return cert_fingerprint(self.cert)

    def write_ca(self, directory: Path | str, name: str = CA_FILE_NAME) -> Path:
        """Write the CA certificate (no key) as PEM into ``directory`` and return its path.

        This is the file for mitmproxy's ``ssl_verify_upstream_trusted_ca`` and for a client
        that expects to see the test upstream's own certificate.
        """
        path = Path(directory) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.cert_pem)
        return path

    def leaf(self, host: str) -> Leaf:
        """Return the (cached) leaf certificate for ``host``, issuing it on first use.

        Raises ``ValueError`` for a name trustme cannot put in a certificate: it accepts IP
        addresses and IDNA host names (Unicode ones become A-labels), not e.g. ``a_b.test``.
        """
        host = _normalise_host(host)
        with self._lock:
            leaf = self._leaves.get(host)
            if leaf is None:
                leaf = Leaf(host, self._ca.issue_cert(host))
                self._leaves[host] = leaf
            return leaf

    def server_context(self, host: str) -> ssl.SSLContext:
        """A cached TLS server context for ``host``, or for the name the client asks for.

        It presents the leaf for ``host`` to clients that send no SNI (e.g. to an IP address)
        and switches to the leaf for the SNI name otherwise, so one context serves a tunnel
        whatever name the client's ClientHello carries. ALPN offers only ``http/1.1``.
        """
        host = _normalise_host(host)
        with self._lock:
            context = self._contexts.get(host)
        if context is not None:
            return context
        leaf = self.leaf(host)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        leaf.issued.configure_cert(context)
        context.set_alpn_protocols(["http/1.1"])
        context.sni_callback = self._on_sni
        with self._lock:
            return self._contexts.setdefault(host, context)

    def sni_of(self, sock: ssl.SSLSocket) -> str | None:
        """The SNI name a client sent on a socket wrapped with :meth:`server_context`."""
        with self._lock:
            return self._sni.get(sock)

    def _on_sni(self, sock: ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext) -> None:
        if server_name:
            with self._lock:
                self._sni[sock] = server_name
            # A name no certificate can carry keeps the leaf for the CONNECT host.
            with contextlib.suppress(ValueError):
                sock.context = self.server_context(server_name)

    def close(self) -> None:
        """Nothing to release (keys stay in memory); kept for ``with`` and Upstream.close()."""

    def __enter__(self) -> CertAuthority:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
