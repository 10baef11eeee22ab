# JupyterHub configuration of the local data lake: the local hub's own settings, then the production glue.
# devstack.hub.LocalHub writes its settings as traitlets configuration (class -> trait -> value) into a JSON file
# (mode 0600: it holds the IAM client secret) named by DLAAS_HUB_SETTINGS. hub_plugins.hub_config.configure, the same
# function the z2jh values call, comes last: authenticator, user server environment, roles and scopes.
import json
import os
import sys
from pathlib import Path

from traitlets.config import Config

from hub_plugins.hub_config import configure

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file
local = json.loads(Path(os.environ["DLAAS_HUB_SETTINGS"]).read_text())
c.merge(Config(local["config"]))
if local.get("pure_python_http"):
    # Benchmarks' baseline only: hide pycurl, so JupyterHub leaves tornado on its pure-Python HTTP client.
    sys.modules["pycurl"] = None
configure(c, sqlite_wal=local.get("sqlite_wal", True))
