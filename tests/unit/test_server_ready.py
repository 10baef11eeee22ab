"""hub_plugins.server_ready and hub_plugins.kube_spawner: a spawner's start() returns once the new server accepts
connections (real loopback sockets; KubeSpawner without a cluster, as its own tests build it)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from asyncio.subprocess import PIPE

from devstack.settings import REPO
from hub_plugins.server_ready import wait_listening


async def listen_later(delay: float, listening: list[bool]) -> asyncio.Task:
    """A loopback server that starts listening after `delay` seconds on a port chosen now (then appends to
    `listening`): the task that starts it, with the port in `.port`; awaiting it gives the server."""
    probe = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()

    async def later():
        await asyncio.sleep(delay)
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
        listening.append(True)
        return server

    task = asyncio.ensure_future(later())
    task.port = port
    return task


async def test_returns_once_the_server_listens_and_not_before():
    listening: list[bool] = []
    later = await listen_later(0.4, listening)
    assert await wait_listening("127.0.0.1", later.port, interval=0.05, timeout=10)
    assert listening == [True]
    (await later).close()


async def test_a_host_name_is_resolved_and_each_of_its_addresses_tried():
    listening: list[bool] = []
    later = await listen_later(0.3, listening)  # 127.0.0.1 only: "localhost" may name ::1 first
    assert await wait_listening("localhost", later.port, interval=0.05, timeout=10)
    assert listening == [True]
    (await later).close()


async def test_gives_up_at_the_timeout_when_nothing_listens():
    later = await listen_later(60, [])
    assert not await wait_listening("127.0.0.1", later.port, interval=0.05, timeout=0.3)
    later.cancel()


async def test_stops_looking_once_the_server_process_ended():
    later = await listen_later(60, [])
    looks = []

    def alive():
        looks.append(1)
        return len(looks) < 3

    assert not await wait_listening("127.0.0.1", later.port, interval=0.05, timeout=30, alive=alive)
    assert len(looks) == 3
    later.cancel()


KUBESPAWNER_STARTS = """
import asyncio, sys
from hub_plugins.kube_spawner import DataLakeKubeSpawner

async def main():
    spawner = DataLakeKubeSpawner(_mock=True, ready_poll_interval=0.05)
    pod_started = asyncio.get_running_loop().create_future()
    pod_started.set_result(sys.argv[1])  # what KubeSpawner's own start() gives once the pod runs
    print(await spawner._listening(pod_started))

asyncio.run(main())
"""


async def test_kubespawner_start_returns_the_pods_url_once_its_port_listens(tmp_path):
    """DataLakeKubeSpawner (built as KubeSpawner's own tests build it, without a cluster, in a process of its own:
    the Kubernetes client keeps its configuration per process) waits after KubeSpawner's start()."""
    kubeconfig = tmp_path / "kubeconfig"
    cluster = {"server": "https://127.0.0.1:9"}  # never contacted: a spawner built with _mock
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    listening: list[bool] = []
    later = await listen_later(4, listening)  # after the child process is up (it imports KubeSpawner in ~1-2 s)
    url = f"http://127.0.0.1:{later.port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")} | {"KUBECONFIG": str(kubeconfig)}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KUBESPAWNER_STARTS, url, env=env, cwd=REPO, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(child.communicate(), timeout=120)
    assert child.returncode == 0, err.decode()[-2000:]
    assert out.decode().split() == [url]
    assert listening == [True]
    (await later).close()
