"""Jupyter server extension of DLaaS user servers: start the token agent, prepare Rucio for the user.

- the token directory is created (or accepted) as a private directory first: if someone else's directory or a
  symlink is in the way, the server says so in one line, the agent does not start and the token file variables are
  dropped from the environment that kernels and terminals inherit;
- the token agent keeps the token files fresh (singleuser.token_agent);
- rucio.cfg for the `rucio` CLI and Python is written from the RUCIO_* variables (RUCIO_CONFIG points at it) into a
  private directory; if that is refused (or impossible), RUCIO_CONFIG is dropped, so no client reads a rucio.cfg
  someone else wrote;
- the Rucio extension's credentials are pre-seeded, so its sidebar works without a Validate click;
- its icon font is installed from a local file, so icons render on a closed network (singleuser.icon_font).

The extension's cache directory is prepared earlier, by jupyter_config/jupyter_server_config.py, because the Rucio
extension (loaded before this one) creates it as soon as it is imported.
Enabled by jupyter_config/jupyter_server_config.py (on JUPYTER_CONFIG_PATH locally, /etc/jupyter in images).
"""

from __future__ import annotations

import asyncio

import os
from pathlib import Path

from singleuser.icon_font import install as install_icon_font
from singleuser.private_dirs import UnsafePathError, ensure_private_dir
from singleuser.rucio_config import (ConfigError, instance_from_env, prepare_cache_dir, preseed_credentials,
                                     write_client_config)
from singleuser.token_agent import DIR_HINT, TokenAgent


def _jupyter_server_extension_points():
    return [{"module": "singleuser.server_extension"}]


def _load_jupyter_server_extension(serverapp) -> None:
    agent = TokenAgent(parent=serverapp, log=serverapp.log)
    try:
        if agent.token_dir:
            ensure_private_dir(agent.token_dir, DIR_HINT)
    except UnsafePathError as e:
        serverapp.log.error("token files not written: %s", e)
        for name in ("BEARER_TOKEN_FILE", "OAUTH2_TOKEN"):
            os.environ.pop(name, None)
    else:
        # Keep a reference: a task that nothing references may be garbage-collected mid-flight.
        serverapp._dlaas_token_agent_task = asyncio.get_event_loop().create_task(agent.run())
        serverapp.log.info("DLaaS token agent started (token dir %s)", agent.token_dir or "unset")
    from jupyter_core.paths import jupyter_config_dir

    serverapp.log.info("%s", install_icon_font(Path(jupyter_config_dir())))
    try:
        instance = instance_from_env(os.environ)
    except ConfigError as e:
        os.environ.pop("RUCIO_CONFIG", None)  # no client may read a rucio.cfg this server did not write
        serverapp.log.error("%s", e)
        return
    if os.environ.get("RUCIO_CONFIG"):
        try:
            write_client_config(os.environ, Path(os.environ["RUCIO_CONFIG"]))
        except UnsafePathError as e:
            os.environ.pop("RUCIO_CONFIG")
            serverapp.log.error("rucio.cfg not written (the rucio CLI stays unconfigured): %s", e)
    try:
        prepare_cache_dir(os.environ)
    except UnsafePathError:
        return  # jupyter_server_config.py has said so and left the Rucio extension out
    preseed_credentials(instance)
    serverapp.log.info("Rucio extension ready for %s (%s mode)", instance["rucio_base_url"], instance["mode"])
