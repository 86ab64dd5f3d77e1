"""A tiny Chrome DevTools Protocol client: headless Chromium driven over its websocket with aiohttp.

    async with Browser.launch() as browser:
        page = await browser.new_page()
        await page.goto("file:///.../report.html")
        assert await page.evaluate("document.title") == "..."
        assert not page.errors          # uncaught exceptions, console errors, failed loads

Chromium is started with ``--remote-debugging-port=0`` and a fresh profile; the DevTools URL is read from
its stderr ("DevTools listening on ws://..."). Pages are attached with flattened sessions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)
_WS = re.compile(r"DevTools listening on (ws://\S+)")


def find_chromium() -> str | None:
    """The Chromium binary, or None."""
    env = os.environ.get("CHROMIUM")
    for name in ((env,) if env else ()) + CANDIDATES:
        path = name if os.path.isabs(name) and os.access(name, os.X_OK) else shutil.which(name)
        if path:
            return path
    return None


class CDPError(RuntimeError):
    pass


class Browser:
    """One Chromium process and its browser-level websocket."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        ws: aiohttp.ClientWebSocketResponse,
        session: aiohttp.ClientSession,
        profile: str,
    ) -> None:
        self.proc, self.ws, self._http, self.profile = proc, ws, session, profile
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._pages: dict[str, Page] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def launch(
        cls, binary: str | None = None, *, timeout: float = 30.0, window: tuple[int, int] = (1400, 1000)
    ) -> Browser:
        binary = binary or find_chromium()
        if not binary:
            raise FileNotFoundError("chromium not found")
        profile = tempfile.mkdtemp(prefix="cdp-profile-")
        proc = await asyncio.create_subprocess_exec(
            binary,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={window[0]},{window[1]}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            url = await asyncio.wait_for(cls._devtools_url(proc), timeout)
        except BaseException:
            proc.kill()
            await proc.wait()
            shutil.rmtree(profile, ignore_errors=True)
            raise
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(url, max_msg_size=0)
        return cls(proc, ws, session, profile)

    @staticmethod
    async def _devtools_url(proc: asyncio.subprocess.Process) -> str:
        assert proc.stderr is not None
        seen = []
        while True:
            line = await proc.stderr.readline()
            if not line:
                raise CDPError("chromium exited before listening: " + " | ".join(seen[-5:]))
            text = line.decode(errors="replace").strip()
            seen.append(text)
            m = _WS.search(text)
            if m:
                asyncio.get_running_loop().create_task(_drain(proc.stderr))
                return m.group(1)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                fut = self._pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    if "error" in data:
                        fut.set_exception(CDPError(json.dumps(data["error"])))
                    else:
                        fut.set_result(data.get("result", {}))
            elif "method" in data:
                page = self._pages.get(data.get("sessionId", ""))
                if page is not None:
                    page._event(data["method"], data.get("params", {}))
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(CDPError("the browser connection closed"))

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        msg_id = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        payload: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session_id:
            payload["sessionId"] = session_id
        await self.ws.send_str(json.dumps(payload))
        return await asyncio.wait_for(fut, timeout)

    async def new_page(self) -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        self._pages[page.session_id] = page
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            await page.send(domain)
        return page

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.send("Browser.close"), 5)
        with contextlib.suppress(Exception):
            await self.ws.close()
        await self._http.close()
        self._reader.cancel()
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Page:
    """One tab: navigation, evaluation, and the errors it reported."""

    def __init__(self, browser: Browser, session_id: str) -> None:
        self.browser, self.session_id = browser, session_id
        self.errors: list[str] = []  # uncaught exceptions, console.error, failed resource loads
        self.console: list[str] = []
        self.requests: list[str] = []
        self._loaded = asyncio.Event()

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            self.errors.append(
                "exception: " + (d.get("exception", {}).get("description") or d.get("text", ""))
            )
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console.append(f"{params.get('type')}: {text}")
            if params.get("type") in ("error", "assert"):
                self.errors.append(f"console.{params.get('type')}: {text}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                self.errors.append(
                    f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip()
                )
        elif method == "Page.loadEventFired":
            self._loaded.set()

    async def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> dict:
        return await self.browser.send(method, params, session_id=self.session_id, timeout=timeout)

    async def goto(self, url: str, timeout: float = 30.0) -> None:
        self._loaded.clear()
        result = await self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CDPError(f"navigation to {url} failed: {result['errorText']}")
        await asyncio.wait_for(self._loaded.wait(), timeout)
        await asyncio.sleep(0.3)  # let late scripts (if any) run and report

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise CDPError(f"evaluate failed: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    async def screenshot(self, path: str | os.PathLike[str], *, full_page: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            metrics = await self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = await self.send("Page.captureScreenshot", params, timeout=60)
        out = Path(path)
        out.write_bytes(base64.b64decode(data["data"]))
        return out


async def _drain(stream: asyncio.StreamReader) -> None:
    with contextlib.suppress(Exception):
        while await stream.readline():
            pass
