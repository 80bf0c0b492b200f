"""End-to-end fixtures: a real ledger, the portal as its own process, a device-protected service and Chromium.

Everything listens on 127.0.0.1 only. The ledger is a one-validator :class:`LocalNetwork` (``trellis
node start``); the portal runs as ``trellis web serve`` with ``TRELLIS_WEB_*`` pointing at it (its admin
made first with ``trellis web create-admin``); the service is the verifier example's Flask app
(``examples/02_verifier_service.py``) on a werkzeug server thread. The browser is Debian's Chromium
(``/usr/bin/chromium``, or ``$TRELLIS_CHROMIUM``) driven headless by Playwright, which downloads no
browser of its own: ``scripts/ensure-browser.sh`` installs it (``make test`` runs that script).

Screenshots go to ``test-artifacts/screenshots/<test>/`` under the repository (git ignores
``test-artifacts/``): the :func:`shot` fixture saves named pages in order, and a failing test's last
page is saved as ``FAILED.png``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from werkzeug.serving import BaseWSGIServer, make_server

from tests.web.e2e.support import (
    ADMIN,
    ADMIN_PASSWORD,
    CHROMIUM,
    NETWORK,
    NETWORK_PASSPHRASE,
    ORG_PASSPHRASE,
    REPO,
    SCREENSHOTS,
    START_TIMEOUT,
    UI_TIMEOUT_MS,
    PortalProcess,
    Service,
)
from verifier import NetworkTrust, Verifier
from wallet.localnet import LocalNetwork, free_base_port

_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Note on the test item whether its body failed, so the page fixture can save the last page."""
    report = yield
    if report.when == "call" and report.failed:
        item.stash[_FAILED] = True
    return report


# -- the ledger ---------------------------------------------------------------------------------
@pytest.fixture
def network(tmp_path: Path) -> Iterator[LocalNetwork]:
    """A one-validator network (solo consensus) in ``tmp_path/net``, running; stopped afterwards."""
    net = LocalNetwork(tmp_path / "net", 1, network=NETWORK, passphrase=NETWORK_PASSPHRASE, kdf="interactive")
    try:
        net.start()
        yield net
    finally:
        net.stop()


# -- the portal ---------------------------------------------------------------------------------
def _trellis(*args: str) -> list[str]:
    return [sys.executable, "-c", "from web.cli import main; main()", *args]


@pytest.fixture
def portal_server(tmp_path: Path, network: LocalNetwork) -> Iterator[PortalProcess]:
    """The portal as its own process on a free loopback port, connected to ``network``, with an admin."""
    port = free_base_port(1)
    url = f"http://127.0.0.1:{port}"
    instance = tmp_path / "portal"
    env = {
        **os.environ,
        "TRELLIS_WEB_INSTANCE": str(instance),
        "TRELLIS_WEB_NODES": ",".join(network.urls),
        "TRELLIS_WEB_GENESIS": str(network.directory / "genesis.json"),
        "TRELLIS_WEB_ORG_PASSPHRASE": ORG_PASSPHRASE,
        "TRELLIS_WEB_URL": url,
        "TRELLIS_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    for name in ("TRELLIS_WEB_DATABASE_URL", "TRELLIS_WEB_SECURE_COOKIES", "TRELLIS_WEB_TRUSTED_PROXIES"):
        env.pop(name, None)
    made = subprocess.run(
        _trellis("web", "create-admin", "--username", ADMIN),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    log = tmp_path / "portal.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            _trellis("web", "serve", "--host", "127.0.0.1", "--port", str(port)),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = PortalProcess(url, instance, log)
    try:
        _wait_until_serving(url, process, server)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_until_serving(url: str, process: subprocess.Popen[bytes], server: PortalProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the portal exited ({process.returncode}):\n{server.log_tail()}")
        try:
            if httpx.get(f"{url}/login", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the portal did not serve {url} within {START_TIMEOUT} s:\n{server.log_tail()}"
            )
        time.sleep(0.1)


# -- the device-protected service ---------------------------------------------------------------
def _example_service_factory() -> Callable[[Verifier, str], Any]:
    path = REPO / "examples" / "02_verifier_service.py"
    spec = importlib.util.spec_from_file_location("trellis_example_02_verifier_service", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    factory: Callable[[Verifier, str], Any] = module.make_service
    return factory


@pytest.fixture
def service(network: LocalNetwork) -> Iterator[Service]:
    """The verifier example's Flask service, trusting ``network``, served on a free loopback port.

    Its verifier reads new blocks when told (:meth:`Service.catch_up`), so a revocation is seen by the
    very next request instead of whenever the header stream delivers it.
    """
    genesis = json.loads((network.directory / "genesis.json").read_text())
    verifier = Verifier([NetworkTrust(NETWORK, network.urls, genesis)], follow=False)
    listener = socket.create_server(("127.0.0.1", 0))  # bound first: the service's origin names its port
    origin = f"http://127.0.0.1:{listener.getsockname()[1]}"
    app = _example_service_factory()(verifier, origin)
    server: BaseWSGIServer = make_server("127.0.0.1", listener.getsockname()[1], app, fd=listener.fileno())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Service(origin, verifier)
    finally:
        server.shutdown()
        server.server_close()
        listener.close()
        thread.join(timeout=10)
        verifier.close()


# -- the browser --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright's driver, for the module's tests (stopped before any other test runs)."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless; fails (never skips) when it is not installed."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        raise AssertionError(
            f"no Chromium at {CHROMIUM}: run scripts/ensure-browser.sh (or set TRELLIS_CHROMIUM to one)"
        )
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def screenshot_dir(request: pytest.FixtureRequest) -> Path:
    """``test-artifacts/screenshots/<test name>/``, emptied for this run."""
    folder: Path = SCREENSHOTS / str(request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def page(
    request: pytest.FixtureRequest, chromium: Browser, portal_server: PortalProcess, screenshot_dir: Path
) -> Iterator[Page]:
    """A fresh browser tab (its own cookies) whose relative URLs go to the portal."""
    context = chromium.new_context(base_url=portal_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    tab = context.new_page()
    try:
        yield tab
    finally:
        if request.node.stash.get(_FAILED, False):
            with contextlib.suppress(PlaywrightError):  # a crashed tab has no page to save
                tab.screenshot(path=screenshot_dir / "FAILED.png", full_page=True)
            print(f"last page: {tab.url}\nthe portal's log ends:\n{portal_server.log_tail()}")
        context.close()


@pytest.fixture
def shot(screenshot_dir: Path) -> Callable[[Page, str], Path]:
    """``shot(page, name)`` saves a full-page screenshot as ``NN-name.png`` (numbered in order taken)."""
    taken = 0

    def save(tab: Page, name: str) -> Path:
        nonlocal taken
        taken += 1
        path = screenshot_dir / f"{taken:02d}-{name}.png"
        tab.screenshot(path=path, full_page=True)
        return path

    return save
