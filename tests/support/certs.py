"""A throw-away certificate authority for end-to-end tests.

Everything is generated at run time (nothing is ever committed): one CA per test session or
fixture, and a leaf certificate per host name, signed by that CA and cached. Keys are EC P-256,
which takes well under a millisecond to generate, so a test can mint certificates for as many
hosts as it likes.

The CA certificate is what mitmproxy is told to trust for its upstream connections
(``--set ssl_verify_upstream_trusted_ca=PATH``), and what a client trusts when it expects a
*bypassed* tunnel, where the TLS session ends at the test upstream rather than at the proxy.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import shutil
import ssl
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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


def _san_for(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


@dataclass(frozen=True)
class Leaf:
    """One issued server certificate with its key, and the files an ``SSLContext`` loads."""

    host: str
    cert: x509.Certificate
    cert_pem: bytes
    key_pem: bytes
    cert_file: Path
    key_file: Path

    @property
    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def fingerprint(self) -> str:
        return cert_fingerprint(self.cert)


class CertAuthority:
    """A test CA that issues cached leaf certificates for any host name or IP address.

    ``ssl`` can only load keys from files, so issued certificates are written to a private
    temporary directory that :meth:`close` (or garbage collection) removes. Thread-safe:
    the upstream server asks for certificates from its connection threads.
    """

    def __init__(self, common_name: str = "auditproxy test CA", valid_days: int = 30) -> None:
        self.common_name = common_name
        self._valid_days = valid_days
        self._now = datetime.datetime.now(datetime.UTC)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "auditproxy tests"),
            ]
        )
        public_key = self.key.public_key()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now - datetime.timedelta(days=1))
            .not_valid_after(self._now + datetime.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)
        self._dir = Path(tempfile.mkdtemp(prefix="auditproxy-test-ca-"))
        # A CA that a fixture forgot to close must not leave key files behind.
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
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
        """Return the (cached) leaf certificate for ``host``, issuing it on first use."""
        host = _normalise_host(host)
        with self._lock:
            leaf = self._leaves.get(host)
            if leaf is None:
                leaf = self._issue(host)
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
        context.load_cert_chain(leaf.cert_file, leaf.key_file)
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
            sock.context = self.server_context(server_name)

    def close(self) -> None:
        """Remove the key files; issued certificates and loaded contexts stay usable."""
        self._cleanup()

    def __enter__(self) -> CertAuthority:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _issue(self, host: str) -> Leaf:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now - datetime.timedelta(days=1))
            .not_valid_after(self._now + datetime.timedelta(days=self._valid_days - 1))
            .add_extension(x509.SubjectAlternativeName([_san_for(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        stem = hashlib.sha256(host.encode()).hexdigest()[:16]
        cert_file = self._dir / f"{stem}.crt"
        key_file = self._dir / f"{stem}.key"
        # The chain file carries the CA too, so clients that only trust the CA can build it.
        cert_file.write_bytes(cert_pem + self.cert_pem)
        key_file.write_bytes(key_pem)
        key_file.chmod(0o600)
        return Leaf(host, cert, cert_pem, key_pem, cert_file, key_file)
