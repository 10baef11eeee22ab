"""Install everything the local data lake and the test suite need, idempotently.

Run by `make up` and `make test` with the system Python (standard library only). Each step records a stamp (a hash
of its inputs) so that a re-run with nothing changed takes well under a second. As root, missing Debian packages
are installed with apt-get; otherwise the missing ones are named with the command that installs them. `--fast`
(`make test-fast`, `make lint`) installs only the main virtual environment: no system packages, Node.js or the
other environments, which only the services need.

    python3 -m devstack.bootstrap [--test | --fast]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENVS = REPO / ".venvs"
STAMPS = VENVS / ".stamps"

# Debian packages: what provides a command or file we need, for `make up` and for `make test`.
APT_UP = {
    "postgresql": "/usr/lib/postgresql/15/bin/initdb",
    "nodejs": "/usr/bin/node",
    "npm": "/usr/bin/npm",
    # XRootD origin serving the demo RSE and the XCache in front of it (network namespace via iproute2)
    "xrootd-server": "/usr/bin/xrootd",
    "xrootd-server-plugins": "/usr/share/doc/xrootd-server-plugins",
    "xrootd-client": "/usr/bin/xrdcp",
    "iproute2": "/usr/sbin/ip",
    # The local Prometheus, and node-exporter's textfile collector for the account sync's metrics
    "prometheus": "/usr/bin/prometheus",
    "prometheus-node-exporter": "/usr/bin/prometheus-node-exporter",
}
APT_TEST = {
    "chromium": "/usr/bin/chromium",  # the end-to-end tests drive it with Playwright (no browser download)
}

NODE_MAJOR_MIN = 20

RUCIO_SERVER_PACKAGES = ["rucio==41.5.1", "gunicorn", "psycopg[binary]"]
# The users' environment (the "base" profile locally; the singleuser image on Kubernetes).
# The users' servers: the project's `notebook` (JupyterHub single-user server, JupyterLab, the Rucio extension) and
# `singleuser` (rucio-clients, datalakectl) extras, as the singleuser images install them.
SINGLEUSER_EXTRAS = "notebook,singleuser"


class BootstrapError(SystemExit):
    pass


def log(msg: str) -> None:
    print(f"[bootstrap] {msg}", flush=True)


def run(cmd: list[str], **kw) -> None:
    try:
        subprocess.run(cmd, check=True, **kw)
    except FileNotFoundError:
        raise BootstrapError(f"bootstrap: `{cmd[0]}` not found; install it and re-run") from None
    except subprocess.CalledProcessError as e:
        raise BootstrapError(f"bootstrap: `{' '.join(map(str, cmd))}` failed with status {e.returncode}") from None


def digest(*parts: str | Path) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path):
            h.update(p.read_bytes() if p.exists() else b"<missing>")
        else:
            h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()


def stamped(name: str, key: str) -> bool:
    return (STAMPS / name).exists() and (STAMPS / name).read_text() == key


def stamp(name: str, key: str) -> None:
    STAMPS.mkdir(parents=True, exist_ok=True)
    (STAMPS / name).write_text(key)


def apt_install(wanted: dict[str, str]) -> None:
    missing = [pkg for pkg, path in wanted.items() if not Path(path).exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        raise BootstrapError(
            f"bootstrap: missing Debian packages {' '.join(missing)}: run `sudo apt-get install -y {' '.join(missing)}`"
        )
    log(f"apt-get install {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)


def check_node() -> None:
    node = shutil.which("node")
    if node is None:
        raise BootstrapError("bootstrap: Node.js not found: install Node.js >= 20 (e.g. `apt-get install nodejs npm`)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        major = 0
    if major < NODE_MAJOR_MIN:
        raise BootstrapError(f"bootstrap: Node.js {version} is too old: the dev IAM needs Node.js >= {NODE_MAJOR_MIN}")


def ensure_venv(path: Path) -> Path:
    python = path / "bin" / "python"
    if not python.exists():
        log(f"creating {path.relative_to(REPO)}")
        try:
            subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        except subprocess.CalledProcessError:
            shutil.rmtree(path, ignore_errors=True)
            if os.geteuid() == 0:
                apt_install({"python3-venv": "/usr/share/doc/python3-venv"})
                run([sys.executable, "-m", "venv", str(path)])
            else:
                raise BootstrapError(
                    "bootstrap: `python3 -m venv` failed: run `sudo apt-get install -y python3-venv`"
                ) from None
    return python


def pip_install(python: Path, args: list[str]) -> None:
    run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args])


def main_venv() -> None:
    key = digest(REPO / "pyproject.toml", REPO / "constraints.txt")
    if stamped("main", key) and (VENVS / "main" / "bin" / "python").exists():
        return
    python = ensure_venv(VENVS / "main")
    log("installing escape-dlaas[dev] into .venvs/main")
    pip_install(python, ["-c", str(REPO / "constraints.txt"), "-e", f"{REPO}[dev]"])
    stamp("main", key)


def rucio_venv() -> None:
    constraints = REPO / "devstack" / "rucio-constraints.txt"
    key = digest(constraints, " ".join(RUCIO_SERVER_PACKAGES))
    if stamped("rucio", key) and (VENVS / "rucio" / "bin" / "python").exists():
        return
    python = ensure_venv(VENVS / "rucio")
    log("installing the Rucio server into .venvs/rucio")
    pip_install(python, ["-c", str(constraints), *RUCIO_SERVER_PACKAGES])
    stamp("rucio", key)


def install_environment_files(prefix: Path) -> None:
    """What a DLaaS user environment carries besides packages (the images COPY the same files): Python kernels load
    the Rucio sidebar's "Add to Notebook", JupyterLab does not ask about news, `rucio` says "log in again" once the
    login has expired (the launcher, first on the servers' PATH: devstack.local_spawner)."""
    copies = {
        REPO / "singleuser" / "ipython_kernel_config.py": prefix / "etc" / "ipython" / "ipython_kernel_config.py",
        REPO / "singleuser" / "lab_overrides.json": prefix / "share/jupyter/lab/settings/overrides.d/dlaas.json",
        REPO / "singleuser" / "dask.yaml": prefix / "etc" / "dask" / "dlaas.yaml",  # Dask Gateway clients
        REPO / "singleuser" / "bin" / "rucio": prefix / "lib" / "dlaas" / "bin" / "rucio",  # singleuser.rucio_cli
    }
    for source, target in copies.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_bytes() != source.read_bytes():
            shutil.copyfile(source, target)
        if source.stat().st_mode & 0o100:
            target.chmod(0o755)


def singleuser_venv() -> None:
    constraints = REPO / "devstack" / "singleuser-constraints.txt"
    fixes = REPO / "singleuser" / "rucio_jupyterlab_fixes.py"
    key = digest(constraints, REPO / "pyproject.toml", fixes, SINGLEUSER_EXTRAS)
    python = VENVS / "singleuser" / "bin" / "python"
    if not (stamped("singleuser", key) and (VENVS / "singleuser" / "bin" / "dlaas-singleuser").exists()):
        python = ensure_venv(VENVS / "singleuser")
        log("installing JupyterLab + rucio-jupyterlab into .venvs/singleuser")
        pip_install(python, ["-c", str(constraints), "-e", f"{REPO}[{SINGLEUSER_EXTRAS}]"])
        # The fixes (docs/rucio-jupyterlab.md) go onto pristine files: reinstall the extension, then apply them.
        pip_install(python, ["--no-deps", "--force-reinstall", "-c", str(constraints), "rucio-jupyterlab"])
        run([str(python), "-m", "singleuser.rucio_jupyterlab_fixes"], stdout=subprocess.DEVNULL)
        stamp("singleuser", key)
    install_environment_files(VENVS / "singleuser")


# The "ROOT" profile's environment: the official ROOT build (PyROOT, the ROOT C++ kernel, XRootD client), uproot and
# awkward, rucio-clients; metakernel for the C++ kernel. uproot reads root:// through fsspec-xrootd and the XRootD
# Python bindings, which must be the XRootD release ROOT bundles (5.9.2 in root 0.1a12): with two XRootD clients in
# one process (6.x bindings beside ROOT's 5.9), the first root:// read after the other's crashes the kernel.
# fsspec-xrootd 0.5.1 is the last release that does not require the 6.x bindings.
KERNEL_ROOT_PACKAGES = [
    "root==0.1a12",
    "metakernel",
    "ipykernel",
    "uproot",
    "awkward",
    "numpy",
    "xrootd==5.9.2",
    "fsspec-xrootd==0.5.1",
    "rucio-clients==41.5.1",
]


def project_extra(name: str) -> list[str]:
    """The requirements of one pyproject.toml extra, for environments that install packages, not the project."""
    with open(REPO / "pyproject.toml", "rb") as f:
        return list(tomllib.load(f)["project"]["optional-dependencies"][name])


def kernel_root_venv() -> None:
    """The ROOT profile's kernels: "Python 3 (ROOT)" and "ROOT C++", with "Add to Notebook" and the demo notebooks;
    Dask (the `dask` extra) so that its notebooks start Dask Gateway clusters whose workers run this environment."""
    prefix = VENVS / "kernel-root"
    constraints = REPO / "devstack" / "kernel-root-constraints.txt"
    packages = [*KERNEL_ROOT_PACKAGES, *project_extra("dask")]
    key = digest(constraints, REPO / "pyproject.toml", " ".join(packages))
    kernels = prefix / "share" / "jupyter" / "kernels"
    python = prefix / "bin" / "python"
    if not (stamped("kernel-root", key) and (kernels / "dlaas-root").exists() and (kernels / "root").exists()):
        python = ensure_venv(prefix)
        log("installing ROOT, uproot and the ROOT kernels into .venvs/kernel-root (a 250 MB download the first time)")
        pip_install(python, ["-c", str(constraints), *packages])
        # The kernel side of "Add to Notebook" (rucio_jupyterlab.kernels.ipython needs only ipykernel) and ours
        # (singleuser.root_kernel); the server side runs in .venvs/singleuser.
        pip_install(python, ["--no-deps", "-c", str(constraints), "rucio-jupyterlab"])
        # Not its JupyterLab side: this environment's data directory is on the servers' JUPYTER_PATH, ahead of
        # .venvs/singleuser, where the served (and fixed) copy of the extension lives.
        shutil.rmtree(prefix / "share" / "jupyter" / "labextensions" / "rucio-jupyterlab", ignore_errors=True)
        (prefix / "etc" / "jupyter" / "jupyter_server_config.d" / "rucio_jupyterlab.json").unlink(missing_ok=True)
        pip_install(python, ["--no-deps", "-e", str(REPO)])
        run(
            [
                *(str(python), "-m", "ipykernel", "install", "--prefix", str(prefix)),
                *("--name", "dlaas-root", "--display-name", "Python 3 (ROOT)"),
            ],
            stdout=subprocess.DEVNULL,
        )
        run([str(python), "-m", "singleuser.root_environment", "--prefix", str(prefix)], stdout=subprocess.DEVNULL)
        stamp("kernel-root", key)
    install_environment_files(prefix)
    notebooks = prefix / "share" / "jupyter" / "dlaas" / "notebooks"
    notebooks.mkdir(parents=True, exist_ok=True)
    for source in sorted((REPO / "singleuser" / "notebooks").glob("*.ipynb")):
        if not (notebooks / source.name).exists() or (notebooks / source.name).read_bytes() != source.read_bytes():
            shutil.copyfile(source, notebooks / source.name)


def node_modules() -> None:
    lock = REPO / "devstack" / "package-lock.json"
    key = digest(lock)
    if stamped("npm", key) and (REPO / "devstack" / "node_modules").is_dir():
        return
    log("installing Node.js packages (oidc-provider, configurable-http-proxy)")
    run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=REPO / "devstack")
    stamp("npm", key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--test", action="store_true", help="also install what the test suite needs")
    mode.add_argument(
        "--fast", action="store_true", help="only the main virtual environment (unit tests, deployment checks, lint)"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.fast:
        main_venv()
        log(f"main environment ready in {time.monotonic() - started:.1f}s")
        return 0
    wanted = dict(APT_UP)
    if args.test:
        wanted.update(APT_TEST)
    apt_install(wanted)
    check_node()
    main_venv()
    rucio_venv()
    singleuser_venv()
    kernel_root_venv()
    node_modules()
    log(f"ready in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
