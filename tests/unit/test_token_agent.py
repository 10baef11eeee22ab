"""Token agent logic: atomic 0600 files, the EOS line, refresh scheduling, backoff, refusals and expiry.

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

from dlaas_fs.atomic import write_secret_file
from singleuser.token_agent import TokenAgent, TokenAPIError
from singleuser.token_files import eos_token_line, write_private_file


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

    def broken_replace(src, dst, **dir_fds):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_secret_file(path, "new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rucio_token"]


@pytest.mark.parametrize(
    "endpoint, resource",
    [
        ("https://iam.example.org/userinfo", "iam.example.org/userinfo"),
        ("https://IAM.example.org:443/userinfo/", "iam.example.org/userinfo"),  # 443 is what EOS calls anyway
        (
            "https://iam.example.org/auth/realms/escape/protocol/openid-connect/userinfo",
            "iam.example.org/auth/realms/escape/protocol/openid-connect/userinfo",
        ),
        ("http://iam.example.org/userinfo", "iam.example.org/userinfo"),
    ],
)
def test_eos_line_is_three_fields_with_the_userinfo_endpoint_without_scheme(endpoint, resource):
    line = eos_token_line("aaa.bbb.ccc", endpoint)
    assert line.split(":") == ["oauth2", "aaa.bbb.ccc", resource]
    assert "://" not in line and "\n" not in line


@pytest.mark.parametrize(
    "endpoint, message",
    [
        # EOS splits on every ':': a port would be read as the expiry (a time long past) and the token refused.
        ("https://iam.example.org:8443/userinfo", "names port 8443: EOS reads every ':'"),
        ("http://127.0.0.1:8085/userinfo", "names port 8085"),
        ("https://[2001:db8::1]/userinfo", "IPv6"),
        ("https://user@iam.example.org/userinfo", "not a plain http"),
        ("iam.example.org/userinfo", "not a plain http"),
        ("", "not a plain http"),
        ("https://iam.example.org/user info", "whitespace"),
    ],
)
def test_eos_line_refuses_what_eos_would_misread(endpoint, message):
    with pytest.raises(ValueError, match=message):
        eos_token_line("tok", endpoint)


@pytest.mark.parametrize("token", ["", "a:b", "abc\n", "a b"])
def test_eos_line_refuses_a_token_that_would_break_the_line(token):
    with pytest.raises(ValueError, match="access token for EOS"):
        eos_token_line(token, "https://iam.example.org/userinfo")


def _agent(tmp_path, url="http://127.0.0.1:9/api", **kw):
    return TokenAgent(
        api_url=url,
        api_token="server-token",
        token_dir=str(tmp_path),
        files={"rucio": "rucio_token", "eos": "eos_token"},
        **kw,
    )


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
        "issuer": "https://iam.example/",
        "userinfo_endpoint": "https://iam.example/oidc/userinfo",
        "tokens": {
            "rucio": {"access_token": "r.t.x", "expires_at": exp},
            "eos": {"access_token": "e.t.x", "expires_at": exp},
        },
    }
    agent = _agent(tmp_path, hub_api.url)
    delay = hub_api.run(agent.refresh_once())
    assert 25 <= delay <= 30
    assert hub_api.seen_auth == ["token server-token"]
    assert (tmp_path / "rucio_token").read_text() == "r.t.x"
    assert (tmp_path / "eos_token").read_text() == "oauth2:e.t.x:iam.example/oidc/userinfo"
    for name in ("rucio_token", "eos_token"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_without_a_userinfo_endpoint_the_eos_line_falls_back_to_the_issuer(tmp_path, hub_api):
    hub_api.body = {"issuer": "https://iam.example/", "tokens": _tokens(time.time() + 60)}
    hub_api.run(_agent(tmp_path, hub_api.url).refresh_once())
    assert (tmp_path / "eos_token").read_text() == "oauth2:e.t.x:iam.example/userinfo"


def test_an_endpoint_eos_cannot_use_gets_no_eos_file_one_log_line_and_the_old_file_goes(tmp_path, hub_api, caplog):
    write_private_file(tmp_path / "eos_token", "oauth2:old:iam.example/userinfo")
    hub_api.body = {"userinfo_endpoint": "https://iam.example:8443/userinfo", "tokens": _tokens(time.time() + 60)}
    agent = _agent(tmp_path, hub_api.url)
    for _ in range(3):
        hub_api.run(agent.step())
    assert (tmp_path / "rucio_token").read_text() == "r.t.x"
    assert not (tmp_path / "eos_token").exists()
    lines = [r.getMessage() for r in caplog.records if "EOS token file" in r.getMessage()]
    assert len(lines) == 1 and "port 8443" in lines[0] and "\n" not in lines[0]


def _tokens(exp, rucio="r.t.x", eos="e.t.x"):
    return {"rucio": {"access_token": rucio, "expires_at": exp}, "eos": {"access_token": eos, "expires_at": exp}}


def _messages(caplog, text):
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


@pytest.mark.parametrize("status", [401, 403])
def test_the_first_refusal_removes_the_token_files_and_says_log_in_again_once(tmp_path, hub_api, caplog, status):
    hub_api.body = {"issuer": "https://iam.example/", "tokens": _tokens(time.time() + 600)}
    agent = _agent(tmp_path, hub_api.url)
    hub_api.run(agent.step())
    assert (tmp_path / "rucio_token").exists() and (tmp_path / "eos_token").exists()
    hub_api.status, hub_api.body = status, {"message": "Your ESCAPE IAM session has ended"}
    hub_api.run(agent.step())
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a token outlived the end of the session"
    for _ in range(3):
        hub_api.run(agent.step())
    (line,) = _messages(caplog, "log in to the hub again")
    assert f"{status}: Your ESCAPE IAM session has ended" in line
    # After a new login the files come back at the next call.
    hub_api.status, hub_api.body = 200, {"issuer": "https://iam.example/", "tokens": _tokens(time.time() + 600)}
    hub_api.run(agent.step())
    assert (tmp_path / "rucio_token").read_text() == "r.t.x"


def test_a_refusal_also_removes_files_left_by_an_earlier_server(tmp_path, hub_api):
    write_private_file(tmp_path / "rucio_token", "left.over.token")
    hub_api.status, hub_api.body = 401, {"message": "log in"}
    hub_api.run(_agent(tmp_path, hub_api.url).step())
    assert not (tmp_path / "rucio_token").exists()


def test_after_a_refusal_the_agent_asks_ever_more_rarely_up_to_max_auth_backoff(tmp_path, hub_api):
    hub_api.status, hub_api.body = 401, {"message": "log in"}
    agent = _agent(tmp_path, hub_api.url, min_interval=1, max_backoff=4, max_auth_backoff=40)
    delays = [hub_api.run(agent.step()) for _ in range(9)]
    assert delays == [1, 2, 4, 8, 16, 32, 40, 40, 40]
    assert len(hub_api.seen_auth) == 9


def test_a_failing_hub_keeps_valid_files_and_wakes_the_agent_when_they_expire(tmp_path, hub_api):
    expires_at = time.time() + 30
    hub_api.body = {"issuer": "https://iam.example/", "tokens": _tokens(expires_at)}
    agent = _agent(tmp_path, hub_api.url, min_interval=1, max_backoff=300)
    hub_api.run(agent.step())
    hub_api.status, hub_api.body = 502, "bad gateway"
    started = time.time()
    delays = [hub_api.run(agent.step()) for _ in range(12)]  # backoff alone would reach 300 s
    assert (tmp_path / "rucio_token").read_text() == "r.t.x", "a valid token was dropped on a transient error"
    assert delays[:3] == [1, 2, 4]
    assert max(delays) <= expires_at - started, "the agent would sleep past the token's expiry"


def test_a_token_that_expires_while_the_hub_fails_is_removed(tmp_path, hub_api, caplog):
    expires_at = time.time() + 2
    hub_api.body = {"issuer": "https://iam.example/", "tokens": _tokens(expires_at)}
    agent = _agent(tmp_path, hub_api.url)
    hub_api.run(agent.step())
    assert (tmp_path / "rucio_token").exists()
    hub_api.status, hub_api.body = 503, "down"
    while time.time() <= expires_at:
        time.sleep(0.2)
    hub_api.run(agent.step())
    assert not (tmp_path / "rucio_token").exists() and not (tmp_path / "eos_token").exists()
    assert _messages(caplog, "token file for rucio removed: its token expired")


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
