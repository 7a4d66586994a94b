"""The hub's parts without a hub (fast): the roster, each role's Lab config, the exchange's
ownership check with real accounts (``nobody``, ``daemon``), the exchange's permissions."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from backprop_ninja.grading.exchange_owner import planted_by
from backprop_ninja.hub.accounts import Person, close_course_files, read_roster
from backprop_ninja.hub.exchange import prepare_exchange
from backprop_ninja.hub.labs import INSTRUCTOR, STUDENT, lab_files

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


def test_a_roster_reads_logins_and_roles_and_refuses_a_bad_login(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("username,first_name,last_name,role\nann,Ann,A,\ntia,Tia,T,Instructor\n")
    assert read_roster(roster) == [Person("ann", STUDENT, "Ann", "A"), Person("tia", INSTRUCTOR, "Tia", "T")]
    roster.write_text("username\n../etc\n")
    with pytest.raises(ValueError, match="is not a Unix login"):
        read_roster(roster)
    roster.write_text("username,role\nann,admin\n")
    with pytest.raises(ValueError, match="neither student nor instructor"):
        read_roster(roster)


def test_a_student_lab_has_the_assignment_list_and_none_of_the_instructors_tools():
    files = lab_files(STUDENT, Path("/srv/exchange"))
    server = json.loads(files["jupyter_server_config.json"])["ServerApp"]["jpserver_extensions"]
    assert server["nbgrader.server_extensions.formgrader"] is False
    assert server["nbgrader.server_extensions.assignment_list"] is True
    disabled = json.loads(files["labconfig/page_config.json"])["disabledExtensions"]
    assert disabled["@jupyter/nbgrader:formgrader"]
    assert disabled["@jupyter/nbgrader:create-assignment"]
    assert "@jupyter/nbgrader:menu" not in disabled  # the menu opens the Assignment List
    nbgrader = json.loads(files["nbgrader_config.json"])
    assert nbgrader == {
        "CourseDirectory": {"course_id": "backprop_ninja"},
        "Exchange": {"root": "/srv/exchange"},
    }
    teacher = lab_files(INSTRUCTOR, Path("/srv/exchange"))
    server = json.loads(teacher["jupyter_server_config.json"])["ServerApp"]["jpserver_extensions"]
    assert server["nbgrader.server_extensions.formgrader"] is True
    assert "grader/nbgrader_config.py" in teacher["nbgrader_config.py"]


@root_only
def test_a_folder_is_a_students_only_if_all_of_it_is_theirs(tmp_path):
    own = tmp_path / "nobody+backprop_ninja+1"
    own.mkdir()
    (own / "nb.ipynb").write_text("{}")
    shutil.chown(own, "nobody")
    shutil.chown(own / "nb.ipynb", "nobody")
    assert planted_by(own, "nobody") is None
    shutil.chown(own / "nb.ipynb", "daemon")  # a file slipped into someone's folder
    assert planted_by(own, "nobody") == "daemon"
    planted = tmp_path / "nobody+backprop_ninja+2"
    planted.mkdir()
    shutil.chown(planted, "daemon")
    assert planted_by(planted, "nobody") == "daemon"


@root_only
def test_the_exchange_root_lets_everyone_in_and_no_one_remove_others_files(tmp_path):
    course = prepare_exchange(tmp_path / "exchange")
    mode = (tmp_path / "exchange").stat().st_mode
    assert stat.S_IMODE(mode) == 0o1777
    assert course == tmp_path / "exchange" / "backprop_ninja"


@root_only
def test_the_solutions_are_closed_to_everyone_but_root_and_instructors(tmp_path):
    (tmp_path / "solutions" / "backprop_ninja").mkdir(parents=True)
    answer = tmp_path / "solutions" / "backprop_ninja" / "nb.ipynb"
    answer.write_text("{}")
    (tmp_path / "notebooks").mkdir()
    assert close_course_files(tmp_path, ("solutions", "grader/class")) == [tmp_path / "solutions"]
    for path in (tmp_path / "solutions", answer):
        assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0
        assert path.group() == "backprop-ninja-instructors"
    assert (
        stat.S_IMODE((tmp_path / "notebooks").stat().st_mode) & 0o005 == 0o005
    )  # the students' own stay open


def test_the_way_to_the_labs_python_is_opened_for_entering_only(tmp_path):
    """A checkout in a 0700 folder (``mktemp -d``, Debian's /root): the hub lets other users
    enter each folder on the way to the venv's Python, and list or read none of them."""
    from backprop_ninja.hub.__main__ import closed_folders, open_the_way

    closed = tmp_path / "closed"
    python = closed / "course" / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    closed.chmod(0o700)
    assert closed in closed_folders(python)
    opened = open_the_way(python)
    assert closed in opened
    assert closed_folders(python) == []
    assert closed.stat().st_mode & 0o777 == 0o701  # enter, not list
