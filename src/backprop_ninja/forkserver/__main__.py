"""``python -m backprop_ninja.forkserver SOCKET PARENT SERVED``: the server process ``start`` runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m backprop_ninja.forkserver",
        description="The grading fork server (started by the pipeline).",
    )
    parser.add_argument("socket", type=Path)
    parser.add_argument("parent", type=int, help="serve until this process is gone")
    parser.add_argument(
        "served", type=json.loads, help='{"entry_points": {...}, "preload": [...], "confined_only": false}'
    )
    args = parser.parse_args(argv)
    served = args.served
    serve(
        args.socket,
        args.parent,
        served["entry_points"],
        served["preload"],
        confined_only=served.get("confined_only", False),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
