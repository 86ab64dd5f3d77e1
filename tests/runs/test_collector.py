"""The cycle collector held back while a grid runs, and put back as it was after, however grids overlap."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from orchestrator.config import config_from_dict
from orchestrator.runs.collector import YOUNG_THRESHOLD, collector_held_back
from orchestrator.runs.runner import run_grid_sync
from orchestrator.types import Issue


@pytest.fixture(autouse=True)
def default_collector() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def test_the_block_runs_frozen_with_a_higher_young_threshold_then_all_is_put_back() -> None:
    with collector_held_back():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_overlapping_grids_keep_the_hold_until_the_last_ends() -> None:
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[tuple[int, ...]] = []

    def first() -> None:
        with collector_held_back():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with collector_held_back():
            second_in.set()
            first_out.wait(5)
            seen.append(gc.get_threshold())  # the first has ended: still held for this one

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == [(YOUNG_THRESHOLD, 10, 10)]
    assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0


def test_a_disabled_young_collection_and_a_heap_frozen_by_someone_else_are_left_alone() -> None:
    gc.set_threshold(0, 10, 10)
    gc.freeze()
    frozen = gc.get_freeze_count()
    with collector_held_back():
        assert gc.get_threshold() == (0, 10, 10)
    assert gc.get_threshold() == (0, 10, 10)
    assert gc.get_freeze_count() == frozen  # not unfrozen: it was not ours


def test_a_grid_runs_held_back_and_leaves_the_collector_as_it_found_it(monkeypatch, tmp_path) -> None:
    from orchestrator.providers import baseline

    during: list[tuple[tuple[int, ...], bool]] = []
    answer = baseline.answer

    def observed(*args, **kwargs):
        during.append((gc.get_threshold(), gc.get_freeze_count() > 0))
        return answer(*args, **kwargs)

    monkeypatch.setattr(baseline, "answer", observed)
    config = config_from_dict({"models": {"baseline/rules": {"provider": "baseline"}}}, tmp_path / "o.toml")
    issues = [Issue(repo="o/r", number=i, title=f"Crash {i}", body="KeyError") for i in range(3)]
    summary = run_grid_sync(issues, ["baseline/rules"], ["classify"], config=config, progress=False)
    assert summary.cells_run == 3 and summary.errors == 0
    assert during == [((YOUNG_THRESHOLD, 10, 10), True)] * 3
    assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0
