"""HTTP serving of one fitted estimator: ``create_app`` and ``run``.

``run`` loads a model file with :func:`skattn.load` (data only: no pickle is
read from disk, and requests are JSON) and serves it with uvicorn:

* ``POST /predict``, ``POST /predict_proba`` (an ``AttentionClassifier``)
  and ``POST /embed`` (an ``AttentionEncoder``) take ``{"texts": [...]}``;
* ``GET /health`` answers ``{"status": "ok"}``; ``GET /info`` describes the
  estimator, its parameters, the library versions and the limits.

Errors are JSON ``{"detail": ...}``: 413 for a body, a list of texts or a
text over its limit, 422 for a body that is not ``{"texts": [str, ...]}`` or
holds no text or a text skattn refuses, 404 for an endpoint the estimator
does not have, 500 (with no details) for anything else.
"""

from numbers import Integral

import numpy as np

try:
    from fastapi import FastAPI, HTTPException
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, StrictStr
except ImportError as error:
    raise ImportError(
        f"skattn.serve needs FastAPI and uvicorn ({error}); install them with: pip install 'skattn[serve]'"
    ) from error
from sklearn.utils.validation import check_is_fitted

from ._classifier import AttentionClassifier
from ._encoder import AttentionEncoder
from ._persistence import parameters_as_json
from ._text import check_documents
from ._versions import library_versions

MAX_BODY_BYTES = 16 * 2**20


class Texts(BaseModel):
    """The body of every inference request: ``{"texts": ["...", ...]}``."""

    texts: list[StrictStr]


def create_app(estimator, *, max_texts=1000, max_text_chars=100_000, max_body_bytes=MAX_BODY_BYTES):
    """A FastAPI application serving one fitted estimator.

    Inference endpoints are plain functions, which FastAPI runs in its thread
    pool; they share ``estimator``, whose inference only reads it.

    Parameters
    ----------
    estimator : AttentionClassifier or AttentionEncoder
        Fitted. A classifier gets ``/predict`` and ``/predict_proba``, an
        encoder ``/embed``.
    max_texts : int, default=1000
        Most texts in one request; more get status 413.
    max_text_chars : int, default=100_000
        Most characters in one text; a longer one gets status 413.
    max_body_bytes : int, default=16 MiB
        Largest request body, refused with status 413 before it is parsed.

    Returns
    -------
    app : fastapi.FastAPI

    Raises
    ------
    TypeError
        If ``estimator`` is not an ``AttentionClassifier`` or an ``AttentionEncoder``.
    ValueError
        If a limit is not a positive integer.
    sklearn.exceptions.NotFittedError
        If ``estimator`` is not fitted.
    """
    if not isinstance(estimator, (AttentionClassifier, AttentionEncoder)):
        raise TypeError(
            f"create_app serves an AttentionClassifier or an AttentionEncoder, got {type(estimator).__name__}."
        )
    check_is_fitted(estimator)
    limits = {"max_texts": max_texts, "max_text_chars": max_text_chars, "max_body_bytes": max_body_bytes}
    for limit, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ValueError(f"{limit} must be a positive integer, got {value!r}.")

    name = type(estimator).__name__
    app = FastAPI(title=f"skattn {name}")
    app.add_middleware(_BodyLimit, max_bytes=max_body_bytes)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _internal_error)
    info = _info(estimator, limits)

    def documents(request):
        """The request's texts, checked against the limits and by skattn, or an HTTPException."""
        texts = request.texts
        if not texts:
            raise HTTPException(422, "texts is empty: send at least one text.")
        if len(texts) > max_texts:
            raise HTTPException(
                413, f"texts holds {len(texts)} texts; this server takes at most {max_texts} per request."
            )
        for index, text in enumerate(texts):
            if len(text) > max_text_chars:
                raise HTTPException(
                    413,
                    f"texts[{index}] has {len(text)} characters; this server takes at most {max_text_chars} per text.",
                )
        # The check predict would make, run first so that its messages name the request's field
        # and an error from predict itself is the server's (500), not the client's.
        try:
            return check_documents(texts, name="texts")
        except (TypeError, ValueError) as error:
            raise HTTPException(422, str(error)) from None

    # async: answered on the event loop even while every worker thread predicts.
    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/info")
    async def get_info():
        return info

    if isinstance(estimator, AttentionClassifier):

        @app.post("/predict")
        def predict(request: Texts):
            """The label of each text (for multilabel models, a 0/1 list per text)."""
            return JSONResponse({"predictions": _plain(estimator.predict(documents(request)))})

        @app.post("/predict_proba")
        def predict_proba(request: Texts):
            """The probability of each class, in the order of ``classes``, for each text."""
            probabilities = estimator.predict_proba(documents(request))
            return JSONResponse({"classes": info["classes"], "probabilities": _plain(probabilities)})

        message = f"This server serves an {name}, which does not embed texts; use /predict or /predict_proba."
        _not_served(app, "/embed", message)
    else:

        @app.post("/embed")
        def embed(request: Texts):
            """One vector per text."""
            return JSONResponse({"embeddings": _plain(estimator.transform(documents(request)))})

        message = f"This server serves an {name}, which embeds texts and does not classify them; use /embed."
        _not_served(app, "/predict", message)
        _not_served(app, "/predict_proba", message)
    return app


def run(model_path, *, host="127.0.0.1", port=8000, max_texts=1000, max_text_chars=100_000):
    """Load a model file and serve it over HTTP until interrupted.

    Parameters
    ----------
    model_path : str or os.PathLike
        A file written by ``save`` (never a pickle).
    host : str, default="127.0.0.1"
        The address to listen on; "0.0.0.0" listens on every interface.
    port : int, default=8000
    max_texts, max_text_chars : int
        See :func:`create_app`.

    Raises
    ------
    skattn.ModelFileError
        If ``model_path`` is not a valid skattn model file.
    """
    try:
        import uvicorn
    except ImportError as error:
        raise ImportError(
            f"skattn.serve needs uvicorn ({error}); install it with: pip install 'skattn[serve]'"
        ) from error
    from ._persistence import load

    app = create_app(load(model_path), max_texts=max_texts, max_text_chars=max_text_chars)
    uvicorn.run(app, host=host, port=port)


def _not_served(app, path, message):
    def not_served():
        raise HTTPException(404, message)

    app.add_api_route(path, not_served, methods=["POST"], include_in_schema=False)


def _info(estimator, limits):
    info = {"estimator": type(estimator).__name__}
    if isinstance(estimator, AttentionClassifier):
        info["classes"] = _plain(estimator.classes_)
        info["multilabel"] = bool(estimator._multilabel)
    info["parameters"] = parameters_as_json(estimator.get_params(deep=False))
    info["versions"] = library_versions()
    info["limits"] = dict(limits)
    return info


def _plain(values):
    """NumPy output as JSON values: ``tolist`` converts NumPy scalars except in object arrays."""
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if isinstance(values, list):
        return [_plain(value) for value in values]
    if isinstance(values, np.generic):
        return values.item()
    return values


async def _invalid_request(request, error):
    # FastAPI's default echoes the offending input, which can be large or not encodable as UTF-8.
    errors = [{key: item[key] for key in ("type", "loc", "msg") if key in item} for item in error.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


async def _internal_error(request, error):
    # The traceback goes to the server's log (uvicorn logs the exception re-raised after this).
    return JSONResponse({"detail": "Internal server error; the server's log has the details."}, status_code=500)


class _BodyLimit:
    """ASGI middleware refusing a request body over ``max_bytes`` with 413, before anything parses it.

    A declared ``Content-Length`` over the limit is refused without reading
    the body; otherwise the body is read and counted (a chunked body has no
    length), then handed on to the application.
    """

    def __init__(self, app, max_bytes):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client disconnected
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)

        async def replay():
            nonlocal body
            if body is None:
                return await receive()
            message, body = {"type": "http.request", "body": body, "more_body": False}, None
            return message

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send):
        detail = (
            f"The request body is larger than this server's limit of {self.max_bytes} bytes; "
            f"send fewer or shorter texts."
        )
        await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
