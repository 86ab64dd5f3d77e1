"""``run_grid(executor="ray")`` on a real local Ray cluster (2 CPUs, started here) against loopback servers.

The cluster is started once for the module (``ray.init`` takes 5-15 s here). Without Ray installed the
module is skipped with the reason; the message the CLI gives without Ray is tested in any case.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers.fault_server import Action, FaultServer
from runs.test_runner import answer_for, client_for, issue_counts, make_issues, write_config, write_dataset

from orchestrator.runs.runner import run_grid
from orchestrator.runs.store import ResultStore, default_db_path

ROOT = Path(__file__).resolve().parents[2]
TIMINGS = {"run_id", "latency_s", "ttft_s", "output_tps", "started_at", "finished_at"}


def test_cli_without_ray_says_how_to_install(tmp_path):
    """Ray hidden from the interpreter: --executor ray exits 2 with the install command, no traceback."""
    dataset = write_dataset(tmp_path, make_issues(2))
    code = (
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'ray' or name.startswith('ray.'):\n"
        "            raise ImportError('no ray here')\n"
        "sys.meta_path.insert(0, Hide())\n"
        "from orchestrator.cli import main\n"
        f"sys.exit(main(['run', '--dataset', {str(dataset)!r}, '--executor', 'ray']))\n"
    )
    env = {**os.environ, "ORCHESTRATOR_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'orchestrator-workbench[ray]'" in proc.stderr
    assert "Traceback" not in proc.stderr


ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'orchestrator-workbench[ray]'")


@pytest.fixture(scope="module")
def cluster():
    """A real Ray cluster on this machine: 2 CPUs, no dashboard; its address for other drivers."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", object_store_memory=200 << 20)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def rows_without_timings(home: Path, run_id: str):
    store = ResultStore(default_db_path(home), readonly=True)
    try:
        df = store.results_df(run_id)
    finally:
        store.close()
    cols = [c for c in df.columns if c not in TIMINGS]
    return df[cols].sort_values(["issue_id", "model", "mode", "repeat"]).reset_index(drop=True)


def on_ray(client, issues, *, models=("openai/stub",), modes=("classify",), **kw):
    """``run_grid`` on the cluster, with the client given."""
    return client.run_sync(
        run_grid(issues, list(models), list(modes), client=client, progress=False, executor="ray", **kw)
    )


def server(latency_s: float = 0.0) -> FaultServer:
    return FaultServer(
        latency_s=latency_s,
        prompt_tokens=100,
        completion_tokens=20,
        script=lambda req: Action(content=answer_for(req.json["messages"])),
    ).start()


def test_ray_rows_equal_in_process_rows_and_the_cli_runs_on_the_cluster(tmp_path, isolated_home, cluster):
    srv = server(latency_s=0.02)
    try:
        cfg = write_config(tmp_path, srv.url + "/v1")
        issues = make_issues(12)
        client = client_for(cfg, cache=False)
        grid = (issues, ["openai/stub", "baseline/rules"], ["classify", "fix"])
        try:
            local = client.run_sync(
                run_grid(*grid, concurrency=6, run_id="local", client=client, progress=False)
            )
            sent_local = len(srv.requests)
            on_ray = client.run_sync(
                run_grid(*grid, concurrency=6, run_id="ray", client=client, progress=False, executor="ray")
            )
        finally:
            client.close()
        assert local.status == on_ray.status == "finished" and on_ray.cells_run == local.cells_run == 48
        assert on_ray.spent_usd == pytest.approx(local.spent_usd) and on_ray.spent_usd > 0
        assert len(srv.requests) == 2 * sent_local == 48  # every stub cell sent once on each executor
        a, b = rows_without_timings(isolated_home, "local"), rows_without_timings(isolated_home, "ray")
        assert len(a) == 48 and a.equals(b)

        # the CLI, as another driver on the same cluster: same rows again
        dataset = write_dataset(tmp_path, issues)
        env = {**os.environ, "ORCHESTRATOR_PROGRESS": "off"}
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "--config", str(cfg), "run", "--dataset", str(dataset)]
            + ["--models", "openai/stub,baseline/rules", "--tasks", "classify,fix", "--no-cache"]
            + ["--executor", "ray", "--address", cluster, "--workers", "2", "--run-id", "cli"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "48 cells run now" in proc.stdout and "Traceback" not in proc.stderr
        assert rows_without_timings(isolated_home, "cli").equals(a)
    finally:
        srv.stop()


def _cell_worker_pids() -> list[int]:
    """Processes whose title Ray set to one of our worker actors'."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"ray::CellWorker"):
                pids.append(int(entry.name))
    return pids


def test_a_worker_killed_mid_run_loses_nothing_and_stores_each_cell_once(tmp_path, isolated_home, cluster):
    srv = server(latency_s=0.15)
    n_issues, concurrency = 40, 8  # 2 workers x 4 calls in flight each
    killed: list[int] = []

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(srv.requests) < 12:
            time.sleep(0.01)
        pids = _cell_worker_pids()
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    try:
        cfg = write_config(tmp_path, srv.url + "/v1")
        client = client_for(cfg, cache=False)
        killer = threading.Thread(target=kill_one_worker)
        killer.start()
        try:
            summary = on_ray(
                client, make_issues(n_issues), concurrency=concurrency, run_id="killed", workers=2
            )
        finally:
            killer.join()
            client.close()
        assert killed, "no worker process was found to kill"
        assert summary.status == "finished" and summary.cells_run == n_issues and summary.errors == 0
        df = rows_without_timings(isolated_home, "killed")
        assert len(df) == n_issues and not df.duplicated(["issue_id", "model", "mode", "repeat"]).any()
        counts = issue_counts(srv)
        assert len(counts) == n_issues and max(counts.values()) <= 2
        # only the killed worker's calls in flight (4) reached the server twice
        assert sum(counts.values()) - n_issues <= concurrency // 2, counts
    finally:
        srv.stop()


def test_rpm_60_holds_across_two_workers_over_a_minute(tmp_path, isolated_home, cluster):
    srv = server(latency_s=0.0)
    try:
        cfg = write_config(tmp_path, srv.url + "/v1")
        cfg.write_text(cfg.read_text().replace("max_tokens = 50", "max_tokens = 50\nlimits = { rpm = 60 }"))
        client = client_for(cfg, cache=False)
        started = time.monotonic()
        try:
            summary = on_ray(client, make_issues(66), concurrency=8, run_id="rpm", workers=2)
        finally:
            client.close()
        took = time.monotonic() - started
        assert summary.status == "finished" and summary.cells_run == 66
        times = sorted(r.t for r in srv.requests)
        assert len(times) == 66 and times[-1] - times[0] >= 60.0  # the 61st waited for the window
        worst = max(sum(1 for t in times[i:] if t - start < 60.0) for i, start in enumerate(times))
        assert worst <= 60, f"{worst} requests in one 60 s window"
        assert took >= 60.0
    finally:
        srv.stop()


def test_a_lease_is_all_a_call_needs_or_nothing_and_a_refused_worker_hands_its_lease_back() -> None:
    from orchestrator.runs.ray_workers import BudgetActor

    budget = BudgetActor(0.02)
    assert budget.lease(0.011, minimum=0.011) == pytest.approx(0.011)  # a call's worst case, whole
    assert budget.lease(0.011, minimum=0.011) == 0.0  # 0.009 left: too little for a call, nothing leased
    assert budget.remaining == pytest.approx(0.009)
    assert budget.lease(0.005, minimum=0.002) == pytest.approx(0.005)  # a shortfall, with a lease's margin
    assert budget.lease(0.011, minimum=0.011, returning=0.005) == 0.0  # handed back, still not enough
    assert budget.remaining == pytest.approx(0.009) and budget.outstanding() == pytest.approx(0.011)
    assert budget.lease(0.01, minimum=0.004, returning=0.011) == pytest.approx(0.01)  # another's came back
    assert budget.outstanding() == pytest.approx(0.01) and budget.remaining == pytest.approx(0.01)


async def test_a_workers_view_of_the_limits_actor_answers_without_blocking_its_loop(cluster):
    """ClusterLog over a real LimitsActor: a release is awaited (its verdict and the wall time it arrived
    come back), and a pause set through another worker's view reaches this one by background reads."""
    import asyncio

    from orchestrator.client.shared_limits import Claim
    from orchestrator.runs.ray_workers import ClusterLog, LimitsActor

    actor = ray.remote(LimitsActor).options(num_cpus=0).remote()
    mine, other = ClusterLog(actor), ClusterLog(actor)
    try:
        asked = time.time()
        verdict, arrived = await mine.release_async([Claim("scope", 60, 1.0, None, 1)])
        assert verdict.kind == "go" and len(verdict.rows) == 1
        assert asked <= arrived <= time.time()
        verdict, _ = await mine.release_async([Claim("scope", 60, 1.0, None, 1)])
        assert verdict.kind == "wait" and verdict.until > asked  # the spacing, held by the actor
        assert mine.paused_until("paused") == 0.0  # nothing known yet; a read is on its way
        other.pause("paused", 30.0)
        deadline = time.monotonic() + 30
        while mine.paused_until("paused") < asked + 29 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert mine.paused_until("paused") >= asked + 29
    finally:
        ray.kill(actor)


def test_budget_cap_holds_across_workers_then_resume_finishes(tmp_path, isolated_home, cluster):
    srv = server(latency_s=0.05)
    price_in, price_out = 10.0, 40.0  # per million tokens, as write_config sets
    try:
        cfg = write_config(tmp_path, srv.url + "/v1")
        issues = make_issues(30)
        # a call's worst case is ~$0.011, four leases and more (0.02 / 8 each): one call fits at a time, and
        # only when one worker holds enough of the budget (split leases once refused every call)
        budget = 0.02
        client = client_for(cfg, cache=False)
        try:
            first = on_ray(client, issues, concurrency=6, budget_usd=budget, run_id="budget", workers=2)
            billed = srv.true_cost(price_in, price_out)
            assert first.status == "budget_exhausted" and 0 < first.cells_run < 30
            assert billed <= budget + 1e-12, f"billed ${billed} over the ${budget} cap"
            assert first.cells_run + first.skipped_for_budget == 30
            store = ResultStore(default_db_path(isolated_home), readonly=True)
            recorded = store.run_spent("budget")  # what a resume counts as already spent
            store.close()
            assert billed - 1e-9 <= recorded <= budget + 1e-12 and first.spent_usd == pytest.approx(recorded)
            again = on_ray(client, issues, concurrency=6, budget_usd=1.0, run_id="budget", workers=2)
        finally:
            client.close()
        assert again.status == "finished" and again.cells_done_before == first.cells_run
        assert len(rows_without_timings(isolated_home, "budget")) == 30
        assert Counter(issue_counts(srv).values()) == Counter({1: 30})  # nothing paid twice
    finally:
        srv.stop()


def test_the_driver_killed_mid_run_then_resumed_on_ray_loses_nothing(tmp_path, isolated_home, cluster):
    """A CLI driver on the cluster is SIGKILLed; its workers end with it; the same run id resumes."""
    import sqlite3

    srv = server(latency_s=0.3)
    try:
        cfg = write_config(tmp_path, srv.url + "/v1")
        issues = make_issues(24)
        dataset = write_dataset(tmp_path, issues)
        env = {**os.environ, "ORCHESTRATOR_PROGRESS": "off"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "--config", str(cfg), "run", "--dataset", str(dataset)]
            + ["--models", "openai/stub", "--tasks", "classify", "--concurrency", "4", "--no-cache"]
            + ["--executor", "ray", "--address", cluster, "--workers", "2", "--run-id", "driver"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
        )
        db = isolated_home / "results.sqlite"
        written, deadline = 0, time.monotonic() + 120
        while time.monotonic() < deadline and written < 6:
            if db.exists():
                try:
                    with sqlite3.connect(db) as conn:
                        written = conn.execute(
                            "SELECT COUNT(*) FROM results WHERE run_id='driver'"
                        ).fetchone()[0]
                except sqlite3.OperationalError:
                    written = 0
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with sqlite3.connect(db) as conn:
            before = conn.execute("SELECT COUNT(*) FROM results WHERE run_id='driver'").fetchone()[0]
        assert 6 <= before < 24
        client = client_for(cfg, cache=False)
        try:
            again = on_ray(client, issues, concurrency=4, run_id="driver", workers=2)
        finally:
            client.close()
        assert again.status == "finished" and again.cells_done_before == before
        df = rows_without_timings(isolated_home, "driver")
        assert len(df) == 24 and df.issue_id.is_unique
        counts = issue_counts(srv)
        assert len(counts) == 24 and max(counts.values()) <= 2
        assert sum(counts.values()) - 24 <= 4  # only the killed driver's calls in flight went twice
    finally:
        srv.stop()


def test_a_trained_baseline_fitted_by_the_driver_answers_the_same_on_ray(tmp_path, isolated_home, cluster):
    """The driver fits the trained baseline (on the dev split) before the cells go out; the workers load
    that fit from the run's home and answer exactly what the in-process run answers."""
    from trained.test_trained import nlbse_project

    from orchestrator.cli import main

    cfg = nlbse_project(tmp_path, plant_in=None)
    base = ["--config", str(cfg), "run", "--dataset", str(tmp_path / "nlbse.jsonl"), "--tasks", "nlbse"]
    base += ["--split", "test", "--models", "trained/tfidf-logreg,baseline/rules", "--no-cache"]  # no hits
    assert main([*base, "--run-id", "local"]) == 0
    assert main([*base, "--run-id", "ray", "--executor", "ray", "--workers", "2"]) == 0
    a, b = rows_without_timings(isolated_home, "local"), rows_without_timings(isolated_home, "ray")
    assert len(a) == 80 and (a["error_type"].fillna("") == "").all()
    assert a["text"].str.len().gt(0).all() and a.equals(b)


def test_more_workers_than_the_cluster_has_cpus_fails_with_the_cpus_named(
    tmp_path, isolated_home, cluster, monkeypatch
):
    from orchestrator.runs import ray_executor

    monkeypatch.setattr(ray_executor, "WORKER_START_S", 3.0)
    cfg = write_config(tmp_path, "http://127.0.0.1:9/v1")
    client = client_for(cfg, cache=False)
    try:
        summary = on_ray(client, make_issues(2), run_id="too-many", workers=3, models=["baseline/rules"])
    finally:
        client.close()
    assert summary.status == "failed"
    assert "3 workers x 1 CPUs asked for, the cluster has 2 CPUs" in summary.message


def test_a_concurrency_limit_below_the_worker_count_is_refused_with_the_model_named(tmp_path):
    from orchestrator.runs.ray_executor import split_concurrency

    cfg = write_config(tmp_path, "http://127.0.0.1:9/v1")
    cfg.write_text(
        cfg.read_text().replace("max_tokens = 50", "max_tokens = 50\nlimits = { max_concurrency = 3 }")
    )
    config = client_for(cfg, cache=False).config
    assert split_concurrency(config, ["openai/stub", "baseline/rules"], 2) == {"openai/stub": 1}
    from orchestrator import errors as E

    with pytest.raises(E.UsageError, match="model 'openai/stub': max_concurrency = 3 cannot be split over 4"):
        split_concurrency(config, ["openai/stub"], 4)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_cli_reaches_a_cluster_through_ray_client(tmp_path, isolated_home):
    """`ray start --head` in a child process, then `orchestrator run --address ray://127.0.0.1:PORT`.

    The head uses token authentication, as Ray 2.5x does by default once ~/.ray/auth_token exists (which
    the other tests' local clusters create): the CLI connects with the same token from its environment,
    and the token appears nowhere in what the run printed or stored."""
    import secrets
    import tempfile

    token = secrets.token_hex(32)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    ray_bin = Path(sys.executable).with_name("ray")
    gcs, client_port = _free_port(), _free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", "--num-cpus", "2", "--port", str(gcs)]
        + [
            "--ray-client-server-port",
            str(client_port),
            "--disable-usage-stats",
            "--temp-dir",
            temp,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **auth},
    )
    srv = server(latency_s=0.02)
    try:
        cfg = write_config(tmp_path, srv.url + "/v1")
        dataset = write_dataset(tmp_path, make_issues(6))
        env = {**os.environ, "ORCHESTRATOR_PROGRESS": "off", **auth}
        env.pop("RAY_ADDRESS", None)
        deadline, proc = time.monotonic() + 180, None
        while time.monotonic() < deadline:  # the head's client server takes a while to listen
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "orchestrator.cli",
                    "--config",
                    str(cfg),
                    "run",
                    "--dataset",
                    str(dataset),
                ]
                + ["--models", "openai/stub,baseline/rules", "--no-cache", "--executor", "ray"]
                + ["--address", f"ray://127.0.0.1:{client_port}", "--workers", "2", "--run-id", "client"],
                capture_output=True,
                text=True,
                env=env,
                timeout=300,
                cwd=tmp_path,
            )
            if proc.returncode != 2 or "could not reach a Ray cluster" not in proc.stderr:
                break
            time.sleep(2)
        assert proc is not None and proc.returncode == 0, proc.stderr[-3000:]
        assert "12 cells run now" in proc.stdout and "Traceback" not in proc.stderr
        assert len(rows_without_timings(isolated_home, "client")) == 12
        assert len(srv.requests) == 6
        assert token not in proc.stdout + proc.stderr
        for stored in isolated_home.rglob("*.sqlite*"):
            assert token.encode() not in stored.read_bytes(), stored
    finally:
        srv.stop()
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(10)
        import shutil

        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--executor", "ray", "--worker-cpus", "0"], "--worker-cpus: must be a number > 0"),
        (["--workers", "2"], "--address, --workers and --worker-cpus need --executor ray"),
    ],
)
def test_bad_ray_flags_exit_2_with_the_flag_named(tmp_path, flags, message):
    dataset = write_dataset(tmp_path, make_issues(2))
    env = {**os.environ, "ORCHESTRATOR_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", "--dataset", str(dataset), *flags],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_ray_client_timeout_says_what_to_set_for_token_authentication(monkeypatch):
    """Ray Client reports only a timeout when the cluster wants a token the client did not send."""
    import ray

    from orchestrator.errors import UsageError
    from orchestrator.runs.ray_executor import connect

    def refuse(*_a, **_k):
        raise ConnectionError("ray client connection timeout")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    with pytest.raises(UsageError, match=r"ray://127\.0\.0\.1:1: could not reach .* RAY_AUTH_MODE=token"):
        connect("ray://127.0.0.1:1")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # already set: the hint would mislead
    with pytest.raises(UsageError) as refused:
        connect("ray://127.0.0.1:1")
    assert "RAY_AUTH_MODE" not in str(refused.value)
