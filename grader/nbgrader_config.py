"""nbgrader configuration of the Backprop Ninja course.

Reached through the Makefile (`--NbGrader.config_file=grader/nbgrader_config.py`), because
nbgrader ignores `--config`.
"""

from pathlib import Path

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

REPO = Path(__file__).resolve().parent.parent

c.CourseDirectory.root = str(REPO)
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.course_id = "backprop_ninja"
