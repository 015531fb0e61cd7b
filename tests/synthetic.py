"""A small labelled image set with a known quality order, built from the golden photos.

Each content is a crop of a real photo, resized so its longer side is ``size`` pixels; each
is then degraded at increasing levels (Gaussian blur and JPEG compression, stronger with the
level) and labelled ``mos = 100 * (1 - level / (levels - 1))``: the label order is known by
construction. Train and validation sets use different photos, so a model has to learn the
degradation, not the content.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

GOLDEN_IMAGES = Path(__file__).resolve().parent / "golden" / "images"

#: Photos used as contents (distinct scenes; the golden set has several files per scene).
PHOTOS = ("astronaut_512x512.png", "chelsea_451x300_q75.jpg", "coffee_600x400_q90.jpg",
          "rocket_640x427_q85.jpg", "grace_hopper.jpg", "hubble_deep_field.jpg",
          "motorcycle_2000x1500_q90.jpg", "camera_512x512_gray_q90.jpg")

#: (blur radius in pixels, JPEG quality) per level, best first.
LEVELS = ((0.0, 95), (1.0, 60), (2.0, 30), (3.0, 15), (4.5, 8))


def crops(photo: Path, count: int, size: int, seed: int, whole: bool = True
          ) -> list[Image.Image]:
    """``count`` crops (45-70 % of each side, at random places) resized to a longer side of
    ``size`` px; with ``whole`` the first is the whole photo instead."""
    im = Image.open(photo).convert("RGB")
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        w, h = im.size
        if k == 0 and whole:
            box = (0, 0, w, h)
        else:
            cw, ch = int(w * rng.uniform(0.45, 0.7)), int(h * rng.uniform(0.45, 0.7))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            box = (x, y, x + cw, y + ch)
        c = im.crop(box)
        s = size / max(c.size)
        out.append(c.resize((max(1, round(c.width * s)), max(1, round(c.height * s))),
                            Image.LANCZOS))
    return out


def degrade(im: Image.Image, level: int, levels=LEVELS) -> bytes:
    """JPEG bytes of ``im`` blurred and compressed at ``level``."""
    radius, quality = levels[level]
    if radius > 0:
        im = im.filter(ImageFilter.GaussianBlur(radius))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def make_set(folder: Path, photos: list[str], *, crops_per_photo: int = 1, size: int = 96,
             levels=LEVELS, seed: int = 0, source_dir: Path = GOLDEN_IMAGES,
             label_file: str = "labels.csv", whole: bool = True) -> Path:
    """Write the degraded images and ``labels.csv`` (``image,mos``) into ``folder``.

    ``whole``: the first content of each photo is the whole photo (else all are crops).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["image,mos"]
    for p, name in enumerate(photos):
        for k, im in enumerate(crops(source_dir / name, crops_per_photo, size, seed + p, whole)):
            for level in range(len(levels)):
                fname = f"{Path(name).stem}_c{k}_l{level}.jpg"
                (folder / fname).write_bytes(degrade(im, level, levels))
                rows.append(f"{fname},{100.0 * (1 - level / (len(levels) - 1)):.1f}")
    labels = folder / label_file
    labels.write_text("\n".join(rows) + "\n")
    return labels
