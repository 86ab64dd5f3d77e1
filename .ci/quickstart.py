"""The README's quickstart commands (the fenced block after '## Quickstart'), exactly as written.

    python3 .ci/quickstart.py run 1              # run the first command (setup and the main job)
    python3 .ci/quickstart.py check 2 "CMD"      # fail unless the second command is CMD, word for word
"""

import re
import subprocess
import sys
import time
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def commands() -> list[str]:
    section = README.read_text(encoding="utf-8").split("## Quickstart", 1)[1]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.DOTALL)
    if not block:
        sys.exit("ci: no fenced command block after '## Quickstart' in README.md")
    found = [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]
    if len(found) != 2:
        sys.exit(f"ci: the quickstart must be exactly two commands, found {len(found)}")
    return found


def main() -> None:
    action, index = sys.argv[1], int(sys.argv[2]) - 1
    command = commands()[index]
    if action == "check":
        if sys.argv[3] != command:
            sys.exit(f"ci: .ci/run runs {sys.argv[3]!r} but the README says {command!r}")
        return
    print(f"ci: $ {command}", flush=True)
    started = time.monotonic()
    code = subprocess.call(["bash", "-euo", "pipefail", "-c", command], cwd=README.parent)
    print(f"ci: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
