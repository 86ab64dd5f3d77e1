"""The hostile-world cases of issue 11, each run against this checkout and (``--before DIR``) an older one.

Each case runs in a fresh process with the checkout's ``orchestrator`` first on ``sys.path``, against the
loopback server of ``tests/helpers/fault_server.py``, and prints one line of what happened; the table puts the two
checkouts side by side. Only public API is used, so an older checkout runs the same code.

    git worktree add /tmp/before 291d668
    python bench/hostile_cases.py --before /tmp/before [--cases a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASE_TIMEOUT_S = 90.0  # a case still running after this is reported as hung (and killed)
ROOT = HERE.parent

PRELUDE = """
import asyncio, json, math, os, sys, time
sys.path[:0] = [SRC, TESTS]
from pathlib import Path
from helpers.fault_server import Action, FaultServer, completion_body
from orchestrator.config import config_from_dict
from orchestrator.client import LLMClient
from orchestrator.runs.runner import run_grid
from orchestrator.types import Issue, Gold
PRICE = {"input": 2.0, "output": 8.0}

def cfg(url, **extra):
    table = {"provider": "openai", "model": "m", "base_url": url, "max_tokens": 40, "price": PRICE, **extra}
    return config_from_dict({"models": {"f/m": table}}, Path("case.toml"))

def issues(n, body="Traceback in src/app.py"):
    return [Issue(repo="a/b", number=i, title=f"Crash [call:c{i:04d}]", body=body, gold=Gold(type="bug"))
            for i in range(n)]

def billed(server, prompt_of=None):
    total = 0.0
    for r in server.requests:
        msgs = (r.json or {}).get("messages", [])
        chars = sum(len(str(m.get("content") or "")) for m in msgs)
        prompt = prompt_of(msgs) if prompt_of else max(1, chars // 4)
        total += (prompt * PRICE["input"] + 10 * PRICE["output"]) / 1e6
    return total

def out(**kw):
    print("RESULT " + json.dumps(kw))
"""

CASES: dict[str, str] = {
    "writer fails (disk full)": """
        long = Action(body=lambda req: completion_body(req, text="y" * 3000))
        with FaultServer(latency_s=0.02, script=lambda r: long) as server:
            from orchestrator.runs.store import ResultStore
            store = ResultStore(Path(os.environ["ORCHESTRATOR_HOME"]) / "results.sqlite")
            pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
            store._conn.execute(f"PRAGMA max_page_count = {pages + 60}")
            client = LLMClient(cfg(server.url))
            async def go():
                return await run_grid(issues(200), ["f/m"], ["summarize"], client=client, store=store,
                                      progress=False, run_id="full", concurrency=8)
            try:
                s = asyncio.run(asyncio.wait_for(go(), 30))
                status = s.status
            except asyncio.TimeoutError:
                status = "still running after 30 s"
            except Exception as exc:
                status = "raised " + type(exc).__name__
            stored = store._conn.execute("SELECT count(*) FROM results").fetchone()[0]
            out(summary=f"{status}; {server.count()} calls sent, {stored} stored")
    """,
    "answers without usage, --budget 0.05": """
        def script(req):
            body = completion_body(req); del body["usage"]; return Action(body=body)
        with FaultServer(script=script) as server:
            client = LLMClient(cfg(server.url), cache=False)
            s = asyncio.run(run_grid(issues(128), ["f/m"], ["summarize"], client=client, progress=False,
                                     budget_usd=0.05, concurrency=16, cache=False))
            out(summary=f"{s.status}; {server.count()} of 128 calls sent; recorded ${s.spent_usd:.4f}; "
                        f"billed ${billed(server):.4f}")
    """,
    "a token per byte, 16 in flight, --budget 0.05": """
        def prompt_of(msgs):
            return sum(len(str(m.get("content") or "").encode()) for m in msgs)
        def script(req):
            msgs = (req.json or {}).get("messages", [])
            return Action(body=completion_body(req, prompt_tokens=prompt_of(msgs), completion_tokens=10))
        with FaultServer(script=script) as server:
            client = LLMClient(cfg(server.url), cache=False)
            cjk = "設定ファイルを読み込むとクラッシュします。" * 40
            s = asyncio.run(run_grid(issues(128, cjk), ["f/m"], ["summarize"], client=client, progress=False,
                                     budget_usd=0.05, concurrency=16, cache=False))
            out(summary=f"{s.status}; {server.count()} calls; billed ${billed(server, prompt_of):.4f} "
                        "on a $0.05 cap")
    """,
    "price = { input = nan }": """
        try:
            c = config_from_dict({"models": {"f/m": {"provider": "openai", "model": "m", "base_url": "http://x/v1",
                                 "price": {"input": math.nan, "output": 1.0}}}}, Path("case.toml"))
            out(summary="accepted")
        except Exception as exc:
            out(summary=f"{type(exc).__name__}: {str(exc)[:90]}")
    """,
    "a key echoed into the answer": """
        os.environ["ODD_KEY_ENV"] = "plainword-credential-42x"
        echo = Action(body=lambda req: completion_body(req, text="my key is " + req.headers.get("authorization", "")))
        with FaultServer(script=lambda r: echo) as server:
            client = LLMClient(cfg(server.url, api_key_env="ODD_KEY_ENV"))
            asyncio.run(run_grid(issues(2), ["f/m"], ["summarize"], client=client, progress=False))
            home = Path(os.environ["ORCHESTRATOR_HOME"])
            leaked = [p.name for p in home.iterdir() if b"plainword-credential-42x" in p.read_bytes()]
            out(summary=f"key found in: {', '.join(sorted(leaked)) or 'nothing'}")
    """,
    "rpm = 30: most requests in one 60 s window": """
        from orchestrator.client.limits import Limiter
        now = [0.0]
        async def sleep(s):
            now[0] += max(s, 0.0)
        lim = Limiter(clock=lambda: now[0], sleep=sleep)
        b = lim.bucket("case", 30, None, None)
        times = []
        async def one():
            await lim.acquire([b], 10)
            times.append(now[0])
        async def go():
            for _ in range(200):
                await one()
        asyncio.run(go())
        times.sort()
        best = max(sum(1 for u in times if t <= u <= t + 60) for t in times)  # a closed 60 s window
        out(summary=f"{best} requests in one 60 s window")
    """,
    "a non-string answer (content is a list)": """
        bad = Action(body=lambda req: {**completion_body(req), "choices": [{"index": 0, "message":
                     {"role": "assistant", "content": [1, 2]}, "finish_reason": "stop"}]})
        with FaultServer(script=lambda r: bad) as server:
            client = LLMClient(cfg(server.url), cache=False)
            try:
                asyncio.run(client.complete("hi", model="f/m"))
                out(summary="answered")
            except Exception as exc:
                out(summary=f"{type(exc).__module__.split('.')[0]}.{type(exc).__name__}")
    """,
}

CLI_CASES: dict[str, tuple[str, list[str]]] = {
    'CLI: defaults = "x"': ('defaults = "x"\n[models."baseline/rules"]\nprovider = "baseline"\n', ["models"]),
    'CLI: fallbacks = "baseline/rules"': (
        '[models."baseline/rules"]\nprovider = "baseline"\n[models."b/x"]\nprovider = "baseline"\n'
        'fallbacks = "baseline/rules"\n',
        ["models"],
    ),
    "CLI: run --repeats 0": (
        '[models."baseline/rules"]\nprovider = "baseline"\n',
        ["run", "--dataset", "DATA", "--repeats", "0"],
    ),
    "CLI: bench --run-id ../../x": (
        '[models."baseline/rules"]\nprovider = "baseline"\n',
        ["bench", "--run-id", "../../x"],
    ),
}


def run_case(name: str, src: Path) -> str:
    code = PRELUDE.replace("SRC", repr(str(src))).replace("TESTS", repr(str(ROOT / "tests")))
    code += textwrap.dedent(CASES[name])
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "ORCHESTRATOR_HOME": home, "ORCHESTRATOR_PROGRESS": "off"}
        try:
            proc = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=CASE_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            return f"hung: killed after {CASE_TIMEOUT_S:.0f} s"
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])["summary"]
    return "crashed: " + ((proc.stderr.strip().splitlines() or ["?"])[-1])[:100]


def run_cli_case(name: str, src: Path) -> str:
    text, args = CLI_CASES[name]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "orchestrator.toml"
        cfg.write_text(text)
        data = Path(tmp) / "issues.jsonl"
        data.write_text('{"id": "a#1", "title": "x"}\n')
        argv = [a.replace("DATA", str(data)) for a in args]
        env = {**os.environ, "ORCHESTRATOR_HOME": tmp, "PYTHONPATH": str(src)}
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "--config", str(cfg), *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
            timeout=120,
        )
    shown = "traceback" if "Traceback" in proc.stderr else (proc.stderr.strip().splitlines() or [""])[-1][:80]
    return f"exit {proc.returncode}: {shown}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, help="an older checkout to compare with")
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    args = parser.parse_args()
    names = [*CASES, *CLI_CASES]
    if args.cases:
        names = [n for n in names if any(c.strip() in n for c in args.cases.split(","))]
    checkouts = [("after", ROOT)] + ([("before", args.before.resolve())] if args.before else [])
    print("one run per case and checkout")
    print("| case | " + " | ".join(label for label, _ in checkouts[::-1]) + " |")
    print("| --- | " + " | ".join("---" for _ in checkouts) + " |")
    for name in names:
        runner = run_case if name in CASES else run_cli_case
        cells = [runner(name, src) for _, src in checkouts[::-1]]
        print(f"| {name} | " + " | ".join(c.replace("|", "/") for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
