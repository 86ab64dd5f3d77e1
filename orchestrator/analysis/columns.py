"""Columns of a results frame as arrays: numbers, flags, errors, tokens, cost; groups; seeded generators.

Missing optional columns read as unknown (NaN), never as 0.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd


def _num(df: pd.DataFrame, col: str) -> np.ndarray:
    """A float64 column (NaN for missing values, or all NaN when the column is absent)."""
    if col not in df.columns:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _flag(df: pd.DataFrame, col: str) -> np.ndarray:
    """A boolean column; missing values and an absent column read as False."""
    if col not in df.columns:
        return np.zeros(len(df), dtype=bool)
    s = df[col]
    if s.dtype == bool:
        return s.to_numpy()
    return s.fillna(False).astype(bool).to_numpy(dtype=bool)


def _errored(df: pd.DataFrame) -> np.ndarray:
    """True where ``error_type`` names an error (None, NaN and "" mean the cell succeeded)."""
    if "error_type" not in df.columns:
        return np.zeros(len(df), dtype=bool)
    s = df["error_type"]
    return (s.notna() & (s.fillna("").astype(str) != "")).to_numpy(dtype=bool)


def _tokens(df: pd.DataFrame, cols: Sequence[str]) -> np.ndarray:
    present = [c for c in cols if c in df.columns]
    if not present:
        return np.full(len(df), np.nan)
    return np.sum([np.nan_to_num(_num(df, c)) for c in present], axis=0)


def _list_cost(df: pd.DataFrame) -> np.ndarray:
    """Cost per cell at list price: a cache hit counts what it saved (``cost_saved_usd``) when known."""
    cost = _num(df, "cost_usd")
    if "cost_saved_usd" in df.columns:
        saved = _num(df, "cost_saved_usd")
        use = _flag(df, "from_cache") & ~np.isnan(saved)
        cost = np.where(use, saved, cost)
    return cost


def _factorize(df: pd.DataFrame, cols: Sequence[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Group codes 0..G-1 over ``cols`` (sorted by label) and a frame of the group labels."""
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"results frame lacks column(s) {missing}; it has {list(df.columns)}")
    combined = np.zeros(len(df), dtype=np.int64)
    for col in cols:
        codes, uniques = pd.factorize(df[col], sort=True, use_na_sentinel=False)
        combined = combined * max(len(uniques), 1) + codes
    codes, uniques = pd.factorize(combined, sort=True)
    first = np.zeros(len(uniques), dtype=np.int64)
    first[codes] = np.arange(len(df))  # any row of a group carries its labels
    labels = df[list(cols)].iloc[first].reset_index(drop=True)
    return codes.astype(np.int64), labels


def _stable_hash(*parts: object) -> int:
    return zlib.crc32("\x1f".join(map(str, parts)).encode())


def _rng(seed: int, *labels: object) -> np.random.Generator:
    return np.random.default_rng([int(seed), _stable_hash(*labels)])
