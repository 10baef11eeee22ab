"""The one line a user reads once her Data Lake login has expired, naming the hub's login page: the same words in
the Rucio sidebar (singleuser.expired_session) and from the `rucio` command (singleuser.rucio_cli).

Standard library only: the `rucio` command imports it without Jupyter Server.
"""

from __future__ import annotations

import os


def hub_login_url() -> str:
    """The hub's login page at the hub's public URL, JUPYTERHUB_PUBLIC_HUB_URL (JupyterHub sets it when
    JupyterHub.public_url is configured; the local stack's spawner sets it too), else its path alone."""
    public_hub = os.environ.get("JUPYTERHUB_PUBLIC_HUB_URL", "")
    if public_hub:
        return f"{public_hub.rstrip('/')}/login"
    return f"{os.environ.get('JUPYTERHUB_BASE_URL', '/').rstrip('/')}/hub/login"


def message(url: str) -> str:
    return f"Your Data Lake login has expired: log in again at {url}"
