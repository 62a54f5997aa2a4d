"""The Flask app of SageMaker's hosting contract: routes, content negotiation, errors → JSON statuses.

Never imports torch: it is handed a model object with `class_names` and `predict(images) -> N x C`.

  GET  /ping                  200, empty body, once the model is loaded; 503 {"error": reason} if it
                              could not be loaded (the reason is also in the log).
  POST /invocations           formats in dogbreed.serving.codecs.
  GET  /execution-parameters  {"MaxConcurrentTransforms": n, "BatchStrategy": s, "MaxPayloadInMB": m}

Every error answers {"error": "<message>"} with its status: 400 bad body, 406 Accept, 413 too large,
415 Content-Type, 503 model unavailable; anything unexpected is logged with its traceback → 500.
"""

import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from ..errors import PayloadTooLarge, ServingError
from ..sm_env import ServingEnv
from . import codecs

log = logging.getLogger(__name__)

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"


class Model(Protocol):
    class_names: list[str]

    def predict(self, images: Sequence[codecs.Image_]) -> np.ndarray: ...


def create_app(model: Model | None, env: ServingEnv, *, unavailable_reason: str = "") -> Flask:
    """The WSGI app; model None means loading failed and unavailable_reason says why."""
    if model is None and not unavailable_reason:
        raise ValueError("create_app needs a model or the reason there is none")
    codecs.guard_decompression_bombs()
    limits = codecs.DecodeLimits(max_pixels=env.max_image_pixels, max_request_pixels=env.max_request_pixels)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = env.max_payload_bytes

    @app.get("/ping")
    def ping():
        if model is None:
            return jsonify(error=f"model not loaded: {unavailable_reason}"), 503
        return Response(status=200)

    @app.get("/execution-parameters")
    def execution_parameters():
        return jsonify(
            MaxConcurrentTransforms=env.max_concurrent_transforms,
            BatchStrategy=env.batch_strategy,
            MaxPayloadInMB=env.max_payload_mb,
        )

    @app.post("/invocations")
    def invocations():
        if model is None:
            raise ServingError(f"model not loaded: {unavailable_reason}", 503)
        if request.content_length is not None and request.content_length > env.max_payload_bytes:
            raise _too_large(request.content_length, env)
        media_type = codecs.media_type_of(request.content_type or "")
        decode = codecs.decoder_for(media_type)
        response_format = codecs.negotiate(
            request.headers.get("Accept"), request.headers.get(CUSTOM_ATTRIBUTES), len(model.class_names)
        )
        body = _read_body(env)
        if not body:
            raise ServingError("empty request body")
        probabilities = model.predict(decode(body, limits, media_type))
        payload = codecs.encode(probabilities, model.class_names, response_format)
        return Response(payload, status=200, mimetype=response_format.media_type)

    _register_error_handlers(app)
    return app


def _read_body(env: ServingEnv) -> bytes:
    """The body, refused as soon as it exceeds the limit (chunked bodies have no Content-Length)."""
    if request.content_length is not None:  # already checked against the limit
        return request.get_data(cache=False)
    if not request.environ.get("wsgi.input_terminated"):
        return b""  # WSGI: without a length, only a server-terminated stream may be read
    # Read the server's stream directly: werkzeug's MAX_CONTENT_LENGTH wrapper stops at the limit
    # without telling a body of exactly the limit from a longer one.
    stream, chunks, size = request.environ["wsgi.input"], [], 0
    while size <= env.max_payload_bytes:
        chunk = stream.read(min(1 << 16, env.max_payload_bytes + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > env.max_payload_bytes:
        raise _too_large(None, env)
    return b"".join(chunks)


def _too_large(size: int | None, env: ServingEnv) -> PayloadTooLarge:
    shown = f"request body of {size} bytes" if size is not None else "request body"
    return PayloadTooLarge(f"{shown} exceeds the {env.max_payload_mb} MB limit ({env.max_payload_bytes} bytes)")


def _discard_unread_body(limit: int) -> None:
    """Read what is left of a refused request's body (at most `limit` bytes), so the keep-alive
    connection is clean: otherwise the server's next read on it blocks a request thread (gunicorn
    gthread) until the client sends again or hangs up, which also stalls graceful shutdown."""
    if not request.environ.get("wsgi.input_terminated"):
        return  # without a server-terminated stream, reading past the request would block
    stream, left = request.environ["wsgi.input"], limit
    while left > 0 and (chunk := stream.read(min(1 << 16, left))):
        left -= len(chunk)


def _register_error_handlers(app: Flask) -> None:
    drain_limit = 2 * app.config["MAX_CONTENT_LENGTH"]

    @app.errorhandler(ServingError)
    def serving_error(exc: ServingError):
        log.info("request refused (%d): %s", exc.status, exc)
        _discard_unread_body(drain_limit)
        return jsonify(error=str(exc)), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):  # 404, 405, werkzeug's own 413 (MAX_CONTENT_LENGTH), ...
        _discard_unread_body(drain_limit)
        return jsonify(error=exc.description or exc.name), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unexpected error while serving %s %s", request.method, request.path)
        return jsonify(error=f"internal server error ({type(exc).__name__}); see the server log"), 500
