"""write_routing against a real concurrent editor: no line another process writes into the config is lost,
whether it appends in place or saves by rename; a file that never stops changing is refused, not clobbered.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from orchestrator.config import load_config
from orchestrator.routing import RoutingError, Selection, write_routing
from orchestrator.routing import writeback as routing

ROOT = Path(__file__).resolve().parents[2]
PROV = {
    "run_id": "20261127-101500-ab12",
    "dataset": "datasets/issues.jsonl",
    "split": "dev",
    "date": dt.date(2026, 11, 27),
}
CALLS = 200
BUDGET = 9.0  # seconds of calls per editor: fewer than CALLS on a loaded machine
EDIT = re.compile(r"^# edit (\d+)$", re.M)

# The editor: numbered comment lines, in bursts written as fast as it can with a pause of up to `pause` ms
# between bursts (pause 0: it never stops). Without pauses no read-modify-replace can ever finish between
# two edits (a render takes milliseconds, an append microseconds), so every call would be refused.
EDITOR = r"""
import os, random, signal, sys, time

path, how, pause, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
stop = False


def _stop(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, _stop)
rng = random.Random(seed)
tmp = path + ".editor-tmp"
n = 0
print("ready", flush=True)
while not stop:
    for _ in range(rng.randint(1, 40) if pause else 1000):
        n += 1
        line = f"# edit {n:05d}\n"
        if how == "append":
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(line)
        else:  # like most editors: write the whole file beside it, then rename it over
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text + line)
            os.replace(tmp, path)
        if stop:
            break
    if pause:
        time.sleep(rng.uniform(0, pause / 1000))
print(n, flush=True)
"""


def _selection(model: str, fallback: str) -> dict[str, Selection]:
    return {
        "classify": Selection(
            "classify", model, [fallback], "quality", f"classify: {model}", 0.8, (0.7, 0.9), 0.0001, 1.0, 50
        )
    }


SEL_A = _selection("openai/gpt-4.1-mini", "local/smollm2")
SEL_B = _selection("anthropic/claude-haiku-4-5", "baseline/rules")


@contextmanager
def editor(path: Path, how: str, pause_ms: float, seed: int = 1) -> Iterator[list[int]]:
    """Run the editor on ``path`` for the duration of the block; the list holds its line count afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-c", EDITOR, str(path), how, str(pause_ms), str(seed)],
        stdout=subprocess.PIPE,
        text=True,
    )
    written: list[int] = []
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield written
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    written.append(int(out.strip()))


def _edits(*texts: str) -> set[int]:
    return {int(m) for text in texts for m in EDIT.findall(text)}


def _conflicts(exc: RoutingError) -> list[Path]:
    """The conflict files a RoutingError names (each must exist); empty when it names none."""
    named = [Path(n.rstrip(";,")) for n in re.findall(r"(\S+\.routing-conflict[\w.]*)", str(exc))]
    for path in named:
        assert path.is_file(), exc
    return named


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "orchestrator.toml"
    shutil.copy(ROOT / "orchestrator.toml", cfg)
    os.chmod(cfg, 0o640)
    return cfg


@pytest.mark.parametrize("how", ["append", "rename"])
def test_no_edit_is_lost_while_routing_is_written_in_a_loop(tmp_path, how, caplog, capsys):
    cfg = _config(tmp_path)
    caplog.set_level(logging.DEBUG, logger="orchestrator")
    ok = refused = calls = 0
    last = None
    conflicts: list[Path] = []
    deadline = time.monotonic() + BUDGET
    with editor(cfg, how, pause_ms=50) as written:
        while calls < CALLS and time.monotonic() < deadline:
            sel = SEL_A if calls % 2 == 0 else SEL_B
            calls += 1
            try:
                write_routing(cfg, sel, PROV, write=True)
            except RoutingError as exc:
                named = _conflicts(exc)
                if named:
                    conflicts += named
                else:
                    assert "being edited" in str(exc) and "nothing was written" in str(exc), exc
                    refused += 1
            else:
                ok += 1
                last = sel
    final = cfg.read_text(encoding="utf-8")
    kept = [c.read_text(encoding="utf-8") for c in conflicts]
    lost = set(range(1, written[0] + 1)) - _edits(final, *kept)
    retries = sum("retrying" in r.getMessage() for r in caplog.records)
    with capsys.disabled():
        print(
            f"\n[{how}] lines appended {written[0]}, lost {len(lost)}; calls {calls}: written {ok}, "
            f"refused {refused}, conflicts {len(conflicts)}; retries {retries}"
        )
    assert not lost, f"{len(lost)} of {written[0]} lines lost, e.g. {sorted(lost)[:5]}"
    assert written[0] > 100 and ok > 0
    load_config(cfg)  # still a valid config
    assert tomllib.loads(final)["routing"]["classify"]["primary"] == last["classify"].model
    if how == "append":  # a rename editor leaves its own file (and mode) behind
        assert cfg.stat().st_mode & 0o777 == 0o640
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_file_that_never_stops_changing_is_refused(tmp_path):
    cfg = _config(tmp_path)
    models = {None, SEL_A["classify"].model, SEL_B["classify"].model}
    refusal: RoutingError | None = None
    conflicts: list[Path] = []
    with editor(cfg, "append", pause_ms=0) as written:
        for i in range(20):  # a preempted editor leaves a window now and then: that call may succeed
            try:
                write_routing(cfg, SEL_A if i % 2 == 0 else SEL_B, PROV, write=True)
            except RoutingError as exc:
                named = _conflicts(exc)
                if not named:
                    refusal = exc
                    break
                conflicts += named
    assert refusal is not None, "20 calls written while the file never stopped changing"
    assert "being edited" in str(refusal) and "nothing was written" in str(refusal), refusal
    final = cfg.read_text(encoding="utf-8")
    kept = [c.read_text(encoding="utf-8") for c in conflicts]
    assert _edits(final, *kept) == set(range(1, written[0] + 1))
    assert tomllib.loads(final)["routing"].get("classify", {}).get("primary") in models


# ------------------------------------------------------------------ each race, made to happen on purpose


def _racing_exchange(monkeypatch, *edits: str | None) -> list[int]:
    """Make the n-th swap happen right after ``edits[n]`` is appended to the config (a write that lands
    between write_routing's last compare and the swap); returns the list of swaps done so far."""
    real = routing._exchange
    done: list[int] = []

    def exchange(fn, a, b) -> bool:
        if len(done) < len(edits) and edits[len(done)] is not None:
            with open(b, "a", encoding="utf-8") as fh:
                fh.write(edits[len(done)])
        done.append(1)
        return real(fn, a, b)

    monkeypatch.setattr(routing, "_exchange", exchange)
    return done


def test_an_edit_landing_during_the_swap_is_swapped_back_and_spliced_again(tmp_path, monkeypatch):
    cfg = _config(tmp_path)
    swaps = _racing_exchange(monkeypatch, "# edit 1\n")
    diff = write_routing(cfg, SEL_A, PROV, write=True)
    assert len(swaps) == 3  # in, back (it changed), in again from the new content
    text = cfg.read_text(encoding="utf-8")
    assert (
        "# edit 1\n" in text
        and tomllib.loads(text)["routing"]["classify"]["primary"] == SEL_A["classify"].model
    )
    assert '+primary = "openai/gpt-4.1-mini"' in diff
    assert cfg.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orchestrator.toml"]


def test_when_both_versions_were_edited_both_are_kept(tmp_path, monkeypatch):
    cfg = _config(tmp_path)
    original = cfg.read_text(encoding="utf-8")
    # edit 1 lands in the user's file just before the swap, edit 2 in ours while it is in place
    _racing_exchange(monkeypatch, "# edit 1\n", "# edit 2\n")
    with pytest.raises(RoutingError, match="routing-conflict") as info:
        write_routing(cfg, SEL_A, PROV, write=True)
    [kept] = _conflicts(info.value)
    assert kept == tmp_path / "orchestrator.toml.routing-conflict"
    assert cfg.read_text(encoding="utf-8") == original + "# edit 1\n"  # the user's, untouched
    ours = kept.read_text(encoding="utf-8")
    assert ours.endswith("# edit 2\n") and tomllib.loads(ours)["routing"]["classify"]["primary"] == (
        SEL_A["classify"].model
    )
    # a second conflict never overwrites the first
    _racing_exchange(monkeypatch, "# edit 3\n", "# edit 4\n")
    with pytest.raises(RoutingError) as info:
        write_routing(cfg, SEL_A, PROV, write=True)
    assert _conflicts(info.value) == [tmp_path / "orchestrator.toml.routing-conflict.1"]
    assert kept.read_text(encoding="utf-8") == ours
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_save_of_our_version_over_the_restored_file_keeps_the_edit_it_would_drop(tmp_path, monkeypatch):
    """Edit 1 is saved (by rename) just before the swap; while our version is in place an editor reads it,
    and right after the swap back it saves that copy (plus edit 2) over the file. Edit 1 is then nowhere
    in the file: it is kept beside it and the error says where."""
    cfg = _config(tmp_path)
    real = routing._exchange
    calls: list[int] = []
    seen: list[str] = []

    def exchange(fn, a, b) -> bool:
        calls.append(1)
        b = str(b)
        if len(calls) == 1:  # a rename-save lands just before our swap
            text = Path(b).read_text(encoding="utf-8")
            Path(b + ".ed").write_text(text + "# edit 1\n", encoding="utf-8")
            os.replace(b + ".ed", b)
        ok = real(fn, a, b)
        if len(calls) == 1:  # the editor reads what is at the path now: our version
            seen.append(Path(b).read_text(encoding="utf-8"))
        if len(calls) == 2:  # after the swap back, it saves that copy over the restored file
            Path(b + ".ed").write_text(seen[0] + "# edit 2\n", encoding="utf-8")
            os.replace(b + ".ed", b)
        return ok

    monkeypatch.setattr(routing, "_exchange", exchange)
    with pytest.raises(RoutingError, match="saved over") as info:
        write_routing(cfg, SEL_A, PROV, write=True)
    [kept] = _conflicts(info.value)
    assert "# edit 1\n" in kept.read_text(encoding="utf-8")  # the save that would have been lost
    assert "# edit 2\n" in cfg.read_text(encoding="utf-8")
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob(".*.kept"))


def test_a_writer_holding_the_old_file_open_across_the_swap_is_waited_for(tmp_path, monkeypatch):
    """An in-place writer that opened the file before the swap and writes 100 ms later (far past the settle
    delay) still lands in the final file."""
    cfg = _config(tmp_path)
    real = routing._exchange
    threads: list[threading.Thread] = []

    def exchange(fn, a, b) -> bool:
        if not threads:
            fh = open(b, "a", encoding="utf-8")  # noqa: SIM115 - closed by the thread

            def late_write() -> None:
                time.sleep(0.1)
                fh.write("# edit 1\n")
                fh.close()

            threads.append(threading.Thread(target=late_write))
            threads[0].start()
        return real(fn, a, b)

    monkeypatch.setattr(routing, "_exchange", exchange)
    write_routing(cfg, SEL_A, PROV, write=True)
    threads[0].join()
    text = cfg.read_text(encoding="utf-8")
    assert (
        "# edit 1\n" in text
        and tomllib.loads(text)["routing"]["classify"]["primary"] == SEL_A["classify"].model
    )


def test_without_renameat2_it_falls_back_to_compare_and_replace(tmp_path, monkeypatch):
    cfg = _config(tmp_path)
    monkeypatch.setattr(routing, "_renameat2", lambda: None)
    before = cfg.read_bytes()
    diff = write_routing(cfg, SEL_B, PROV, write=False)
    assert cfg.read_bytes() == before and "+primary" in diff  # a dry run only returns the diff
    assert write_routing(cfg, SEL_B, PROV, write=True) == diff
    assert tomllib.loads(cfg.read_text(encoding="utf-8"))["routing"]["classify"]["primary"] == (
        SEL_B["classify"].model
    )
    assert cfg.stat().st_mode & 0o777 == 0o640
    assert write_routing(cfg, SEL_B, PROV, write=True) == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orchestrator.toml"]
