"""``python -m backprop_ninja.integrity NOTEBOOK [SOURCE]``: print a submission's findings."""

from __future__ import annotations

import json
from pathlib import Path

from .impact import summary
from .scan import scan_notebook


def main(argv: list[str] | None = None) -> int:
    """``python -m backprop_ninja.integrity SUBMITTED.ipynb [SOURCE.ipynb]``: print the findings."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m backprop_ninja.integrity",
        description="Static integrity scan of a submitted notebook.",
    )
    parser.add_argument("submitted", type=Path)
    parser.add_argument("source", type=Path, nargs="?")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    args = parser.parse_args(argv)
    findings = scan_notebook(args.submitted, args.source)
    if args.json:
        print(json.dumps([f.__dict__ for f in findings], indent=1, ensure_ascii=False))
    else:
        print(summary(findings) or "no findings")
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
