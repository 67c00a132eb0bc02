"""Screenshots of HTML reports with headless Chromium, to check that a page really displays.

A report that renders as text but whose images fail to load still "works" for a parser; a
screenshot shows what a person would see. Two ways of taking one:

* a fixed window (``height=N``): Chromium's own ``--screenshot`` flag, one process, no protocol;
* the whole page (``height=None``): the DevTools protocol over a pipe
  (``--remote-debugging-pipe``), which can measure the laid-out page and capture all of it.

Chromium is never downloaded: :func:`find_chromium` looks for an installed one. Every failure
(no browser, a browser that crashes or hangs, a missing page) raises :class:`MitokitError` with a
one-line message, and the PNG is written atomically, so a failed run leaves no half-written file.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from mitokit.errors import MitokitError, input_error
from mitokit.io.atomic import atomic_path

__all__ = ["find_chromium", "screenshot"]

CHROMIUM_ENV = "MITOKIT_CHROMIUM"
_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MAX_HEIGHT = 16384  # a full-page capture is cut here (Chromium's texture limit is about this)

# Flags for a quiet, self-contained headless run. ``--headless`` is the "new" headless mode
# since Chromium 112 and the only one left since 132 (the old one became chrome-headless-shell).
# ``--no-sandbox`` lets it run as root in containers; the profile is a throwaway folder.
_BASE_FLAGS = (
    "--headless",
    "--disable-gpu",
    "--no-sandbox",
    "--hide-scrollbars",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--force-device-scale-factor=1",
    "--force-color-profile=srgb",
)


def find_chromium() -> str | None:
    """Path of a Chromium-family browser, or None when there is none.

    ``$MITOKIT_CHROMIUM`` wins when set (a name on PATH or a path); otherwise the first of
    chromium, chromium-browser, google-chrome, google-chrome-stable found on PATH.
    """
    env = os.environ.get(CHROMIUM_ENV, "").strip()
    if env:
        return shutil.which(env) or (env if os.access(env, os.X_OK) else None)
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(
    html_path: str | os.PathLike,
    png_path: str | os.PathLike,
    *,
    width: int = 1200,
    height: int | None = 900,
    chromium: str | os.PathLike | None = None,
    timeout: float = 60.0,
) -> Path:
    """Render ``html_path`` in headless Chromium and save what it shows as a PNG.

    Args:
        html_path: The page (a local HTML file; relative image links resolve beside it).
        png_path: Where the PNG goes; written atomically.
        width: Window width in CSS pixels.
        height: Window height in CSS pixels, or None for the whole page (cut at
            :data:`MAX_HEIGHT`).
        chromium: The browser executable; by default :func:`find_chromium`.
        timeout: Seconds before a hung browser is killed.

    Returns:
        The path of the PNG.

    Raises:
        MitokitError: The page is missing, no browser is found, or the browser fails or hangs.
        ValueError: ``width``, ``height`` or ``timeout`` is not positive.
    """
    if width <= 0 or (height is not None and height <= 0) or timeout <= 0:
        raise ValueError(
            f"width, height and timeout must be positive: {width}, {height}, {timeout}"
        )
    page = Path(html_path)
    if not page.is_file():
        raise input_error(page, "no such HTML file")
    exe = _resolve(chromium)
    url = page.resolve().as_uri()
    with (
        tempfile.TemporaryDirectory(prefix="mitokit-chromium-") as tmp,
        atomic_path(png_path) as out,
    ):
        flags = [*_BASE_FLAGS, f"--user-data-dir={Path(tmp) / 'profile'}"]
        log = Path(tmp) / "chromium.log"
        if height is None:
            _full_page(exe, flags, url, out, width, timeout, log)
        else:
            flags += [f"--window-size={width},{height}", f"--screenshot={out}", url]
            proc = _launch([exe, *flags], log)
            rc = _wait(proc, timeout, exe)
            if rc != 0:
                raise MitokitError(f"{exe} failed (exit code {rc}) on {page}: {_last_line(log)}")
        if out.stat().st_size == 0:
            raise MitokitError(f"{exe} wrote no screenshot of {page}: {_last_line(log)}")
    return Path(png_path)


def _resolve(chromium: str | os.PathLike | None) -> str:
    if chromium is None:
        exe = find_chromium()
        env = os.environ.get(CHROMIUM_ENV, "").strip()
        if exe is None and env:
            raise input_error(env, f"${CHROMIUM_ENV} names no executable")
        if exe is None:
            raise MitokitError(
                f"no Chromium found: install chromium or set {CHROMIUM_ENV} to the browser"
            )
        return exe
    exe = shutil.which(os.fspath(chromium))
    if exe is None:
        raise input_error(chromium, "Chromium executable not found")
    return exe


def _launch(cmd: list[str], log: Path, **kwargs: Any) -> subprocess.Popen:
    # A session of its own, so a hung browser is killed with all its helper processes.
    with open(log, "wb") as err:
        try:
            return subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,
                **kwargs,
            )
        except OSError as exc:
            raise input_error(cmd[0], f"cannot start Chromium: {exc.strerror or exc}") from None


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _wait(proc: subprocess.Popen, timeout: float, exe: str) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise MitokitError(f"{exe} did not finish within {timeout:g} s") from None


def _last_line(log: Path) -> str:
    """The last line of Chromium's log worth showing (its D-Bus chatter is not)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "no output"
    keep = [ln.strip() for ln in lines if ln.strip() and "dbus" not in ln.lower()]
    return keep[-1][:300] if keep else "no output"


def _full_page(
    exe: str, flags: list[str], url: str, out: Path, width: int, timeout: float, log: Path
) -> None:
    """Capture the whole laid-out page through the DevTools protocol on fds 3 and 4."""
    # Chromium reads commands on fd 3 and writes replies on fd 4. The pipe ends are moved above
    # fd 10 first so that moving them onto 3 and 4 in the child cannot clobber one another.
    to_child_r, to_child_w = _high_pipe()
    from_child_r, from_child_w = _high_pipe()

    def onto_3_and_4() -> None:  # runs in the child, between fork and exec
        os.dup2(to_child_r, 3)
        os.dup2(from_child_w, 4)

    cmd = [
        exe,
        *flags,
        f"--window-size={width},800",
        "--remote-debugging-pipe",
        "about:blank",
    ]
    try:
        # close_fds=False: close_fds would run after preexec_fn and close 3 and 4 again. The
        # parent's own descriptors are close-on-exec (PEP 446), so nothing else leaks.
        proc = _launch(cmd, log, close_fds=False, preexec_fn=onto_3_and_4)
    finally:
        os.close(to_child_r)
        os.close(from_child_w)
    cdp = _Pipe(to_child_w, from_child_r, time.monotonic() + timeout, exe, log)
    try:
        target = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        cdp.call("Page.enable", session=session)
        metrics = {"width": width, "height": 100, "deviceScaleFactor": 1, "mobile": False}
        cdp.call("Emulation.setDeviceMetricsOverride", metrics, session=session)
        nav = cdp.call("Page.navigate", {"url": url}, session=session)
        if nav.get("errorText"):
            raise MitokitError(f"{exe} could not open {url}: {nav['errorText']}")
        cdp.event("Page.loadEventFired", session)
        layout = cdp.call("Page.getLayoutMetrics", session=session)
        size = layout.get("cssContentSize") or layout["contentSize"]
        full = min(max(1, math.ceil(size["height"])), MAX_HEIGHT)
        metrics["height"] = full
        cdp.call("Emulation.setDeviceMetricsOverride", metrics, session=session)
        shot = cdp.call(
            "Page.captureScreenshot",
            {"format": "png", "clip": {"x": 0, "y": 0, "width": width, "height": full, "scale": 1}},
            session=session,
        )
        out.write_bytes(base64.b64decode(shot["data"]))
        with contextlib.suppress(MitokitError):  # it may close the pipe before answering
            cdp.call("Browser.close")
        try:
            proc.wait(timeout=max(1.0, cdp.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill(proc)
    finally:
        cdp.close()
        if proc.poll() is None:
            _kill(proc)


def _high_pipe() -> tuple[int, int]:
    import fcntl

    fds = []
    for fd in os.pipe():
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        fds.append(high)
    return fds[0], fds[1]


class _Pipe:
    """A minimal DevTools-protocol client: NUL-separated JSON messages over two pipes."""

    def __init__(self, wfd: int, rfd: int, deadline: float, exe: str, log: Path) -> None:
        self.wfd, self.rfd, self.deadline, self.exe, self.log = wfd, rfd, deadline, exe, log
        self._buf = b""
        self._pending: list[dict] = []
        self._next_id = 0

    def close(self) -> None:
        for fd in (self.wfd, self.rfd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def call(self, method: str, params: dict | None = None, *, session: str | None = None) -> dict:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        try:
            os.write(self.wfd, json.dumps(msg).encode() + b"\0")
        except OSError:
            raise self._error(f"closed its pipe before {method}") from None
        reply = self._take(lambda m, i=self._next_id: m.get("id") == i, method)
        if "error" in reply:
            raise MitokitError(f"{self.exe}: {method} failed: {reply['error'].get('message')}")
        return reply.get("result", {})

    def event(self, method: str, session: str) -> dict:
        return self._take(
            lambda m: m.get("method") == method and m.get("sessionId") == session, method
        )

    def _take(self, wanted, what: str) -> dict:
        while True:
            for i, m in enumerate(self._pending):
                if wanted(m):
                    return self._pending.pop(i)
            self._read(what)

    def _read(self, what: str) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise MitokitError(f"{self.exe} did not finish {what} in time")
        ready, _, _ = select.select([self.rfd], [], [], left)
        if not ready:
            raise MitokitError(f"{self.exe} did not finish {what} in time")
        chunk = os.read(self.rfd, 1 << 20)
        if not chunk:
            raise self._error(f"exited during {what}")
        self._buf += chunk
        *msgs, self._buf = self._buf.split(b"\0")
        self._pending.extend(json.loads(m) for m in msgs if m)

    def _error(self, problem: str) -> MitokitError:
        return MitokitError(f"{self.exe} {problem}: {_last_line(self.log)}")
