"""The words of the consent UI, in the languages consentmw ships, and the choice of language.

Every text the banner and the pages show has a key
(:attr:`consentmw.config.UIConfig.TEXT_KEYS`). English and German ship here;
``[ui.texts.<lang>]`` in the configuration overrides any of them or adds a language. Purpose
titles and descriptions come from the purposes' own ``translations``. Placeholders
(``{date}``, ``{version}``, ``{n}``) are replaced by plain string substitution, never
``str.format``, so an operator's braces cannot break a page.

Not for application texts: these are consentmw's own words only.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ..config import Config

__all__ = ["BUILTIN", "Texts", "texts_for"]

_EN = {
    "banner_title": "Your privacy choices",
    "banner_text": (
        "We use cookies and similar technologies. Those that are strictly necessary are "
        "always on; everything else only with your consent, which you can change or "
        "withdraw at any time."
    ),
    "accept_all": "Accept all",
    "reject_all": "Reject all",
    "customise": "Customise",
    "save": "Save my choices",
    "back": "Back",
    "always_on": "Always on",
    "settings_link": "Cookie settings",
    "notice_link": "Cookie notice",
    "policy_link": "Privacy policy",
    "gpc_honoured": "Your browser's Global Privacy Control signal is honoured.",
    "preferences_title": "Privacy preferences",
    "preferences_intro": (
        "Choose what this site may use. Strictly necessary purposes are always on. You can "
        "change or withdraw your consent here at any time, in one step."
    ),
    "status_undecided": "You have not made a choice yet.",
    "status_decided": "Your current choice was made on {date} under policy version {version}.",
    "receipt": "Consent receipt",
    "gpc_on": (
        "Your browser sends a Global Privacy Control signal. It is honoured: the purposes it "
        "covers stay off while it is on."
    ),
    "gpc_off": "Your browser does not send a Global Privacy Control signal.",
    "gpc_blocked": "Off while your browser sends Global Privacy Control.",
    "saved": "Your choices have been saved.",
    "cookies": "Cookies",
    "cookie_name": "Name",
    "cookie_purpose": "Purpose",
    "cookie_lifetime": "Lifetime",
    "cookie_description": "Description",
    "no_cookies": "No cookies are declared for this purpose.",
    "policy_title": "Cookie notice",
    "policy_intro": (
        "This notice lists the purposes for which this site uses cookies and similar "
        "technologies, and every cookie it declares."
    ),
    "policy_version": "Policy version {version}",
    "history": "Earlier versions",
    "purposes": "Purposes",
    "problem_title": "Your choice could not be saved",
    "back_to_site": "Back to the site",
    "policy_changed": "Our privacy policy has changed since your last choice. Please choose again.",
    "not_found": "Page not found",
    "lifetime_day": "1 day",
    "lifetime_days": "{n} days",
    "lifetime_session": "until the browser closes",
    "lifetime_unknown": "not stated",
    "notice_text": (
        "We use cookies and similar technologies. By continuing to use this site you accept "
        "them; you can refuse them or change your choice at any time."
    ),
}

_DE = {
    "banner_title": "Ihre Datenschutz-Einstellungen",
    "banner_text": (
        "Wir verwenden Cookies und ähnliche Technologien. Unbedingt erforderliche sind immer "
        "aktiv, alles andere nur mit Ihrer Einwilligung, die Sie jederzeit ändern oder "
        "widerrufen können."
    ),
    "accept_all": "Alle akzeptieren",
    "reject_all": "Alle ablehnen",
    "customise": "Anpassen",
    "save": "Auswahl speichern",
    "back": "Zurück",
    "always_on": "Immer aktiv",
    "settings_link": "Cookie-Einstellungen",
    "notice_link": "Cookie-Hinweis",
    "policy_link": "Datenschutzerklärung",
    "gpc_honoured": "Das Global-Privacy-Control-Signal Ihres Browsers wird beachtet.",
    "preferences_title": "Datenschutz-Einstellungen",
    "preferences_intro": (
        "Wählen Sie, was diese Website verwenden darf. Unbedingt erforderliche Zwecke sind "
        "immer aktiv. Sie können Ihre Einwilligung hier jederzeit in einem Schritt ändern "
        "oder widerrufen."
    ),
    "status_undecided": "Sie haben noch keine Auswahl getroffen.",
    "status_decided": "Ihre aktuelle Auswahl stammt vom {date} (Richtlinie Version {version}).",
    "receipt": "Einwilligungsnachweis",
    "gpc_on": (
        "Ihr Browser sendet ein Global-Privacy-Control-Signal. Es wird beachtet: Die "
        "betroffenen Zwecke bleiben aus, solange es aktiv ist."
    ),
    "gpc_off": "Ihr Browser sendet kein Global-Privacy-Control-Signal.",
    "gpc_blocked": "Aus, solange Ihr Browser Global Privacy Control sendet.",
    "saved": "Ihre Auswahl wurde gespeichert.",
    "cookies": "Cookies",
    "cookie_name": "Name",
    "cookie_purpose": "Zweck",
    "cookie_lifetime": "Speicherdauer",
    "cookie_description": "Beschreibung",
    "no_cookies": "Für diesen Zweck sind keine Cookies angegeben.",
    "policy_title": "Cookie-Hinweis",
    "policy_intro": (
        "Dieser Hinweis nennt die Zwecke, für die diese Website Cookies und ähnliche "
        "Technologien verwendet, und jedes Cookie, das sie angibt."
    ),
    "policy_version": "Richtlinie Version {version}",
    "history": "Frühere Versionen",
    "purposes": "Zwecke",
    "problem_title": "Ihre Auswahl konnte nicht gespeichert werden",
    "back_to_site": "Zurück zur Website",
    "policy_changed": (
        "Unsere Datenschutzerklärung hat sich seit Ihrer letzten Auswahl geändert. Bitte "
        "wählen Sie erneut."
    ),
    "not_found": "Seite nicht gefunden",
    "lifetime_day": "1 Tag",
    "lifetime_days": "{n} Tage",
    "lifetime_session": "bis der Browser geschlossen wird",
    "lifetime_unknown": "nicht angegeben",
    "notice_text": (
        "Wir verwenden Cookies und ähnliche Technologien. Wenn Sie diese Website weiter nutzen, "
        "stimmen Sie ihnen zu; Sie können sie jederzeit ablehnen oder Ihre Auswahl ändern."
    ),
}

#: The languages consentmw ships, by language tag.
BUILTIN: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {"en": MappingProxyType(_EN), "de": MappingProxyType(_DE)}
)


class Texts:
    """The texts for one language: built-in English, overlaid by the built-in language (if
    shipped), then by the configuration's ``[ui.texts]`` for the default language and for
    ``lang``."""

    __slots__ = ("_texts", "lang")

    def __init__(self, lang: str, texts: Mapping[str, str]) -> None:
        self.lang = lang
        self._texts = texts

    def __getitem__(self, key: str) -> str:
        return self._texts[key]

    def get(self, key: str, **values: str) -> str:
        """The text ``key`` with ``{name}`` placeholders replaced by ``values`` (plain
        text: escape the result when it goes into HTML)."""
        text = self._texts[key]
        for name, value in values.items():
            text = text.replace("{" + name + "}", value)
        return text


def _base(lang: str) -> str:
    return lang.split("-", 1)[0].lower()


def texts_for(config: Config, lang: str | None) -> Texts:
    """The :class:`Texts` for ``lang`` (``None``: the default language)."""
    default = config.ui.default_language
    lang = lang or default
    merged: dict[str, str] = dict(_EN)
    for candidate in dict.fromkeys((_base(default), default, _base(lang), lang)):
        merged.update(BUILTIN.get(candidate, {}))
        merged.update(config.ui.texts.get(candidate, {}))
    return Texts(lang, merged)
