"""Checks that every relative link in the repository's Markdown files points at a file or folder
that exists (the CI and pre-commit link check). Exit status 1 lists the broken ones.

    python scripts/check_links.py            # every tracked *.md file
    python scripts/check_links.py FILE.md ...
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = ("benchmarks", "reranker", "tests", "docs", "scripts", "deploy", "export", "proto", "dashboards", "data", "studies")
PATH = re.compile(r"`((?:" + "|".join(TOP) + r")/[^`\s]*)`")
"""A repository path quoted in backticks (checked from the repository root)."""
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")


def broken_links(path: Path) -> list[str]:
    """``FILE:LINE: target`` of each relative link of ``path`` (and each backticked repository path,
    e.g. `benchmarks/latency.py`) whose target does not exist."""
    out = []
    in_code = False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        for match in LINK.finditer(line):
            target = (match.group(1) or match.group(2) or "").split("#", 1)[0]
            if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target):  # an anchor, or a URL with a scheme
                continue
            if not (path.parent / target).exists():
                out.append(f"{path.relative_to(ROOT)}:{n}: {target}")
        for match in PATH.finditer(line):
            quoted = match.group(1).split("::", 1)[0].rstrip(".,:;")
            if any(c in quoted for c in "<*{$") or not quoted.replace("/", "").replace(".", "").strip():
                continue  # a pattern or a placeholder, not a path
            if not (ROOT / quoted).exists():
                out.append(f"{path.relative_to(ROOT)}:{n}: `{quoted}`")
    return out


def main(argv: list[str]) -> int:
    files = [Path(a).resolve() for a in argv] or [
        ROOT / f
        for f in subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    ]
    broken = [b for f in files if f.is_file() for b in broken_links(f)]
    for b in broken:
        print(f"broken link: {b}")
    print(f"{len(files)} Markdown files, {len(broken)} broken links")
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
