"""Reports: run ``notebooks/benchmark.ipynb`` with papermill, render it to a standalone, shareable HTML page.

- The kernel is this very interpreter (``sys.executable``: the venv's python), whatever kernelspecs are
  installed for the user; nothing is registered anywhere.
- The kernel gets ``ORCHESTRATOR_PROGRESS=text``: the grid's progress is a text bar (in the executed
  notebook and streamed to the terminal), never a widget, which a static page cannot show.
- The page stands alone and offline: no require.js, MathJax, mermaid or widget scripts, no external URL;
  plots are embedded PNGs.
- Reports are shared: every HTML output and Markdown cell is sanitized (nbconvert's ``sanitize_html``,
  with an allowlist that keeps tables and headings), JavaScript outputs are dropped, absolute local paths
  are replaced by project-relative ones, and anything that looks like a key is redacted.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import OrchestratorError

NOTEBOOK = Path("notebooks") / "benchmark.ipynb"
KERNEL_ENV = {"ORCHESTRATOR_PROGRESS": "text"}
HIDE_CELL_TAG = "report-hide"  # a cell left out of the HTML report
HIDE_OUTPUT_TAG = "report-hide-output"  # a cell whose outputs are left out (e.g. the progress bar)
WIDGET_MIMES = ("application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json")


class ReportError(OrchestratorError):
    """The report could not be produced; the message says why and what to do."""


# ------------------------------------------------------------------------------------------ notebook


def find_notebook(name: str | os.PathLike[str] = NOTEBOOK, root: Path | None = None) -> Path:
    """The notebook ``name`` (e.g. ``notebooks/benchmark.ipynb``) of the project.

    Looked up relative to the project root (the config file's folder), then the working directory and its
    parents, then where :mod:`orchestrator.resources` finds the shipped files: the source checkout the
    package is imported from (an editable install) or the copy inside an installed wheel. In git there is
    one copy, in ``notebooks/``; nothing is generated."""
    from .resources import shipped_root

    rel = Path(name)
    if rel.is_absolute():
        if rel.is_file():
            return rel
        raise ReportError(f"notebook not found: {rel}")
    tried: list[Path] = []
    bases: list[Path] = []
    if root is not None:
        bases.append(Path(root))
    here = Path.cwd().resolve()
    bases += [here, *here.parents]
    shipped = shipped_root()
    if shipped is not None:
        bases.append(shipped)
    for base in dict.fromkeys(bases):
        candidate = base / rel
        tried.append(candidate)
        if candidate.is_file():
            return candidate.resolve()
    raise ReportError(
        f"{rel.as_posix()} not found (looked in the project folder, the working directory and its parents, "
        f"and the files shipped with the package). Run `orchestrator bench` from the project folder (the one "
        f"with orchestrator.toml and notebooks/), or pass --notebook PATH."
    )


def _kernel_manager_class(log: Path | None = None) -> type:
    """An AsyncKernelManager whose kernel is ``sys.executable -m ipykernel_launcher`` (ipykernel's native
    kernelspec), with :data:`KERNEL_ENV` in its environment. Nothing is installed or registered.

    With ``log``, the kernel process's own stderr (its log, not the cells' output, which papermill streams)
    goes to that file: when the run is interrupted, the kernel's complaints about its closed sockets land
    there instead of as a 40-line traceback on the terminal."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    class VenvKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            if log is None:
                await super()._async_launch_kernel(kernel_cmd, **kw)
                return
            with open(log, "ab") as handle:  # the child gets its own descriptor at launch
                kw.setdefault("stderr", handle)
                await super()._async_launch_kernel(kernel_cmd, **kw)

        @property
        def kernel_spec(self) -> KernelSpec:
            if self._kernel_spec is None:
                from ipykernel.kernelspec import RESOURCES, get_kernel_dict

                spec = get_kernel_dict()
                # this interpreter; kernel-app warnings off (the TCP-without-encryption notice on loopback)
                spec["argv"] = [sys.executable, *spec["argv"][1:], "--IPKernelApp.log_level=ERROR"]
                spec["env"] = {**spec.get("env", {}), **KERNEL_ENV}
                self._kernel_spec = KernelSpec(resource_dir=RESOURCES, **spec)
            return self._kernel_spec

    return VenvKernelManager


def execute_notebook(
    notebook: str | os.PathLike[str],
    output: str | os.PathLike[str],
    parameters: Mapping[str, Any],
    *,
    cwd: str | os.PathLike[str],
    stream: Any = None,
    timeout: float | None = None,
) -> Any:
    """Execute ``notebook`` with papermill (parameters injected after the ``parameters`` cell) into ``output``
    with the kernel in ``cwd``. Kernel stdout/stderr (the progress bar) go to ``stream`` when given.
    Returns the executed notebook node; papermill's PapermillExecutionError propagates."""
    import papermill as pm

    Path(output).parent.mkdir(parents=True, exist_ok=True)
    log = Path(output).with_suffix(".kernel.log")
    try:
        return pm.execute_notebook(
            str(notebook),
            str(output),
            parameters=dict(parameters),
            cwd=str(cwd),
            kernel_name="python3",
            language="python",
            progress_bar=False,
            log_output=False,
            stdout_file=stream,
            stderr_file=stream,
            execution_timeout=timeout,
            kernel_manager_class=_kernel_manager_class(log),
        )
    finally:
        with contextlib.suppress(OSError):
            if log.stat().st_size == 0:
                log.unlink()  # kept only when the kernel had something to say


# --------------------------------------------------------------------------------------------- scrub


def _replacements(roots: Mapping[str, Path | str | None]) -> list[tuple[str, str]]:
    pairs: dict[str, str] = {}
    for label, path in roots.items():
        if not path:
            continue
        p = str(Path(path))
        if len(p) > 1:
            pairs.setdefault(p, label)
            try:
                pairs.setdefault(str(Path(path).resolve()), label)
            except OSError:
                pass
    return sorted(pairs.items(), key=lambda kv: -len(kv[0]))


def scrub_text(text: str, replacements: list[tuple[str, str]]) -> str:
    """Absolute paths → labels (project root → relative, home → "~", ...), then redact anything key-shaped."""
    from .errors import redact

    for old, new in replacements:
        if old in text:
            pattern = re.compile(re.escape(old) + r"(/|(?![\w.-]))")
            text = pattern.sub(
                lambda m, new=new: ("" if new == "." else new + "/") if m.group(1) else new, text
            )
    return redact(text)


def scrub_notebook(
    nb: Any, replacements: list[tuple[str, str]], *, labels: Mapping[str, str] | None = None
) -> Any:
    """Scrub every string of an executed notebook (sources, text outputs, metadata; images untouched), drop
    widget views and state, and set papermill's input/output paths to ``labels``."""
    from .errors import redact_env_secrets

    redact_env_secrets()

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return scrub_text(value, replacements)
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return type(value)({k: (v if _is_binary(k) else walk(v)) for k, v in value.items()})
        return value

    for cell in nb.cells:
        cell["source"] = walk(cell.get("source", ""))
        cell["metadata"] = walk(cell.get("metadata", {}))
        outputs = []
        for out in cell.get("outputs", []):
            data = out.get("data")
            if data is not None:
                for mime in WIDGET_MIMES:
                    data.pop(mime, None)
                if not data:
                    continue
            outputs.append(walk(out))
        if cell.get("cell_type") == "code":
            cell["outputs"] = outputs
    nb.metadata.pop("widgets", None)
    nb.metadata = walk(nb.metadata)
    pm_meta = nb.metadata.get("papermill")
    if pm_meta is not None and labels:
        pm_meta.update(labels)
    return nb


def _is_binary(key: str) -> bool:
    return key.startswith("image/") and key != "image/svg+xml"


# ---------------------------------------------------------------------------------------------- HTML

_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{#- Standalone: no require.js, MathJax, mermaid or widget scripts (they load from CDNs). -#}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
<meta name="generator" content="orchestrator bench">
<style type="text/css">{{ resources.orchestrator_css }}</style>
{%- endblock extra_css -%}
{%- block data_javascript scoped -%}{%- endblock data_javascript -%}
{%- block data_widget_view scoped -%}{%- endblock data_widget_view -%}
{%- block data_png scoped -%}
<div class="jp-RenderedImage jp-OutputArea-output {{ extra_class }}">
<img src="data:image/png;base64,{{ output.data['image/png'] | escape_html }}" alt="{{ (output.metadata.get('orchestrator', {}).get('alt') or 'figure') | escape_html }}">
</div>
{%- endblock data_png -%}
{%- block footer -%}
{{ super() }}
{%- endblock footer -%}
"""

_PAGE_CSS = """
body.jp-Notebook { background: #fff; }
main { max-width: 1280px; margin: 0 auto; padding: 16px 28px 48px; }
.jp-Cell { padding: 2px 0; }
.jp-OutputArea-output img { max-width: 100%; height: auto; }
/* nbconvert lays an output out as a table cell (a table row under 760 px) inside a box that hides its
   overflow, so a wide table was clipped on a phone; as a flex item that may shrink, it scrolls instead */
body .jp-OutputArea-child { display: flex; width: 100%; overflow: visible; }
body .jp-OutputArea-child .jp-OutputArea-output { display: block; flex: 1 1 auto; min-width: 0;
  overflow-x: auto; margin-left: 0; }
.jp-RenderedHTMLCommon table.orc-table { font-size: 0.92em; }
.jp-RenderedHTMLCommon .orc-table td, .jp-RenderedHTMLCommon .orc-table th { text-align: left; }
.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"] { background: #f6f8fa; }
.jp-RenderedMarkdown h2 { border-bottom: 1px solid #e1e4e8; padding-bottom: 4px; margin-top: 1.4em; }
.orc-toc { border: 1px solid #e1e4e8; border-radius: 6px; padding: 8px 14px; margin: 8px 0 16px; font-size: 0.95em; }
.orc-toc ol { margin: 4px 0 0; padding-left: 1.4em; columns: 2 16em; }
"""

# HTML the report keeps (everything else is escaped): text structure, tables, and the <style> blocks that
# pandas Styler emits (their CSS is checked: no url(), @import or expressions).
_ALLOWED_TAGS = {
    "a",
    "abbr",
    "b",
    "blockquote",
    "br",
    "caption",
    "code",
    "col",
    "colgroup",
    "dd",
    "del",
    "details",
    "div",
    "dl",
    "dt",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "kbd",
    "li",
    "ol",
    "p",
    "pre",
    "s",
    "samp",
    "small",
    "span",
    "strong",
    "style",
    "sub",
    "summary",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "u",
    "ul",
}
_ALLOWED_ATTRS = {
    "*": ["class", "id", "title"],
    "a": ["href", "title", "class", "id"],
    "td": ["class", "id", "colspan", "rowspan"],
    "th": ["class", "id", "colspan", "rowspan", "scope"],
    "style": ["type"],
    "table": ["class", "id", "border"],
}
_UNSAFE_CSS = re.compile(r"url\s*\(|@import|expression\s*\(|javascript:|behavior\s*:|-moz-binding|</", re.I)
_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style>", re.I | re.S)


def clean_report_html(element: Any) -> str:
    """nbconvert's ``clean_html`` for reports: bleach with a table-aware allowlist; CSS blocks only when
    harmless; links only to http(s), mailto and in-page anchors."""
    import bleach

    text = element.decode() if isinstance(element, bytes) else str(element)
    text = _STYLE_BLOCK.sub(lambda m: m.group(0) if not _UNSAFE_CSS.search(m.group(1)) else "", text)
    return bleach.clean(
        text,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRS,
        protocols={"http", "https", "mailto"},
        strip=False,
        strip_comments=True,
    )


def html_exporter(*, with_code: bool = False) -> Any:
    """The HTMLExporter of reports: code hidden unless ``with_code``, sanitized, standalone."""
    import jinja2
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({"orchestrator_report.html.j2": _TEMPLATE})],
        template_file="orchestrator_report.html.j2",
        exclude_input=not with_code,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        sanitize_html=True,
        filters={"clean_html": clean_report_html},
        mathjax_url="",
        require_js_url="",
        embed_images=True,
    )
    exporter.register_preprocessor(
        TagRemovePreprocessor(
            remove_cell_tags={HIDE_CELL_TAG}, remove_all_outputs_tags={HIDE_OUTPUT_TAG}, enabled=True
        ),
        enabled=True,
    )
    return exporter


def render_html(nb: Any, html_path: str | os.PathLike[str], *, title: str, with_code: bool = False) -> Path:
    """Render an executed (and scrubbed) notebook to a standalone HTML page."""
    from .workbench.html import CSS

    exporter = html_exporter(with_code=with_code)
    resources = {"metadata": {"name": title}, "orchestrator_css": CSS + _PAGE_CSS}
    body, _ = exporter.from_notebook_node(copy.deepcopy(nb), resources=resources)
    body = with_contents(body)
    out = Path(html_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body, encoding="utf-8")
    return out


_H2 = re.compile(r'<h2 id="([^"]+)">(.*?)<a class="anchor-link"', re.S)
_TAGS = re.compile(r"<[^>]+>")


def with_contents(page: str) -> str:
    """The page with a table of contents of its sections (the notebook's ``##`` headings, which nbconvert
    gives ids) at the top of ``<main>``: plain links, no script."""
    import html as html_lib

    sections = [(anchor, _TAGS.sub("", text).strip()) for anchor, text in _H2.findall(page)]
    if len(sections) < 2 or "<main>" not in page:
        return page
    items = "".join(
        f'<li><a href="#{html_lib.escape(html_lib.unescape(anchor), quote=True)}">{html_lib.escape(html_lib.unescape(text))}</a></li>'
        for anchor, text in sections
    )
    nav = f'<nav class="orc-toc" aria-label="Contents"><b>Contents</b><ol>{items}</ol></nav>'
    return page.replace("<main>", "<main>" + nav, 1)


# --------------------------------------------------------------------------------------------- bench


def parse_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value: a Python literal (3, 0.5, None, True, "x", [..]) or else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


@dataclass
class BenchReport:
    run_id: str
    notebook: Path
    html: Path
    wall_s: float
    parameters: dict[str, Any]
    root: Path


def bench(
    *,
    parameters: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    config: str | os.PathLike[str] | None = None,
    output_dir: str | os.PathLike[str] = "reports",
    with_code: bool = False,
    notebook: str | os.PathLike[str] | None = None,
    stream: Any = None,
    timeout: float | None = None,
) -> BenchReport:
    """Execute the benchmark notebook into ``<output_dir>/<run_id>.ipynb`` and render ``<run_id>.html``.

    The run id is made here (and passed in), the kernel runs in the project root (the config's folder), and
    paths in ``parameters`` (dataset, config) are passed relative to it where they lie inside it."""
    from .config import find_config_path
    from .paths import project_root, resolve_path
    from .resources import is_default_config
    from .runs.plan import new_run_id

    cfg_path = find_config_path(config)
    root = project_root(_PathConfig(cfg_path))
    from .cli.args import check_run_id

    params = dict(parameters or {})
    run_id = check_run_id(str(run_id or params.get("run_id") or new_run_id()))  # it names two files
    params["run_id"] = run_id
    if not is_default_config(cfg_path):
        params.setdefault("config", _relative_to(cfg_path, root))
    if params.get("dataset"):
        params["dataset"] = _relative_to(resolve_path(params["dataset"], root), root)
    nb_path = find_notebook(notebook or NOTEBOOK, root)
    out_dir = Path(output_dir)
    ipynb, html_path = out_dir / f"{run_id}.ipynb", out_dir / f"{run_id}.html"
    started = time.perf_counter()
    try:
        nb = execute_notebook(nb_path, ipynb, params, cwd=root, stream=stream, timeout=timeout)
    except Exception as exc:
        from .errors import redact

        failed = ipynb if ipynb.exists() else None
        if failed is not None:  # keep the partial notebook, scrubbed
            _scrub_file(failed, nb_path, root, ipynb)
        raise ReportError(
            f"the benchmark notebook failed: {redact(_first_line(exc))}"
            + (f"; the partial notebook is {_display(failed)}" if failed else "")
        ) from exc
    wall = time.perf_counter() - started
    nb = _scrub_file(ipynb, nb_path, root, ipynb)
    render_html(nb, html_path, title=f"Benchmark report {run_id}", with_code=with_code)
    return BenchReport(
        run_id=run_id, notebook=ipynb, html=html_path, wall_s=wall, parameters=params, root=root
    )


class _PathConfig:
    """Just enough of a Config for workbench.project_root."""

    def __init__(self, path: Path) -> None:
        self.path = path


def _relative_to(path: Path | str, root: Path) -> str:
    p = Path(path).resolve()
    try:
        return p.relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(p)


def _display(path: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def _first_line(exc: BaseException) -> str:
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"[:400]
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:400]


def _scrub_file(ipynb: Path, nb_path: Path, root: Path, out: Path) -> Any:
    import nbformat

    nb = nbformat.read(str(ipynb), as_version=4)
    source_root = nb_path.resolve().parent.parent
    replacements = _replacements(
        {
            ".": root,
            "<notebooks>": source_root if source_root != root.resolve() else None,
            "<cwd>": Path.cwd() if Path.cwd().resolve() != root.resolve() else None,
            "<python>": Path(sys.prefix),
            "<python-base>": Path(sys.base_prefix),
            "~": Path.home(),
        }
    )
    labels = {"input_path": _nb_label(nb_path, root), "output_path": _display_rel(out)}
    scrub_notebook(nb, replacements, labels=labels)
    nbformat.write(nb, str(ipynb))
    return nb


def _nb_label(nb_path: Path, root: Path) -> str:
    p = nb_path.resolve()
    for base in (root, p.parent.parent):
        try:
            return p.relative_to(Path(base).resolve()).as_posix()
        except ValueError:
            continue
    return p.name


def _display_rel(path: Path) -> str:
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    return _display(p)
