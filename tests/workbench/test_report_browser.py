"""The rendered benchmark report in a real browser, and its hygiene.

One tiny `orchestrator bench` run (3 issues × baseline/rules + a hostile model × classify, summarize) in a
temporary project: the hostile model is a loopback OpenAI-compatible server whose every answer is
``<script>…</script><img src=x onerror=…>``, and one issue title carries an ``onerror`` payload too. Then:

- the report opens in headless Chromium (CDP over websocket, tests/helpers/browser.py) with no JavaScript error,
  no request leaving file:/data:, tables and embedded PNG plots present, no planted script executed, and
  the planted ``<script>`` visible as text;
- the HTML and the executed notebook contain no absolute local path and no planted API key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import re
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers.browser import Browser, find_chromium

ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned2=1"> the answer'
TITLE_PAYLOAD = '<img src=x onerror="window.__pwned3=1">'
FAKE_KEY = "sk-test-" + secrets.token_hex(16)
BASE64_IMAGE = re.compile(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=\s]+")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


class _HostileModel(BaseHTTPRequestHandler):
    """POST /v1/chat/completions → a chat.completion whose content is the payload."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("content-length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        body = json.dumps(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 1767225600,
                "model": request.get("model", "hostile"),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": PAYLOAD},
                    }
                ],
                "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def hostile_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostileModel)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _write_project(folder: Path, base_url: str) -> None:
    (folder / "orchestrator.toml").write_text(
        '[defaults]\nmodel = "baseline/rules"\n\n'
        '[models."baseline/rules"]\nprovider = "baseline"\nmodel = "rules-v1"\n\n'
        '[models."test/hostile"]\nprovider = "openai"\nmodel = "hostile"\n'
        f'base_url = "{base_url}"\nmax_tokens = 64\n'
        "price = { input = 1.0, output = 2.0, as_of = 2026-01-01 }\n\n[routing]\n",
        encoding="utf-8",
    )
    lines = (ROOT / "datasets" / "sample.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    first = json.loads(lines[0])
    first["title"] = TITLE_PAYLOAD + " " + first["title"]
    lines[0] = json.dumps(first, ensure_ascii=False)
    (folder / "datasets").mkdir()
    (folder / "datasets" / "tiny.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def bench_report(tmp_path_factory, hostile_server):
    """`orchestrator bench` on the temporary project; returns the paths, the run id and the CLI output."""
    from orchestrator.cli import bench as bench_cli

    project = tmp_path_factory.mktemp("report-project")
    _write_project(project, hostile_server)
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    bench_cli.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "--config",
            str(project / "orchestrator.toml"),
            "bench",
            "--dataset",
            "datasets/tiny.jsonl",
            "--models",
            "baseline/rules,test/hostile",
            "--modes",
            "classify,summarize",
            "-p",
            "min_n",
            "1",
            "--output-dir",
            "reports",
        ]
    )
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        mp.setenv("ORCHESTRATOR_HOME", str(project / ".orchestrator"))
        mp.setenv("OPENAI_API_KEY", FAKE_KEY)
        mp.delenv("ORCHESTRATOR_CONFIG", raising=False)
        with contextlib.redirect_stdout(out):
            rc = args.func(args)
    text = out.getvalue()
    sys.stdout.write(text)
    run_id = re.search(r"run id: (\S+)", text).group(1)
    return {
        "rc": rc,
        "stdout": text,
        "project": project,
        "run_id": run_id,
        "html": project / "reports" / f"{run_id}.html",
        "ipynb": project / "reports" / f"{run_id}.ipynb",
    }


def test_bench_cli_writes_report_and_prints_summary(bench_report):
    assert bench_report["rc"] == 0
    run_id = bench_report["run_id"]
    assert bench_report["html"].is_file() and bench_report["ipynb"].is_file()
    out = bench_report["stdout"]
    assert f"report:   reports/{run_id}.html" in out  # relative paths
    assert f"notebook: reports/{run_id}.ipynb" in out
    assert "test/hostile" in out and "baseline/rules" in out  # the summary table
    assert "status: finished; 12 cells" in out


def _strip_images(text: str) -> str:
    return BASE64_IMAGE.sub("data:image/png;base64,", text)


def test_report_has_no_local_paths_no_keys_no_external_urls(bench_report):
    html = _strip_images(bench_report["html"].read_text(encoding="utf-8"))
    ipynb = _strip_images(bench_report["ipynb"].read_text(encoding="utf-8"))
    forbidden = {
        str(bench_report["project"]),
        str(bench_report["project"].resolve()),
        str(ROOT),
        str(Path.home()),
        sys.prefix,
        str(Path(sys.executable).parent),
    }
    for text, name in ((html, "html"), (ipynb, "ipynb")):
        for path in forbidden:
            assert path not in text, f"{name} leaks the local path {path}"
        assert FAKE_KEY not in text and FAKE_KEY[:16] not in text, f"{name} leaks the API key"
    assert 'src="http' not in html and "src='http" not in html
    assert not re.search(r"<script[^>]*\bsrc=", html), "external script tag"
    assert not re.search(r"<link[^>]*href=[\"']?https?:", html), "external stylesheet"
    assert not re.search(r"@import|url\(\s*['\"]?https?:", html), "CSS loads something remote"
    assert "<script>window.__pwned" not in html  # the planted answer is escaped, never raw
    nb = json.loads(bench_report["ipynb"].read_text(encoding="utf-8"))
    meta = nb["metadata"]["papermill"]
    assert meta["input_path"] == "notebooks/benchmark.ipynb"
    assert meta["output_path"] == f"reports/{bench_report['run_id']}.ipynb"
    assert meta["parameters"]["dataset"] == "datasets/tiny.jsonl"
    assert meta["parameters"]["config"] == "orchestrator.toml"


def test_raw_html_has_no_live_payload(bench_report):
    """Every occurrence of the payload's tags is escaped text, never markup."""
    html = bench_report["html"].read_text(encoding="utf-8")
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert not re.search(r"<img[^>]*onerror", html, re.I)
    assert not re.search(r"<script[^>]*>\s*window\.__pwned", html, re.I)


def test_report_in_headless_chromium(bench_report, tmp_path):
    binary = find_chromium()
    if binary is None:
        reason = "chromium not installed (apt-get install chromium); the browser check is skipped"
        print(reason)
        pytest.skip(reason)
    html = bench_report["html"]

    async def check() -> dict:
        async with await Browser.launch(binary) as browser:
            page = await browser.new_page()
            await page.send("Network.enable")
            requests: list[str] = []
            original = page._event

            def spy(method: str, params: dict) -> None:
                if method == "Network.requestWillBeSent":
                    requests.append(params["request"]["url"])
                original(method, params)

            page._event = spy
            await page.goto(html.resolve().as_uri())
            result = {
                "errors": list(page.errors),
                "requests": requests,
                "tables": await page.evaluate("document.querySelectorAll('table').length"),
                "pngs": await page.evaluate(
                    "document.querySelectorAll('img[src^=\"data:image/png\"]').length"
                ),
                "pwned": await page.evaluate(
                    "[typeof window.__pwned, typeof window.__pwned2, typeof window.__pwned3]"
                ),
                "text": await page.evaluate("document.body.innerText"),
                "title": await page.evaluate("document.title"),
                "scripts": await page.evaluate("document.querySelectorAll('script').length"),
                "cells": await page.evaluate(
                    "document.querySelectorAll('.orc-drill table:not([class*=x]) details[class]').length"
                ),
                "toc": await page.evaluate(
                    "[...document.querySelectorAll('nav.orc-toc a')]"
                    ".map(a => !!(document.getElementById(a.hash.slice(1))"
                    " || document.getElementById(decodeURIComponent(a.hash.slice(1)))))"
                ),
                "anchors": await page.evaluate(
                    "['drill-classify','drill-summarize','drill-failures','drill-disagreements']"
                    ".map(id => !!document.getElementById(id))"
                ),
            }
            await page.screenshot(tmp_path / "report.png")
            return result

    r = asyncio.run(check())
    assert r["errors"] == [], r["errors"]
    assert all(u.startswith(("file:", "data:")) for u in r["requests"]), r["requests"]
    assert r["tables"] > 0
    assert r["pngs"] >= 3  # cost-quality, heatmap, latency
    assert r["pwned"] == ["undefined", "undefined", "undefined"]
    assert r["scripts"] == 0
    assert r["anchors"] == [True, True, True, True]  # the drill-down and its anchored views
    assert len(r["toc"]) >= 6 and all(r["toc"]), r["toc"]  # contents: every link lands on its section
    assert (
        "orchestrator bench --dataset datasets/tiny.jsonl --models baseline/rules,test/hostile" in r["text"]
    )
    assert r["cells"] >= 3 * 2 * 2  # every (issue, model, mode) cell expandable (failures list some again)
    assert "<script>window.__pwned=1</script>" in r["text"]  # shown as text
    assert TITLE_PAYLOAD in r["text"]
    assert bench_report["run_id"] in r["title"] and bench_report["run_id"] in r["text"]
    assert "Benchmark report" in r["text"] and "datasets/tiny.jsonl" in r["text"]
    assert (tmp_path / "report.png").stat().st_size > 10_000


# For every table: its scrolling box, whether the table is wider than the phone, and whether its last
# header cell can be brought inside the viewport by scrolling that box to the end.
_PHONE_CHECK = """
(() => {
  const out = [];
  for (const table of document.querySelectorAll('table')) {
    let box = table.parentElement;
    while (box && box !== document.body && getComputedStyle(box).overflowX !== 'auto') box = box.parentElement;
    const cells = table.querySelectorAll('tr:first-child > *');
    const last = cells[cells.length - 1];
    if (!last) continue;
    if (box && box !== document.body) box.scrollLeft = box.scrollWidth;
    const r = last.getBoundingClientRect();
    out.push({
      wide: table.scrollWidth > window.innerWidth,
      scrolls: !!box && box !== document.body && box.scrollWidth > box.clientWidth,
      lastVisible: r.right <= window.innerWidth + 1 && r.left >= -1,
      boxWidth: box ? box.clientWidth : null,
    });
  }
  return {tables: out, pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth};
})()
"""


def test_report_tables_scroll_on_a_phone(bench_report):
    """At 390 px every table shows all its columns by scrolling its own box; the page itself does not widen."""
    binary = find_chromium()
    if binary is None:
        reason = "chromium not installed (apt-get install chromium); the phone-width check is skipped"
        print(reason)
        pytest.skip(reason)

    async def check() -> dict:
        async with await Browser.launch(binary) as browser:
            page = await browser.new_page()
            await page.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True},
            )
            await page.goto(bench_report["html"].resolve().as_uri())
            return await page.evaluate(_PHONE_CHECK)

    r = asyncio.run(check())
    tables = r["tables"]
    assert r["viewport"] == 390 and tables
    wide = [t for t in tables if t["wide"]]
    assert wide, "no table is wider than a phone: the check would prove nothing"
    assert all(t["scrolls"] for t in wide), wide
    assert all(t["lastVisible"] for t in tables), tables
    assert r["pageWidth"] <= 390 + 1, r["pageWidth"]


class _DollarsOutsideNoMath(__import__("html.parser").parser.HTMLParser):
    """Collects text with a ``$`` that no ``mathjax_ignore`` element encloses (MathJax would typeset it)."""

    VOID = frozenset({"br", "img", "hr", "meta", "input", "col", "wbr", "link", "source"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[bool] = []
        self.exposed: list[str] = []
        self.in_style = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.VOID:
            return
        classes = (dict(attrs).get("class") or "").split()
        self.stack.append("mathjax_ignore" in classes or (bool(self.stack) and self.stack[-1]))
        self.in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self.stack:
            self.stack.pop()
        self.in_style = False

    def handle_data(self, data: str) -> None:
        if "$" in data and not self.in_style and not (self.stack and self.stack[-1]):
            self.exposed.append(data.strip()[:80])


def test_no_dollar_in_the_notebook_outputs_is_left_to_mathjax(bench_report):
    """JupyterLab typesets HTML outputs with MathJax: "$0.0000 (saved $0.0000)" must not become a formula."""
    import nbformat

    nb = nbformat.read(bench_report["ipynb"], as_version=4)
    exposed, dollars = [], 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            markup = output.get("data", {}).get("text/html")
            if not markup:
                continue
            markup = "".join(markup) if isinstance(markup, list) else markup
            dollars += markup.count("$")
            parser = _DollarsOutsideNoMath()
            parser.feed(markup)
            exposed += parser.exposed
    assert dollars > 0, "no dollar amount in any output: the check would prove nothing"
    assert exposed == [], exposed
