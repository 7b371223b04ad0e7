"""What visitors see: the banner, the preferences and policy pages, and the HTML rewriting."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..endpoints import Problem, Response

if TYPE_CHECKING:
    from ..context import RequestContext
    from ..engine import Engine

__all__ = ["UI"]


class UI:
    """Renders the consent UI for one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.config = engine.config

    def language(self, environ: Mapping[str, Any]) -> str | None:
        return self.config.ui.default_language

    def gpc_document(self) -> Response:
        return Response.json({"gpc": True, "lastUpdate": self.config.policy.version})

    def page(
        self,
        ctx: RequestContext,
        sub: str,
        method: str,
        read_body: Callable[[int], bytes],
        scheme: str,
    ) -> Response:
        return Response.json({"error": "not found"}, 404)

    def problem_page(self, ctx: RequestContext, problem: Problem) -> Response:
        return Response.html(f"<!doctype html><title>{problem.status}</title><p>{problem.reason}</p>", problem.status)

    def transform(
        self, ctx: RequestContext, status: int, headers: list[tuple[str, str]]
    ) -> Callable[[Iterable[bytes]], Iterable[bytes]] | None:
        return None
