"""Pictures of a run: animation frames, the summary strip, and the pixel helpers they share.

Every picture upscales its images by nearest neighbour (:func:`upscale`), so each pixel of a
frame shows as an exact ``scale``×``scale`` block, and writes text in Pillow's default font
(:func:`font`). An image is grey ``(H, W)`` or colour ``(3, H, W)``, as frames hold them
(:func:`pixels` turns either into what PIL takes).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["MAX_ANIMATION_FRAMES", "animation_indices", "font", "image_size", "pixels", "render_side_by_side",
           "render_strip", "tile", "to_uint8", "upscale"]

# A GIF of every step of a 10,000-step run would be hundreds of megabytes; the animation
# keeps at most this many steps, evenly spread, always with the first and the last.
MAX_ANIMATION_FRAMES = 400


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Pixel values in [0, 1] (clipped) as uint8: round(255 v)."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def pixels(image: np.ndarray) -> np.ndarray:
    """A frame's image in [0, 1] as PIL takes it: grey (H, W) → (H, W) uint8, colour
    (3, H, W) → (H, W, 3) uint8."""
    image = np.asarray(image)
    px = to_uint8(image)
    return np.ascontiguousarray(px.transpose(1, 2, 0)) if image.ndim == 3 else px


def image_size(image: np.ndarray) -> tuple[int, int]:
    """(height, width) of a grey (H, W) or colour (3, H, W) image."""
    return int(np.shape(image)[-2]), int(np.shape(image)[-1])


def upscale(pixels: np.ndarray, scale: int) -> np.ndarray:
    """``pixels`` (H, W) or (H, W, 3) enlarged ``scale`` times by nearest neighbour: (H·scale, W·scale[, 3])."""
    return np.repeat(np.repeat(np.asarray(pixels), scale, axis=0), scale, axis=1)


def font(size: int) -> ImageFont.ImageFont:
    """Pillow's default font at ``size`` pixels (its fixed bitmap font where it cannot scale)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1, or built without FreeType
        return ImageFont.load_default()


def tile(image: np.ndarray, scale: int) -> Image.Image:
    """A grey (H, W) or colour (3, H, W) float image in [0, 1] as an RGB picture, upscaled
    ``scale``× (nearest)."""
    return Image.fromarray(upscale(pixels(image), scale)).convert("RGB")


def animation_indices(t: int, limit: int = MAX_ANIMATION_FRAMES) -> np.ndarray:
    """Which of ``t`` steps to draw: all if ``t <= limit``, else ``limit`` evenly spread,
    the first and the last always among them."""
    if t <= limit:
        return np.arange(t)
    return np.unique(np.round(np.linspace(0, t - 1, limit)).astype(int))


def render_side_by_side(images: np.ndarray, probs: np.ndarray, model_names: Sequence[str],
                        step: int, target: int, scale: int = 8,
                        class_names: Sequence[str] | None = None) -> np.ndarray:
    """One animation frame: the models' images side by side with captions.

    Parameters
    ----------
    images : (M, H, W) or (M, 3, H, W) float in [0, 1].
    probs : (M, K) class probabilities.
    model_names : M names.
    step, target : shown in the footer.
    scale : upscaling of each image (nearest neighbour).
    class_names : the data set's class names (digits by default).

    Returns
    -------
    (H, W, 3) uint8 RGB.
    """
    m = images.shape[0]
    names = list(class_names) if class_names is not None else [str(c) for c in range(probs.shape[-1])]
    h, w = image_size(images[0])
    side, tall = w * scale, h * scale
    pad, head, foot = 8, 38, 26
    width = m * side + (m + 1) * pad
    height = head + tall + foot
    canvas = Image.new("RGB", (width, height), (24, 24, 28))
    draw = ImageDraw.Draw(canvas)
    text_font = font(14)
    for j in range(m):
        x = pad + j * (side + pad)
        canvas.paste(tile(images[j], scale), (x, head))
        pred = int(np.argmax(probs[j]))
        hit = pred == target
        draw.text((x, 3), str(model_names[j]), fill=(230, 230, 230), font=text_font)
        draw.text((x, 20), f"predicts {names[pred]} ({100 * float(probs[j, pred]):.1f}%)",
                  fill=(120, 220, 120) if hit else (240, 170, 90), font=text_font)
    draw.text((pad, head + tall + 5), f"step {step}    target {names[target]}", fill=(230, 230, 230),
              font=text_font)
    return np.asarray(canvas)


MARK_COLOURS = {"confident": (230, 170, 0), "most realistic": (0, 150, 170), "confident = most real": (0, 150, 170)}


def render_strip(images: np.ndarray, probs: np.ndarray, steps: Sequence[int],
                 model_names: Sequence[str], target: int, columns: int = 9, scale: int = 3,
                 title: str | None = None, marks: Sequence[Mapping[int, str]] | None = None,
                 target_name: str | None = None) -> np.ndarray:
    """A still summary of a run: one row per model, ``columns`` evenly spread steps.

    ``marks`` (one dict per model, frame index -> "confident" or "most realistic") adds
    those frames as columns too and frames them in colour, with the mark written above.

    Parameters
    ----------
    images : (T, M, H, W) or (T, M, 3, H, W) float in [0, 1], the frames of one image.
    probs : (T, M, K) class probabilities.
    steps : (T,) step numbers.
    model_names : M row labels.
    target : the class whose probability is written under each frame.
    columns : frames per row (first and last step always shown).
    scale : upscaling of each frame (nearest neighbour).
    title : optional line above the grid.

    Returns
    -------
    (H, W, 3) uint8 RGB.
    """
    t, m = images.shape[:2]
    marks = [dict(mk) for mk in marks] if marks else [{} for _ in range(m)]
    idx = np.union1d(animation_indices(t, columns), [i for mk in marks for i in mk]).astype(int)
    name = target_name if target_name is not None else str(target)
    side, pad = max(image_size(images[0, 0])) * scale, 6
    label_w = max(96, 12 + int(max(font(14).getlength(str(n)) for n in model_names)))
    head = 22 + (20 if title else 0)
    cap = 16 + (14 if any(marks) else 0)
    width = label_w + len(idx) * (side + pad) + pad
    height = head + m * (side + cap + pad) + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    small, large = font(12), font(14)
    if title:
        draw.text((pad, 4), title, fill=(0, 0, 0), font=large)
    for k, s in enumerate(idx):
        x = label_w + pad + k * (side + pad)
        draw.text((x, head - 18), f"step {int(steps[s])}", fill=(80, 80, 80), font=small)
    for j in range(m):
        y = head + j * (side + cap + pad)
        draw.text((pad, y + side // 2 - 7), str(model_names[j]), fill=(0, 0, 0), font=large)
        for k, s in enumerate(idx):
            x = label_w + pad + k * (side + pad)
            canvas.paste(tile(images[s, j], scale), (x, y))
            pred = int(np.argmax(probs[s, j]))
            colour = (0, 130, 0) if pred == target else (90, 90, 90)
            draw.text((x, y + side + 1), f"p({name}) {float(probs[s, j, target]):.2f}",
                      fill=colour, font=small)
            if s in marks[j]:
                mark = MARK_COLOURS.get(marks[j][s], (200, 0, 0))
                draw.rectangle((x - 2, y - 2, x + side + 1, y + side + 1), outline=mark, width=2)
                draw.text((x, y + side + 15), marks[j][s], fill=mark, font=small)
    return np.asarray(canvas)
