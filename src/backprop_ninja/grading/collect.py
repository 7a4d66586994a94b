"""Collecting submissions safely: an LMS zip, or nbgrader's exchange.

``SafeExtractorPlugin`` replaces nbgrader's extractor in ``zip_collect``
(grader/nbgrader_config.py). nbgrader's own extracts whatever a zip holds; here every member
is checked *before* anything is written: no absolute or ``..`` paths, no links or special
files, no member over ``MAX_MEMBER_BYTES``, no archive over ``MAX_TOTAL_BYTES`` once
inflated, no compression ratio over ``MAX_RATIO`` (a zip bomb), nested zips checked the same
way, two levels deep at most. A bad member is skipped with a warning naming it, and the
rest is collected: one student's bad upload costs only that upload. Files beside the archives
are copied only when they are regular files.

``collect_zip`` and ``collect_exchange`` run nbgrader's ``zip_collect`` / ``collect`` with its
log in <class>/logs/collect.log (its warnings and errors are repeated on the terminal), then
print a short summary: students, notebooks, files matched under another name and files not
matched, with why (``intake.match_files``: the same matching grading uses).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from nbgrader.plugins import ExtractorPlugin, FileNameCollectorPlugin
from traitlets import Unicode

from ..course import ASSIGNMENT, MAX_NOTEBOOK_BYTES
from ..text import printable
from .classdir import Course, GradingError, grading_environment
from .exchange_owner import account_uid, planted_by
from .intake import canonical_notebook, match_files
from .lms import record_id

MAX_MEMBER_BYTES = MAX_NOTEBOOK_BYTES  # a notebook with its outputs is a few MiB at most
MAX_TOTAL_BYTES = 2 * 2**30  # a whole class's download, inflated
MAX_RATIO = 200  # notebooks compress ~5-20×; a zip bomb compresses thousands of times
MAX_DEPTH = 2  # a zip inside a zip inside the download


class UnsafeMember(ValueError):
    """Why one member of an archive is not extracted."""


def check_member(info: zipfile.ZipInfo) -> PurePosixPath:
    """The member's safe relative path, or UnsafeMember saying why it is refused."""
    name = PurePosixPath(info.filename.replace("\\", "/"))
    if name.is_absolute() or ".." in name.parts or not name.parts or ":" in name.parts[0]:
        raise UnsafeMember(f"{info.filename!r}: a path outside the archive")
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix type recorded (a plain file)
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeMember(f"{info.filename!r}: a link or special file")
    if info.file_size > MAX_MEMBER_BYTES:
        raise UnsafeMember(f"{info.filename!r}: {info.file_size} bytes, over {MAX_MEMBER_BYTES}")
    if info.file_size > MAX_RATIO * max(info.compress_size, 1) and info.file_size > 2**20:
        raise UnsafeMember(f"{info.filename!r}: compressed {info.file_size // max(info.compress_size, 1)}×")
    return name


def extract_safely(archive: zipfile.ZipFile, destination: Path, warn, depth: int = 1) -> int:
    """Extract the members of ``archive`` that pass ``check_member`` (nested zips too);
    returns the bytes written. ``warn`` receives one line per refused member."""
    written = 0
    for info in archive.infolist():
        try:
            name = check_member(info)
            if written + info.file_size > MAX_TOTAL_BYTES:
                raise UnsafeMember(f"{info.filename!r}: the archive inflates past {MAX_TOTAL_BYTES} bytes")
        except UnsafeMember as refused:
            warn(f"refused {refused}")
            continue
        if info.is_dir():
            continue
        target = destination.joinpath(*name.parts)
        data = _read_capped(archive, info)
        if data is None:
            warn(f"refused {info.filename!r}: larger than it claims")
            continue
        if name.suffix == ".zip" and depth < MAX_DEPTH:
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as inner:
                    written += extract_safely(inner, target.with_suffix(""), warn, depth + 1)
            except zipfile.BadZipFile:
                warn(f"refused {info.filename!r}: not a readable zip")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written += len(data)
    return written


def _read_capped(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes | None:
    """The member's bytes, reading no more than it declares (headers can lie)."""
    with archive.open(info) as member:
        data = member.read(info.file_size + 1)
    return data if len(data) <= info.file_size else None


class SafeExtractorPlugin(ExtractorPlugin):
    """nbgrader's extractor, with every member checked first (see the module's docstring)."""

    def extract(self, archive_path: str, extracted_path: str) -> None:
        for folder, _, files in os.walk(archive_path):
            extract_to = Path(extracted_path, os.path.relpath(folder, archive_path))
            extract_to.mkdir(parents=True, exist_ok=True)
            for file_name in files:
                path = Path(folder, file_name)
                if not stat.S_ISREG(path.lstat().st_mode):
                    self.log.warning("refused %s: a link or special file", path)
                elif path.suffix == ".zip":
                    self.log.info("Extracting from: %s", path)
                    try:
                        with zipfile.ZipFile(path) as archive:
                            extract_safely(archive, extract_to / path.stem, self.log.warning)
                    except zipfile.BadZipFile:
                        self.log.warning("refused %s: not a readable zip", path)
                elif refusal := copy_regular_file(path, extract_to / file_name):
                    self.log.warning("refused %s: %s", path, refusal)


class LmsCollectorPlugin(FileNameCollectorPlugin):
    """nbgrader's file-name collector that keeps the LMS user id (the regexp's ``user_id``):
    two LMS users with one login stay two students — the second (by user id) is collected as
    ``<login>-<user id>``, and the collection says so. With ``ids_file`` set (``collect_zip``
    sets it to <class>/lms_ids.json), every student's user id is recorded there (lms.py)."""

    ids_file = Unicode("", help="where to record each student's LMS user id (JSON)").tag(config=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.user_of_login: dict[str, str] = {}

    def collect(self, submitted_file: str) -> dict | None:
        info = super().collect(submitted_file) or self._decorated(submitted_file)
        if not info:
            return info
        user_id = info.pop("user_id", None)
        login = info["student_id"]
        if user_id is None:
            return info
        first = self.user_of_login.setdefault(login, user_id)
        if first != user_id:
            info["student_id"] = f"{login}-{user_id}"
            self.log.warning(
                "two LMS users share the login %s (user ids %s and %s): the second is collected as %s",
                login,
                first,
                user_id,
                info["student_id"],
            )
        if self.ids_file:
            record_id(Path(self.ids_file), info["student_id"], user_id, login)
        return info

    def _decorated(self, submitted_file: str) -> dict | None:
        """A Canvas-style name whose notebook part carries a decoration ("… (1)", "Copy of …",
        another case or separators): matched to the one notebook it can be, with a warning."""
        match = CANVAS_NAME.match(submitted_file)
        notebook = canonical_notebook(match.group("file")) if match else None
        if match is None or notebook is None:
            return None
        self.log.warning("collected %s as %s.ipynb", os.path.basename(submitted_file), notebook)
        return {
            "student_id": match.group("student_id"),
            "user_id": match.group("user_id"),
            "file_id": notebook,
        }


# Canvas's file names with any notebook part (LmsCollectorPlugin._decorated).
CANVAS_NAME = re.compile(
    r".*/(?P<student_id>[A-Za-z0-9][A-Za-z0-9.\-]*?)_(?:LATE_)?(?P<user_id>\d+)_\d+_(?P<file>[^/]+\.ipynb)$"
)


def copy_regular_file(source: Path, target: Path) -> str | None:
    """Copy ``source`` to ``target`` if it is a regular file of at most ``MAX_MEMBER_BYTES``;
    otherwise copy nothing and say why. The file is opened without following a link and
    checked through that descriptor, so a link swapped in after a check is never followed."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return "a link or special file"
    with os.fdopen(fd, "rb") as handle:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            return "a link or special file"
        if status.st_size > MAX_MEMBER_BYTES:
            return f"over {MAX_MEMBER_BYTES} bytes"
        with open(target, "wb") as copy:
            shutil.copyfileobj(handle, copy)
    os.utime(target, ns=(status.st_atime_ns, status.st_mtime_ns))  # the times, as the exchange had them
    return None


def vet_exchange_inbound(inbound: Path, vetted: Path, warn) -> list[str]:
    """Copy into ``vetted`` the submission folders of nbgrader's exchange ``inbound`` that are
    safe to collect: no links (a link is never followed, and is reported), only regular files,
    and — where ownership means something (the folders have different owners, as on a
    JupyterHub) — only folders owned by the student they are named after. Returns the folders
    copied. nbgrader's ``collect`` then reads the vetted copy, never the exchange itself."""
    folders = sorted(p for p in inbound.iterdir()) if inbound.is_dir() else []
    owners = {p.lstat().st_uid for p in folders}
    ownership_meaningful = owners != {os.getuid()} and len(owners) > 1
    copied = []
    for folder in folders:
        student = folder.name.split("+")[0]
        if not stat.S_ISDIR(folder.lstat().st_mode):
            warn(f"refused {folder.name}: a link or not a folder")
            continue
        planter = planted_by(folder, student)
        if planter and (ownership_meaningful or account_uid(student) is not None):
            warn(f"refused {folder.name}: owned by {planter}, not by {student} (planted by {planter})")
            continue
        for source_folder, _, files in os.walk(folder):  # never follows a link
            target_folder = vetted / os.path.relpath(source_folder, inbound)
            target_folder.mkdir(parents=True, exist_ok=True)
            for name in files:
                source = Path(source_folder, name)
                refusal = copy_regular_file(source, target_folder / name)
                if refusal:
                    warn(f"refused {source.relative_to(inbound)}: {refusal}")
        copied.append(folder.name)
    return copied


# ------------------------------------------------------------------------ the collect steps
def collect_zip(course: Course, archive: Path) -> list[str]:
    """Unpack an LMS download (see ZipCollectApp settings in grader/nbgrader_config.py) into
    submitted/<student>/backprop_ninja/ with ``nbgrader zip_collect``; returns the summary lines."""
    archive = Path(archive)
    if not archive.is_file():
        raise GradingError(f"no such file: {archive}")
    folder = course.downloaded / ASSIGNMENT / "archive"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy2(archive, folder / archive.name)
    ids = f"--LmsCollectorPlugin.ids_file={course.lms_ids}"  # the LMS user ids, for grades_canvas.csv
    _run_logged(course, "zip_collect", ASSIGNMENT, "--force", ids)
    return summary(course)


def collect_exchange(course: Course) -> list[str]:
    """``nbgrader collect``: the latest submissions from nbgrader's exchange (JupyterHub),
    read from a vetted copy of its inbound folder (``vet_exchange_inbound``); returns the
    summary lines."""
    config = course.config()
    exchange = Path(config.Exchange.root) if "root" in config.Exchange else Path("/srv/nbgrader/exchange")
    course_id = config.CourseDirectory.course_id
    course.class_dir.mkdir(parents=True, exist_ok=True)  # nbgrader opens the gradebook there
    with tempfile.TemporaryDirectory(prefix="exchange-") as vetted:
        inbound = Path(vetted, course_id, "inbound")
        inbound.mkdir(parents=True)
        vet_exchange_inbound(exchange / course_id / "inbound", inbound, _warn)
        _run_logged(course, "collect", ASSIGNMENT, "--update", f"--Exchange.root={vetted}")
    return summary(course)


def _run_logged(course: Course, *args: str) -> None:
    """The nbgrader CLI for this class, its output into <class>/logs/collect.log; its warnings
    and errors (not its INFO lines) on stderr. ``GradingError`` if it fails."""
    course.logs.mkdir(parents=True, exist_ok=True)
    log = course.logs / "collect.log"
    command = [sys.executable, "-m", "nbgrader", *args, *course.cli_overrides()]
    done = subprocess.run(
        command, cwd=course.root, env=grading_environment(), capture_output=True, text=True, errors="replace"
    )
    output = done.stdout + done.stderr
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"===== nbgrader {args[0]}\n{output}\n")
    for line in output.splitlines():
        if re.match(r"\[\w+ [^\]]*(WARNING|ERROR|CRITICAL)\]|\[(WARNING|ERROR|CRITICAL)\]", line):
            _warn(line)
    if done.returncode != 0:
        raise GradingError(f"nbgrader {args[0]} failed (its log: {log})")


def summary(course: Course) -> list[str]:
    """What the class's submitted/ holds now, as the collection's closing lines: students,
    notebooks, files matched under another name, files not matched and why, empty folders."""
    students = course.students()
    notebooks, renamed, unmatched, empty = 0, [], [], []
    for student in students:
        folder = course.submitted / student
        matching = match_files(folder)
        notebooks += len(matching.files)
        renamed += [f"{student}: {name} → {nb}.ipynb" for nb, name in matching.renamed(folder).items()]
        unmatched += [f"{student}: {name} ({why})" for name, why in matching.unmatched.items()]
        if not matching.files and not matching.unmatched:
            empty.append(student)
    lines = [f"collected: {len(students)} students, {notebooks} notebooks"]
    if renamed:
        lines.append(
            f"{len(renamed)} matched under another name (graded as the notebook): " + "; ".join(renamed)
        )
    if unmatched:
        lines.append(f"{len(unmatched)} files not matched to a notebook: " + "; ".join(unmatched))
    if empty:
        lines.append(f"{len(empty)} students with nothing submitted: " + ", ".join(empty))
    return [printable(line) for line in lines]


def _warn(line: str) -> None:
    print(f"collect: {printable(line)}", file=sys.stderr)
