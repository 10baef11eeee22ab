"""Dask Gateway clusters from a researcher's server: real gateway (a hub service), real hub and dev IAM, real Rucio,
XRootD origin and XCache; the scheduler and workers are real `dask` processes of the user's environment.

Alice's code runs as a terminal of her server runs it (her server's environment, .venvs/singleuser's Python); the
other user (`admin`: bob may not log in) and the checks talk to the gateway's API directly, as any program holding
a token of theirs can. The last tests run the worker plugin on an in-process Dask cluster of their own.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from devstack.hub_client import auth_state, hub_login, personal_token, process_environ, service_session, start_server
from devstack.ports import wait_for
from devstack.rucio_seed import DEMO_SCOPE, HIGGS_DATASET
from devstack.settings import VENVS, Settings
from devstack.stack import Stack, temporary_state
from tests.helpers import TEST_ADMIN_TOKEN, hub_test_extra

PYTHON = VENVS / "singleuser" / "bin" / "python"


def as_alice(env: dict, code: str, timeout: float = 120) -> dict:
    """Run `code` with alice's server environment and return the JSON it prints last."""
    result = subprocess.run(
        [str(PYTHON), "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def gateway(stack, hub):
    """The session's Dask Gateway (the `hub` profile starts it before the hub)."""
    return stack.dask_gateway


@pytest.fixture(scope="module")
def alice(gateway, cache_layer, alice_env):
    """Alice logged in, her server running (tests/conftest.py), with the gateway and the cache up; her environment."""
    return alice_env


NEW_CLUSTER = """
import json, warnings
from singleuser.dask_clusters import new_cluster
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    cluster = new_cluster(workers=5, environment="base", shutdown_on_close=False)
    client = cluster.get_client()
    client.wait_for_workers(2, timeout=90)
print(json.dumps({"name": cluster.name, "warnings": [str(w.message) for w in caught]}))
"""


@pytest.fixture(scope="module")
def cluster(alice):
    """Alice's cluster, asked for 5 workers (the gateway allows 2 here); yields (name, what the notebook saw)."""
    made = as_alice(alice, NEW_CLUSTER)
    yield made["name"], made
    requests.delete(api(alice, f"clusters/{made['name']}"), headers=auth(alice["JUPYTERHUB_API_TOKEN"]), timeout=30)


def api(env: dict, path: str) -> str:
    return f"{env['DASK_GATEWAY__ADDRESS']}/api/v1/{path}"


def auth(token: str) -> dict:
    return {"Authorization": f"jupyterhub {token}"}


READ_ON_WORKERS = """
import json, os, subprocess, zlib
from dask_gateway import Gateway
from rucio.client import Client

def read(name):
    from rucio.client import Client
    from rucio.common.client import detect_client_location
    [replica] = Client().list_replicas([{"scope": "%(scope)s", "name": name}], schemes=["root"],
                                       client_location=detect_client_location())
    pfn = replica["rses"]["EULAKE-1"][0]
    data = subprocess.run(["xrdcp", "--nopbar", "-f", pfn, "-"], capture_output=True, check=True, timeout=60).stdout
    return {"name": name, "pfn": pfn, "adler32": "%%08x" %% zlib.adler32(data), "whoami": Client().whoami()["account"]}

def seen():
    token_dir = os.path.dirname(os.environ["BEARER_TOKEN_FILE"])
    files = {}
    for entry in os.scandir(token_dir):
        if entry.is_file(follow_symlinks=False):
            files[entry.name] = {"mode": entry.stat().st_mode & 0o777, "text": open(entry.path).read()}
    return {"environ": dict(os.environ), "files": files, "dir_mode": os.stat(token_dir).st_mode & 0o777}

cluster = Gateway().connect("%(name)s")
client = cluster.get_client()
expected = {f["name"]: f["adler32"] for f in Client().list_files("%(scope)s", "%(dataset)s")}
futures = client.map(read, sorted(expected), pure=False)
results = client.gather(futures)
print(json.dumps({"expected": expected, "results": results, "workers": len(client.scheduler_info()["workers"]),
                  "seen": client.run(seen)}))
"""


@pytest.fixture(scope="module")
def read_on_workers(alice, cluster):
    name, _ = cluster
    return as_alice(alice, READ_ON_WORKERS % {"name": name, "scope": DEMO_SCOPE, "dataset": HIGGS_DATASET})


def test_alices_workers_read_the_lake_through_the_cache_as_alice_with_the_right_checksums(read_on_workers, cache_layer):
    done = read_on_workers
    assert done["expected"] and len(done["results"]) == len(done["expected"])
    xr = cache_layer.xrootd
    for result in done["results"]:
        assert result["whoami"] == "alice"
        assert result["pfn"].startswith(f"root://127.0.0.1:{xr.cache_port}//root://127.0.0.1:{xr.origin_port}/")
        assert result["adler32"] == done["expected"][result["name"]]


def test_the_gateway_holds_a_cluster_to_its_worker_limit_whatever_the_notebook_asks(cluster, read_on_workers):
    _, made = cluster
    assert any("would exceed resource limit of 2 workers" in w for w in made["warnings"]), made["warnings"]
    assert read_on_workers["workers"] == 2


def test_workers_hold_only_short_lived_data_lake_tokens_never_the_refresh_token_or_a_hub_token(
    read_on_workers, alice, hub, gateway
):
    state = auth_state(hub, "alice")
    secrets = {
        "IAM refresh token": state["refresh_token"],
        "alice's server's hub API token": alice["JUPYTERHUB_API_TOKEN"],
        "the gateway's hub API token": (gateway.dir / "api_token").read_text().strip(),
    }
    server_rucio_token = Path(alice["BEARER_TOKEN_FILE"]).read_text()
    assert len(read_on_workers["seen"]) == 2
    for worker, seen in read_on_workers["seen"].items():
        assert seen["dir_mode"] == 0o700
        assert set(seen["files"]) <= {"rucio_token", "eos_token", "rucio.cfg"} and "rucio_token" in seen["files"]
        assert all(f["mode"] == 0o600 for f in seen["files"].values())
        assert seen["files"]["rucio_token"]["text"] == server_rucio_token
        assert seen["environ"]["SITE_NAME"] == alice["SITE_NAME"]
        texts = [*seen["environ"].values(), *(f["text"] for f in seen["files"].values())]
        for what, secret in secrets.items():
            assert secret and not any(secret in text for text in texts), f"{what} reached worker {worker}"
        assert not any(v.startswith("eyJ") for v in seen["environ"].values()), "a JWT in a worker's environment"


def test_another_user_even_an_operator_can_neither_see_nor_use_nor_stop_alices_cluster(cluster, hub, alice):
    """The dev IAM's other hub user is `admin`, a hub operator (bob is a guest the hub refuses): with a token of his
    own that may use the gateway, he gets nothing of alice's cluster."""
    name, _ = cluster
    browser, _ = hub_login(hub, "admin", "admin-pass")
    made = personal_token(hub, browser, "admin", note="dask test")
    assert made.status_code == 201, made.text
    bob = auth(made.json()["token"])
    assert requests.get(api(alice, "clusters/"), headers=bob, timeout=30).status_code == 200  # he may use the gateway
    listed = requests.get(api(alice, "clusters/"), headers=bob, timeout=30)
    assert name not in listed.json()
    looked = requests.get(api(alice, f"clusters/{name}"), headers=bob, timeout=30)
    assert looked.status_code == 403 and "lacks permissions" in looked.json()["error"]
    scaled = requests.post(api(alice, f"clusters/{name}/scale"), json={"count": 0}, headers=bob, timeout=30)
    assert scaled.status_code == 403
    stopped = requests.delete(api(alice, f"clusters/{name}"), headers=bob, timeout=30)
    assert stopped.status_code == 403
    still = requests.get(api(alice, f"clusters/{name}"), headers=auth(alice["JUPYTERHUB_API_TOKEN"]), timeout=30)
    assert still.status_code == 200 and still.json()["status"] == "RUNNING"


def test_an_unknown_environment_or_too_many_cores_gets_the_gateways_reason(alice):
    token = auth(alice["JUPYTERHUB_API_TOKEN"])
    for options, reason in (
        ({"environment": "conda-forge-everything"}, "'conda-forge-everything' is not a valid option for environment"),
        ({"worker_cores": 64}, "worker_cores"),
    ):
        answer = requests.post(api(alice, "clusters/"), json={"cluster_options": options}, headers=token, timeout=30)
        assert answer.status_code == 422 and reason in answer.json()["error"], answer.text


READ_FAILS = """
import json, subprocess
from dask_gateway import Gateway

def read(pfn):
    done = subprocess.run(["xrdcp", "--nopbar", "-f", pfn, "-"], capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise OSError(done.stderr.strip().splitlines()[-1])
    return len(done.stdout)

client = Gateway().connect("%(name)s").get_client()
said = {}
for what, pfn in %(pfns)r.items():
    try:
        client.submit(read, pfn, pure=False).result(timeout=150)
        said[what] = None
    except OSError as e:
        said[what] = str(e)
print(json.dumps(said))
"""


def test_a_task_whose_file_the_storage_refuses_fails_with_the_storages_message(alice, cluster, cache_layer):
    """A missing file, and a file of an origin the cache does not serve: each task fails at once with what the
    cache said, and the notebook gets that message (not a hang, not a bare exit status)."""
    name, _ = cluster
    xr = cache_layer.xrootd
    cache, origin = f"root://127.0.0.1:{xr.cache_port}/", f"root://127.0.0.1:{xr.origin_port}/"
    pfns = {
        "missing": f"{cache}/{origin}/EULAKE-1/no/such/file.json",
        "not served": f"{cache}/root://127.0.0.1:9//EULAKE-1/file.json",
    }
    said = as_alice(alice, READ_FAILS % {"name": name, "pfns": pfns}, timeout=300)
    assert "no such file or directory" in said["missing"], said
    assert "permission denied" in said["not served"], said


WORKERS_TOKENS = """
import json, os, time
from dask_gateway import Gateway

def token_and_account():
    from rucio.client import Client
    token = open(os.environ["BEARER_TOKEN_FILE"]).read()
    try:
        return token, Client().whoami()["account"]
    except Exception as e:
        return token, f"{type(e).__name__}: {e}"

client = Gateway().connect("%(name)s").get_client()
server_token = open(os.environ["BEARER_TOKEN_FILE"]).read()
deadline = time.monotonic() + 60
while True:
    seen = client.run(token_and_account)
    if all(token == server_token for token, _ in seen.values()) or time.monotonic() > deadline:
        break
    time.sleep(0.5)
print(json.dumps({"seen": seen}))
"""


def test_renewed_token_files_in_alices_server_reach_her_running_workers(alice, cluster, rucio_token, read_on_workers):
    """The token agent renews the server's files at half their lifetime; the server then sends the new files to
    her clusters. Here the renewal is a file the test writes as the agent does, with a token of a new login of hers,
    so it does not wait for a token's lifetime."""
    from singleuser.token_files import write_private_file

    name, _ = cluster
    renewed = rucio_token("alice")
    assert renewed != Path(alice["BEARER_TOKEN_FILE"]).read_text()
    write_private_file(alice["BEARER_TOKEN_FILE"], renewed)
    seen = as_alice(alice, WORKERS_TOKENS % {"name": name})["seen"]
    assert len(seen) == 2
    assert all(token == renewed for token, _ in seen.values())
    assert all(account == "alice" for _, account in seen.values()), {w: a for w, (_, a) in seen.items()}


ROOT_CLUSTER = """
import json
from dask_gateway import Gateway
from singleuser.dask_clusters import new_cluster

def where():
    import sys, uproot
    return sys.prefix, uproot.__version__

gateway = Gateway()
cluster = new_cluster(workers=1, environment="root", gateway=gateway)
try:
    client = cluster.get_client()
    client.wait_for_workers(1, timeout=90)
    [(prefix, uproot_version)] = client.run(where).values()
    try:
        gateway.new_cluster().shutdown()
        third = "allowed"
    except Exception as e:
        third = str(e)
finally:
    cluster.shutdown()
print(json.dumps({"prefix": prefix, "uproot": uproot_version, "third": third}))
"""


def test_a_root_cluster_runs_the_root_environment_and_a_third_cluster_is_refused(alice, cluster):
    done = as_alice(alice, ROOT_CLUSTER, timeout=180)
    assert Path(done["prefix"]) == VENVS / "kernel-root" and done["uproot"]
    assert "alice already has 2 Dask clusters" in done["third"] and "stop one" in done["third"]


WAIT_FOR_TOKENS = """
import json, os, time
from dask_gateway import Gateway

def has_token():
    return os.path.isfile(os.environ.get("BEARER_TOKEN_FILE", ""))

client = Gateway().connect("%(name)s").get_client()
client.wait_for_workers(1, timeout=90)
deadline = time.monotonic() + 30
while not all(client.run(has_token).values()) and time.monotonic() < deadline:
    time.sleep(0.5)
print(json.dumps({"tokens": list(client.run(has_token).values())}))
"""


def test_the_dask_sidebars_new_cluster_works_through_the_hub_and_its_workers_get_the_tokens(alice, cluster, hub):
    """The Dask JupyterLab extension's "New" and "Scale" (its REST API in alice's server, through the hub's proxy)
    make a Dask Gateway cluster; nothing registers tokens for it, the server's token push finds it."""
    browser, _ = hub_login(hub, "alice", "alice-pass")
    assert browser.get(f"{hub.url}/user/alice/lab", timeout=60).status_code == 200
    xsrf = {"X-XSRFToken": browser.cookies.get("_xsrf", path="/user/alice/")}
    base = f"{hub.url}/user/alice/dask/clusters"
    made = browser.put(f"{base}/", headers=xsrf, timeout=120)
    assert made.status_code == 200, made.text[:500]
    model = made.json()
    try:
        token = auth(alice["JUPYTERHUB_API_TOKEN"])
        listed = requests.get(api(alice, "clusters/"), headers=token, timeout=30).json()
        [name] = set(listed) - {cluster[0]}
        # A path on the hub's own address: the user's browser reaches the gateway through the hub's proxy.
        assert model["dashboard_link"] == f"{urlsplit(alice['DASK_GATEWAY__ADDRESS']).path}/clusters/{name}/status"
        scaled = browser.patch(f"{base}/{model['id']}", json={"workers": 1}, headers=xsrf, timeout=60)
        assert scaled.status_code == 200, scaled.text[:500]
        assert as_alice(alice, WAIT_FOR_TOKENS % {"name": name})["tokens"] == [True]
    finally:
        browser.delete(f"{base}/{model['id']}", headers=xsrf, timeout=60)


def test_alices_clusters_stop_when_her_server_ends_even_if_it_could_not_stop_them(
    cluster, alice, hub_admin, gateway, read_on_workers
):
    """A server stops its clusters as it exits; one that is killed cannot. The gateway does not rely on it: it asks
    the hub whether each user with clusters still has a running server (every 2 s here) and stops the others'.
    Bound: the hub's answer plus one check period; 30 s is generous."""
    import os
    import signal

    name, _ = cluster
    workdir = gateway.dir / "clusters" / name  # the gateway removes it once the scheduler and workers are gone
    assert workdir.is_dir()
    pid = hub_admin.get(f"{hub_admin.api}/users/alice", timeout=30).json()["servers"][""]["state"]["pid"]
    os.kill(pid, signal.SIGKILL)  # no exit handler runs
    hub_admin.delete(f"{hub_admin.api}/users/alice/server", timeout=60)
    wait_for(lambda: not workdir.exists(), timeout=30, what=f"alice's cluster {name} to stop")


# --- the worker plugin on real Dask workers, without the gateway (an in-process Dask cluster of this test) ---------


def _jwt(exp: float) -> str:
    import base64

    claims = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJub25lIn0.{claims}.sig"


def _plugin(base_dir, token: str):
    from singleuser.dask_tokens import DataLakeTokens, token_expiry

    return DataLakeTokens(
        base_dir=str(base_dir),
        files={"rucio_token": (token, token_expiry(token))},
        rucio={"rucio_host": "http://127.0.0.1:9", "auth_type": "oidc", "account": "alice"},
        environ={"SITE_NAME": "LOCAL"},
    )


def _worker_files():
    import os

    path = os.environ.get("BEARER_TOKEN_FILE", "")
    return {"token": open(path).read() if os.path.exists(path) else None, "path": path}


@pytest.fixture
def own_environ():
    """The in-process workers set the token variables in this process's environment: put it back afterwards."""
    import os

    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def dask_client(own_environ):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as local,
        Client(local) as client,
    ):
        yield client


def test_a_renewal_replaces_the_workers_token_file_and_an_expired_one_goes(dask_client, tmp_path):
    import time

    from singleuser.dask_tokens import PLUGIN_NAME

    base = tmp_path / "tokens"
    base.mkdir(mode=0o700)
    first, second = _jwt(time.time() + 3600), _jwt(time.time() + 3)
    dask_client.register_plugin(_plugin(base, first), name=PLUGIN_NAME)
    [seen] = dask_client.run(_worker_files).values()
    assert seen["token"] == first and Path(seen["path"]).parent.parent == base
    assert Path(seen["path"]).stat().st_mode & 0o777 == 0o600
    dask_client.register_plugin(_plugin(base, second), name=PLUGIN_NAME)
    [seen] = dask_client.run(_worker_files).values()
    assert seen["token"] == second
    # The second token expires in 3 s: the worker removes its file by itself (checked every 2 s).
    wait_for(lambda: next(iter(dask_client.run(_worker_files).values()))["token"] is None, timeout=30, what="expiry")


def test_when_the_server_has_no_tokens_left_the_workers_files_go_and_closing_removes_the_directory(
    tmp_path, own_environ
):
    import time

    from distributed import Client, LocalCluster

    from singleuser.dask_tokens import PLUGIN_NAME, DataLakeTokens

    base = tmp_path / "tokens"
    base.mkdir(mode=0o700)
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as local,
        Client(local) as client,
    ):
        client.register_plugin(_plugin(base, _jwt(time.time() + 3600)), name=PLUGIN_NAME)
        [seen] = client.run(_worker_files).values()
        assert seen["token"]
        logged_out = DataLakeTokens(base_dir=str(base), files={}, rucio={}, environ={})
        client.register_plugin(logged_out, name=PLUGIN_NAME)
        assert not Path(seen["path"]).exists()
    assert list(base.iterdir()) == []  # the worker closed: its directory went with it


# --- a job that outlives its tokens: 15-second tokens, a stack of its own ------------------------------------------

LIFETIME = 15  # seconds of each exchanged token; the hub renews those with less than 10 s left
WATCH = """
import base64, json, time
from dask_gateway import Gateway
from singleuser.dask_clusters import new_cluster

def look():
    import os, time
    from rucio.client import Client
    try:
        token = open(os.environ["BEARER_TOKEN_FILE"]).read()
    except FileNotFoundError:
        return None, time.time(), "no token file"
    try:
        return token, time.time(), Client().whoami()["account"]
    except Exception as e:
        return token, time.time(), type(e).__name__

def exp(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) %% 4)))["exp"]

cluster = new_cluster(workers=1)
try:
    client = cluster.get_client()
    client.wait_for_workers(1, timeout=90)
    seen, accounts, margins = set(), set(), []
    deadline = time.monotonic() + %(watch)d
    while time.monotonic() < deadline:
        [(token, now, account)] = client.run(look).values()
        accounts.add(account)
        if token:
            seen.add(token)
            margins.append(exp(token) - now)
        time.sleep(1)
finally:
    cluster.shutdown()
print(json.dumps({"tokens": len(seen), "accounts": sorted(accounts), "least_margin": min(margins)}))
"""


@pytest.fixture(scope="module")
def short_lived():
    """Its own IAM (15-second tokens), Rucio, Dask Gateway and hub; alice's server running in it."""
    with (
        temporary_state("dask-short") as state,
        Stack(
            Settings.free_ports(state),
            full_seed=False,
            iam_options={"access_token_ttl": LIFETIME},
            hub_options={"refresh_margin": 10, "auth_refresh_age": 1, "extra": hub_test_extra()},
        ) as stack,
    ):
        stack.start("core", "dask_gateway", "login")
        admin = service_session(stack.hub, TEST_ADMIN_TOKEN)
        hub_login(stack.hub, "alice", "alice-pass")
        env = process_environ(start_server(admin, "alice"))
        wait_for(lambda: Path(env["BEARER_TOKEN_FILE"]).exists(), timeout=30, what="alice's token files")
        yield env
        admin.delete(f"{admin.api}/users/alice/server", timeout=60)


def test_a_job_longer_than_a_token_lifetime_keeps_reading_as_alice_with_renewed_tokens(short_lived):
    watch = 2 * LIFETIME
    done = as_alice(short_lived, WATCH % {"watch": watch}, timeout=240)
    assert done["accounts"] == ["alice"]  # a file every second, and Rucio accepted it, for two token lifetimes
    assert done["tokens"] >= 3, "the worker never got a renewed token"
    assert done["least_margin"] > 0, "the worker held an expired token"
