"""robench installed like a library (#11): everything it reads at run time ships in the wheel.

The fast test compares ``[tool.setuptools.package-data]`` with the files under the package; the slow
one builds a wheel, installs it into a fresh virtual environment and runs the quick start from a folder
that is not a checkout, on both embedded sets (mnist5k and mnist's test split).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "robench"


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def _data_files(folder: Path) -> list[str]:
    return [
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]


@pytest.mark.parametrize(("package", "folder"), [("robench", "robench"), ("robench.configs", "configs")])
def test_package_data_globs_cover_every_data_file(package, folder):
    """A file the package reads but pyproject does not list would exist in a checkout and be missing
    from the wheel: every non-Python file under the package's folder must match a glob, and every glob a
    file. The top-level configs/ is the package robench.configs (pyproject's package-dir mapping)."""
    setup = _setuptools()
    assert setup["package-dir"].get(package, folder) == folder
    globs = setup["package-data"][package]
    files = _data_files(REPO / folder)
    assert files
    assert [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs)] == []
    assert [g for g in globs if not any(fnmatch.fnmatch(f, g) for f in files)] == []


def test_every_package_is_listed():
    """The package list is explicit (find cannot see the mapped configs/): a new room must be added."""
    found = {".".join(p.relative_to(REPO).parts[:-1]) for p in PACKAGE.rglob("__init__.py")}
    assert set(_setuptools()["packages"]) == found | {"robench.configs"}


def _fresh_venv(tmp_path: Path) -> Path:
    """A new virtual environment that sees this interpreter's third-party packages (torch, timm, ...)
    through a .pth path entry, but not robench: a path line adds the folder to sys.path without running
    the editable install's finder that lives there."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    import torch

    site = Path(torch.__file__).resolve().parent.parent
    (next((venv / "lib").glob("python*")) / "site-packages" / "deps.pth").write_text(f"{site}\n")
    return venv


@pytest.mark.slow
def test_wheel_runs_the_quick_start_outside_a_checkout(tmp_path):
    source = tmp_path / "src"  # build from a copy: setuptools leaves build/ and *.egg-info in the tree
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for folder in ("robench", "configs"):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", str(source), "-w", str(wheels)],
        check=True,
        capture_output=True,
    )
    venv = _fresh_venv(tmp_path)
    python = venv / "bin" / "python"
    wheel = next(wheels.glob("robench-*.whl"))
    subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ROBENCH_CONFIGS")}
    env["ROBENCH_DATA"] = str(tmp_path / "no-data")  # both embedded sets: nothing read or fetched there
    for dataset in ("mnist5k", "mnist"):
        run = subprocess.run(
            [
                str(venv / "bin" / "robench"),
                "eval",
                "--model",
                "mnist_cnn_standard",
                "--dataset",
                dataset,
                "--threat",
                "clean",
                "--n-examples",
                "50",
                "--runs",
                "runs",
                "--json",
            ],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stderr
        record = json.loads(run.stdout)
        assert record["n_examples"] == 50 and record["clean_acc"] > 0.9
        assert (work / "runs" / dataset / "mnist_cnn_standard" / "clean.json").is_file()
    assert not (tmp_path / "no-data").exists()
    where = subprocess.run(
        [str(python), "-c", "import robench; print(robench.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(venv))  # the wheel ran, not this checkout
    shipped = subprocess.run(
        [str(python), "-c", "from robench.core import config; print(config.BUILTIN)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert shipped == str(Path(where).parent / "configs")  # the wheel's own copy of configs/
