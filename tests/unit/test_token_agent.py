"""Token agent logic: atomic 0600 files, the EOS line, refresh scheduling, backoff and error handling.

The hub side is replaced by a small in-process HTTP handler here (this is a unit test of the agent's client
logic); the real hub token API is exercised by the integration tests.
"""

import asyncio
import json
import os
import stat
import time

import pytest
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from singleuser.token_agent import TokenAgent, TokenAPIError
from singleuser.token_files import eos_token_line, write_secret_file


def test_secret_file_is_0600_without_newline_and_replaced_atomically(tmp_path):
    path = tmp_path / "tokens" / "rucio_token"
    write_secret_file(path, "aaa.bbb.ccc")
    assert path.read_bytes() == b"aaa.bbb.ccc"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    inode = path.stat().st_ino
    write_secret_file(path, "ddd.eee.fff")
    assert path.read_bytes() == b"ddd.eee.fff"
    assert path.stat().st_ino != inode, "the file must be replaced by rename, not rewritten in place"
    assert sorted(p.name for p in path.parent.iterdir()) == ["rucio_token"], "temporary files left behind"


def test_secret_file_write_failure_leaves_the_old_token_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "rucio_token"
    write_secret_file(path, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_secret_file(path, "new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rucio_token"]


def test_eos_line_uses_the_issuer_userinfo_endpoint():
    assert eos_token_line("tok", "http://127.0.0.1:8085/") == "oauth2:tok:http://127.0.0.1:8085/userinfo"
    with pytest.raises(ValueError):
        eos_token_line("", "http://iam/")


def _agent(tmp_path, url="http://127.0.0.1:9/api", **kw):
    return TokenAgent(api_url=url, api_token="server-token", token_dir=str(tmp_path), files={"rucio": "rucio_token",
                      "eos": "eos_token"}, **kw)


def test_next_delay_is_half_the_shortest_remaining_lifetime_within_bounds(tmp_path):
    agent = _agent(tmp_path, min_interval=1, max_interval=600)
    now = 1000.0
    body = {"tokens": {"rucio": {"expires_at": now + 100}, "eos": {"expires_at": now + 40}}}
    assert agent.next_delay(body, now) == 20
    assert agent.next_delay({"tokens": {"rucio": {"expires_at": now + 1}}}, now) == 1
    assert agent.next_delay({"tokens": {"rucio": {"expires_at": now + 86400}}}, now) == 600


def test_backoff_doubles_up_to_the_limit(tmp_path):
    agent = _agent(tmp_path, min_interval=1, max_backoff=60)
    assert [agent.backoff(n) for n in (1, 2, 3, 4, 7, 20)] == [1, 2, 4, 8, 60, 60]


def test_missing_configuration_is_reported_by_name(tmp_path):
    agent = TokenAgent(api_url="", api_token="", token_dir=str(tmp_path))
    with pytest.raises(TokenAPIError, match="DLAAS_TOKEN_API_URL, JUPYTERHUB_API_TOKEN not set"):
        agent.check_config()


class _Hub:
    """Answers like the hub's token API would, with a programmable status and body."""

    def __init__(self):
        self.status = 200
        self.body = None
        self.seen_auth = []

    def app(self):
        hub = self

        class Handler(tornado.web.RequestHandler):
            def get(self):
                hub.seen_auth.append(self.request.headers.get("Authorization"))
                self.set_status(hub.status)
                self.write(hub.body if isinstance(hub.body, str) else json.dumps(hub.body))

        return tornado.web.Application([(r"/api", Handler)])


@pytest.fixture
def hub_api():
    hub = _Hub()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(hub.app())
    server.add_sockets(sockets)
    hub.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}/api"
    hub.run = loop.run_until_complete
    yield hub
    server.stop()
    loop.close()
    asyncio.set_event_loop(None)


def test_refresh_writes_both_files_and_authenticates_with_the_server_token(tmp_path, hub_api):
    exp = time.time() + 60
    hub_api.body = {
        "issuer": "http://iam.example/",
        "tokens": {"rucio": {"access_token": "r.t.x", "expires_at": exp}, "eos": {"access_token": "e.t.x",
                                                                               "expires_at": exp}},
    }
    agent = _agent(tmp_path, hub_api.url)
    delay = hub_api.run(agent.refresh_once())
    assert 25 <= delay <= 30
    assert hub_api.seen_auth == ["token server-token"]
    assert (tmp_path / "rucio_token").read_text() == "r.t.x"
    assert (tmp_path / "eos_token").read_text() == "oauth2:e.t.x:http://iam.example/userinfo"
    for name in ("rucio_token", "eos_token"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "status, body, message",
    [
        (403, {"message": "log in again"}, "refused to hand out tokens \\(403\\): log in again"),
        (502, "bad gateway", "answered 502"),
        (200, "not json", "malformed"),
        (200, {"tokens": {}}, "malformed"),
        (200, {"tokens": {"rucio": {"access_token": "", "expires_at": 1}}}, "malformed"),
        (200, {"tokens": {"rucio": {"access_token": "x", "expires_at": "soon"}}}, "malformed"),
    ],
)
def test_bad_answers_keep_the_previous_token_files(tmp_path, hub_api, status, body, message):
    write_secret_file(tmp_path / "rucio_token", "previous")
    hub_api.status, hub_api.body = status, body
    agent = _agent(tmp_path, hub_api.url)
    with pytest.raises(TokenAPIError, match=message):
        hub_api.run(agent.refresh_once())
    assert (tmp_path / "rucio_token").read_text() == "previous"


def test_unreachable_hub_is_a_retryable_error(tmp_path):
    agent = _agent(tmp_path, "http://127.0.0.1:9/api", request_timeout=2)
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(TokenAPIError, match="unreachable") as e:
            loop.run_until_complete(agent.refresh_once())
        assert not e.value.fatal
    finally:
        loop.close()
