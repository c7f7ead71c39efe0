"""Pin an AMI in a stack file: `python scripts/pin_ami.py Pulumi.prod.yaml ami-0123...`.

Used by .github/workflows/ami-update.yml. Standard library only: the line `cali-housing:ami: <id>`
is replaced, or added under `config:` when the stack has none. Prints `changed` or `unchanged`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

KEY = "cali-housing:ami"
_AMI = re.compile(r"^ami-[0-9a-f]{8,17}$")
_LINE = re.compile(rf"^(\s*){re.escape(KEY)}:.*$", re.MULTILINE)


def pin(text: str, ami: str) -> str:
    """The stack file's text with `ami` pinned.

    Raises:
        ValueError: `ami` is not an AMI id, or the file has no `config:` section.
    """
    if not _AMI.match(ami):
        raise ValueError(f"not an AMI id: {ami!r}")
    if _LINE.search(text):
        return _LINE.sub(lambda m: f"{m.group(1)}{KEY}: {ami}", text, count=1)
    if not re.search(r"^config:\s*$", text, re.MULTILINE):
        raise ValueError("the stack file has no config: section")
    return re.sub(r"^config:\s*$", f"config:\n  {KEY}: {ami}", text, count=1, flags=re.MULTILINE)


def main(argv: list[str]) -> int:
    """Pin argv[1] in the file argv[0]; exit 2 on bad input."""
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, ami = Path(argv[0]), argv[1].strip()
    try:
        before = path.read_text(encoding="utf-8")
        after = pin(before, ami)
    except (OSError, ValueError) as err:
        print(f"pin_ami: {err}", file=sys.stderr)
        return 2
    if after != before:
        path.write_text(after, encoding="utf-8")
    print("changed" if after != before else "unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
