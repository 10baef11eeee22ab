"""Jupyter server extension of DLaaS user servers: start the token agent, prepare Rucio for the user.

- the token directory is created (or accepted) as a private directory first: if someone else's directory or a
  symlink is in the way, the server says so in one line, the agent does not start and the token file variables are
  dropped from the environment that kernels and terminals inherit;
- the token agent keeps the token files fresh (singleuser.token_agent);
- rucio.cfg for the `rucio` CLI and Python is written from the hub's Rucio settings (where the hub's rucio.cfg variable
  points) into a private directory; if that is refused (or impossible), the variable is dropped, so no client reads a
  rucio.cfg someone else wrote;
- the Rucio extension's credentials are pre-seeded, so its sidebar works without a Validate click;
- its icon font is installed from a local file, so icons render on a closed network (singleuser.icon_font);
- while Rucio does not answer, the sidebar says so in one line (singleuser.rucio_unreachable);
- the environment's example notebooks are copied into ~/examples (singleuser.examples).

The extension's cache directory is prepared earlier, by jupyter_config/jupyter_server_config.py, because the Rucio
extension (loaded before this one) creates it as soon as it is imported.
Enabled by jupyter_config/jupyter_server_config.py (on the Jupyter config path the hub gives locally, /etc/jupyter in
images).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from singleuser import contract, expired_session, rucio_unreachable
from singleuser.examples import install as install_examples
from singleuser.examples import shipped as shipped_examples
from singleuser.icon_font import install as install_icon_font
from singleuser.private_dirs import UnsafePathError, ensure_private_dir
from singleuser.rucio_config import (
    ConfigError,
    prepare_cache_dir,
    preseed_credentials,
    rucio_instance,
    write_client_config,
)
from singleuser.server_settings import ServerSettings
from singleuser.token_agent import DIR_HINT, TokenAgent


def _jupyter_server_extension_points():
    return [{"module": "singleuser.server_extension"}]


def _forget(*variables: contract.Variable) -> None:
    """Drop variables from the environment kernels and terminals inherit (they name files this server refused)."""
    for var in variables:
        os.environ.pop(var.name, None)


def _load_jupyter_server_extension(serverapp) -> None:
    settings = ServerSettings(parent=serverapp)
    agent = TokenAgent(parent=serverapp, log=serverapp.log, settings=settings)
    try:
        if agent.token_dir:
            ensure_private_dir(agent.token_dir, DIR_HINT)
    except UnsafePathError as e:
        serverapp.log.error("token files not written: %s", e)
        _forget(contract.RUCIO_TOKEN_FILE, contract.EOS_TOKEN_FILE)
        settings.rucio_token_file = settings.eos_token_file = ""  # no token file: nothing may be configured to read one
    else:
        # Keep a reference: a task that nothing references may be garbage-collected mid-flight.
        serverapp._dlaas_token_agent_task = asyncio.get_event_loop().create_task(agent.run())
        serverapp.log.info("DLaaS token agent started (token dir %s)", agent.token_dir or "unset")
        try:  # the same token files for the workers of the user's Dask clusters (docs/dask.md)
            from singleuser import dask_token_push

            dask_token_push.start(serverapp.log, settings)
        except ImportError:
            pass  # an environment without Dask
    try:  # the Dask sidebar's dashboards of the gateway's clusters (singleuser.dask_dashboard)
        from singleuser import dask_dashboard

        dask_dashboard.install(serverapp, os.environ.get(contract.DASK_GATEWAY.name, ""))
    except ImportError:
        pass  # no Dask JupyterLab extension
    expired_session.install(serverapp, settings)  # the sidebar says "log in again" when the token has expired
    rucio_unreachable.install(serverapp.web_app)  # ... and "not answering" while Rucio is down
    from jupyter_core.paths import jupyter_config_dir

    serverapp.log.info("%s", install_icon_font(Path(jupyter_config_dir()), settings.icon_font))
    try:
        for copied in install_examples(settings.home, shipped_examples()):
            serverapp.log.info("example notebook %s added", copied)
    except OSError as e:
        serverapp.log.warning("example notebooks not copied: %s", e)
    try:
        instance = rucio_instance(settings)
    except ConfigError as e:
        _forget(contract.CLIENT_CONFIG)  # no client may read a rucio.cfg this server did not write
        serverapp.log.error("%s", e)
        return
    if settings.rucio_config:
        try:
            write_client_config(settings, Path(settings.rucio_config))
        except UnsafePathError as e:
            _forget(contract.CLIENT_CONFIG)
            serverapp.log.error("rucio.cfg not written (the rucio CLI stays unconfigured): %s", e)
    try:
        prepare_cache_dir(settings)
    except UnsafePathError:
        return  # jupyter_server_config.py has said so and left the Rucio extension out
    preseed_credentials(instance)
    serverapp.log.info("Rucio extension ready for %s (%s mode)", instance["rucio_base_url"], instance["mode"])
