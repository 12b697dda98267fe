"""Run moto's DynamoDB requests one at a time in a threaded moto server.

Every moto server sdq runs is threaded: ``ThreadedMotoServer`` (the test fixture) and
``moto.server.main`` (the local stack) serve with werkzeug's ``threaded=True``, and the bench's
``sdq_bench.moto_front`` runs the WSGI app in a thread pool. moto's DynamoDB backend is not
written for that (moto 5.2.5, ``moto/dynamodb/models/__init__.py``):

- ``DynamoDBBackend.transact_write_items`` deep-copies every table the transaction names, applies
  its items one by one, and when any condition fails assigns the copies back to
  ``self.tables``: every write another thread made to those tables in between is silently undone
  (a ``complete`` status written by one agent vanishes because another agent's transaction was
  refused);
- ``put_item``/``update_item``/``delete_item`` change the table's item dicts and the ``Item``
  objects in place, with no lock, and the response (``moto/dynamodb/responses.py``) serialises
  the item after the backend call returned, so it can show another request's half-applied
  transaction;
- ``DomainDispatcherApplication``'s own ``lock`` (``moto/moto_server/werkzeug_app.py``) only
  guards choosing the backend app, not the request.

Real DynamoDB applies each single-item write atomically and isolates transactions from every
other write (serializable). Taking one process-wide lock around each whole DynamoDB request,
response body included, is the simplest faithful model: every request sees and leaves a state
some serial order of the requests would have produced. It is taken at the HTTP request, not
inside the backend, because the response is built from the backend's live objects after the
backend call returns. Other services (S3, SQS, SNS, SSM) keep running concurrently. Requests are
told by their ``X-Amz-Target`` header (``DynamoDB_20120810.*``, and ``DynamoDBStreams_*``, which
read the same tables); the JSON protocol botocore uses for DynamoDB always sends it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

_MARK = "_sdq_dynamodb_isolated"
_PATCHING = threading.Lock()
# Held for the whole of one DynamoDB request; process-wide since moto's backends are.
DYNAMODB_LOCK = threading.Lock()

WsgiCall = Callable[[Any, dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def is_dynamodb_request(environ: dict[str, Any]) -> bool:
    return str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB")


def _isolated(call: WsgiCall) -> WsgiCall:
    def __call__(self: Any, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not is_dynamodb_request(environ):
            return call(self, environ, start_response)
        with DYNAMODB_LOCK:
            result = call(self, environ, start_response)
            try:
                return list(result)  # the body is built from live items: inside the lock
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()

    setattr(__call__, _MARK, True)
    return __call__


def isolate_dynamodb() -> None:
    """Make every ``DomainDispatcherApplication`` (moto's WSGI app, in this process) serve
    DynamoDB requests one at a time. Call it before the server starts; calling it again does
    nothing."""
    from moto.moto_server.werkzeug_app import (  # noqa: PLC0415 - moto is heavy to import
        DomainDispatcherApplication,
    )

    with _PATCHING:
        call = DomainDispatcherApplication.__call__
        if not getattr(call, _MARK, False):
            # a class attribute, so the apps ThreadedMotoServer and moto.server.main build get it
            setattr(DomainDispatcherApplication, "__call__", _isolated(call))  # noqa: B010


def is_dynamodb_isolated() -> bool:
    from moto.moto_server.werkzeug_app import (  # noqa: PLC0415 - moto is heavy to import
        DomainDispatcherApplication,
    )

    return bool(getattr(DomainDispatcherApplication.__call__, _MARK, False))
