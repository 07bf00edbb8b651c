"""``visent serve``: a model over HTTP, with a web page to drop images on.

``create_app(model, ...)`` builds the FastAPI app (``POST /predict``, ``POST /explain``, ``GET /health``,
``GET /`` the page, ``/docs``; with a pool of images to label, ``GET /label/next``, ``GET /label/image/{rank}`` and
``POST /label``: :mod:`visent.serve.labelling`); ``serve(model, host, port, ...)`` runs it with uvicorn on the socket of
``bind(host, port)`` (a port in use is a clear error before anything is announced); ``background(model)`` runs
the ``visent serve`` command in a process of its own for as long as a ``with`` block (tests, benchmarks, scripts).

Before it listens, ``serve`` scores a small grey image through the very path /predict takes
(``VisentModel.check``): a damaged model directory is a one-line :class:`visent.model.ModelError`, never a service
whose ``/health`` says ok and whose every /predict fails. Slow and idle clients are held to a header timeout, an
idle timeout and a connection limit sized to the process's descriptors (:mod:`visent.serve.connections`).

Modules: :mod:`~visent.serve.server` (:func:`serve`, :func:`bind`), :mod:`~visent.serve.background`
(:func:`background`), :mod:`~visent.serve.app` (the app), :mod:`~visent.serve.labelling`,
:mod:`~visent.serve.connections` and :mod:`~visent.serve.page`.
"""

from __future__ import annotations

from visent.serve.app import create_app
from visent.serve.background import background
from visent.serve.connections import DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS
from visent.serve.server import ServerError, bind, serve

__all__ = ["DEFAULT_HEADER_TIMEOUT", "DEFAULT_IDLE_TIMEOUT", "DEFAULT_MAX_CONNECTIONS", "ServerError", "background",
           "bind", "create_app", "serve"]
