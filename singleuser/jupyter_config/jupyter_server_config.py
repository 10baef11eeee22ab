# Jupyter server configuration of a DLaaS user's server, found on the config path the local hub gives or installed
# into /etc/jupyter (images). It turns the hub's Rucio settings (singleuser.server_settings) into the Rucio
# extension's configuration and starts the token agent. Nothing here holds a token.
import logging

from singleuser.private_dirs import UnsafePathError
from singleuser.rucio_config import ConfigError, prepare_cache_dir, rucio_instance
from singleuser.server_settings import ServerSettings

c = get_config()  # noqa: F821 - provided by Jupyter when it loads this file
_settings = ServerSettings(config=c)

# The Rucio extension's server part is the module rucio_jupyterlab.server (the package itself has no loader: enabling
# "rucio_jupyterlab" only logged a failed load and its traceback at every start).
c.ServerApp.jpserver_extensions = {"singleuser.server_extension": True, "rucio_jupyterlab.server": True}
try:  # before the Rucio extension is imported: it would take whatever directory it finds there
    prepare_cache_dir(_settings)
except UnsafePathError as e:
    logging.getLogger("dlaas").error("Rucio extension not loaded: %s", e)
    c.ServerApp.jpserver_extensions["rucio_jupyterlab.server"] = False
c.LabApp.custom_css = True  # carries the offline icon font of the Rucio extension (singleuser.icon_font)
try:
    _instance = rucio_instance(_settings)
except ConfigError as e:
    logging.getLogger("dlaas").error("%s; the Rucio sidebar stays empty until the hub sets them", e)
else:
    c.RucioConfig.instances = [_instance]
    c.RucioConfig.default_instance = _instance["name"]
    c.RucioConfig.default_auth_type = "oidc"

# Nothing is fetched from the internet at run time (user servers may sit on a closed network, and none of this is
# theirs to decide): no news feed, no update check, and the extension manager lists installed extensions only.
# The "official Jupyter news?" prompt is answered in the environment's settings overrides
# (singleuser/lab_overrides.json, installed as share/jupyter/lab/settings/overrides.d/dlaas.json).
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.handlers.announcements.NeverCheckForUpdate"
c.LabApp.extension_manager = "readonly"
