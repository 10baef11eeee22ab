"""Write access tokens as files the Rucio extension, rucio-clients and EOS FUSE read.

Every write is atomic and never follows a link (dlaas_fs.atomic): a temporary file is created exclusively (O_EXCL,
O_NOFOLLOW) next to the target through a descriptor of the directory, given its mode with fchmod on the open
descriptor, fsynced and renamed over the target. A reader never sees a half-written or world-readable token. Files
of a user's server go into a private directory (singleuser.private_dirs) and refuse a symlink planted where the file
should be.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from urllib.parse import urlsplit

from dlaas_fs.atomic import replace_in
from singleuser.private_dirs import open_private_dir, refusal


def write_private_file(
    path: str | os.PathLike, content: str, *, mode: int = 0o600, hint: str = "use another path"
) -> None:
    """Atomically replace `path`, in a per-user directory created or verified by open_private_dir.

    A symlink or anything but a regular file where the file should be is refused (UnsafePathError, one line ending
    with `hint`), and nothing is written through it.
    """
    path = Path(path)
    dir_fd = open_private_dir(path.parent, hint)
    try:
        try:
            st = os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISLNK(st.st_mode):
                raise refusal(path, "is a symbolic link, not a file of yours", hint)
            if not stat.S_ISREG(st.st_mode):
                raise refusal(path, "exists and is not a regular file", hint)
        replace_in(dir_fd, path.name, content, mode)
    finally:
        os.close(dir_fd)


def remove_private_file(path: str | os.PathLike, hint: str = "use another path") -> bool:
    """Remove `path` from its per-user directory (never through a link); False if there was nothing to remove."""
    path = Path(path)
    dir_fd = open_private_dir(path.parent, hint, create=False)
    if dir_fd is None:
        return False
    try:
        os.unlink(path.name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(dir_fd)


def eos_resource(userinfo_endpoint: str) -> str:
    """`<host>/<path>` of IAM's userinfo endpoint, as the third field of the EOS token line.

    EOS splits the line on every ':' (fields: oauth2, token, resource, expiry, refresh token) and calls
    `https://<resource>` itself. So the scheme goes, and a port cannot be written: it would become the expiry field
    (a port number read as a time long past, so EOS refuses the token). Port 443 is what https means and is dropped.
    """
    parts = urlsplit(userinfo_endpoint)
    try:
        port = parts.port
    except ValueError:
        port = "that is not a number"
    resource = f"{parts.hostname or ''}{parts.path.rstrip('/')}"
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or "@" in parts.netloc
        or parts.query
        or parts.fragment
    ):
        problem = "is not a plain http(s) URL"
    elif port not in (None, 443):
        problem = (
            f"names port {port}: EOS reads every ':' of the token line as a field separator and calls "
            "https://<host>/<path> on port 443 only; serve userinfo on port 443"
        )
    elif re.search(r"[:\s]", resource):
        problem = "has a ':' or whitespace (an IPv6 address?), which the EOS token line cannot carry"
    else:
        return resource
    raise ValueError(f"the userinfo endpoint {userinfo_endpoint!r} {problem}")


def eos_token_line(access_token: str, userinfo_endpoint: str) -> str:
    """The content EOS FUSEx expects in its token file (FILE: in its token variable): `oauth2:<token>:<host>/<userinfo
    path>`."""
    if not access_token or re.search(r"[:\s]", access_token):
        raise ValueError("an access token for EOS must be non-empty, without ':' or whitespace")
    return f"oauth2:{access_token}:{eos_resource(userinfo_endpoint)}"
