"""While Rucio does not answer, the sidebar reads one clear line (singleuser.rucio_unreachable); every other answer
of the Rucio extension, and every answer of other paths, passes through byte for byte. The error texts are the ones
requests 2.34 / urllib3 2.8 give for each failure; the extension's JSON shapes are those of rucio-jupyterlab 41.0.0's
handlers. The transform runs in a real tornado application here; the fault suite plays it against a stopped Rucio
(tests/faults/test_rucio_faults.py)."""

from __future__ import annotations

import gzip
import json

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler

from singleuser.rucio_unreachable import UNREACHABLE, install, rewrite

JSON = "application/json"
REFUSED = (
    "HTTPConnectionPool(host='127.0.0.1', port=35105): Max retries exceeded with url: /dids/x/dids/search "
    "(Caused by NewConnectionError(\"HTTPConnection(host='127.0.0.1', port=35105): Failed to establish a new "
    'connection: [Errno 111] Connection refused"))'
)
CONNECT_TIMEOUT = (
    "HTTPSConnectionPool(host='rucio.example', port=443): Max retries exceeded with url: /ping (Caused by "
    "ConnectTimeoutError(<urllib3.connection.HTTPSConnection object at 0x7f>, 'Connection to rucio.example timed "
    "out. (connect timeout=5)'))"
)
READ_TIMEOUT = "HTTPConnectionPool(host='127.0.0.1', port=55415): Read timed out. (read timeout=0.5)"
RESET = "('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))"
CLOSED = "('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))"
CUT = "('Connection broken: IncompleteRead(3 bytes read, 97 more expected)', IncompleteRead(3 bytes read))"
TRANSPORT = "Rucio API request failed at the transport layer: ConnectionError - "
AUTH = "Rucio API request failed: None No Response. Message: " + TRANSPORT  # when the token is checked first


def body(**keys) -> bytes:
    return json.dumps(keys).encode()


@pytest.mark.parametrize(
    "text", [REFUSED, CONNECT_TIMEOUT, READ_TIMEOUT, RESET, CLOSED, CUT, TRANSPORT + REFUSED, AUTH + REFUSED]
)
def test_the_sidebar_reads_one_clear_line_when_rucio_does_not_answer(text):
    new = rewrite(500, JSON, body(success=False, error=text))
    assert json.loads(new) == {"success": False, "error": UNREACHABLE}


def test_every_other_key_is_kept_and_raw_connection_text_is_replaced_wherever_it_is():
    # did-search's shape for a transport failure (503), and did_browser's (500, the raw text under "message")
    searched = rewrite(
        503,
        "application/json; charset=UTF-8",
        body(success=False, error=TRANSPORT + REFUSED, exception_class="ConnectionError", exception_message=REFUSED),
    )
    assert json.loads(searched) == {
        "success": False,
        "error": UNREACHABLE,
        "exception_class": "ConnectionError",
        "exception_message": UNREACHABLE,
    }
    browsed = rewrite(500, JSON, body(error="Internal server error", message=TRANSPORT + RESET))
    assert json.loads(browsed) == {"error": UNREACHABLE, "message": UNREACHABLE}


@pytest.mark.parametrize(
    "status, content_type, answer",
    [
        (404, JSON, body(success=False, error=REFUSED)),  # not a server error
        (403, JSON, body(error="Your Data Lake session has ended: log in again")),
        (500, "text/html", REFUSED.encode()),  # not JSON
        (500, JSON, b"Internal server error."),  # said to be JSON, but is not
        (500, JSON, b"\xff\xfe"),
        (500, JSON, json.dumps([REFUSED]).encode()),  # not an object
        (500, JSON, body(success=False, error="wildcard_disabled")),
        (500, JSON, body(success=False, error="Unknown error")),
    ],
)
def test_answers_that_are_not_about_rucio_being_unreachable_pass_through(status, content_type, answer):
    assert rewrite(status, content_type, answer) is None


@pytest.mark.parametrize(
    "text",
    [
        # a name that does not resolve, a certificate refused: configuration, not an outage
        "HTTPSConnectionPool(host='rucio', port=443): Max retries exceeded with url: /ping (Caused by "
        "NameResolutionError(\"HTTPSConnection(host='rucio', port=443): Failed to resolve 'rucio'\"))",
        "HTTPSConnectionPool(host='127.0.0.1', port=48895): Max retries exceeded with url: /x (Caused by "
        "SSLError(SSLError(1, '[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)')))",
        # Rucio answered, quoting a connection of its own (to its IdP or database)
        "500 Internal Server Error. Message: " + REFUSED,
        "Rucio API request failed: None No Response. Message: 401 Unauthorized. Message: " + READ_TIMEOUT,
        "DatabaseException: (psycopg2.OperationalError) connection to server failed: Connection refused",
    ],
)
def test_errors_that_rucio_answered_or_that_are_configuration_pass_through(text):
    assert rewrite(500, JSON, body(success=False, error=text)) is None


def test_an_error_with_rucios_own_exception_class_passes_through():
    answered = body(success=False, error=REFUSED, exception_class="CannotAuthenticate", exception_message=REFUSED)
    assert rewrite(500, JSON, answered) is None


class Answer(RequestHandler):
    """Answers as a Rucio extension handler does when Rucio did not answer; `?parts=1` streams the body in parts,
    `?pad=1` makes it long enough to be compressed."""

    def get(self, _path):
        self.set_status(500)
        self.set_header("Content-Type", JSON)
        text = json.dumps(
            {
                "success": False,
                "error": REFUSED,
                **({"pad": "x" * 2000} if self.get_query_argument("pad", None) else {}),
            }
        )
        if self.get_query_argument("parts", None):
            self.write(text[:20])
            self.flush()
            self.write(text[20:])
        else:
            self.write(text)


@pytest.fixture
async def server():
    app = Application([(r"/user/alice/(.*)", Answer)], base_url="/user/alice/", compress_response=True)
    install(app)
    sock, port = bind_unused_port()  # 127.0.0.1, a free port
    http = HTTPServer(app)
    http.add_sockets([sock])
    yield f"http://127.0.0.1:{port}/user/alice"
    http.stop()
    await http.close_all_connections()


async def fetch(url: str, **kwargs):
    return await AsyncHTTPClient().fetch(url, raise_error=False, **kwargs)


async def test_the_rewritten_answer_is_complete_and_compressed_after_the_rewrite(server):
    plain = await fetch(f"{server}/rucio-jupyterlab/did-search")
    assert plain.code == 503
    assert json.loads(plain.body) == {"success": False, "error": UNREACHABLE}
    assert int(plain.headers["Content-Length"]) == len(plain.body)
    zipped = await fetch(
        f"{server}/rucio-jupyterlab/did-search?pad=1", headers={"Accept-Encoding": "gzip"}, decompress_response=False
    )
    assert zipped.code == 503 and zipped.headers["Content-Encoding"] == "gzip"
    assert int(zipped.headers["Content-Length"]) == len(zipped.body)
    assert json.loads(gzip.decompress(zipped.body)) == {"success": False, "error": UNREACHABLE, "pad": "x" * 2000}


async def test_other_paths_and_answers_streamed_in_parts_pass_through(server):
    other = await fetch(f"{server}/api/contents")
    assert other.code == 500 and json.loads(other.body)["error"] == REFUSED
    streamed = await fetch(f"{server}/rucio-jupyterlab/did-search?parts=1")
    assert streamed.code == 500 and json.loads(streamed.body)["error"] == REFUSED
