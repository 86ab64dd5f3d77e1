"""Issue sets: JSONL files of GitHub issues with gold labels, and everything that makes or checks them.

One module per job: :mod:`.files` (load and write, every problem by file:line), :mod:`.jsonl` (lines read
defensively), :mod:`.checks` (missing labels, counts), :mod:`.splits` (stable ids, dev/test),
:mod:`.importers` (CSV, JSONL, Parquet), :mod:`.github` (a repository's history, through PyGithub).
"""

from __future__ import annotations

from .checks import dataset_stats, validate_issues
from .files import (
    MAX_PROBLEMS,
    DatasetError,
    issue_to_dict,
    issue_to_json,
    load_issues,
    read_issues_lenient,
    write_issues,
)
from .importers import import_issues, parse_pairs
from .splits import assign_splits, hash_split, synthetic_id

__all__ = [
    "MAX_PROBLEMS",
    "DatasetError",
    "assign_splits",
    "dataset_stats",
    "hash_split",
    "import_issues",
    "issue_to_dict",
    "issue_to_json",
    "load_issues",
    "parse_pairs",
    "read_issues_lenient",
    "synthetic_id",
    "validate_issues",
    "write_issues",
]
