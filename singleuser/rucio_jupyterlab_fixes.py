"""Small fixes to rucio-jupyterlab 41.0.0, applied to the installed package when an environment is built.

Each fix is an exact text replacement in one installed file, made only if that file still has the text it replaces,
so a new upstream release that changed the file stops the build with one line instead of being patched blindly.
Running it again changes nothing. docs/rucio-jupyterlab.md describes each problem for upstream, with the diff.

- first-fetch: the first expansion of a collection whose replicas are not cached yet is answered "Fetching replica
  information..." at once and the fetch runs in the background; the sidebar asks again only at its next poll, up to
  10 s later, and longer when the extension's four fetch threads are busy. The request now waits for the fetch (the
  one in flight, if any) for up to 10 s before it answers.
- no-instance-needed: GET /rucio-jupyterlab/file-browser (lists the home directory) and POST .../purge-cache (the
  Settings tab's "Purge cache") need no Rucio instance and the panel sends none, but the handlers' base class
  demanded one: four "400 Missing Rucio instance" on every page load, and a purge button that always failed.
- no-font-import: the panel's CSS imports the icon font from a public font service (a request leaving the network
  on every page load); the font is installed locally by singleuser.icon_font.
- no-upload-tab: the panel's upload tab lists upload jobs, but 41.0.0 registers no command that starts one, and on
  DLaaS users do not register replicas themselves (datalakectl and the registration service do): a tab that could
  only ever say "You do not have upload jobs." is removed.
- request-timeout: the extension calls Rucio without a timeout, so a Rucio that accepts connections and never
  answers (frozen, overloaded) leaves the sidebar's spinner turning for ever. Each call now waits at most 10 s to
  connect and the hub's `DataLakeEnvironment.rucio_timeout` seconds (default 60, contract.RUCIO_TIMEOUT) for
  Rucio's answer; then the sidebar says Rucio is not answering (singleuser.rucio_unreachable).

    python -m singleuser.rucio_jupyterlab_fixes [--check] [--diff]
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from singleuser import contract

VERSION = "41.0.0"


@dataclass(frozen=True)
class Fix:
    name: str
    path: str  # "python:<path in the package>" or "lab:<path in the labextension directory>"
    old: str
    new: str


_WAIT_INSERT = (
    "        # If nothing is cached, start the fetch (or join the one in flight) and give it a few seconds: the\n"
    "        # sidebar polls only every 10 s, so a collection fetched in time is answered now, not at the next poll.\n"
    "        if not attached_file_replicas and not force_fetch:\n"
    "            attached_file_replicas = self._wait_for_first_fetch(scope, name, did)\n"
    "            is_fetching = not attached_file_replicas\n"
    "\n"
)

_WAIT_METHOD = '''    def _wait_for_first_fetch(self, scope, name, did):
        """
        Starts fetching a DID's replicas (or joins the fetch in flight) and waits for it up to FIRST_FETCH_WAIT seconds.

        Returns:
            list[PfnFileReplica]: The cached replicas, or an empty list if the fetch has not finished in time.
        """
        future = self._fetch_and_cache_async(scope, name, did)
        if future is not None:
            wait([future], timeout=self.FIRST_FETCH_WAIT)
        attached_files = self.db.get_attached_files(self.namespace, did)
        return (self.get_all_pfn_file_replicas_from_db(attached_files) or []) if attached_files else []

'''

_TIMEOUT_FUNCTION = f"""

def _timeout():
    \"\"\"(connect, read) seconds for a call to Rucio: {contract.RUCIO_TIMEOUT.name} to wait for its answer.\"\"\"
    return (10, float(os.environ.get("{contract.RUCIO_TIMEOUT.name}") or {contract.RUCIO_TIMEOUT.default}))
"""

FIXES = (
    Fix(
        "first-fetch",
        "python:mode_handlers/replica.py",
        "from concurrent.futures import ThreadPoolExecutor, Future\n",
        "from concurrent.futures import ThreadPoolExecutor, Future, wait\n",
    ),
    Fix(
        "first-fetch",
        "python:mode_handlers/replica.py",
        '    _executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rucio_fetcher")\n',
        '    _executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rucio_fetcher")\n'
        "    # How long the first request for a DID that is not cached waits for its fetch before answering FETCHING\n"
        "    FIRST_FETCH_WAIT = 10\n",
    ),
    Fix(
        "first-fetch",
        "python:mode_handlers/replica.py",
        "        # If no cached data\n        if not attached_file_replicas:\n",
        _WAIT_INSERT + "        # If no cached data\n        if not attached_file_replicas:\n",
    ),
    Fix(
        "first-fetch",
        "python:mode_handlers/replica.py",
        "    def _fetch_and_cache_async(self, scope, name, did):\n",
        _WAIT_METHOD + "    def _fetch_and_cache_async(self, scope, name, did):\n",
    ),
    Fix(
        "first-fetch",
        "python:mode_handlers/replica.py",
        '        self._schedule_fetch_task(did, _fetch, "initial_fetch")\n',
        '        return self._schedule_fetch_task(did, _fetch, "initial_fetch")\n',
    ),
    Fix(
        "first-fetch",
        "python:mode_handlers/replica.py",
        'because a fetch is already in progress.", label, did)\n                return\n',
        'because a fetch is already in progress.", label, did)\n                return existing_future\n',
    ),
    Fix(
        "first-fetch",
        "python:mode_handlers/replica.py",
        "        future.add_done_callback(_cleanup)\n",
        "        future.add_done_callback(_cleanup)\n        return future\n",
    ),
    Fix(
        "no-instance-needed",
        "python:handlers/base.py",
        '            "/oidc-auth-check",\n        )):',
        '            "/oidc-auth-check",\n            "/file-browser",\n            "/purge-cache",\n        )):',
    ),
    Fix(
        "no-font-import",
        "lab:static/181.ce5fb73b3fac542f95b1.js",
        'i.push([e.id,"@import url(https://fonts.googleapis.com/icon?family=Material+Icons);"]),',
        "",
    ),
    Fix(
        "no-upload-tab",
        "lab:static/397.702090e7ffb4dc9f0cbb.js",
        ',{title:i().createElement("div",{className:e.instanceOption},i().createElement("i",'
        '{className:`${e.infoIcon} material-icons`},"upload")),value:4,right:!0}]',
        "]",
    ),
    Fix(
        "request-timeout",
        "python:rucio/rucio.py",
        "import logging\nimport re\n",
        "import logging\nimport os\nimport re\n",
    ),
    Fix(
        "request-timeout",
        "python:rucio/rucio.py",
        "logger = logging.getLogger(__name__)\n",
        "logger = logging.getLogger(__name__)\n" + _TIMEOUT_FUNCTION,
    ),
    Fix(
        "request-timeout",
        "python:rucio/rucio.py",
        "                data=data,\n                verify=self.rucio_ca_cert\n            )\n",
        "                data=data,\n                verify=self.rucio_ca_cert,\n"
        "                timeout=_timeout(),\n            )\n",
    ),
    Fix(
        "request-timeout",
        "python:rucio/rucio.py",
        "json=data, verify=self.rucio_ca_cert)\n",
        "json=data, verify=self.rucio_ca_cert, timeout=_timeout())\n",
    ),
)


class FixError(SystemExit):
    """The installed rucio-jupyterlab is not the one these fixes were written for."""


def package_dir() -> Path:
    spec = importlib.util.find_spec("rucio_jupyterlab")
    if spec is None or not spec.origin:
        raise FixError("rucio-jupyterlab is not installed in this environment: install it first")
    return Path(spec.origin).parent


def labextension_dir(prefix: Path) -> Path:
    return prefix / "share" / "jupyter" / "labextensions" / "rucio-jupyterlab"


def target(fix: Fix, package: Path, labextension: Path) -> Path:
    kind, _, relative = fix.path.partition(":")
    return (package if kind == "python" else labextension) / relative


def state(text: str, fix: Fix) -> str:
    """'applied', 'pending' or 'changed' (the file has neither the text to replace nor the replacement)."""
    if fix.old in fix.new:  # an insertion next to the old text
        if fix.new in text:
            return "applied"
        return "pending" if text.count(fix.old) == 1 else "changed"
    found = text.count(fix.old)
    if found == 1:
        return "pending"
    return "applied" if found == 0 and fix.new in text else "changed"


def apply(package: Path, labextension: Path, check: bool = False, version: str | None = None) -> list[str]:
    """Apply every fix (or only report with check=True); returns one line per fix; raises FixError if a file
    changed upstream. `version` is the installed rucio-jupyterlab's (read from its metadata unless given)."""
    version = version or importlib.metadata.version("rucio-jupyterlab")
    if version != VERSION:
        raise FixError(
            f"rucio-jupyterlab {version} is installed, these fixes are for {VERSION}: review "
            f"docs/rucio-jupyterlab.md and singleuser/rucio_jupyterlab_fixes.py for the new release"
        )
    report = []
    for fix in FIXES:
        path = target(fix, package, labextension)
        text = path.read_text(encoding="utf-8")
        found = state(text, fix)
        if found == "changed":
            raise FixError(f"{path}: fix {fix.name} does not apply (the file changed upstream): review it")
        if found == "pending" and not check:
            tmp = path.with_name(f".{path.name}.dlaas-tmp")
            tmp.write_text(text.replace(fix.old, fix.new), encoding="utf-8")
            os.chmod(tmp, path.stat().st_mode & 0o7777)
            tmp.replace(path)
            found = "applied now"
        report.append(f"{fix.name}: {found} ({path.name})")
    return report


def python_diff(package: Path) -> str:
    """The fixes to Python files as a unified diff against the pristine sources (for upstream)."""
    out = []
    for relative in sorted({f.path for f in FIXES if f.path.startswith("python:")}):
        path = package / relative.partition(":")[2]
        fixed = path.read_text(encoding="utf-8")
        pristine = fixed
        for fix in reversed([f for f in FIXES if f.path == relative]):
            pristine = pristine.replace(fix.new, fix.old, 1) if fix.new else pristine
        name = f"rucio_jupyterlab/{relative.partition(':')[2]}"
        out += difflib.unified_diff(
            pristine.splitlines(keepends=True), fixed.splitlines(keepends=True), f"a/{name}", f"b/{name}"
        )
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report which fixes are applied")
    parser.add_argument("--diff", action="store_true", help="print the Python fixes as a diff (after applying)")
    parser.add_argument("--prefix", type=Path, default=Path(sys.prefix), help="the environment (default: this one)")
    args = parser.parse_args(argv)
    package = package_dir()
    for line in apply(package, labextension_dir(args.prefix), check=args.check):
        print(f"rucio-jupyterlab fix {line}")
    if args.diff:
        print(python_diff(package), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
