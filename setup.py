"""Packaging beyond pyproject.toml: the top-level catalogs (scenarios/, topologies/, ...,
listed once in simtrain/scenario/catalogs.py) stay where users read and edit them, and a
copy goes inside the package as simtrain/catalogs/<name>/ in the wheel (and beside the
package in the sdist, so a wheel built from the sdist has them too). An installed simtrain
finds them there when no checkout or user folder has them (simtrain/scenario/files.py)."""

import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
_NAMES = runpy.run_path(str(HERE / "simtrain" / "scenario" / "catalogs.py"))
CATALOGS, PACKAGED = list(_NAMES["CATALOGS"]), _NAMES["PACKAGED"]


def _present():
    return [name for name in CATALOGS if (HERE / name).is_dir()]


class BuildPyWithCatalogs(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's folders directly
        for name in _present():
            dst = Path(self.build_lib) / "simtrain" / PACKAGED / name
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(HERE / name, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


class SdistWithCatalogs(sdist):
    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        for name in _present():
            dst = Path(base_dir) / name
            if not dst.exists():
                shutil.copytree(HERE / name, dst)


setup(cmdclass={"build_py": BuildPyWithCatalogs, "sdist": SdistWithCatalogs})
