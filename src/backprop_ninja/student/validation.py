"""Validate in the student Lab reads like ``backprop-ninja check``: a Jupyter server extension.

nbgrader's Validate button posts the notebook's path to ``/assignments/validate`` and shows
the JSON answer in a dialog. nbgrader's own handler answers with every failing test cell's
source under "The following cell failed:", which tells a student nothing new. The student
Lab (``lab.py``) switches nbgrader's handler off and this extension on: the same URL (and
nbgrader's own ``/nbgrader_version``), answered by the self-check — a first line with the
count of passing tests and the points, then one line per failing test (its ❌ reason), a
cell that does not finish named as in ``check``.

The button's dialog (nbgrader's, unchanged) has fixed wording per kind of answer; the answer
always takes the "failed" form, whose text it shows as HTML, with a style that hides the
fixed "The following cell failed:" heading so the summary is the dialog's first line.
"""

from __future__ import annotations

import asyncio
import html
import json
from pathlib import Path

from .selfcheck import CELL_TIMEOUT, NotebookCheck, check_notebook

EXTENSION = "backprop_ninja.student.validation"
VALIDATE_URL = "/assignments/validate"
VERSION_URL = "/nbgrader_version"
# Hides the dialog's fixed heading ("The following cell failed:") and its empty source block.
DIALOG_STYLE = (
    "<style>#validation-message > div:first-child > p:first-child, "
    "#validation-message .bn-hidden {display: none}</style>"
)


def summary_lines(check: NotebookCheck) -> list[str]:
    """What Validate shows: the count of passing tests and the points, then each failure."""
    if check.problem:
        return [f"❌ {check.path.name}: {check.problem}"]
    passed = "✅ " if check.passed else ""
    return [passed + check.summary(), *check.failure_lines()]


def dialog_answer(lines: list[str]) -> dict:
    """The JSON Validate's dialog expects, holding ``lines``: the first one as its first line."""
    first, rest = lines[0], lines[1:]
    text = "\n".join(html.escape(line) for line in rest)
    return {
        "success": True,
        "value": {
            "failed": [
                {
                    "source": first,
                    "error": DIALOG_STYLE + text,
                    "raw_error": "\n".join(rest),
                }
            ]
        },
    }


def validate(root: Path, relative: str, timeout: float = CELL_TIMEOUT) -> dict:
    """Check the notebook at ``relative`` under the server's ``root``: the dialog's answer."""
    root = Path(root).resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        return dialog_answer([f"❌ {relative}: is outside the folder this Lab serves"])
    return dialog_answer(summary_lines(check_notebook(target, timeout)))


def handlers():
    """The (URL, handler class) pairs this extension serves (jupyter_server imported here)."""
    from jupyter_server.base.handlers import JupyterHandler
    from nbgrader.server_extensions.validate_assignment.handlers import NbGraderVersionHandler
    from tornado import web

    class ValidateHandler(JupyterHandler):
        """POST path=<notebook>: the self-check's lines, in the form Validate's dialog reads."""

        @web.authenticated
        async def post(self):
            try:
                path = self.get_argument("path")
            except web.MissingArgumentError:
                path = (self.get_json_body() or {}).get("path", "")
            root = Path(self.settings["server_root_dir"]).expanduser()
            # The check takes seconds: in a worker thread, so the server keeps answering.
            answer = await asyncio.to_thread(validate, root, path)
            self.finish(json.dumps(answer))

    return [(VALIDATE_URL, ValidateHandler), (VERSION_URL, NbGraderVersionHandler)]


def _jupyter_server_extension_points():
    return [{"module": EXTENSION}]


def _load_jupyter_server_extension(server_app) -> None:
    """Register the handlers under the server's base URL."""
    from jupyter_server.utils import url_path_join

    web_app = server_app.web_app
    base_url = web_app.settings["base_url"]
    web_app.add_handlers(".*$", [(url_path_join(base_url, url), handler) for url, handler in handlers()])
