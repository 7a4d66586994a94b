"""Collecting an LMS zip safely: a bad member costs only itself, never the class."""

from __future__ import annotations

import io
import os
import shutil
import stat
import zipfile
from pathlib import Path

from backprop_ninja.course import NOTEBOOKS, REPO_ROOT
from backprop_ninja.grading import Course
from backprop_ninja.grading.collect import MAX_MEMBER_BYTES, collect_exchange, collect_zip, extract_safely
from backprop_ninja.grading.intake import read_submission, submitted_notebooks
from backprop_ninja.grading.preflight import covered

NB1, NB2 = NOTEBOOKS[:2]


def link_member(name: str, target: str) -> tuple[zipfile.ZipInfo, str]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


def bomb_bytes() -> bytes:
    """A small zip that inflates to 64 MiB of zeros."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as inner:
        inner.writestr("mallory_1003_555009_1_atomic_backprop.ipynb", b"\0" * (64 * 2**20))
    return buffer.getvalue()


def test_bad_members_are_refused_and_the_rest_is_extracted(tmp_path):
    archive_path = tmp_path / "class.zip"
    with zipfile.ZipFile(archive_path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("alice_1001_555001_1_atomic_backprop.ipynb", "{}")
        zf.writestr("../../escaped.ipynb", "{}")  # zip-slip
        zf.writestr("/etc/cron.d/evil", "{}")  # absolute
        zf.writestr(*link_member("bob_1002_555002_1_atomic_backprop.ipynb", "/work/solutions"))
        zf.writestr("nested.zip", bomb_bytes())  # a bomb inside a zip
    warnings: list[str] = []
    out = tmp_path / "out"
    with zipfile.ZipFile(archive_path) as zf:
        extract_safely(zf, out, warnings.append)
    extracted = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert extracted == ["alice_1001_555001_1_atomic_backprop.ipynb"]
    assert not (tmp_path / "escaped.ipynb").exists()
    assert len(warnings) == 4
    assert all(w.startswith("refused ") for w in warnings)
    assert any("outside the archive" in w for w in warnings)
    assert any("link" in w for w in warnings)
    assert any("compressed" in w or str(MAX_MEMBER_BYTES) in w for w in warnings)


def test_a_bad_upload_costs_only_its_student(course_root):
    course = Course.load(root=course_root)
    archive = course_root / "download.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("alice_1001_555001_1_atomic_backprop.ipynb", "{}")
        zf.writestr("../carol_1004_555004_1_atomic_backprop.ipynb", "{}")
        zf.writestr(*link_member("bob_1002_555002_2_fused_cross_entropy.ipynb", "/etc/passwd"))
        zf.writestr("dave_1005_555005_2_fused_cross_entropy.ipynb", "{}")
    collect_zip(course, archive)
    assert course.students() == ["alice", "dave"]
    assert not any(Path(course_root).parent.rglob("carol*"))


def test_two_lms_users_with_one_login_stay_two_students(course_root, capfd):
    course = Course.load(root=course_root)
    archive = course_root / "download.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("smithj_1001_555001_1_atomic_backprop.ipynb", '{"who": "first"}')
        zf.writestr("smithj_2002_555002_1_atomic_backprop.ipynb", '{"who": "second"}')
    collect_zip(course, archive)
    students = course.students()
    assert len(students) == 2
    assert "smithj" in students
    other = next(s for s in students if s != "smithj")
    assert other in ("smithj-1001", "smithj-2002")
    contents = {course.submitted_notebook(s, NB1).read_text() for s in students}
    assert contents == {'{"who": "first"}', '{"who": "second"}'}
    assert "two LMS users share the login smithj" in capfd.readouterr().err


def inbound_folder(inbound: Path, student: str, content: str, owner: str | None = None) -> Path:
    stamp = "2026-01-01 10:00:00.000000 UTC"
    folder = inbound / f"{student}+backprop_ninja+{stamp}"
    folder.mkdir(parents=True)
    (folder / f"{NB1}.ipynb").write_text(content)
    (folder / "timestamp.txt").write_text(stamp)
    if owner is not None:
        shutil.chown(folder, owner)
    return folder


def test_the_exchange_is_collected_without_links_or_foreign_folders(course_root, monkeypatch, capfd):
    exchange = course_root.parent / "exchange"
    inbound = exchange / "backprop_ninja" / "inbound"
    inbound_folder(inbound, "nobody", "nobody's own", owner="nobody")
    daemons = inbound_folder(inbound, "daemon", "daemon's own", owner="daemon")
    with open(daemons / "huge.bin", "wb") as huge:
        huge.truncate(MAX_MEMBER_BYTES + 1)  # sparse: no disk spent here, a copy would spend it
    os.mkfifo(daemons / "pipe")  # a reader that opened it blocking would wait forever
    inbound_folder(inbound, "mallory", "planted by daemon", owner="daemon")  # not mallory's folder
    linked = inbound_folder(inbound, "root", "", owner="root") / f"{NB1}.ipynb"
    linked.unlink()
    linked.symlink_to(REPO_ROOT / "solutions" / "backprop_ninja" / f"{NB1}.ipynb")  # "my" notebook
    monkeypatch.setenv("BACKPROP_NINJA_EXCHANGE", str(exchange))
    course = Course.load(root=course_root)
    collect_exchange(course)
    assert "mallory" not in course.students()
    assert not course.submitted_notebook("root", NB1).exists()  # the link was not followed
    assert course.submitted_notebook("nobody", NB1).read_text() == "nobody's own"
    assert course.submitted_notebook("daemon", NB1).read_text() == "daemon's own"
    err = capfd.readouterr().err
    assert "refused mallory+backprop_ninja" in err
    assert "owned by daemon, not by mallory" in err
    assert "a link or special file" in err
    assert f"refused {daemons.name}/huge.bin: over {MAX_MEMBER_BYTES} bytes" in err
    assert f"refused {daemons.name}/pipe: a link or special file" in err
    assert not list(course.submitted.rglob("huge.bin"))
    assert not list(course.submitted.rglob("pipe"))


def test_an_oversized_notebook_is_refused_at_grading_without_being_read(course_root):
    course = Course.load(root=course_root)
    oversized = course.submitted_notebook("hoarder", NB1)
    oversized.parent.mkdir(parents=True)
    with open(oversized, "wb") as handle:
        handle.truncate(MAX_MEMBER_BYTES + 1)
    course.submitted_notebook("hoarder", NB2).write_text("{}")
    files, refused = read_submission(course, "hoarder")
    assert files == {NB2: b"{}"}
    assert list(refused) == [NB1]
    assert "over 32 MiB" in refused[NB1]
    assert "clear its outputs" in refused[NB1]


def test_a_zip_with_decorated_names_is_collected_under_the_notebooks_names(course_root, capfd):
    """A browser's second download, a "Copy of" and another case still find their notebook;
    nbgrader's INFO lines go to the log, the terminal gets its warnings and a summary."""
    course = Course.load(root=course_root)
    archive = course_root / "download.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("smithalice_1001_555001_1_atomic_backprop (1).ipynb", "{}")
        zf.writestr("jonesbob_1002_555002_Copy of 2_Fused_Cross_Entropy.ipynb", "{}")
        zf.writestr("jonesbob_1002_555003_my_notes.ipynb", "{}")
    lines = collect_zip(course, archive)
    assert course.submitted_notebooks("smithalice") == [NB1]
    assert course.submitted_notebooks("jonesbob") == [NB2]
    assert lines[0] == "collected: 2 students, 2 notebooks"
    out, err = capfd.readouterr()
    assert "INFO" not in out + err
    assert "collected 1_atomic_backprop (1)" not in out
    assert "Copy of 2_Fused_Cross_Entropy.ipynb as 2_fused_cross_entropy.ipynb" in err  # a warning
    assert "INFO" in (course.logs / "collect.log").read_text()


def test_a_run_proves_the_grader_on_the_notebooks_its_students_handed_in(course_root):
    """The preflight proves the model answers of what the run grades: a notebook handed in
    under a decorated name or as a link counts (it is graded, or refused, by name); a
    notebook nobody handed in does not."""
    course = Course.load(root=course_root)
    one = course.submitted / "ann" / "backprop_ninja"
    one.mkdir(parents=True)
    (one / f"{NOTEBOOKS[1]}.ipynb").write_text("{}")
    other = course.submitted / "bo"
    other.mkdir(parents=True)
    (other / f"Copy of {NOTEBOOKS[2]} (1).ipynb").write_text("{}")
    (other / "notes.ipynb").write_text("{}")
    linked = course.submitted / "cy" / "backprop_ninja"
    linked.mkdir(parents=True)
    (linked / f"{NOTEBOOKS[0]}.ipynb").symlink_to("/etc/passwd")
    assert submitted_notebooks(course, ["ann"]) == {NOTEBOOKS[1]}
    assert submitted_notebooks(course, ["ann", "bo", "cy"]) == {NOTEBOOKS[0], NOTEBOOKS[1], NOTEBOOKS[2]}
    (course.submitted / "dee").mkdir()
    assert submitted_notebooks(course, ["dee"]) == set()


def test_a_proof_of_more_notebooks_covers_a_run_of_fewer_never_the_reverse():
    key = ("release", "sandboxed")
    proofs = {(key, frozenset(NOTEBOOKS))}
    assert covered(proofs, key, frozenset(NOTEBOOKS[1:2]))
    assert not covered(proofs, ("release", "not sandboxed"), frozenset(NOTEBOOKS[1:2]))
    assert not covered({(key, frozenset(NOTEBOOKS[1:2]))}, key, frozenset(NOTEBOOKS[1:3]))
