"""The Flask app of SageMaker's hosting contract: routes, content negotiation, errors → JSON statuses.

Never imports torch: it is handed a model object with `class_names` and `predict(images) -> N x C`.

  GET  /ping                  200, empty body, once the model is loaded; 503 {"error": reason} if it
                              could not be loaded (the reason is also in the log).
  POST /invocations           formats in dogbreed.serving.codecs; in a batch transform job, JSON Lines records are
                              answered one line each, a refused record by its error line.
  GET  /execution-parameters  {"MaxConcurrentTransforms": n, "BatchStrategy": s, "MaxPayloadInMB": m}

Every error answers {"error": "<message>"} with its status: 400 bad body, 405 method (with Allow; OPTIONS too),
406 Accept, 413 too large, 415 Content-Type, 503 model unavailable; anything unexpected is logged with its
traceback → 500. In a batch transform job (SAGEMAKER_BATCH), 400 and 413 answer 200 {"error", "status"} instead
(RECORD_ERRORS).
"""

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ..errors import PayloadTooLarge, ServingError, UnsupportedMediaType
from ..sm_env import ServingEnv
from . import codecs

log = logging.getLogger(__name__)

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
# A batch transform job fails as a whole on one 4xx. When SAGEMAKER_BATCH is set, a record whose own bytes cannot be
# served (undecodable 400, too costly 413) is answered 200 {"error", "status"}: the job completes and that image's
# .out file says why. A wrong Content-Type or Accept (415, 406) is the job's setting: it still fails the job at once.
RECORD_ERRORS = (400, 413)
# Flask answers OPTIONS on every route by itself, 200 text/html with an empty body. Without it, OPTIONS is a method
# the route does not answer: a JSON 405 with the Allow header, as nginx answers OPTIONS /ping (no browser calls this
# API cross-origin: SageMaker's runtime signs each request).
NO_AUTOMATIC_OPTIONS = {"provide_automatic_options": False}


class Model(Protocol):
    class_names: list[str]

    def predict(self, images: Sequence[codecs.Image_]) -> np.ndarray: ...

    def predict_each(self, images: Sequence[codecs.Image_]) -> list[np.ndarray | ServingError]: ...


def create_app(model: Model | None, env: ServingEnv, *, unavailable_reason: str = "") -> Flask:
    """The WSGI app; model None means loading failed and unavailable_reason says why."""
    if model is None and not unavailable_reason:
        raise ValueError("create_app needs a model or the reason there is none")
    codecs.guard_decompression_bombs()
    limits = codecs.DecodeLimits(max_pixels=env.max_image_pixels, max_request_pixels=env.max_request_pixels)
    app = Flask(__name__)

    @app.get("/ping", **NO_AUTOMATIC_OPTIONS)
    def ping():
        if model is None:
            return jsonify(error=f"model not loaded: {unavailable_reason}"), 503
        return Response(status=200)

    @app.get("/execution-parameters", **NO_AUTOMATIC_OPTIONS)
    def execution_parameters():
        return jsonify(
            MaxConcurrentTransforms=env.max_concurrent_transforms,
            BatchStrategy=env.batch_strategy,
            MaxPayloadInMB=env.max_payload_mb,
        )

    @app.post("/invocations", **NO_AUTOMATIC_OPTIONS)
    def invocations():
        if model is None:
            raise ServingError(f"model not loaded: {unavailable_reason}", 503)
        body = _read_body(env)  # first, as nginx in front of `serve` refuses an oversize body before all else
        _check_identity_encoding(request.headers.get("Content-Encoding"))
        media_type = codecs.media_type_of(request.content_type or "")
        decode = codecs.decoder_for(request.content_type or "")
        response_format = codecs.negotiate(
            request.headers.get("Accept"), request.headers.get(CUSTOM_ATTRIBUTES), len(model.class_names)
        )
        if not body:
            raise ServingError("empty request body")
        if (
            env.batch == "true"
            and media_type in codecs.JSON_LINES_TYPES
            and response_format.media_type == codecs.JSON_LINES
        ):
            return _answer_records(model, body, limits, response_format)
        probabilities = model.predict(decode(body, limits, media_type))
        payload = codecs.encode(probabilities, model.class_names, response_format)
        return Response(payload, status=200, mimetype=response_format.media_type)

    _register_error_handlers(app, env)
    return app


def _answer_records(
    model: Model, body: bytes, limits: codecs.DecodeLimits, response: codecs.ResponseFormat
) -> Response:
    """A batch transform job's JSON Lines in and out (SplitType=Line, AssembleWith=Line): one answer line per record,
    a record that cannot be served (unreadable, too large, undecodable) answered by its {"error", "status"} line,
    so the others' answers are kept and every line stays beside its record (join_source=Input). The records are
    served in requests' worth (codecs.record_chunks)."""
    records = codecs.json_lines_records(body, limits)
    served = [record for record in records if not isinstance(record, ServingError)]
    results = iter([answer for chunk in codecs.record_chunks(served, limits) for answer in model.predict_each(chunk)])
    answers = [record if isinstance(record, ServingError) else next(results) for record in records]
    for number, answer in enumerate(answers, 1):
        if isinstance(answer, ServingError):
            log.info("record %d refused (%d): %s", number, answer.status, answer)
    payload = codecs.encode_json_lines_records(answers, model.class_names, response.top_k)
    return Response(payload, status=200, mimetype=response.media_type)


# The body limit (ServingEnv.max_payload_bytes) is applied here only: _read_body refuses a body over it, and
# _discard_unread_body drains at most twice it. Werkzeug's MAX_CONTENT_LENGTH is not set: its stream wrapper
# cannot tell a body of exactly the limit from a longer one.


def _read_body(env: ServingEnv) -> bytes:
    """The body; 413 unread when its Content-Length is over the limit, or as soon as reading passes the limit
    when it has none (chunked: nginx in front of `serve` gives every body it passes on a length, but the app
    may run behind any WSGI server)."""
    limit = env.max_payload_bytes
    if request.content_length is not None:
        if request.content_length > limit:
            raise _too_large(request.content_length, env)
        return request.get_data(cache=False)
    body = b"".join(_unread_input(limit + 1))
    if len(body) > limit:
        raise _too_large(None, env)
    return body


def _unread_input(at_most: int) -> Iterator[bytes]:
    """Chunks of the request body not read yet, up to at_most bytes, straight from the server's stream. Only a
    server-terminated stream may be read without a Content-Length (WSGI): otherwise nothing."""
    if not request.environ.get("wsgi.input_terminated"):
        return
    stream, left = request.environ["wsgi.input"], at_most
    while left > 0 and (chunk := stream.read(min(1 << 16, left))):
        left -= len(chunk)
        yield chunk


def _check_identity_encoding(content_encoding: str | None) -> None:
    """A compressed body (Content-Encoding: gzip) would otherwise be a puzzling "malformed JSON" or "not an image":
    415, as HTTP says for a content coding the server does not apply. The header is the list of codings applied in
    order (RFC 9110 section 8.4): "identity, identity" is none."""
    codings = (coding.strip().lower() for coding in (content_encoding or "").split(","))
    if applied := ", ".join(coding for coding in codings if coding not in ("", "identity")):
        raise UnsupportedMediaType(f"Content-Encoding {applied} is not supported: send the body uncompressed")


def _too_large(size: int | None, env: ServingEnv) -> PayloadTooLarge:
    shown = f"request body of {size} bytes" if size is not None else "request body"
    return PayloadTooLarge(f"{shown} exceeds the {env.max_payload_mb} MB limit ({env.max_payload_bytes} bytes)")


def _discard_unread_body(env: ServingEnv) -> None:
    """Read what is left of a refused request's body (at most twice the limit), so the keep-alive connection is
    clean: otherwise the server's next read on it blocks a request thread (gunicorn gthread) until the client
    (nginx, holding its idle upstream connection) sends again or hangs up, which also stalls graceful shutdown."""
    deque(_unread_input(2 * env.max_payload_bytes), maxlen=0)


def _register_error_handlers(app: Flask, env: ServingEnv) -> None:
    @app.errorhandler(ServingError)
    def serving_error(exc: ServingError):
        log.info("request refused (%d): %s", exc.status, exc)
        _discard_unread_body(env)
        if env.batch == "true" and exc.status in RECORD_ERRORS:
            return jsonify(error=str(exc), status=exc.status), 200
        return jsonify(error=str(exc)), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):  # 404, 405, ...
        _discard_unread_body(env)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:  # RFC 9110: a 405 says what is allowed
            allowed = sorted(exc.valid_methods)
            response = jsonify(error=f"{request.path} answers {' and '.join(allowed)} only, not {request.method}")
            return response, exc.code, {"Allow": ", ".join(allowed)}
        return jsonify(error=exc.description or exc.name), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unexpected error while serving %s %s", request.method, request.path)
        return jsonify(error=f"internal server error ({type(exc).__name__}); see the server log"), 500
