"""Maps the three stage folders at the root onto the ``tseg`` namespace.

``runtime/`` installs as ``tseg.runtime``, ``train/`` as ``tseg.train`` and
``export/`` as ``tseg.export`` and ``benchmarks/`` (tseg-bench, a tool on top of them) as
``tseg.benchmarks``. Subpackages are discovered here, so a new folder
with an ``__init__.py`` ships without editing a list.
"""

from setuptools import find_packages, setup

STAGES = ("runtime", "train", "export", "benchmarks")


def _stage_packages() -> tuple[list[str], dict[str, str]]:
    packages, package_dir = [], {}
    for stage in STAGES:
        root = f"tseg.{stage}"
        package_dir[root] = stage
        packages.append(root)
        packages += [f"{root}.{sub}" for sub in find_packages(where=stage)]
    return packages, package_dir


packages, package_dir = _stage_packages()
setup(
    packages=packages,
    package_dir=package_dir,
    package_data={"": ["*.npz", "*.json"]},
)
