"""The banner's static files, read once at start-up and served from ``<mount>/assets/``.

Each file is served under its plain name (``consent.js``, revalidated with its ``ETag``) and
under a name carrying a hash of its content (``consent.3f2a9c1b7d4e.js``, cached for a year
as ``immutable``): the injected markup always links the hashed name, so a new release of
consentmw is picked up at once while unchanged files are never fetched twice. The set of
names is fixed; nothing from the URL ever reaches the file system, so there is no path to
traverse.

Not a general static-file server: use whitenoise or the web server for the site's own files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files

from ..endpoints import Response

__all__ = ["ASSET_FILES", "Asset", "Assets"]

#: The files under ``consentmw/ui/assets/`` and their media types.
ASSET_FILES = {
    "consent.js": "text/javascript; charset=utf-8",
    "consent-mode.js": "text/javascript; charset=utf-8",
    "consent.css": "text/css; charset=utf-8",
}

_YEAR = 365 * 86400


@dataclass(frozen=True, slots=True)
class Asset:
    """One file: its bytes, media type, strong ``ETag`` and content-hashed name."""

    name: str
    data: bytes
    content_type: str
    etag: str
    hashed_name: str


def _load(name: str, content_type: str) -> Asset:
    data = (files(__package__ or "consentmw.ui") / "assets" / name).read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:12]
    stem, _, ext = name.rpartition(".")
    return Asset(name, data, content_type, f'"{digest}"', f"{stem}.{digest}.{ext}")


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    candidates = {part.strip().removeprefix("W/") for part in header.split(",")}
    return etag in candidates


class Assets:
    """The assets of one mount point: URLs for the markup and responses for requests."""

    def __init__(self, mount: str) -> None:
        self.mount = mount
        self._by_name: dict[str, tuple[Asset, bool]] = {}
        self._assets: dict[str, Asset] = {}
        for name, content_type in ASSET_FILES.items():
            asset = _load(name, content_type)
            self._assets[name] = asset
            self._by_name[name] = (asset, False)
            self._by_name[asset.hashed_name] = (asset, True)

    def url(self, name: str) -> str:
        """The long-cacheable URL of an asset (with its content hash)."""
        return f"{self.mount}/assets/{self._assets[name].hashed_name}"

    def response(self, name: str, if_none_match: str | None) -> Response | None:
        """The response for ``GET <mount>/assets/<name>``, or ``None`` when there is no such
        asset. A matching ``If-None-Match`` gets a 304."""
        found = self._by_name.get(name)
        if found is None:
            return None
        asset, hashed = found
        cache = (
            f"public, max-age={_YEAR}, immutable"
            if hashed
            else "public, max-age=0, must-revalidate"
        )
        headers = [
            ("Content-Type", asset.content_type),
            ("Cache-Control", cache),
            ("ETag", asset.etag),
            ("X-Content-Type-Options", "nosniff"),
            ("Cross-Origin-Resource-Policy", "same-origin"),
        ]
        if _etag_matches(if_none_match, asset.etag):
            return Response(304, headers, b"")
        return Response(200, headers, asset.data)
