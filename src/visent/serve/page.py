"""The web page of ``visent serve`` (``GET /``): one self-contained HTML document.

Styles and script are inline and nothing is loaded from elsewhere (visent often runs on machines without
internet access): the page calls only ``health``, ``predict``, ``explain`` and the labelling mode's ``label/next``,
``label/image/{rank}`` and ``label`` on the server that sent it. Its Label tab (``#label``) is shown when the server
has a pool of images to label (``GET /label/next`` does not answer 404): one suggested image at a time, labelled with
buttons or keys (1/N negative, 2/U neutral, 3/P positive, S/space skip), each label saved by the server as given. They are
kept as package resources, ``visent/resources/serve/page.html`` (a ``string.Template`` with ``$style`` and
``$script``), ``page.css`` and ``page.js``, put together once into :data:`PAGE_HTML`.
"""

from __future__ import annotations

import string
from importlib import resources

__all__ = ["PAGE_HTML", "page_html"]


def _resource(name: str) -> str:
    return (resources.files("visent") / "resources" / "serve" / name).read_text(encoding="utf-8")


def page_html() -> str:
    """The page, read from its resources: the skeleton with the stylesheet and the script inline."""
    return string.Template(_resource("page.html")).substitute(style=_resource("page.css"), script=_resource("page.js"))


PAGE_HTML = page_html()
