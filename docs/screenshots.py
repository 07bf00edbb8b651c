"""The docs' screenshots (docs/serve.md): the `visent serve` page with photos dropped on it, and a `visent report`.

Drives the Debian Chromium (/usr/bin/chromium) with Playwright, as the browser test does. The docs' are of the
shipped default model, whose dataset its rebuild command (DEVELOPMENT.md, Shipped files) writes::

    visent report default --benchmark ../shared/data/mvsa-single --out report.html
    python docs/screenshots.py --report report.html

writes docs/serve-page.png (the shipped model serving scikit-image's sample photos), docs/report-overview.png
(the top of the report) and docs/report-images.png (its evaluation and most confident images).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from visent.serve import background

DOCS = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
PHOTOS = ("astronaut.png", "coffee.png", "rocket.jpg")


def save(png: bytes, name: str) -> None:
    """Write a screenshot, reduced to 256 colours (a third of the bytes; text stays sharp)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(DOCS / name,
                                                                                               optimize=True)
    print(f"{DOCS / name}: {image.width} x {image.height}, {(DOCS / name).stat().st_size / 1024:.0f} KB")


def serve_page(browser, model: str) -> None:
    import skimage.data

    photos = [str(Path(skimage.data.__file__).parent / name) for name in PHOTOS]
    with background(model, timeout=240) as url:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url + "/")
        page.set_input_files("#file-input", photos)
        page.wait_for_function("""() => {
            const cards = [...document.querySelectorAll('article.card')];
            return cards.length === 3 && cards.every((c) => c.dataset.state === 'done'
                && c.querySelector('img.map').naturalWidth > 0);
        }""", timeout=120_000)
        page.locator("article.card", has_text="astronaut.png").locator(".labels button[data-label='positive']").click()
        save(page.screenshot(full_page=True), "serve-page.png")


def report_pages(browser, report: Path) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 1500})
    page.goto(report.resolve().as_uri())
    save(page.screenshot(), "report-overview.png")
    top = page.locator("#evaluation").bounding_box()
    bottom = page.locator("#images").bounding_box()
    clip = {"x": 0, "y": top["y"], "width": 1200, "height": bottom["y"] + bottom["height"] - top["y"]}
    save(page.screenshot(full_page=True, clip=clip), "report-images.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, help="an HTML file written by `visent report` (without it, only the "
                                                    "page of `visent serve` is remade)")
    parser.add_argument("--model", default="default", help="the model the page serves")
    args = parser.parse_args()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            serve_page(browser, args.model)
            if args.report:
                report_pages(browser, args.report)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
