"""Prepare an environment with the official ROOT build for notebooks: the ROOT C++ kernel's spec, offline plots.

- The official ROOT build ships a kernel.json whose argv names `python3.11` (whatever is first on PATH), which in a
user's server may be another environment without ROOT. This writes <prefix>/share/jupyter/kernels/root/kernel.json
with the absolute path of the Python running it and our kernel module (singleuser.root_kernel: JupyROOT's kernel
  plus "Add to Notebook"), and copies ROOT's logos.
- With JSROOT on, JupyROOT loads JSROOT's code from public web servers when the notebook server does not serve it
  (ours does not). The official build's system.rootrc says `Jupyter.JSRoot: off`; this keeps it so (or makes it so),
  so plots are images and nothing is fetched from the internet. `%jsroot on` in a notebook still turns it on.

Run it with the ROOT environment's Python (it writes into that environment):

    <env>/bin/python -m singleuser.root_environment [--prefix <env>]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

NAME = "root"
DISPLAY_NAME = "ROOT C++"


def spec(python: str) -> dict:
    return {
        "argv": [python, "-m", "singleuser.root_kernel", "-f", "{connection_file}"],
        "display_name": DISPLAY_NAME,
        "language": "c++",
        "metadata": {"dlaas": "ROOT's JupyROOT kernel with the Rucio sidebar's Add to Notebook"},
    }


ROOTRC_OFF = "# DLaaS: plots as images, JSROOT's code would come from the web\nJupyter.JSRoot: off\n"


def root_dir() -> Path:
    """The ROOT package's directory, found without importing ROOT (slow, and noisy in an alpha build)."""
    found = importlib.util.find_spec("ROOT")
    if found is None or not found.origin:
        raise SystemExit("ROOT is not installed in this environment: `pip install root` first")
    return Path(found.origin).parent


def offline_plots(rootrc: Path) -> bool:
    """Make `Jupyter.JSRoot: off` in `rootrc` (ROOT's system.rootrc); returns whether the file changed."""
    text = rootrc.read_text()
    if re.search(r"(?m)^Jupyter\.JSRoot:", text):
        fixed = re.sub(r"(?m)^(Jupyter\.JSRoot:\s*)on\b", r"\g<1>off", text)
    else:
        fixed = text + ("" if text.endswith("\n") else "\n") + ROOTRC_OFF
    if fixed != text:
        rootrc.write_text(fixed)
    return fixed != text


def install(prefix: Path, python: str) -> Path:
    target = prefix / "share" / "jupyter" / "kernels" / NAME
    ours = root_dir() / "etc" / "notebook" / "kernels" / "root"
    target.mkdir(parents=True, exist_ok=True)
    for logo in ours.glob("logo-*.png"):
        shutil.copyfile(logo, target / logo.name)
    (target / "kernel.json").write_text(json.dumps(spec(python), indent=1) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", type=Path, default=Path(sys.prefix), help="the environment (default: this one)")
    args = parser.parse_args(argv)
    print(f"ROOT C++ kernel spec written to {install(args.prefix, sys.executable)}")
    rootrc = root_dir() / "etc" / "system.rootrc"
    print(f"{rootrc}: {'JSROOT turned off' if offline_plots(rootrc) else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
