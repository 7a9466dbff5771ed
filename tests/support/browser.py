"""Debian's Chromium, headless, browsing through a proxy whose CA it trusts as a desktop would.

The CA goes into an NSS database in a throw-away HOME (``$HOME/.pki/nssdb``, added with
``certutil`` from libnss3-tools): that is where Chromium on a managed Linux desktop finds
the department's CA, so HTTPS pages load with normal certificate checking and no error is
ignored. Playwright for Python drives the browser over its DevTools pipe; its own browser
builds are never downloaded (``executable_path`` is Debian's ``/usr/bin/chromium``).

One browser serves many tests: each page gets a fresh browser context (its own cookies,
cache and HSTS state) sending everything to the proxy given for it, which Chromium does as
it does for ``--proxy-server``. Every proxy a browser talks to must use the CA it trusts:
start them with one ``--confdir`` holding that CA (see ``make_proxy_ca``).

Use::

    ca_file = make_proxy_ca(confdir)
    with ProxiedChromium(workdir, ca_file) as chromium:
        page = chromium.new_page(proxy.port)
        page.goto("https://www.facebook.com/")

Every wait is bounded: ``TIMEOUT_MS`` for navigations and locators, ``LAUNCH_TIMEOUT_MS``
for the browser's start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 10_000
LAUNCH_TIMEOUT_MS = 30_000
VIEWPORT = {"width": 1280, "height": 800}
CA_CERT_NAME = "mitmproxy-ca-cert.pem"  # in mitmproxy's confdir

# Playwright adds --headless, --no-first-run, --disable-background-networking,
# --disable-component-update, --disable-sync and a fresh --user-data-dir itself, and
# disables HttpsUpgrades (an http:// navigation would otherwise try https:// first). It
# keeps only the last --disable-features, so none is given here.
FLAGS = (
    "--no-sandbox",  # root in a container: the setuid/namespace sandbox cannot start
    "--disable-gpu",
    "--disable-quic",  # QUIC (UDP) would go around an HTTP proxy
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def unavailable() -> str | None:
    """Why the browser tests cannot run here (naming what to install), or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: install Debian's package chromium"
    if shutil.which("certutil") is None:
        return "certutil is missing: install Debian's package libnss3-tools"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is missing: pip install -e '.[test]'"
    return None


def make_proxy_ca(confdir: Path) -> Path:
    """Create mitmproxy's CA in ``confdir``, as `auditproxy run --confdir` would on its
    first start (same code, same key size); return the certificate's path."""
    from mitmproxy.certs import CertStore

    confdir.mkdir(parents=True, exist_ok=True)
    CertStore.from_store(confdir, "mitmproxy", 2048)
    return confdir / CA_CERT_NAME


def trust_ca(home: Path, ca_file: Path) -> Path:
    """Create ``home/.pki/nssdb`` trusting ``ca_file`` to identify web sites; return it."""
    database = home / ".pki" / "nssdb"
    database.mkdir(parents=True, exist_ok=True)
    where = f"sql:{database}"
    _certutil("-N", "-d", where, "--empty-password")
    _certutil("-A", "-d", where, "-n", "auditproxy CA", "-t", "C,,", "-i", str(ca_file))
    return database


def _certutil(*args: str) -> None:
    done = subprocess.run(["certutil", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"certutil {' '.join(args)} failed: {done.stderr or done.stdout}")


class ProxiedChromium:
    """A headless Chromium whose pages go through a proxy on 127.0.0.1.

    ``ca_file`` is trusted through NSS, unless it is None: then the browser trusts only
    its usual roots, as an unmanaged machine would. One thread runs one Playwright at a
    time: a second browser alongside a first one passes ``playwright=first.playwright``.
    """

    def __init__(
        self,
        workdir: Path,
        ca_file: Path | None,
        *,
        playwright: Playwright | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.home = workdir / "home"
        self.ca_file = ca_file
        self.args = args  # more command-line switches (e.g. --auth-server-allowlist)
        self.env = env or {}  # e.g. KRB5CCNAME: whose Kerberos tickets the browser has
        self._playwright = playwright
        self._owns_playwright = playwright is None
        self._browser: Browser | None = None

    def __enter__(self) -> Self:
        from playwright.sync_api import sync_playwright

        self.home.mkdir(parents=True, exist_ok=True)
        if self.ca_file is not None:
            trust_ca(self.home, self.ca_file)
        if self._playwright is None:
            self._playwright = sync_playwright().start()
        try:
            self._browser = self.playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=[*FLAGS, *self.args],
                env={**os.environ, "HOME": str(self.home), **self.env},
                timeout=LAUNCH_TIMEOUT_MS,
            )
        except BaseException:
            self._stop_playwright()
            raise
        return self

    @property
    def playwright(self) -> Playwright:
        assert self._playwright is not None, "use ProxiedChromium as a context manager"
        return self._playwright

    @property
    def browser(self) -> Browser:
        assert self._browser is not None, "use ProxiedChromium as a context manager"
        return self._browser

    def new_page(self, proxy_port: int, proxy_host: str = "127.0.0.1", **options: Any) -> Page:
        """A page in a fresh context whose every request goes to the proxy at
        ``proxy_host:proxy_port`` (loopback hosts too), with bounded default timeouts.

        Close it with ``page.context.close()``."""
        options.setdefault("viewport", VIEWPORT)
        proxy = {"server": f"http://{proxy_host}:{proxy_port}", "bypass": "<-loopback>"}
        context = self.browser.new_context(proxy=proxy, **options)
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        return context.new_page()

    def close(self) -> None:
        try:
            if self._browser is not None:
                self._browser.close()
        finally:
            self._browser = None
            self._stop_playwright()

    def _stop_playwright(self) -> None:
        if self._owns_playwright and self._playwright is not None:
            self._playwright.stop()
            self._playwright = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class ProfileChromium(ProxiedChromium):
    """A Chromium with a regular (persistent) profile whose pages all go through one proxy.

    Playwright's ``new_context`` makes off-the-record profiles, where Chromium allows no
    ambient authentication (its AmbientAuthenticationInPrivateModesEnabled policy): no
    Kerberos. Single sign-on needs the regular profile a person's desktop has, so this
    one launches with a user data folder and ``proxy`` for the whole browser."""

    def __init__(self, workdir: Path, ca_file: Path | None, proxy: str, **kwargs: Any) -> None:
        super().__init__(workdir, ca_file, **kwargs)
        self.proxy = proxy  # "http://HOST:PORT"
        self._context: BrowserContext | None = None

    def __enter__(self) -> Self:
        from playwright.sync_api import sync_playwright

        self.home.mkdir(parents=True, exist_ok=True)
        if self.ca_file is not None:
            trust_ca(self.home, self.ca_file)
        if self._playwright is None:
            self._playwright = sync_playwright().start()
        try:
            self._context = self.playwright.chromium.launch_persistent_context(
                str(self.home / "profile"),
                executable_path=str(CHROMIUM),
                headless=True,
                args=[*FLAGS, *self.args],
                env={**os.environ, "HOME": str(self.home), **self.env},
                timeout=LAUNCH_TIMEOUT_MS,
                proxy={"server": self.proxy, "bypass": "<-loopback>"},
                viewport=VIEWPORT,
            )
        except BaseException:
            self._stop_playwright()
            raise
        self._context.set_default_timeout(TIMEOUT_MS)
        self._context.set_default_navigation_timeout(TIMEOUT_MS)
        return self

    def page(self) -> Page:
        assert self._context is not None, "use ProfileChromium as a context manager"
        return self._context.new_page()

    def close(self) -> None:
        try:
            if self._context is not None:
                self._context.close()
        finally:
            self._context = None
            self._stop_playwright()
