"""Jupyter server extension: run the token agent inside the user's server.

Enabled with `--ServerApp.jpserver_extensions singleuser.server_extension=True` (the hub's spawner arguments) or
the jupyter_server_config.d file the singleuser image installs.
"""

from __future__ import annotations

import asyncio

from singleuser.token_agent import TokenAgent


def _jupyter_server_extension_points():
    return [{"module": "singleuser.server_extension"}]


def _load_jupyter_server_extension(serverapp) -> None:
    agent = TokenAgent(parent=serverapp, log=serverapp.log)
    # Keep a reference: a task that nothing references may be garbage-collected mid-flight.
    serverapp._dlaas_token_agent_task = asyncio.get_event_loop().create_task(agent.run())
    serverapp.log.info("DLaaS token agent started (token dir %s)", agent.token_dir or "unset")
