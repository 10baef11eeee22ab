"""While Rucio does not answer (stopped, restarting, its port closed or a connection cut), the Rucio sidebar says so
in one line, instead of the raw error of the HTTP library that the Rucio extension hands on.

The Rucio extension answers its API requests that fail to reach Rucio with HTTP 500 (or 503) and a JSON body whose
`error` (or `message`) is the text of a `requests` exception: "HTTPConnectionPool(host=..., port=...): Max retries
exceeded ... Connection refused"; the sidebar shows `error` as it is. An output transform, placed first in the web
application's transforms (before any compression), looks at the answers under `<base_url>rucio-jupyterlab/`. Only a
complete JSON object answered with a 5xx status whose text is in requests' wording of a connection that was refused,
reset, cut or timed out is rewritten: HTTP 503, `error` (and any other text in that wording) becomes UNREACHABLE,
every other key is kept. Everything else - other paths and statuses, bodies that are not JSON, answers streamed in
parts, errors that Rucio itself answered (they carry Rucio's exception class) - passes through untouched. It only
rewrites the message: nothing of the Rucio extension or of requests is patched, and no request is retried. (A
transform cannot change the status line's reason phrase: a rewritten 500 goes out as "503 Internal Server Error";
the sidebar shows the JSON's `error`, not the phrase.)
"""

from __future__ import annotations

import functools
import json
import re

from tornado import httputil
from tornado.web import OutputTransform

UNREACHABLE = "The Data Lake catalogue (Rucio) is not answering: try again in a minute"

#: requests' (urllib3 2's) wording of a connection to Rucio refused, reset, cut mid-answer or timed out. Not: a name
#: that does not resolve (NameResolutionError) or a certificate problem (SSLError): those are configuration.
NO_ANSWER = re.compile(
    r"HTTPS?ConnectionPool\(host=[^)]*\): (?:Read timed out\."
    r"|Max retries exceeded with url: .*\(Caused by (?:NewConnectionError|ConnectTimeoutError|ReadTimeoutError"
    r"|ProtocolError)\()"
    r"|\('Connection (?:aborted\.|broken: )",
    re.DOTALL,
)

#: How the extension words an error that Rucio answered (its status, then Rucio's message): passed through.
RUCIO_ANSWERED = re.compile(r"\b\d{3} [A-Za-z' -]*\. Message: ")

#: The classes of requests' exceptions for those failures (the extension's `exception_class`, when it gives one).
REQUESTS_CLASSES = frozenset({"ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "ChunkedEncodingError"})


def _no_answer(text: str) -> bool:
    return bool(NO_ANSWER.search(text)) and not RUCIO_ANSWERED.search(text)


def rewrite(status: int, content_type: str, body: bytes) -> bytes | None:
    """The body to answer instead, with HTTP 503, or None to let the answer pass as it is."""
    if status < 500 or not content_type.lower().startswith("application/json"):
        return None
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(answer, dict):
        return None
    if answer.get("exception_class") not in (None, *REQUESTS_CLASSES):
        return None  # Rucio answered: its own error (even one that quotes a connection of Rucio's own)
    matched = [key for key, value in answer.items() if isinstance(value, str) and _no_answer(value)]
    if not matched:
        return None
    for key in ["error", *matched]:
        answer[key] = UNREACHABLE
    return json.dumps(answer).encode()


class RucioUnreachableTransform(OutputTransform):
    """Rewrites a Rucio extension's answer that only says Rucio did not answer (see the module docstring)."""

    def __init__(self, request: httputil.HTTPServerRequest, prefix: str):
        self.ours = request.path.startswith(prefix)

    def transform_first_chunk(
        self, status_code: int, headers: httputil.HTTPHeaders, chunk: bytes, finishing: bool
    ) -> tuple[int, httputil.HTTPHeaders, bytes]:
        # `finishing`: the whole body is in this chunk (an answer streamed in parts is left alone).
        if not (self.ours and finishing) or "Content-Encoding" in headers:
            return status_code, headers, chunk
        body = rewrite(status_code, headers.get("Content-Type", ""), chunk)
        if body is None:
            return status_code, headers, chunk
        if "Content-Length" in headers:
            headers["Content-Length"] = str(len(body))
        return 503, headers, body


def install(web_app) -> None:
    """Put the transform first in the server's transforms, for the Rucio extension's API under the base URL."""
    prefix = web_app.settings.get("base_url", "/").rstrip("/") + "/rucio-jupyterlab/"
    web_app.transforms.insert(0, functools.partial(RucioUnreachableTransform, prefix=prefix))
