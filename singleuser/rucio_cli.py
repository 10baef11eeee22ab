"""The `rucio` command of a user's server: once the user's Data Lake login has expired (an IdP outage outlived her
token, or her session ended), it says "log in again" with the hub's login page in the Rucio sidebar's words
(singleuser.login_message, singleuser.expired_session), instead of rucio-clients' "OIDC authentication failed".

The token agent (singleuser.token_agent) removes the Rucio token file (contract.RUCIO_TOKEN_FILE) when its token
expires and writes it again once the hub gives a new one. While that file is missing or holds a JWT past its `exp`,
this command prints the sidebar's one line to stderr and exits 1. Otherwise it runs rucio-clients' own CLI,
unchanged, in this process, with the same arguments and exit status. A file it cannot read or parse is left to
rucio-clients to report.

The launcher singleuser/bin/rucio, installed as <prefix>/lib/dlaas/bin/rucio of the user's Python environment and
put first on the server's PATH (the images, the local stack's spawner), runs this module. It is a courtesy for a
clear message, not a security control: nothing here checks a token's signature (Rucio does), and rucio-clients' own
`rucio` behind it stays on PATH. Programs that use rucio-clients as a library (datalakectl, the Rucio extension)
do not pass through here.
"""

from __future__ import annotations

import importlib.metadata
import os
import runpy
import sys
import time
from pathlib import Path

from singleuser import contract
from singleuser.login_message import hub_login_url, message
from singleuser.token_claims import unverified_exp

#: The distribution whose `rucio` command this one stands in front of.
DISTRIBUTION = "rucio-clients"


def login_expired(token_file: str | None, now: float | None = None) -> bool:
    """Whether the user must log in again first: the token file is missing, or holds a JWT whose `exp` has passed.
    Anything else (no token file configured, an unreadable file, an opaque token, no `exp`) is rucio-clients' to
    judge."""
    if not token_file:
        return False
    try:
        token = Path(token_file).read_text().strip()
    except FileNotFoundError:
        return True
    except (OSError, UnicodeDecodeError):
        return False
    exp = unverified_exp(token)
    return exp is not None and exp <= (time.time() if now is None else now)


def run_rucio(args: list[str]) -> int:
    """rucio-clients' CLI with these arguments, in this process: its console-script entry point when the
    distribution declares one, else the `rucio` script it installs (rucio-clients 41 ships a script). Returns its
    exit status."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        print(f"{DISTRIBUTION} is not installed in this environment: the rucio command needs it", file=sys.stderr)
        return 1
    entry = next((e for e in dist.entry_points if e.group == "console_scripts" and e.name == "rucio"), None)
    script = next((f for f in dist.files or () if f.name == "rucio" and f.parent.name == "bin"), None)
    if entry is None and script is None:
        print(f"{DISTRIBUTION} {dist.version} has no rucio command", file=sys.stderr)
        return 1
    sys.argv = ["rucio" if entry else str(dist.locate_file(script)), *args]
    try:
        if entry is not None:
            return entry.load()() or 0
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as done:
        code = done.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if login_expired(os.environ.get(contract.RUCIO_TOKEN_FILE.name)):
        print(message(hub_login_url()), file=sys.stderr)
        return 1
    return run_rucio(args)


if __name__ == "__main__":
    sys.exit(main())
