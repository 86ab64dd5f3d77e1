"""Run the README's quickstart commands exactly as written (the fenced block after '## Quickstart')."""

import re
import subprocess
import sys
import time
from pathlib import Path

readme = Path(__file__).resolve().parents[1] / "README.md"
text = readme.read_text(encoding="utf-8")
section = text.split("## Quickstart", 1)[1]
block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.DOTALL)
if not block:
    sys.exit("ci: no fenced command block after '## Quickstart' in README.md")
commands = [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]
if len(commands) != 2:
    sys.exit(f"ci: the quickstart must be exactly two commands, found {len(commands)}")
for command in commands:
    print(f"ci: $ {command}", flush=True)
    started = time.monotonic()
    code = subprocess.call(["bash", "-euo", "pipefail", "-c", command], cwd=readme.parent)
    print(f"ci: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
    if code != 0:
        sys.exit(code)
