"""The project as a wheel, installed into a venv of its own at another path.

A team's worker image installs recflow from a wheel (``pip wheel --no-deps``), not from a checkout:
its modules then live under that venv's ``site-packages``, not beside the run's code. Installing
every dependency again would take minutes, so the venv reaches the interpreter's own installed
packages through a ``.pth`` file listing them (after its own ``site-packages``, so the wheel's
recflow wins): the same dependency versions, the project at another path. Nothing on the venv's
``sys.path`` points at the checkout (no ``PYTHONPATH``, a cwd outside it). ``cloudpickle`` and the
rest are whatever the running interpreter has (``/tmp/cp313``-style venvs with a newer one included).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROJECT_FILES = ("pyproject.toml", "README.md", "recflow", "tasks", "flows")


def build_wheel(out: Path) -> Path:
    """``pip wheel --no-deps`` of a copy of the project's files (the checkout gets no build/ or egg-info)."""
    src = out / "src"
    src.mkdir(parents=True)
    for name in PROJECT_FILES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    wheels = out / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "--wheel-dir", str(wheels), str(src)],
        check=True,
        capture_output=True,
    )
    return next(wheels.glob("recflow-*.whl"))


def installed_package_dirs() -> list[str]:
    """The running interpreter's site-packages folders in its own order (a venv's before any it includes), never the checkout.

    A venv inside the checkout (``make``'s ``.venv``) is a site-packages folder like any other: only the
    checkout's own package folders stay out (the editable install's finder is not a path)."""
    dirs = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
    return [d for d in dict.fromkeys(dirs) if Path(d).resolve() != REPO]


def wheel_venv(folder: Path) -> Path:
    """A venv at ``folder`` with recflow installed from its wheel (``--no-deps``); returns its python."""
    wheel = build_wheel(folder / "wheel")
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True, capture_output=True, text=True)
    (Path(purelib.stdout.strip()) / "zz-recflow-dependencies.pth").write_text("\n".join(installed_package_dirs()) + "\n")
    # --force-reinstall: the checkout's editable install is visible through the .pth, with the same version
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--force-reinstall", "--quiet", str(wheel)]
    subprocess.run(pip, check=True, capture_output=True, env=clean_environment(), cwd=folder)
    return python


def clean_environment(**extra: str) -> dict[str, str]:
    """The environment of a process that must know nothing of this checkout or of a run (the run's plugin tells workers)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith(("RECFLOW_", "MLFLOW_", "PREFECT_API"))}
    return {**env, **extra}
