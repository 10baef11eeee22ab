"""rucio.cfg's `[client]` section, the one format every rucio-clients configuration of this project is written in.

The user's server writes one for the `rucio` CLI and notebooks (singleuser.rucio_config: OIDC with the token file);
the local data lake writes them for its own service accounts (devstack.rucio_server: userpass for root and the
registration service). rucio-clients reads the file with configparser: one `key = value` per line.
"""

from __future__ import annotations


def client_section(
    *, rucio_host: str, auth_type: str, account: str, auth_host: str | None = None, request_retries: int = 3, **options
) -> str:
    """The `[client]` section: the server and how to authenticate there, then `options` in the order given (those
    that are None or empty are left out, so rucio-clients falls back to its defaults)."""
    values = {
        "rucio_host": rucio_host,
        "auth_host": auth_host or rucio_host,
        "auth_type": auth_type,
        "account": account,
        "request_retries": request_retries,
        **options,
    }
    return "[client]\n" + "".join(f"{k} = {v}\n" for k, v in values.items() if v not in (None, ""))
