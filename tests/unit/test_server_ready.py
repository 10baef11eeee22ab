"""hub_plugins.server_ready and hub_plugins.kube_spawner: a spawner's start() returns once the new server accepts
connections (real loopback sockets; KubeSpawner without a cluster, as its own tests build it)."""

from __future__ import annotations

import asyncio
import json

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


async def test_kubespawner_start_returns_the_pods_url_once_its_port_listens(tmp_path, monkeypatch):
    """DataLakeKubeSpawner waits after KubeSpawner's start() (here a finished future with the pod's URL)."""
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
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    from hub_plugins.kube_spawner import DataLakeKubeSpawner

    spawner = DataLakeKubeSpawner(_mock=True, ready_poll_interval=0.05)
    listening: list[bool] = []
    later = await listen_later(0.4, listening)
    pod_started = asyncio.get_running_loop().create_future()
    pod_started.set_result(f"http://127.0.0.1:{later.port}")
    assert await spawner._listening(pod_started) == f"http://127.0.0.1:{later.port}"
    assert listening == [True]
    (await later).close()
