"""The wheel's build step: the four student notebooks and a verified names.txt go into the
wheel as package data (``backprop_ninja/bundled/``). names.txt is never committed: it comes
from data/names.txt when ``make data`` has put it there, else it is downloaded, and either way
its sha256 is checked (``backprop_ninja.resources.bundle_into``). Everything else about the
package is in pyproject.toml."""

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))

from backprop_ninja.resources import bundle_into  # noqa: E402  (torch-free)


class BuildWithCourseFiles(build_py):
    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):  # an editable install reads the checkout
            bundle_into(Path(self.build_lib) / "backprop_ninja" / "bundled", ROOT)


setup(cmdclass={"build_py": BuildWithCourseFiles})
