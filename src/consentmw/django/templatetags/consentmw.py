"""``{% load consentmw %}``: the banner, the settings link and consent conditions in templates.

- ``{% consent_banner %}`` places the banner (nothing once the visitor has decided); the
  middleware then inserts no second one.
- ``{% consent_settings_link %}`` places the "Cookie settings" link likewise.
- ``{% consent_allows "analytics" %}…{% else %}…{% endconsent_allows %}`` renders its first
  part only when the visitor's consent allows the purpose. A purpose given as a string
  literal must exist in the configuration: an unknown one is a ``TemplateSyntaxError`` when
  the template is compiled (and the ``consentmw.E004`` system check finds it earlier).

The tags read the request from the template context: enable the
``django.template.context_processors.request`` context processor. Without a request, or
without the middleware, the banner and link render nothing and ``consent_allows`` is false.

Not for Jinja2 templates: there, ``request.consentmw.consent.allows("…")`` does the same.
"""

from __future__ import annotations

from django import template
from django.template.base import FilterExpression, NodeList, Parser, Token
from django.utils.safestring import SafeString, mark_safe

from ...context import RequestContext
from ..conf import app_config

__all__ = ["ConsentAllowsNode", "consent_allows", "consent_banner", "consent_settings_link"]

register = template.Library()


def _request_context(context: template.Context) -> RequestContext | None:
    request = context.get("request")
    ctx = getattr(request, "consentmw", None)
    return ctx if isinstance(ctx, RequestContext) else None


@register.simple_tag(takes_context=True)
def consent_banner(context: template.Context) -> SafeString:
    """The consent banner for this request, or nothing once the visitor has decided."""
    ctx = _request_context(context)
    if ctx is None:
        return mark_safe("")
    # consentmw's own markup: every value in it is escaped where it is rendered.
    return mark_safe(app_config().engine.banner_markup(ctx))  # noqa: S308


@register.simple_tag(takes_context=True)
def consent_settings_link(context: template.Context) -> SafeString:
    """The "Cookie settings" link to consentmw's preferences page."""
    ctx = _request_context(context)
    if ctx is None:
        return mark_safe("")
    return mark_safe(app_config().engine.settings_link_markup(ctx))  # noqa: S308


class ConsentAllowsNode(template.Node):
    """``{% consent_allows %}``: one of two node lists, by the visitor's consent."""

    def __init__(self, purpose: FilterExpression, allowed: NodeList, otherwise: NodeList) -> None:
        self.purpose = purpose
        self.allowed = allowed
        self.otherwise = otherwise

    def render(self, context: template.Context) -> str:
        ctx = _request_context(context)
        purpose = self.purpose.resolve(context)
        allows = ctx is not None and isinstance(purpose, str) and ctx.consent.allows(purpose)
        nodes = self.allowed if allows else self.otherwise
        rendered: str = nodes.render(context)
        return rendered


@register.tag("consent_allows")
def consent_allows(parser: Parser, token: Token) -> ConsentAllowsNode:
    """``{% consent_allows "purpose" %}…{% else %}…{% endconsent_allows %}``."""
    bits = token.split_contents()
    if len(bits) != 2:
        raise template.TemplateSyntaxError(
            '{% consent_allows %} takes one purpose: {% consent_allows "analytics" %}'
        )
    literal = _literal(bits[1])
    if literal is not None:
        known = app_config().consent_config.purpose_ids
        if literal not in known:
            raise template.TemplateSyntaxError(
                f"{{% consent_allows %}}: unknown purpose {literal!r}; "
                f"the configuration has {', '.join(sorted(known))}"
            )
    purpose = parser.compile_filter(bits[1])
    allowed = parser.parse(("else", "endconsent_allows"))
    otherwise = NodeList()
    if parser.next_token().contents == "else":
        otherwise = parser.parse(("endconsent_allows",))
        parser.delete_first_token()
    return ConsentAllowsNode(purpose, allowed, otherwise)


def _literal(bit: str) -> str | None:
    if len(bit) >= 2 and bit[0] == bit[-1] and bit[0] in "\"'":
        return bit[1:-1]
    return None
