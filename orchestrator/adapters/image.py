"""The Node image of build containers: is it there and current, and building it when not."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from orchestrator.adapters.runtime import Runtime
from orchestrator.config import Settings
from orchestrator.core import defaults
from orchestrator.core.exceptions import RuntimeUnavailable

IMAGES_DIR = Path(__file__).resolve().parents[2] / "images"


def context_hash() -> str:
    """A hash of everything the image is built from; a change means a rebuild."""
    digest = hashlib.sha256()
    scripts = [IMAGES_DIR / "build.sh", IMAGES_DIR / "debian-base.sh"]
    for path in sorted([*scripts, *(IMAGES_DIR / "node").rglob("*")]):
        if path.is_file():
            digest.update(path.relative_to(IMAGES_DIR).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def is_current(runtime: Runtime, settings: Settings) -> bool:
    return runtime.image_label(settings.node_image, defaults.IMAGE_CONTEXT_LABEL) == context_hash()


def ensure_image(runtime: Runtime, settings: Settings, force: bool = False) -> bool:
    """Build the image unless it exists with the current build context. True when built."""
    if not force and is_current(runtime, settings):
        return False
    script = IMAGES_DIR / "build.sh"
    if not script.exists():
        raise RuntimeUnavailable(f"{script} not found: build the image from a source checkout")
    result = subprocess.run(["bash", str(script), settings.node_image, context_hash()], check=False)
    if result.returncode != 0:
        raise RuntimeUnavailable(f"building {settings.node_image} failed (exit {result.returncode})")
    return True
