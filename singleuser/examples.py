"""Put the environment's example notebooks into the user's home, so the file browser opens them on first start.

An environment ships its examples in <data dir>/dlaas/notebooks (any Jupyter data directory: the ROOT image's
/usr/local/share/jupyter, locally the ROOT profile's kernel path, contract.KERNEL_PATH). Each is copied into
~/examples when no file of that name is there: a user's edits are never overwritten, and examples an image adds
later still arrive.
"""

from __future__ import annotations

import shutil
from pathlib import Path

FOLDER = "examples"


def shipped() -> list[Path]:
    """The example notebooks of this environment, first data directory first (a name is taken once)."""
    from jupyter_core.paths import jupyter_path

    found: dict[str, Path] = {}
    for directory in jupyter_path("dlaas", "notebooks"):
        for notebook in sorted(Path(directory).glob("*.ipynb")):
            found.setdefault(notebook.name, notebook)
    return list(found.values())


def install(home: str | Path, notebooks: list[Path]) -> list[Path]:
    """Copy the notebooks missing from <home>/examples; returns those copied."""
    target = Path(home) / FOLDER
    copied = []
    for notebook in notebooks:
        destination = target / notebook.name
        if destination.exists() or destination.is_symlink():
            continue
        target.mkdir(mode=0o755, exist_ok=True)
        shutil.copyfile(notebook, destination)
        copied.append(destination)
    return copied
