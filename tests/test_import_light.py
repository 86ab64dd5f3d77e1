"""``import orchestrator`` is cheap: no model, no provider module, no HTTP stack, no socket.

Each check runs in a fresh interpreter, because this test session has long since imported everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

HEAVY = (
    "xllamacpp",
    "httpx",
    "aiohttp",
    "httpx_aiohttp",
    "pandas",
    "numpy",
    "matplotlib",
    "github",
    "tomlkit",
)

# Records every socket created or connected, then imports orchestrator and reports what got loaded.
SHIM = textwrap.dedent(
    """
    import json, socket, sys
    events = []
    _init, _connect, _connect_ex = socket.socket.__init__, socket.socket.connect, socket.socket.connect_ex
    def _rec_init(self, *a, **k):
        events.append(["socket", repr(a)])
        _init(self, *a, **k)
    def _rec_connect(self, address):
        events.append(["connect", repr(address)])
        return _connect(self, address)
    def _rec_connect_ex(self, address):
        events.append(["connect_ex", repr(address)])
        return _connect_ex(self, address)
    socket.socket.__init__ = _rec_init
    socket.socket.connect = _rec_connect
    socket.socket.connect_ex = _rec_connect_ex
    _create_connection = socket.create_connection
    def _rec_create_connection(*a, **k):
        events.append(["create_connection", repr(a)])
        return _create_connection(*a, **k)
    socket.create_connection = _rec_create_connection
    before = set(sys.modules)

    import orchestrator

    report = {"modules": sorted(set(sys.modules) - before), "sockets": list(events)}
    {extra}
    print(json.dumps(report))
    """
)


def run_shim(extra: str = "", cwd: str | None = None) -> dict:
    code = SHIM.replace("{extra}", textwrap.dedent(extra).strip())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def heavy_in(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in HEAVY]


def test_import_loads_no_model_no_provider_no_http_and_opens_no_socket() -> None:
    report = run_shim()
    modules = report["modules"]
    assert "orchestrator" in modules
    assert not heavy_in(modules), heavy_in(modules)
    assert not [m for m in modules if m.startswith("orchestrator.providers")]
    assert not [m for m in modules if m.startswith("orchestrator.") and m != "orchestrator"], modules
    assert report["sockets"] == []


def test_public_names_resolve_lazily() -> None:
    report = run_shim(
        """
        loaded_before = "orchestrator.client.llm_client" in sys.modules
        cls = orchestrator.LLMClient
        report["client_loaded_before"] = loaded_before
        report["client_loaded_after"] = "orchestrator.client.llm_client" in sys.modules
        report["name"] = cls.__name__
        report["same"] = cls is sys.modules["orchestrator.client.llm_client"].LLMClient
        report["cached"] = "LLMClient" in vars(orchestrator)
        report["in_dir"] = "LLMClient" in dir(orchestrator)
        try:
            orchestrator.NoSuchThing
            report["missing"] = "no error"
        except AttributeError as exc:
            report["missing"] = str(exc)
        report["after_modules"] = sorted(sys.modules)
        report["sockets_after"] = list(events)
        """
    )
    assert report["client_loaded_before"] is False
    assert report["client_loaded_after"] is True
    assert report["name"] == "LLMClient" and report["same"] and report["cached"] and report["in_dir"]
    assert "NoSuchThing" in report["missing"]
    after = report["after_modules"]
    # The client needs its HTTP plumbing, but still no model and no provider adapter.
    assert "xllamacpp" not in after
    from orchestrator.providers import PROVIDERS

    adapters = sorted({info.module for info in PROVIDERS.values()} & set(after))
    assert adapters == [], "the client loaded a provider adapter before any call"
    assert "pandas" not in after
    assert report["sockets_after"] == []


def test_constructing_a_client_opens_nothing(tmp_path) -> None:
    """A client built on the shipped default config loads no model and makes no connection."""
    report = run_shim(
        """
        client = orchestrator.LLMClient(cache=False)
        report["models"] = client.models()
        report["after_modules"] = sorted(sys.modules)
        report["sockets_after"] = list(events)
        """,
        cwd=str(tmp_path),
    )
    assert "xllamacpp" not in report["after_modules"]
    assert "orchestrator.providers.local" not in report["after_modules"]
    assert report["sockets_after"] == []
    assert report["models"]


def test_the_shim_would_see_a_socket() -> None:
    """The detector itself works: a socket made after the import is recorded."""
    report = run_shim(
        """
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.connect_ex(("127.0.0.1", 9))
        s.close()
        report["sockets_after"] = list(events)
        """
    )
    kinds = [kind for kind, _ in report["sockets_after"]]
    assert kinds == ["socket", "connect_ex"]


# Everything `import orchestrator` may load, beyond what the interpreter already had: the package itself
# and the pieces of `typing` it names. An allowlist rather than a denylist: any new eager import (nbformat,
# pydantic, a provider module) fails this test, whatever it is.
IMPORT_ALLOWLIST = {"orchestrator", "typing", "_typing", "collections", "importlib", "types", "abc"}


def test_import_loads_only_allowlisted_modules() -> None:
    report = run_shim("report['stdlib'] = sorted(sys.stdlib_module_names)")
    loaded = report["modules"]
    unexpected = [m for m in loaded if m.split(".")[0] not in IMPORT_ALLOWLIST]
    assert not unexpected, f"import orchestrator now also loads: {unexpected}"
    assert [m for m in loaded if m.startswith("orchestrator")] == ["orchestrator"]


def test_the_allowlist_would_catch_an_eager_import(tmp_path) -> None:
    """The check itself works: a stand-in package that imports ``fractions`` eagerly is caught."""
    pkg = tmp_path / "orchestrator"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import fractions\n")
    report = run_shim(cwd=str(tmp_path))  # the working directory comes first on sys.path
    caught = [m for m in report["modules"] if m.split(".")[0] not in IMPORT_ALLOWLIST]
    assert "fractions" in caught
