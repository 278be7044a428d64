"""HTTP through the host: the only network a plugin has.

Requests go to the hosts the plugin's ``plugin.toml`` declares and the operator allows;
the host retries 5xx, 408 and network failures with backoff and waits out 429 and
rate-limit resets before it gives up with :class:`~inlet_pdk.UnavailableError`. A request
that breaks a sandbox rule (an undeclared host, a private address, a response over the
limit) stops the plugin: it cannot be caught. Secrets are named, never seen: the host puts
their values into the headers (:meth:`Request.secret_header`).
"""

from __future__ import annotations

import json as _json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from componentize_py_types import Err, Ok
from wit_world.imports import host as _host

from .errors import AuthError, DataError, PluginError, UnavailableError, from_wit

__all__ = ["Request", "Response", "get", "send", "send_all", "get_json", "check_status"]


class Response:
    """A final answer (any status but the ones the host retries)."""

    __slots__ = ("status", "headers", "body", "url")

    def __init__(self, status: int, headers: List[tuple], body: bytes, url: str = "") -> None:
        self.status = status
        """The HTTP status."""
        self.headers = headers
        """``(name, value)`` pairs, names in lower case."""
        self.body = body
        """The body, bytes."""
        self.url = url
        """The URL asked for."""

    def header(self, name: str) -> Optional[str]:
        """The first header called ``name`` (any case), or None."""
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    @property
    def text(self) -> str:
        """The body as UTF-8 text (bad bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON (a :class:`DataError` naming the URL if it is not)."""
        try:
            return _json.loads(self.body)
        except ValueError as e:
            raise DataError(f"{self.url}: the body is not JSON: {e}") from None

    def raise_for_status(self) -> "Response":
        """Raise on a 4xx/5xx status as the Rust SDK's ``check_status`` does:
        :class:`AuthError` on 401/403, :class:`UnavailableError` (transient) on 429 and
        5xx, :class:`DataError` (permanent) on the other 4xx; return the response
        otherwise (1xx-3xx too: see :func:`check_status` to refuse every non-2xx)."""
        if self.status >= 400:
            raise _status_error(self.url, self.status, self.text[:200])
        return self


class Request:
    """A request under construction: ``Request.get(url).header("accept", "...")``."""

    __slots__ = ("method", "url", "headers", "secret_headers", "body")

    def __init__(
        self,
        method: str,
        url: str,
        headers: Optional[Mapping[str, str]] = None,
        body: Optional[bytes] = None,
    ) -> None:
        self.method = method
        self.url = url
        self.headers: List[tuple] = list((headers or {}).items())
        self.secret_headers: List[tuple] = []
        self.body = body

    @classmethod
    def get(cls, url: str, headers: Optional[Mapping[str, str]] = None) -> "Request":
        """A GET of ``url``."""
        return cls("GET", url, headers)

    @classmethod
    def post_json(cls, url: str, value: Any) -> "Request":
        """A POST of ``value`` as JSON."""
        r = cls("POST", url, {"content-type": "application/json"})
        r.body = _json.dumps(value).encode()
        return r

    def header(self, name: str, value: str) -> "Request":
        """Add a header."""
        self.headers.append((name, value))
        return self

    def secret_header(self, name: str, secret: str, prefix: str = "") -> "Request":
        """Add header ``name`` with value ``prefix + <secret>``, where ``secret`` names an
        entry of the connection's ``sandbox.secrets``: the host fills it in, the plugin
        never sees the value (``.secret_header("authorization", "token", "Bearer ")``)."""
        self.secret_headers.append((name, secret, prefix))
        return self

    def send(self) -> Response:
        """Send it (see :func:`send`)."""
        return send(self)

    def to_wit(self) -> _host.HttpRequest:
        """The WIT value."""
        return _host.HttpRequest(
            method=self.method,
            url=self.url,
            headers=[_host.Header(name=k, value=v) for k, v in self.headers],
            secret_headers=[
                _host.SecretHeader(name=n, secret=s, prefix=p) for n, s, p in self.secret_headers
            ],
            body=self.body,
        )


def _status_error(url: str, status: int, snippet: str = "") -> PluginError:
    """The error for a failed status: 401/403 auth, 429 and 5xx unavailable, other data."""
    text = f"{url}: HTTP {status}" + (f": {snippet}" if snippet else "")
    if status in (401, 403):
        return AuthError(text)
    if status == 429 or 500 <= status <= 599:
        return UnavailableError(text)
    return DataError(text)


def check_status(url: str, response: Response) -> None:
    """Raise unless ``response`` has a 2xx status, as ``inlet_pdk::http::check_status``
    in Rust: :class:`AuthError` on 401/403, :class:`UnavailableError` on 429 and 5xx,
    :class:`DataError` on any other status. The message is ``"<url>: HTTP <status>"``."""
    if not 200 <= response.status <= 299:
        raise _status_error(url, response.status)


def _response(r: _host.HttpResponse, url: str) -> Response:
    return Response(r.status, [(h.name, h.value) for h in r.headers], bytes(r.body), url)


def get(url: str, headers: Optional[Mapping[str, str]] = None) -> Response:
    """GET ``url`` (see :func:`send`)."""
    return send(Request.get(url, headers))


def send(request: Request) -> Response:
    """Send one request through the host and return its final response.

    Raises :class:`UnavailableError` when the host gave up retrying, and the other
    :class:`PluginError` kinds for what the host refused.
    """
    try:
        answer = _host.http_fetch(request.to_wit())
    except Err as e:
        raise from_wit(e.value) from None
    return _response(answer, request.url)


# Requests per `http-fetch-many` call: the host answers `other` to every request of a
# larger call.
MAX_PER_CALL = 1000


def send_all(requests: Sequence[Request]) -> List[Union[Response, PluginError]]:
    """Send several requests at once (the host runs them concurrently, within the
    connection's limits) and return, in the order asked, a :class:`Response` or the
    :class:`PluginError` of each. Any number: they go to the host 1000 at a time (as
    ``inlet_pdk::http::send_all`` in Rust)."""
    requests = list(requests)
    answers: list = []
    for start in range(0, len(requests), MAX_PER_CALL):
        chunk = requests[start : start + MAX_PER_CALL]
        answers.extend(_host.http_fetch_many([r.to_wit() for r in chunk]))
    out: List[Union[Response, PluginError]] = []
    for r, a in zip(requests, answers):
        if isinstance(a, Ok):
            out.append(_response(a.value, r.url))
        elif isinstance(a, Err):
            out.append(from_wit(a.value))
        else:
            out.append(_response(a, r.url))
    return out


def get_json(url: str, headers: Optional[Mapping[str, str]] = None) -> Any:
    """GET ``url``, fail on an error status (:meth:`Response.raise_for_status`), parse JSON."""
    return get(url, headers).raise_for_status().json()


Headers = Dict[str, str]
