"""Drawing sentiment maps over photos: a heat overlay per class, and a captioned panel of the three."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from visent.core.labels import CLASSES

CLASS_COLOURS = {"negative": (214, 39, 40), "neutral": (127, 127, 127), "positive": (44, 160, 44)}
PANEL_TILE = 256  # height of each tile in a panel


def heat_scale(maps: np.ndarray) -> float:
    """The value shown at full heat: a high percentile of the positive evidence over all three maps, so the
    maps of one image share a scale and a single hot cell does not wash out the rest."""
    positive = np.clip(maps, 0, None)
    top = float(np.percentile(positive, 99.5)) if positive.any() else 0.0
    return top if top > 0 else 1.0


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] → RGB in [0, 1] with matplotlib's ``jet`` (the usual colouring of class activation maps)."""
    from matplotlib import colormaps

    return colormaps["jet"](values)[..., :3]


def overlay(image: Image.Image, maps: np.ndarray, index: int, strength: float = 0.6) -> Image.Image:
    """``image`` with map ``maps[index]`` blended over its central square (what the model sees); the rest of the
    photo, which the model does not see, is dimmed."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    heat = Image.fromarray(np.clip(maps[index], 0, None).astype(np.float32) / heat_scale(maps), mode="F")
    heat_values = np.clip(np.asarray(heat.resize((side, side), Image.Resampling.BILINEAR)), 0.0, 1.0)
    photo = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    out = photo * 0.45  # outside the square: dimmed
    square = photo[top:top + side, left:left + side]
    alpha = (strength * heat_values)[..., None]
    out[top:top + side, left:left + side] = square * (1 - alpha) + colormap(heat_values) * alpha
    return Image.fromarray(np.round(out * 255).astype(np.uint8), mode="RGB")


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def panel(image: Image.Image, maps: np.ndarray, probabilities: dict[str, float]) -> Image.Image:
    """The photo, then the map of each class, side by side, captioned with the class and its probability; the
    predicted class's caption is underlined in its colour."""
    tiles = [image.convert("RGB")] + [overlay(image, maps, i) for i in range(len(CLASSES))]
    scale = PANEL_TILE / image.height
    tile_w = max(1, round(image.width * scale))
    caption, gap = 34, 6
    canvas = Image.new("RGB", (len(tiles) * tile_w + (len(tiles) - 1) * gap, PANEL_TILE + caption), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(16)
    label = max(probabilities, key=probabilities.get)  # type: ignore[arg-type]
    for i, tile in enumerate(tiles):
        x = i * (tile_w + gap)
        canvas.paste(tile.resize((tile_w, PANEL_TILE), Image.Resampling.LANCZOS), (x, 0))
        if i == 0:
            text, colour = "image", (60, 60, 60)
        else:
            cls = CLASSES[i - 1]
            text, colour = f"{cls} {probabilities[cls]:.1%}", CLASS_COLOURS[cls]
        draw.text((x + 6, PANEL_TILE + 7), text, fill=colour, font=font)
        if i > 0 and CLASSES[i - 1] == label:
            draw.rectangle((x, PANEL_TILE + caption - 4, x + tile_w, PANEL_TILE + caption - 1), fill=colour)
    return canvas
