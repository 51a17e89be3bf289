"""Image files named in `Message.images`, as the in-process back-ends take them (PIL images, data URLs)."""
from __future__ import annotations

import base64
import mimetypes
from pathlib import Path

from ..errors import HarnessError


def resolve_image(name: str, data_dir: Path | None) -> Path:
    """An absolute path, or one relative to the dataset folder (where tasks keep frames), else to the
    working directory."""
    path = Path(name).expanduser()
    candidates = [path] if path.is_absolute() else ([data_dir / path] if data_dir else []) + [path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = " or ".join(str(c) for c in candidates)
    raise HarnessError(f"image '{name}' not found (looked at {where}); check the dataset's frame files.")


def load_image(path: Path):
    """A PIL image in RGB (what every vision processor expects)."""
    try:
        from PIL import Image
    except ImportError:
        raise HarnessError("reading images needs Pillow: pip install pillow (or pip install '.[hf]').") from None
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as exc:
        raise HarnessError(f"image '{path}' cannot be read ({exc}); replace or re-fetch the file.") from None


def data_url(path: Path) -> str:
    """`data:<mime>;base64,...` of a file, for OpenAI-style `image_url` content parts."""
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
