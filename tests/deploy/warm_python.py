"""Run the deployment checks' helper scripts (hub_effective.py, hub_config_check.py, user_pods.py) in a warm Python.

Each of those scripts loads a configuration into a real JupyterHub in a process of its own, so that one check's
configuration, environment and imports never leak into the next. Importing JupyterHub is most of their time (about
2.5 s of a 3 s run on the 2-core machine, some thirty runs per session), and it is the same every time: so a
multiprocessing fork server imports it once, and each run is a fresh child forked from it, with its own environment,
working directory, argv and output files, that runs the script as `python SCRIPT ARGS` would (`__main__`). The child
is a new process as before; only the import of JupyterHub's modules is shared, before any configuration is read.
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import subprocess
import sys
import tempfile
from pathlib import Path

#: Imported once by the fork server: nothing of a check's configuration is read when these are imported.
PRELOAD = ["jupyterhub.app", "tests.deploy.warm_python"]

_context = None


def _forkserver():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def run_script(script: Path, args: list[str], *, env: dict[str, str], cwd: Path, timeout: float = 300):
    """`python SCRIPT ARGS` in a child of the warm fork server; returns a subprocess.CompletedProcess."""
    with tempfile.TemporaryDirectory(prefix="dlaas-warm-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        child = _forkserver().Process(
            target=_run, args=(str(script), [str(a) for a in args], dict(env), str(cwd), str(out), str(err))
        )
        child.start()
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired([str(script), *args], timeout)
        read = lambda p: p.read_text(errors="replace") if p.exists() else ""  # noqa: E731
        return subprocess.CompletedProcess([str(script), *args], child.exitcode, read(out), read(err))


def _run(script: str, args: list[str], env: dict[str, str], cwd: str, out: str, err: str) -> None:
    """In the child: become `python script args` with `env` in `cwd`, output into the two files."""
    for fd, path in ((1, out), (2, err)):
        file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(file, fd)
        os.close(file)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the process's own stdout, closed at exit
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [script, *args]
    sys.path[0:0] = [str(Path(script).resolve().parent)]
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        if isinstance(e.code, int) or e.code is None:
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
