"""Fitted models as plain data: one ``.npz`` of numeric and byte arrays plus a JSON header, never pickle.

A shared ``ORCHESTRATOR_HOME`` must not be able to run code in whoever loads from it, so nothing here goes
through pickle: :func:`load_plain` opens the file with ``allow_pickle=False`` (an object array is refused),
checks the header's format and kind, and checks every array it needs for dtype and rank. Any problem is a
:class:`PlainDataError` naming the file and what is wrong.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OrchestratorError

if TYPE_CHECKING:
    import numpy as np

FORMAT = "orchestrator-plain-1"
_HEADER = "header"


class PlainDataError(OrchestratorError, ValueError):
    """A stored model or router cannot be loaded: the file, and what is wrong with it."""


def encode_lines(items: list[str]) -> np.ndarray:
    """Strings (no newline in any) as one uint8 array: a vocabulary of 10^5 terms stays a few MB."""
    import numpy as np

    if any("\n" in s for s in items):
        raise ValueError("encode_lines: a string contains a newline")
    return np.frombuffer("\n".join(items).encode("utf-8", "surrogatepass"), dtype=np.uint8)


def decode_lines(data: np.ndarray) -> list[str]:
    text = data.tobytes().decode("utf-8", "surrogatepass")
    return text.split("\n") if text else []


def encode_json(value: Any) -> np.ndarray:
    import numpy as np

    return np.frombuffer(json.dumps(value, sort_keys=True).encode("utf-8"), dtype=np.uint8)


def save_plain(path: Path, kind: str, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` and a JSON header (``kind``, ``meta``) to ``path`` atomically."""
    import numpy as np

    if _HEADER in arrays:
        raise ValueError(f"save_plain: {_HEADER!r} is reserved")
    path.parent.mkdir(parents=True, exist_ok=True)
    header = encode_json({"format": FORMAT, "kind": kind, "meta": dict(meta)})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **{_HEADER: header}, **dict(arrays))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_plain(
    path: Path,
    kind: str,
    required: Mapping[str, tuple[str, int]] | Callable[[dict[str, Any]], Mapping[str, tuple[str, int]]],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(meta, arrays) of a file written by :func:`save_plain` with this ``kind``.

    ``required`` maps each array name to (dtype kind, rank): ``("f", 2)`` a float matrix, ``("u", 1)``
    bytes, ``("i", 1)`` integers; or is a function of the header's meta that returns that mapping.
    Nothing in the file is executed: object arrays are refused."""
    import numpy as np

    def bad(what: str) -> PlainDataError:
        return PlainDataError(f"{path}: not a usable {kind} file: {what}; delete it to refit")

    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise PlainDataError(f"{path}: no such file") from None
    except ValueError as exc:  # numpy refuses an object (pickled) array without allow_pickle
        raise bad(f"it holds a pickled array, which is never loaded ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise bad(f"{type(exc).__name__}: {exc}") from None
    if _HEADER not in arrays:
        raise bad("no header")
    try:
        header = json.loads(arrays.pop(_HEADER).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad(f"the header is not JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise bad(f"format is not {FORMAT!r}")
    if header.get("kind") != kind:
        raise bad(f"it holds a {header.get('kind')!r}")
    meta = header.get("meta")
    if not isinstance(meta, dict):
        raise bad("the header has no meta object")
    if callable(required):
        try:
            required = required(meta)
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"its header is incomplete ({exc})") from None
    for name, (dtype_kind, rank) in required.items():
        arr = arrays.get(name)
        if arr is None:
            raise bad(f"array {name!r} is missing")
        if arr.dtype.kind != dtype_kind or arr.ndim != rank:
            raise bad(
                f"array {name!r} is {arr.dtype} of rank {arr.ndim}, expected kind {dtype_kind!r} rank {rank}"
            )
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise bad(f"array {name!r} holds NaN or infinity")
    return meta, arrays
