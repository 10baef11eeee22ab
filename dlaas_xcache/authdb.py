"""dlaas-xcache-authdb: the XCache's path rules (acc.authdb), derived from its allow-list.

XRootD 5.5.3's `pss.permit` check is not enough on its own: a request naming an origin that is not permitted is
refused most of the time, and now and then XrdPss opens the URL left in its buffer by an earlier, permitted request,
so the client gets *another file* under the name it asked for (measured: 9 of 20 requests). The cache therefore also
runs XRootD's authorization (`ofs.authorize 1` + `acc.authdb`) with one rule per permitted origin, so that a path
naming anything else is refused with "permission denied" before the proxy sees it.

The cache sees `root://<cache>//root://host:1094//p` as the path `/root:/host:1094/p` (double slashes squashed), and
the proxy forwards to whatever stands between `root:/` and the next `/`. A rule is a path prefix, so each rule ends
right after the origin's `host:port/`: a user-info part (`host:port@other`), another port, a second port, a trailing
dot, another spelling of the host or port (upper case, IPv6 or decimal forms of an address, percent-encoding, a
leading zero), a `#`, `?` or backslash after the port all fail the prefix. Host names are lower case in the rules;
only that spelling passes.

Without a port, `root://host/p` means port 1094 to XRootD. It is accepted, with a rule ending in `host/`, exactly
for origins listed on port 1094, and refused for every other origin.

Only `root` and `xroot` get rules: they are the schemes XrdPss 5.5 forwards in this mode.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dlaas_fs.atomic import write_atomically
from dlaas_xcache import allow_list
from dlaas_xcache.allow_list import DEFAULT_PORT, Origin

SCHEMES = ("root", "xroot")


def rules(origins: list[Origin]) -> list[str]:
    """The path prefixes the cache serves: `/<scheme>:/<host>:<port>/`, and `/<scheme>:/<host>/` on port 1094."""
    prefixes = []
    for origin in sorted(set(origins)):
        if allow_list.canonical_host(origin.host) != origin.host:  # never widen a rule with a non-host
            raise ValueError(f"{origin.host!r} is not a canonical host")
        for scheme in SCHEMES:
            prefixes.append(f"/{scheme}:/{origin.netloc}/")
            if origin.port == DEFAULT_PORT:
                prefixes.append(f"/{scheme}:/{origin.hostpart}/")
    return prefixes


def authdb(origins: list[Origin]) -> str:
    """acc.authdb text letting anyone look up and read (`lr`) the paths of the permitted origins, and nothing else."""
    # One record for the id `u *` (XrdAcc takes one per id), continued over lines with backslashes.
    return (
        "# Paths the XCache serves: those of its permitted origins (from the pss.permit allow-list).\n"
        + " \\\n  ".join(["u *", *(f"{prefix} lr" for prefix in rules(origins))])
        + "\n"
    )


def write(path: Path, origins: list[Origin]) -> None:
    """Write the authdb for `origins` to `path` atomically (xrootd never reads half a file), readable by its user."""
    write_atomically(path, authdb(origins), mode=0o644, dir_mode=0o755)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="dlaas-xcache-authdb", description="Write the XCache's acc.authdb from its pss.permit allow-list."
    )
    p.add_argument("--origins", required=True, help="the allow-list (pss.permit lines)")
    p.add_argument("--output", required=True, help="the authdb to write (acc.authdb)")
    args = p.parse_args(argv)
    try:
        origins = allow_list.parse(Path(args.origins).read_text())
        write(Path(args.output), origins)
    except allow_list.AllowListError as e:
        print(
            f"dlaas-xcache-authdb: {args.origins}: {e}; fix the list (dlaas-xcache-origin-sync writes it)",
            file=sys.stderr,
        )
        return 1
    except OSError as e:
        print(f"dlaas-xcache-authdb: cannot derive the authdb: {e}", file=sys.stderr)
        return 1
    print(f"dlaas-xcache-authdb: {len(origins)} permitted origins -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
