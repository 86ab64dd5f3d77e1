"""Write winners into ``[routing]`` of orchestrator.toml: every other byte kept, no concurrent edit lost.

:func:`routing_entry` turns a selection into the table written (with its provenance); :func:`write_routing`
splices it into the file (see its docstring for what is guaranteed against editors working at the same time).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

from .select import MANAGED_KEYS, RoutingError, Selection


def _round_sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def routing_entry(
    selection: Selection | Mapping[str, Any], provenance: Mapping[str, Any] | None = None
) -> dict:
    """The ``[routing.<mode>]`` table for a selection (or a ready routing dict), with its provenance."""
    prov = dict(provenance or {})
    when = prov.get("date") or date.today()
    if isinstance(when, str):
        when = date.fromisoformat(when)
    if isinstance(selection, Selection):
        entry: dict[str, Any] = {"primary": selection.model}
        if selection.prompt is not None:
            entry["prompt"] = selection.prompt
            if selection.prompt_version:
                entry["prompt_version"] = selection.prompt_version
        entry |= {
            "fallbacks": list(selection.fallbacks),
            "objective": selection.objective,
            "reason": " ".join(selection.reason.split()),
        }
        for key in ("run_id", "dataset", "split"):
            if prov.get(key) is not None:
                entry[key] = str(prov[key])
        entry["score"] = round(selection.score, 4)
        entry["ci"] = [round(selection.ci[0], 4), round(selection.ci[1], 4)]
        if selection.cost_per_issue is not None and not math.isnan(selection.cost_per_issue):
            entry["cost_per_issue"] = _round_sig(selection.cost_per_issue)
        entry["n"] = int(selection.n)
        entry["date"] = when
        if selection.cascade:
            entry["cascade"] = dict(selection.cascade)
        return entry
    entry = dict(selection)
    if not entry.get("primary") and not entry.get("cascade"):
        raise RoutingError(f"a routing entry needs primary = MODEL (or a cascade); got {entry!r}")
    entry.setdefault("fallbacks", [])
    for key in ("run_id", "dataset", "split"):
        if prov.get(key) is not None:
            entry.setdefault(key, str(prov[key]))
    if provenance is not None:
        entry.setdefault("date", when)
    return entry


_KEY = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_HEADER = re.compile(rf"^[ \t]*\[\[?[ \t]*({_KEY})(?:[ \t]*\.[ \t]*{_KEY})*[ \t]*\]\]?[ \t]*(?:#.*)?$")


def _unquote(key: str) -> str:
    if key.startswith('"'):
        return json.loads(key)
    if key.startswith("'"):
        return key[1:-1]
    return key


def _headers(lines: list[str]) -> list[tuple[int, str]]:
    """(line index, first key of the header) for every table header outside multi-line strings."""
    out: list[tuple[int, str]] = []
    in_string: str | None = None
    for i, line in enumerate(lines):
        if in_string is not None:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        m = _HEADER.match(line.rstrip("\r\n"))
        if m:
            out.append((i, _unquote(m.group(1))))
            continue
        if line.lstrip().startswith("#"):
            continue
        for delim in ('"""', "'''"):
            if line.count(delim) % 2 == 1:
                in_string = delim
                break
    return out


def _is_blank_or_comment(line: str) -> bool:
    s = line.strip()
    return not s or s.startswith("#")


def _plain(value: Any) -> Any:
    return value.unwrap() if hasattr(value, "unwrap") else value


def _render(old_text: str, entries: Mapping[str, Mapping[str, Any]], path: Path) -> str:
    """``old_text`` with the ``[routing]`` tables for ``entries`` set; every byte outside them kept."""
    import tomlkit
    from tomlkit.items import InlineTable, Table

    lines = old_text.splitlines(keepends=True)
    heads = _headers(lines)
    routing_at = [i for i, (_, key) in enumerate(heads) if key == "routing"]
    if not routing_at:
        if "routing" in tomllib.loads(old_text):
            raise RoutingError(
                f"{path}: routing is written as dotted keys or an inline table; rewrite it as "
                "[routing.<mode>] tables so it can be updated in place"
            )
        start = end = core_end = len(lines)
        region = ""
    else:
        first, last = routing_at[0], routing_at[-1]
        if last - first + 1 != len(routing_at):
            raise RoutingError(
                f"{path}: the [routing] tables are not one block (another table sits between them); "
                "move them together so they can be rewritten without touching the rest"
            )
        start = heads[first][0]
        end = heads[last + 1][0] if last + 1 < len(heads) else len(lines)
        core_end = end
        while core_end > start + 1 and _is_blank_or_comment(lines[core_end - 1]):
            core_end -= 1
        region = "".join(lines[start:core_end])
    doc = tomlkit.parse(region)
    if "routing" not in doc:
        doc.add("routing", tomlkit.table())
    routing = doc["routing"]
    for mode, entry in entries.items():
        current = routing.get(mode)
        if isinstance(current, Table):
            for key in MANAGED_KEYS:
                if key in current and key not in entry:
                    del current[key]
            for key, value in entry.items():
                if key in current and _plain(current[key]) == value:
                    continue
                current[key] = value
            continue
        if isinstance(current, InlineTable) or current is not None:
            del routing[mode]
        table = tomlkit.table()
        for key, value in entry.items():
            table.add(key, value)
        routing.add(mode, table)
    new_region = tomlkit.dumps(doc)
    if new_region and not new_region.endswith(("\n", "\r\n")):
        new_region += "\n"
    head = "".join(lines[:start])
    if not routing_at and head:
        if not head.endswith(("\n", "\r\n")):
            head += "\n"
        if not head.endswith(("\n\n", "\r\n\r\n")):
            head += "\n"
    return head + new_region + "".join(lines[core_end:end]) + "".join(lines[end:])


def _check_config(new_text: str, old_text: str, entries: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    """Refuse to write a file that does not load, changes anything outside [routing], or routes to a model
    the config does not define."""
    from ..config import config_from_dict

    try:
        new = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError as exc:  # pragma: no cover - a bug here, never the user's input
        raise RoutingError(f"{path}: the rewritten routing does not parse ({exc}); nothing written") from None
    old = tomllib.loads(old_text)
    if {k: v for k, v in new.items() if k != "routing"} != {k: v for k, v in old.items() if k != "routing"}:
        raise RoutingError(f"{path}: rewriting [routing] would change other tables; nothing written")
    cfg = config_from_dict(new, path)
    unknown = []
    for mode, entry in entries.items():
        named = [entry.get("primary"), *entry.get("fallbacks", [])]
        cascade = entry.get("cascade")
        if isinstance(cascade, Mapping):
            named += list(cascade.get("models", []))
        unknown += [f"{m} ({mode})" for m in named if m and m not in cfg.models]
    if unknown:
        raise RoutingError(
            f"{path}: routing names models the config does not define: {', '.join(unknown)}; add them under "
            "[models] first (nothing written)"
        )


def write_routing(
    config_path: str | os.PathLike[str],
    selections: Mapping[str, Selection | Mapping[str, Any]],
    provenance: Mapping[str, Any] | None = None,
    write: bool = False,
) -> str:
    """Set ``[routing.<mode>]`` for each selection in the config file; return the unified diff of the file.

    Only the routing tables change (round-tripped with tomlkit, so comments, order and every other byte
    stay; keys of a mode table that are not routing's own, such as a hand-written cascade, are kept).
    ``provenance``: ``run_id``, ``dataset``, ``split`` and ``date`` (default today). Nothing is written
    unless ``write``; then the file is replaced atomically (temporary file, same mode). An empty diff
    means the routing is already as selected.

    Concurrent edits: just before replacing, the file is compared with what was spliced from and spliced
    again if it changed (10 attempts, then a RoutingError: being edited, nothing written). On Linux the new
    file is swapped in with ``renameat2(RENAME_EXCHANGE)``; the file swapped out is deleted only once no
    process has it open for writing (a read lease) and it equals what was spliced from, else it is swapped
    back, and if ours was edited meanwhile too both are kept (the user's in place, ours as
    ``<name>.routing-conflict``, named in the RoutingError). So no save by rename and no in-place write is
    lost. Limits: where leases are unavailable (file of another owner, hard-linked, some filesystems) an
    in-place writer that opened the file before the swap is waited for only 5 ms; without renameat2 a write
    between the last compare and ``os.replace`` is lost; an editor saving what it read before our write
    drops the routing (never the reverse).
    """
    import logging
    import random
    import time

    path = Path(config_path)
    if not path.is_file():
        raise RoutingError(f"config file not found: {path}")
    from ..config import MODES

    entries = {}
    for mode, sel in selections.items():
        if mode not in MODES:
            raise RoutingError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
        entries[mode] = routing_entry(sel, provenance)
    log = logging.getLogger("orchestrator")
    written = ""  # the diff once our version has been swapped in
    for attempt in range(_WRITE_ATTEMPTS + 1):
        old_bytes = path.read_bytes()
        old_text = old_bytes.decode("utf-8")
        new_text = _render(old_text, entries, path)
        _check_config(new_text, old_text, entries, path)
        if new_text == old_text:  # as selected (after our write: kept by whoever saved since)
            return written
        diff = "".join(
            difflib.unified_diff(
                old_text.splitlines(keepends=True),
                new_text.splitlines(keepends=True),
                fromfile=f"a/{path.name}",
                tofile=f"b/{path.name}",
            )
        )
        if not write:
            return diff
        if attempt == _WRITE_ATTEMPTS:
            break
        new_bytes = new_text.encode("utf-8")
        if _atomic_write(path, new_bytes, old_bytes):
            if path.read_bytes() == new_bytes:
                return diff
            written = diff  # saved over since: splice again unless that save kept the routing
            log.debug("%s was saved over right after the routing was written; checking it", path)
            continue
        log.debug("%s changed while the routing was written; retrying (attempt %d)", path, attempt + 2)
        time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # jitter: out of step with a periodic writer
    raise RoutingError(
        f"{path} kept changing while the routing was written ({_WRITE_ATTEMPTS} attempts): it is being "
        "edited, so nothing was written; save or close it and run again"
    )


_WRITE_ATTEMPTS = 10
# Writers that opened the old file just before the swap get this long to reach it before the first check.
_SETTLE = 0.005
# How long a process may keep the swapped-out file open for writing before we give up and swap it back.
_QUIET_TIMEOUT = 0.25


def _atomic_write(path: Path, data: bytes, expected: bytes) -> bool:
    """Replace ``path`` with ``data`` if it still holds ``expected``; False (nothing replaced) if it changed.

    Raises RoutingError when the file changed under the swap and our version was edited too: the user's
    version stays at ``path`` and ours is kept beside it."""
    mode = stat.S_IMODE(path.stat().st_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    disposable = True  # False while tmp may hold the user's content: then it is never deleted
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        renameat2 = _renameat2()
        if path.read_bytes() != expected:
            return False
        if renameat2 is None or not _exchange(renameat2, tmp, path):
            os.replace(tmp, path)  # the compare above is the only guard here
            return True
        disposable = False
        # tmp now holds what was at path: the quick look catches a rename-save at once, the settled one a
        # write through a descriptor opened before the swap.
        swapped = Path(tmp).read_bytes()
        if swapped == expected:
            theirs, quiet = _read_settled(tmp)
            if quiet and theirs == expected:
                disposable = True
                return True
        if not _exchange(renameat2, tmp, path):  # pragma: no cover - it worked a moment ago
            raise OSError(f"cannot swap {tmp} back to {path}")
        ours, quiet = _read_settled(tmp)  # edits made to our version while it was in place
        # An editor that read our version while it was in place may have saved that copy over theirs,
        # now back at path: their last save would then be gone. Keep it when any of its lines is missing.
        theirs_kept = _keep_bytes_beside(swapped, path) if _lines_missing(swapped, path) else None
        if quiet and ours == data and theirs_kept is None:
            disposable = True
            return False
        if quiet and ours == data:
            disposable = True
            raise RoutingError(
                f"{path} was saved over, while the routing was written, with a copy of the routing's version: "
                f"the edits saved just before it are kept at {theirs_kept}; merge them by hand, then run again"
            )
        kept = _keep_beside(tmp, path)
        also = f"; the edits saved just before it are kept at {theirs_kept}" if theirs_kept else ""
        raise RoutingError(
            f"{path} was edited while the routing was written, and so was the routing's version: yours is "
            f"at {path}, the routing's (with any edits made to it meanwhile) is at {kept}{also}; "
            "merge them by hand, or delete it and run again"
        )
    finally:
        if disposable:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        elif os.path.exists(tmp):  # interrupted mid-swap: keep what may be the user's content
            _keep_beside(tmp, path)


def _renameat2() -> Any:
    """libc's ``renameat2`` (glibc >= 2.28), or None where there is none."""
    import ctypes
    import sys

    if sys.platform != "linux":
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange(renameat2: Any, a: str | Path, b: str | Path) -> bool:
    """Swap the files at ``a`` and ``b`` atomically; False if the kernel or filesystem cannot."""
    import ctypes
    import errno

    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _read_settled(path: str) -> tuple[bytes, bool]:
    """The bytes of a file nobody can open by name any more, once no process has it open for writing, and
    whether it got there: False if one still had it open after the timeout (where leases are unavailable,
    only the settle delay is waited)."""
    import time

    deadline = time.monotonic() + _QUIET_TIMEOUT
    time.sleep(_SETTLE)
    while True:
        fd = os.open(path, os.O_RDONLY)
        try:
            busy = _no_writers(fd) is False
        finally:
            os.close(fd)
        if not busy or time.monotonic() >= deadline:
            return Path(path).read_bytes(), not busy
        time.sleep(0.001)


def _no_writers(fd: int) -> bool | None:
    """Whether no process has the file open for writing (a read lease is granted only then); None where
    leases are unavailable. The lease is dropped at once: its break would signal this process."""
    try:
        import fcntl

        setlease, rdlck, unlck = fcntl.F_SETLEASE, fcntl.F_RDLCK, fcntl.F_UNLCK
    except (ImportError, AttributeError):
        return None
    if os.fstat(fd).st_nlink != 1:  # reachable under another name: a writer opening it would break the lease
        return None
    try:
        fcntl.fcntl(fd, setlease, rdlck)
    except BlockingIOError:
        return False
    except OSError:  # not the owner, or the filesystem has no leases
        return None
    fcntl.fcntl(fd, setlease, unlck)
    return True


def _lines_missing(saved: bytes, path: Path) -> bool:
    """Whether the file at ``path`` lacks a line of ``saved`` (counting repeats): a save was overwritten."""
    from collections import Counter

    try:
        now = path.read_bytes()
    except OSError:
        return True
    if now == saved:
        return False
    have = Counter(now.splitlines())
    return any(have[line] < n for line, n in Counter(saved.splitlines()).items())


def _keep_bytes_beside(content: bytes, path: Path) -> Path:
    """Write ``content`` to a new ``<path>.routing-conflict`` file (see :func:`_keep_beside`)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".kept")
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)
    return _keep_beside(tmp, path)


def _keep_beside(tmp: str, path: Path) -> Path:
    """Move ``tmp`` to ``<path>.routing-conflict`` (or ``.1``, ``.2``... : an earlier one is never overwritten)."""
    for i in range(1000):
        kept = path.with_name(f"{path.name}.routing-conflict" + (f".{i}" if i else ""))
        try:
            os.link(tmp, kept)
        except FileExistsError:
            continue
        except OSError:  # no hard links here
            if kept.exists():
                continue
            os.rename(tmp, kept)
            return kept
        os.unlink(tmp)
        return kept
    raise RoutingError(f"{path}: too many .routing-conflict files beside it; remove them")  # pragma: no cover
