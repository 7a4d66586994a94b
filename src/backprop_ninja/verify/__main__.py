"""``python -m backprop_ninja.verify``: verify a notebook by hand, or (``--child DIR``) be the
verifier's child."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .plan import DEFAULT_TIMEOUT


def main(argv: list[str] | None = None) -> int:
    """``python -m backprop_ninja.verify NOTEBOOK.ipynb NAME``: print the verdicts.

    (``--child DIR`` is how the verifier starts its child; not for people.)
    """
    parser = argparse.ArgumentParser(
        prog="python -m backprop_ninja.verify", description="Verify a submission's answers on fresh inputs."
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("submitted", type=Path, nargs="?")
    parser.add_argument("notebook", nargs="?", help="e.g. 1_atomic_backprop (default: the file's name)")
    parser.add_argument("--source", type=Path)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    args = parser.parse_args(argv)
    if args.child is not None:  # the untrusted child imports the child's module only
        from .child import child_main

        child_main(args.child)
        return 0
    if args.submitted is None:
        parser.error("give the submitted notebook")
    from .parent import verify_notebook

    verdicts = verify_notebook(
        args.submitted, args.notebook or args.submitted.stem, source_path=args.source, timeout=args.timeout
    )
    for grade_id, verdict in verdicts.items():
        print(f"{grade_id:16s} {verdict}")
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
