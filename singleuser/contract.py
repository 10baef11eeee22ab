"""What a user's server learns from the hub: every environment variable between them, named once, with its default
and what it means.

The hub's spawner writes them (hub_plugins.spawner_env) and the server reads them (singleuser.server_settings); both
take the names from here, so no side can rename, drop or re-default one alone. Several are also read by programs of
their own: rucio-clients (the RUCIO_* it knows, BEARER_TOKEN_FILE, SITE_NAME), EOS clients (OAUTH2_TOKEN), Jupyter
(JUPYTER_CONFIG_PATH, JUPYTER_PATH), the Rucio extension (RUCIO_CACHE_DIR) - so those keep their standard names.

Standard library only: the hub imports this module without any of the server's dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    meaning: str


# --- written by the hub's spawner ---------------------------------------------------------------------------------

TOKEN_API_URL = Variable(
    "DLAAS_TOKEN_API_URL", "", "The hub's token API, where this server fetches its user's Data Lake tokens."
)
TOKEN_DIR = Variable(
    "DLAAS_TOKEN_DIR",
    "",
    "Memory-backed directory of the token files, created 0700 by the server (empty: the token agent does not run).",
)
RUCIO_TOKEN_FILE = Variable(
    "BEARER_TOKEN_FILE",
    "",
    "The Rucio token file (WLCG bearer token discovery), read by rucio-clients and the Rucio extension.",
)
EOS_TOKEN_FILE = Variable(
    "OAUTH2_TOKEN", "", "FILE:<path> of the EOS token file (one line oauth2:<token>:<userinfo endpoint>), read by EOS."
)
ACCOUNT = Variable("RUCIO_ACCOUNT", "", "The user's Rucio account: the hub user name.")
AUTH_TYPE = Variable("RUCIO_AUTH_TYPE", "oidc", "How rucio-clients authenticate: OIDC, with the token file.")
RUCIO_URL = Variable("RUCIO_BASE_URL", "", "The Rucio server (empty: the Rucio extension stays unconfigured).")
RUCIO_AUTH = Variable("RUCIO_AUTH_URL", "", "The Rucio auth server (empty: RUCIO_BASE_URL).")
INSTANCE_NAME = Variable("RUCIO_INSTANCE_NAME", "escape", "The Rucio instance's name in the Rucio extension.")
DISPLAY_NAME = Variable("RUCIO_DISPLAY_NAME", "ESCAPE Data Lake", "The name the Rucio sidebar shows.")
EXTENSION_SITE = Variable(
    "RUCIO_SITE_NAME", "", "The site of the user's servers, for the Rucio extension: Rucio answers cache PFNs."
)
CLIENT_SITE = Variable(
    "SITE_NAME", "", "The same site for rucio-clients (their client_location): Rucio answers cache (XCache) PFNs."
)
MOUNTED_RSE = Variable(
    "RUCIO_MOUNTED_RSE",
    "",
    "The RSE mounted into the server, whose files the Rucio extension's replica mode (its destination_rse setting) "
    "opens at RUCIO_RSE_MOUNT_PATH. Not where uploads go: datalakectl's --rse names that.",
)
RSE_MOUNT_PATH = Variable(
    "RUCIO_RSE_MOUNT_PATH", "", "Where the mounted RSE is mounted in the server (empty: download mode)."
)
PATH_BEGINS_AT = Variable(
    "RUCIO_PATH_BEGINS_AT", "0", "How many leading components of a PFN's path to drop before joining the mount path."
)
CA_CERT = Variable("RUCIO_CA_CERT", "", "CA bundle for the Rucio server (empty: the system's).")
RUCIO_TIMEOUT = Variable(
    "DLAAS_RUCIO_TIMEOUT",
    "60",
    "Seconds the Rucio sidebar waits for Rucio's answer before it says Rucio is not answering (the Rucio extension's"
    " calls, singleuser.rucio_jupyterlab_fixes request-timeout).",
)
CLIENT_CONFIG = Variable(
    "RUCIO_CONFIG", "", "Where the server writes rucio.cfg (no secret in it) for the rucio CLI and Python."
)
EXTENSION_CACHE = Variable(
    "RUCIO_CACHE_DIR",
    "/tmp/.rucio_jupyterlab",
    "The Rucio extension's cache directory in a hub-spawned server (its default is shared by every user).",
)
SCRATCH_MOUNT = Variable("DLAAS_SCRATCH_MOUNT", "/scratch", "Where the user's own scratch directory is mounted.")
SCRATCH_RSE = Variable("DLAAS_SCRATCH_RSE", "DLAAS-SCRATCH", "The greedy RSE backing the scratch area.")
REGISTRAR_URL = Variable(
    "DLAAS_REGISTRAR_URL", "", "The registration service, which registers scratch uploads (datalakectl upload)."
)
ICON_FONT = Variable("DLAAS_ICON_FONT", "", "A local copy of the Material Icons font (woff2) for closed networks.")
SERVER_CONFIG_PATH = Variable(
    "JUPYTER_CONFIG_PATH", "", "An extra Jupyter config directory holding DLaaS's jupyter_server_config.py."
)
PROFILE = Variable("DLAAS_PROFILE", "", "The slug of the environment (profile) chosen on the spawn page.")
DASK_GATEWAY = Variable(
    "DASK_GATEWAY__ADDRESS",
    "",
    "Dask Gateway's address for its clients (dask config gateway.address): the hub's proxy + /services/dask-gateway.",
)
DASK_GATEWAY_PROXY = Variable(
    "DASK_GATEWAY__PROXY_ADDRESS",
    "",
    "Where Dask clients reach their clusters' schedulers (dask config gateway.proxy-address, gateway://host:port).",
)
DASK_GATEWAY_PUBLIC = Variable(
    "DASK_GATEWAY__PUBLIC_ADDRESS",
    "",
    "Dask Gateway's address as browsers reach it (dask config gateway.public-address): the path of the gateway's"
    " address on the hub, so dashboard links work in the user's browser (singleuser.dask_dashboard).",
)
KERNEL_PATH = Variable("JUPYTER_PATH", "", "Extra Jupyter data directories (kernel specs) of the chosen profile.")

# --- set by others, read by the server ----------------------------------------------------------------------------

HUB_API_TOKEN = Variable(
    "JUPYTERHUB_API_TOKEN",
    "",
    "Set by JupyterHub: this server's own hub API token, which authorises its token API and registrar calls.",
)
SERVICE_PREFIX = Variable(
    "JUPYTERHUB_SERVICE_PREFIX", "", "Set by JupyterHub: the server's URL prefix (a hub-spawned server)."
)
ON_KUBERNETES = Variable("KUBERNETES_SERVICE_HOST", "", "Set by Kubernetes in every pod.")
HOME_DIR = Variable("HOME", "", "The user's home directory.")

#: What the hub's spawner may write, in a fixed order.
FROM_HUB = (
    TOKEN_API_URL,
    TOKEN_DIR,
    RUCIO_TOKEN_FILE,
    EOS_TOKEN_FILE,
    ACCOUNT,
    AUTH_TYPE,
    RUCIO_URL,
    RUCIO_AUTH,
    INSTANCE_NAME,
    DISPLAY_NAME,
    EXTENSION_SITE,
    CLIENT_SITE,
    MOUNTED_RSE,
    RSE_MOUNT_PATH,
    PATH_BEGINS_AT,
    CA_CERT,
    RUCIO_TIMEOUT,
    CLIENT_CONFIG,
    EXTENSION_CACHE,
    SCRATCH_MOUNT,
    SCRATCH_RSE,
    REGISTRAR_URL,
    ICON_FONT,
    SERVER_CONFIG_PATH,
    PROFILE,
    KERNEL_PATH,
    DASK_GATEWAY,
    DASK_GATEWAY_PROXY,
    DASK_GATEWAY_PUBLIC,
)
#: What the server reads that others set.
FROM_OTHERS = (HUB_API_TOKEN, SERVICE_PREFIX, ON_KUBERNETES, HOME_DIR)
