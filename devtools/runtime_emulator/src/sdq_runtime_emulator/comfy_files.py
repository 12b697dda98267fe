"""ComfyUI file routes of the sdq runtime EMULATOR: ``/view`` and ``/upload/image``.

Files live under the emulator's data dir in ``input/``, ``output/`` and ``temp/``; every
path is checked to stay inside its folder.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from aiohttp import BodyPartReader, web

FOLDERS = ("input", "output", "temp")
# Types ComfyUI serves as downloads rather than let a browser run them.
FORCED_DOWNLOAD = {
    "text/html",
    "text/html-sandboxed",
    "application/xhtml+xml",
    "text/javascript",
    "text/css",
}
# What /view answers for the files the emulator's save nodes write (ComfyUI guesses from the
# name with Python's mimetypes, adding .webp; these do not depend on the host's mime.types).
KNOWN_TYPES = {
    ".png": "image/png",
    ".webp": "image/webp",
    ".webm": "video/webm",
    ".mp4": "video/mp4",
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
    ".opus": "audio/ogg",
}


def content_type(name: str) -> str:
    """The Content-Type ComfyUI's /view gives a file."""
    suffix = Path(name).suffix.lower()
    guessed = KNOWN_TYPES.get(suffix) or mimetypes.guess_type(name)[0]
    if guessed is None or guessed in FORCED_DOWNLOAD:
        return "application/octet-stream"
    return guessed


class ComfyFiles:
    """Serve generated files and accept uploaded input images."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        for folder in FOLDERS:
            (data_dir / folder).mkdir(parents=True, exist_ok=True)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/view", self.view), web.post("/upload/image", self.upload_image)]

    async def view(self, request: web.Request) -> web.StreamResponse:
        filename = request.query.get("filename", "")
        kind = request.query.get("type", "output")
        if not filename or filename.startswith("/") or ".." in filename or kind not in FOLDERS:
            return web.Response(status=400)
        root = (self.data_dir / kind).resolve()
        path = (root / request.query.get("subfolder", "") / filename).resolve()
        if not path.is_relative_to(root):
            return web.Response(status=403)
        if not path.is_file():
            return web.Response(status=404)
        return web.FileResponse(
            path,
            headers={
                "Content-Disposition": f'filename="{path.name}"',
                "Content-Type": content_type(path.name),
            },
        )

    async def upload_image(self, request: web.Request) -> web.Response:
        fields: dict[str, str] = {}
        upload: tuple[str, bytes] | None = None
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            if part.name == "image" and part.filename:
                upload = (Path(part.filename).name, await part.read())
            else:
                fields[part.name] = await part.text()
        kind = fields.get("type") or "input"
        if upload is None or not upload[0] or kind not in FOLDERS:
            return web.Response(status=400)
        subfolder = fields.get("subfolder", "")
        root = (self.data_dir / kind).resolve()
        folder = (root / subfolder).resolve()
        if not folder.is_relative_to(root):
            return web.Response(status=400)
        folder.mkdir(parents=True, exist_ok=True)
        name, data = upload
        if fields.get("overwrite", "").lower() not in {"true", "1"}:
            name = _free_name(folder, name, data)
        (folder / name).write_bytes(data)
        return web.json_response({"name": name, "subfolder": subfolder, "type": kind})


def _free_name(folder: Path, name: str, data: bytes) -> str:
    """ComfyUI's upload naming: same bytes reuse the name, else ``stem (n).ext``."""
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    candidate, index = name, 1
    while (folder / candidate).exists():
        if (folder / candidate).read_bytes() == data:
            return candidate
        candidate = f"{stem} ({index}){dot}{suffix}"
        index += 1
    return candidate
