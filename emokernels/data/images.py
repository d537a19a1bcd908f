"""Image file reading with errors that name the file."""

from __future__ import annotations

from PIL import Image, UnidentifiedImageError


def load_rgb(path: str) -> Image.Image:
    """Opens ``path`` as an RGB PIL image; a missing or unreadable file raises naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError) as err:
        raise OSError(f"cannot read image {path}: {err}") from err
