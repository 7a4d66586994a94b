"""The wheel's build step: the four student notebooks and a verified names.txt go into the
wheel as package data (``backprop_ninja/bundled/``). The notebooks are generated from
solutions/ by nbgrader into build/release (``generate_release``), so that whatever notebooks/
holds in this checkout (answers typed into `make lab`) never reaches the wheel; only where
nbgrader is not installed (an isolated build from a git clone) are the committed notebooks/
packed. names.txt is never committed: it comes
from data/names.txt when ``make data`` has put it there, else it is downloaded, and either way
its sha256 is checked (``backprop_ninja.resources.bundle_into``). Everything else about the
package is in pyproject.toml."""

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))

from backprop_ninja.resources import bundle_into, generate_release  # noqa: E402  (torch-free)


class BuildWithCourseFiles(build_py):
    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):  # an editable install reads the checkout
            release = generate_release(ROOT, Path(self.build_lib).parent / "release")
            if release is None:
                print("nbgrader is not installed: packing the committed notebooks/", file=sys.stderr)
            bundle_into(Path(self.build_lib) / "backprop_ninja" / "bundled", ROOT, release=release)


setup(cmdclass={"build_py": BuildWithCourseFiles})
