"""Jupyter server extension of DLaaS user servers: start the token agent, prepare Rucio for the user.

- the token agent keeps the token files fresh (singleuser.token_agent);
- rucio.cfg for the `rucio` CLI and Python is written from the RUCIO_* variables (RUCIO_CONFIG points at it);
- the Rucio extension's credentials are pre-seeded, so its sidebar works without a Validate click;
- its icon font is installed from a local file, so icons render on a closed network (singleuser.icon_font).

Enabled by jupyter_config/jupyter_server_config.py (on JUPYTER_CONFIG_PATH locally, /etc/jupyter in images).
"""

from __future__ import annotations

import asyncio

import os
from pathlib import Path

from singleuser.icon_font import install as install_icon_font
from singleuser.rucio_config import ConfigError, instance_from_env, preseed_credentials, write_client_config
from singleuser.token_agent import TokenAgent


def _jupyter_server_extension_points():
    return [{"module": "singleuser.server_extension"}]


def _load_jupyter_server_extension(serverapp) -> None:
    agent = TokenAgent(parent=serverapp, log=serverapp.log)
    # Keep a reference: a task that nothing references may be garbage-collected mid-flight.
    serverapp._dlaas_token_agent_task = asyncio.get_event_loop().create_task(agent.run())
    serverapp.log.info("DLaaS token agent started (token dir %s)", agent.token_dir or "unset")
    from jupyter_core.paths import jupyter_config_dir

    serverapp.log.info("%s", install_icon_font(Path(jupyter_config_dir())))
    try:
        instance = instance_from_env(os.environ)
        if os.environ.get("RUCIO_CONFIG"):
            write_client_config(os.environ, Path(os.environ["RUCIO_CONFIG"]))
        preseed_credentials(instance)
        serverapp.log.info("Rucio extension ready for %s (%s mode)", instance["rucio_base_url"], instance["mode"])
    except ConfigError as e:
        serverapp.log.error("%s", e)
