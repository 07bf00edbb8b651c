"""``visent serve``: a model over HTTP, with a web page to drop images on.

``create_app(model, ...)`` builds the FastAPI app (``POST /predict``, ``POST /explain``, ``GET /health``,
``GET /`` the page, ``/docs``); ``serve(model, host, port, ...)`` runs it with uvicorn.
"""

from __future__ import annotations

from typing import Any

from visent.serve.app import create_app


def serve(model: Any, host: str = "127.0.0.1", port: int = 8000, **limits: Any) -> None:
    """Serve ``model`` (a loaded model, a model directory or ``"default"``) until interrupted.

    ``limits`` are ``create_app``'s: ``max_upload_bytes``, ``max_pixels``, ``max_files``, ``formats``.
    """
    import os

    import uvicorn

    os.environ.setdefault("VISENT_PROGRESS", "0")  # a service logs its requests, not progress bars
    uvicorn.run(create_app(model, **limits), host=host, port=port, log_level="info")


__all__ = ["create_app", "serve"]
