"""Configuration: the TOML structure of DESIGN.md, read and validated once, then immutable.

:meth:`Config.load` takes a path to a TOML file, a mapping with the same structure, or a
``Config``. Every problem raises :class:`~consentmw.ConfigError` naming the field by dotted
path, quoting the value and saying how to fix it. Nothing reads configuration per request:
everything the middleware needs per request (purpose sets, the cookie matcher, cookie
attributes) is computed here, once.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from .errors import _MISSING, ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "MODELS",
    "ActionRule",
    "Config",
    "ConsentModeConfig",
    "CookieRule",
    "CookieSettings",
    "DispatchConfig",
    "Jurisdictions",
    "OptoutConfig",
    "PolicyConfig",
    "PolicyVersion",
    "Purpose",
    "ResolveConfig",
    "RightsConfig",
    "SinksConfig",
    "SiteConfig",
    "TrackingConfig",
    "UIConfig",
]

#: The consent models. ``notice``: continued use after the notice counts as acceptance.
MODELS = ("opt-in", "opt-out", "notice")

#: Google Consent Mode v2 consent types.
CONSENT_MODE_TYPES = (
    "ad_storage",
    "ad_user_data",
    "ad_personalization",
    "analytics_storage",
    "functionality_storage",
    "personalization_storage",
    "security_storage",
)

_PURPOSE_ID = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_COOKIE_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,200}$")
_DOMAIN = re.compile(r"^\.?(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9-]{1,63}$")
_COUNTRY = re.compile(r"^[A-Z]{2}(?:-[A-Z0-9]{1,3})?$")
_LANG = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})?$")
_HEADER = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_HOOK = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_BAD_ATTR_CHARS = re.compile(r"[\x00-\x1f\x7f;,]")
_MIN_KEY_BYTES = 16
_SINK_SCHEMES = ("memory", "jsonl", "sqlite", "postgresql", "postgres", "redis")
_CONSENT_LOG_SCHEMES = ("memory", "jsonl", "sqlite", "postgresql", "postgres")

_DEFAULT_STATIC = (
    ".css",
    ".js",
    ".mjs",
    ".map",
    ".png",
    ".jpg",
    ".jpeg",
    ".gif",
    ".svg",
    ".webp",
    ".avif",
    ".ico",
    ".woff",
    ".woff2",
    ".ttf",
    ".otf",
    ".eot",
    ".txt",
    ".xml",
)


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class SiteConfig:
    name: str
    secret_keys: tuple[bytes, ...]
    mount: str = "/_consent"

    def __repr__(self) -> str:  # never show the keys
        keys = f"<{len(self.secret_keys)} keys>"
        return f"SiteConfig(name={self.name!r}, secret_keys={keys}, mount={self.mount!r})"


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    version: str
    purposes: frozenset[str]


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    version: str = "1"
    model: str = "opt-in"
    consent_max_age_days: int = 180
    url: str | None = None
    history: tuple[PolicyVersion, ...] = ()
    honor_dnt: bool = False


@dataclass(frozen=True, slots=True)
class Purpose:
    id: str
    title: str
    description: str = ""
    required: bool = False
    gpc_opt_out: bool = False
    translations: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def text(self, lang: str | None) -> tuple[str, str]:
        """Title and description in ``lang`` (falling back to the base language, then the
        configured text)."""
        for candidate in (lang, lang.split("-")[0] if lang else None):
            if candidate and candidate in self.translations:
                tr = self.translations[candidate]
                return tr.get("title", self.title), tr.get("description", self.description)
        return self.title, self.description


@dataclass(frozen=True, slots=True)
class CookieRule:
    name: str
    purpose: str
    match: str = "exact"
    description: str = ""
    max_age_days: float | None = None
    _pattern: re.Pattern[str] | None = None

    def matches(self, cookie_name: str) -> bool:
        if self.match == "exact":
            return cookie_name == self.name
        if self.match == "prefix":
            return cookie_name.startswith(self.name)
        assert self._pattern is not None
        return self._pattern.fullmatch(cookie_name) is not None


@dataclass(frozen=True, slots=True)
class CookieSettings:
    domain: str | None = None
    secure: bool = True
    samesite: str = "Lax"
    undeclared: str = "block"
    path: str = "/"
    session_lifetime_hours: float = 24.0
    cart_max_age_days: float = 30.0


@dataclass(frozen=True, slots=True)
class Jurisdictions:
    header: str | None = None
    default: str | None = None
    models: Mapping[str, str] = field(default_factory=dict)  # country code -> model

    @property
    def environ_key(self) -> str | None:
        if self.header is None:
            return None
        return "HTTP_" + self.header.upper().replace("-", "_")

    def model_for(self, code: str | None, fallback: str) -> str:
        """The model for a country (``US-CA`` first, then ``US``), else the default."""
        if code:
            code = code.strip().upper()[:8]
            found = self.models.get(code)
            if found is None and "-" in code:
                found = self.models.get(code.split("-", 1)[0])
            if found is not None:
                return found
        return self.default or fallback


@dataclass(frozen=True, slots=True)
class ActionRule:
    name: str
    method: str = "*"
    path: str | None = None
    on_response: str | None = None
    capture: tuple[str, ...] = ()
    purpose: str | None = None
    _regex: re.Pattern[str] | None = None

    def matches_request(self, method: str, path: str) -> bool:
        if self.path is None or self._regex is None:
            return False
        if self.method != "*" and method != self.method:
            return False
        return self._regex.match(path) is not None


@dataclass(frozen=True, slots=True)
class TrackingConfig:
    page_visits: bool = True
    tracking_purpose: str | None = None
    aggregate_without_consent: bool = False
    ignore_paths: tuple[str, ...] = ()
    ignore_extensions: tuple[str, ...] = _DEFAULT_STATIC
    ignore_bots: bool = True
    actions: tuple[ActionRule, ...] = ()
    _ignore_regex: re.Pattern[str] | None = None

    def ignores(self, path: str) -> bool:
        if self._ignore_regex is not None and self._ignore_regex.match(path):
            return True
        dot = path.rfind(".")
        return dot > path.rfind("/") and path[dot:].lower() in self.ignore_extensions


@dataclass(frozen=True, slots=True)
class ResolveConfig:
    trusted_proxies: int = 0
    reverse_dns: bool = False
    rdns_verify: str = "forward"
    rdns_timeout_ms: int = 1000
    rdns_nameservers: tuple[str, ...] = ()
    rdns_port: int = 53
    domain_purpose: str | None = None
    email_hook: str | None = None
    anonymize_ip: str = "truncate"
    ipv4_prefix: int = 24
    ipv6_prefix: int = 48
    claimed_email: bool = True
    pii_fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def load_email_hook(self) -> Callable[[Mapping[str, Any]], str | None] | None:
        """Import the ``email_hook`` function (``module:function``); ``ConfigError`` if it
        cannot be imported or is not callable."""
        if self.email_hook is None:
            return None
        module_name, _, attr = self.email_hook.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                "resolve.email_hook",
                self.email_hook,
                f"it could not be imported ({exc}); give 'module:function' importable "
                "from the application",
            ) from None
        if not callable(target):
            raise ConfigError("resolve.email_hook", self.email_hook, "it must name a function")
        hook: Callable[[Mapping[str, Any]], str | None] = target
        return hook


@dataclass(frozen=True, slots=True)
class SinksConfig:
    events: tuple[str, ...] = ("sqlite:///consentmw.db",)
    consent_log: str = "sqlite:///consentmw.db"


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    batch_size: int = 500
    flush_interval_ms: int = 1000
    queue_size: int = 10000
    spool: str | None = "auto"
    when_full: str = "drop_newest"
    max_retries: int = 5
    retry_base_ms: int = 200
    retry_max_ms: int = 30000
    close_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class ConsentModeConfig:
    """``[consent_mode]``: Google Consent Mode v2.

    ``mapping`` maps each of the seven consent types (``ad_storage`` …
    ``security_storage``) to the purposes that must all be granted for it to be
    ``granted``; a type that is not mapped is always ``denied`` (map ``security_storage``
    to the required purpose to grant it always). ``wait_for_update_ms`` is passed to
    ``gtag('consent', 'default', …)`` as ``wait_for_update``.
    """

    enabled: bool = False
    mapping: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    wait_for_update_ms: int = 500

    def types(self, granted: frozenset[str]) -> dict[str, str]:
        """Every consent type as ``"granted"`` or ``"denied"`` for a set of purposes."""
        return {
            ctype: "granted"
            if ctype in self.mapping and all(p in granted for p in self.mapping[ctype])
            else "denied"
            for ctype in CONSENT_MODE_TYPES
        }


@dataclass(frozen=True, slots=True)
class UIConfig:
    """``[ui]``: what the middleware shows and injects into HTML pages.

    ``banner``: inject the consent banner while the visitor has not decided;
    ``settings_link``: inject a "Cookie settings" link into every HTML page;
    ``script_gating``: neutralise ``<script>``, ``<iframe>`` and ``<img>`` tags marked
    ``data-consent="<purpose>"`` while that purpose is not granted (this makes HTML
    responses vary by cookie); ``default_language``: the language used when
    ``Accept-Language`` matches no configured one; ``csp_nonce_environ_key``: the WSGI environ
    key holding the request's CSP nonce; ``texts``: per language, overrides of the texts
    named in :attr:`TEXT_KEYS`.
    """

    banner: bool = True
    settings_link: bool = True
    default_language: str = "en"
    csp_nonce_environ_key: str = "csp_nonce"
    texts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    script_gating: bool = True

    #: The texts a ``[ui.texts.<lang>]`` table may override (see ``consentmw.ui.texts``).
    TEXT_KEYS = (
        "banner_title",
        "banner_text",
        "accept_all",
        "reject_all",
        "customise",
        "save",
        "back",
        "always_on",
        "settings_link",
        "notice_link",
        "policy_link",
        "gpc_honoured",
        "preferences_title",
        "preferences_intro",
        "status_undecided",
        "status_decided",
        "receipt",
        "gpc_on",
        "gpc_off",
        "gpc_blocked",
        "saved",
        "cookies",
        "cookie_name",
        "cookie_purpose",
        "cookie_lifetime",
        "cookie_description",
        "no_cookies",
        "policy_title",
        "policy_intro",
        "policy_version",
        "history",
        "purposes",
        "problem_title",
        "back_to_site",
        "policy_changed",
        "not_found",
        "lifetime_day",
        "lifetime_days",
        "lifetime_session",
        "lifetime_unknown",
        "notice_text",
    )


@dataclass(frozen=True, slots=True)
class OptoutConfig:
    """``[optout]``: signed opt-out links (``consentmw.rights``).

    ``base_url``: the scheme and host (and any path prefix) links start with, default
    ``https://<site.name>``; ``max_age_days``: how long a link stays valid (at least 30);
    ``contact``: another way to opt out, named on the page a broken link gets (an e-mail
    address, a ``mailto:`` URL or a sentence).
    """

    base_url: str | None = None
    max_age_days: int = 60
    contact: str | None = None


@dataclass(frozen=True, slots=True)
class RightsConfig:
    """``[rights]``: the data-subject rights layer (``consentmw.rights``).

    ``store``: where suppression lists and restrictions are kept, a ``sqlite://``,
    ``postgresql://``, ``jsonl://`` or ``memory://`` URL (default: ``sinks.consent_log``, so
    they live next to the consent log in tables or files of their own);
    ``consent_retention_days``: how long consent-log records are kept as proof of consent
    (0: for ever). Erasure never removes them (they name a pseudonymous id only); ``consentmw
    receipts verify`` counts those past retention and ``consentmw receipts prune`` removes them
    from the start of the log, keeping the chain verifiable.
    """

    store: str = "sqlite:///consentmw.db"
    consent_retention_days: int = 1095


@dataclass(frozen=True)
class Config:
    """The validated configuration. Build it with :meth:`load`; it never changes after."""

    site: SiteConfig
    policy: PolicyConfig
    purposes: Mapping[str, Purpose]
    cookies: tuple[CookieRule, ...]
    cookie_settings: CookieSettings
    jurisdictions: Jurisdictions
    tracking: TrackingConfig
    resolve: ResolveConfig
    sinks: SinksConfig
    dispatch: DispatchConfig
    consent_mode: ConsentModeConfig
    ui: UIConfig
    optout: OptoutConfig
    rights: RightsConfig = RightsConfig()
    source: str = "(mapping)"
    # Derived once, used per request.
    purpose_ids: frozenset[str] = frozenset()
    required: frozenset[str] = frozenset()
    gpc_purposes: frozenset[str] = frozenset()
    history: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, source: Config | Mapping[str, Any] | str | os.PathLike[str]) -> Config:
        """Read and validate a configuration from a TOML file path or a mapping."""
        if isinstance(source, Config):
            return source
        if isinstance(source, Mapping):
            return _parse(source, "(mapping)")
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    "(file)",
                    str(path),
                    f"cannot read it ({exc.strerror}); pass the path of a consentmw.toml",
                ) from None
            except UnicodeDecodeError:
                raise ConfigError("(file)", str(path), "save the file as UTF-8") from None
            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError("(file)", str(path), f"fix the TOML syntax: {exc}") from None
            return _parse(data, str(path))
        raise ConfigError(
            "(config)", type(source).__name__, "pass a path, a mapping or a consentmw.Config"
        )

    def cookie_rule(self, name: str) -> CookieRule | None:
        """The first declared rule matching a cookie name, or ``None`` (undeclared)."""
        for rule in self.cookies:
            if rule.matches(name):
                return rule
        return None

    def version_purposes(self, version: str) -> frozenset[str] | None:
        """The purposes policy ``version`` had, if known (the current version or history)."""
        if version == self.policy.version:
            return self.purpose_ids
        return self.history.get(version)

    def declaration(self) -> list[dict[str, Any]]:
        """The cookie declaration: every cookie, ours and declared, with its purpose and
        lifetime (``lifetime``: human text; ``max_age_days``: a number or ``None``)."""
        from .cookies import CookieNames

        names = CookieNames.for_settings(
            secure=self.cookie_settings.secure, domain=self.cookie_settings.domain
        )
        necessary = self.required_purpose_id
        out: list[dict[str, Any]] = [
            {
                "name": names.prefs,
                "match": "exact",
                "purpose": necessary,
                "description": "Your consent choices and preferences.",
                "max_age_days": self.policy.consent_max_age_days,
                "lifetime": f"{self.policy.consent_max_age_days} days",
            },
            {
                "name": names.session,
                "match": "exact",
                "purpose": necessary,
                "description": "Your session and its security token.",
                "max_age_days": None,
                "lifetime": "until the browser closes",
            },
            {
                "name": names.cart,
                "match": "exact",
                "purpose": necessary,
                "description": "Items in your shopping cart.",
                "max_age_days": self.cookie_settings.cart_max_age_days,
                "lifetime": f"{self.cookie_settings.cart_max_age_days:g} days",
            },
        ]
        for rule in self.cookies:
            out.append(
                {
                    "name": rule.name,
                    "match": rule.match,
                    "purpose": rule.purpose,
                    "description": rule.description,
                    "max_age_days": rule.max_age_days,
                    "lifetime": "not declared"
                    if rule.max_age_days is None
                    else f"{rule.max_age_days:g} days",
                }
            )
        return out

    @property
    def required_purpose_id(self) -> str | None:
        return min(self.required) if self.required else None

    def __repr__(self) -> str:
        return f"<Config site={self.site.name!r} policy={self.policy.version!r} from {self.source}>"


# --------------------------------------------------------------------------- reading

T = TypeVar("T")


class _Section:
    """A table being read: typed getters that know the dotted path, and unknown-key checks."""

    def __init__(self, data: object, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(path, data, "must be a table")
        self.data: Mapping[str, Any] = data
        self.path = path
        self.seen: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind: type[T] | tuple[type, ...], default: Any = _MISSING) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if default is _MISSING:
                raise ConfigError(self.where(key), _MISSING, "this key is required")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python; a config that says `batch_size = true` is a mistake.
        if isinstance(value, bool) and bool not in kinds:
            raise ConfigError(self.where(key), value, f"must be {_kind_name(kinds)}")
        if not isinstance(value, kinds):
            raise ConfigError(self.where(key), value, f"must be {_kind_name(kinds)}")
        return value

    def text(self, key: str, default: Any = _MISSING) -> Any:
        return self.get(key, str, default)

    def flag(self, key: str, default: bool) -> bool:
        value: bool = self.get(key, bool, default)
        return value

    def integer(self, key: str, default: int, *, minimum: int = 0, maximum: int = 2**31) -> int:
        value: int = self.get(key, int, default)
        if not minimum <= value <= maximum:
            raise ConfigError(self.where(key), value, f"must be between {minimum} and {maximum}")
        return value

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.get(key, (int, float), default)
        if value != value or value < minimum or value == float("inf"):
            raise ConfigError(self.where(key), value, f"must be a number of at least {minimum}")
        return float(value)

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        value: str = self.get(key, str, default)
        if value not in choices:
            raise ConfigError(self.where(key), value, f"must be one of {', '.join(choices)}")
        return value

    def str_list(self, key: str, default: Sequence[str] = ()) -> tuple[str, ...]:
        value = self.get(key, (list, tuple), list(default))
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(f"{self.where(key)}[{i}]", item, "must be a string")
        return tuple(value)

    def section(self, key: str) -> _Section:
        self.seen.add(key)
        return _Section(self.data.get(key), self.where(key))

    def done(self, known: Sequence[str] = ()) -> None:
        """Raise on keys nobody read: usually a typo."""
        allowed = self.seen | set(known)
        for key in self.data:
            if key not in allowed:
                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = (
                    f"did you mean {close[0]!r}?"
                    if close
                    else (
                        f"known keys here: {', '.join(sorted(allowed))}" if allowed else "remove it"
                    )
                )
                raise ConfigError(self.where(key), self.data[key], f"unknown key; {hint}")


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {
        str: "a string", bool: "true or false", int: "an integer", float: "a number",
        list: "a list", tuple: "a list", dict: "a table",
    }  # fmt: skip
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _attr(section: _Section, key: str, value: str) -> str:
    """A value that ends up inside a Set-Cookie header: no CR/LF/NUL, no ``;`` or ``,``."""
    if _BAD_ATTR_CHARS.search(value):
        raise ConfigError(
            section.where(key),
            value,
            "remove control characters (CR, LF), ';' and ',': the "
            "value goes into a Set-Cookie header",
        )
    return value


def _parse(data: Mapping[str, Any], source: str) -> Config:
    root = _Section(data, "")
    site = _parse_site(root.section("site"))
    purposes = _parse_purposes(root.section("purposes"))
    ids = frozenset(purposes)
    policy = _parse_policy(root.section("policy"), ids)
    cookies = _parse_cookies(root, ids)
    cookie_settings = _parse_cookie_settings(root.section("cookie_settings"))
    jurisdictions = _parse_jurisdictions(root.section("jurisdictions"))
    tracking = _parse_tracking(root.section("tracking"), ids)
    resolve = _parse_resolve(root.section("resolve"), ids, tracking.tracking_purpose)
    sinks = _parse_sinks(root.section("sinks"))
    dispatch = _parse_dispatch(root.section("dispatch"))
    consent_mode = _parse_consent_mode(root.section("consent_mode"), ids)
    ui = _parse_ui(root.section("ui"))
    optout = _parse_optout(root.section("optout"))
    rights = _parse_rights(root.section("rights"), sinks)
    root.done()
    required = frozenset(p.id for p in purposes.values() if p.required)
    return Config(
        site=site,
        policy=policy,
        purposes=MappingProxyType(purposes),
        cookies=cookies,
        cookie_settings=cookie_settings,
        jurisdictions=jurisdictions,
        tracking=tracking,
        resolve=resolve,
        sinks=sinks,
        dispatch=dispatch,
        consent_mode=consent_mode,
        ui=ui,
        optout=optout,
        rights=rights,
        source=source,
        purpose_ids=ids,
        required=required,
        gpc_purposes=frozenset(p.id for p in purposes.values() if p.gpc_opt_out and not p.required),
        history=MappingProxyType({h.version: h.purposes for h in policy.history}),
    )


def _parse_site(s: _Section) -> SiteConfig:
    name = s.text("name", "localhost")
    if not name.strip() or _BAD_ATTR_CHARS.search(name):
        raise ConfigError(s.where("name"), name, "give the site's host name, e.g. shop.example.com")
    raw = s.get("secret_keys", (list, tuple, str))
    if isinstance(raw, str):
        raw = [raw]
    keys: list[bytes] = []
    for i, item in enumerate(raw):
        where = f"{s.where('secret_keys')}[{i}]"
        if not isinstance(item, str):
            raise ConfigError(where, item, "must be a string (a key, or 'env:NAME')")
        if item.startswith("env:"):
            var = item[4:]
            value = os.environ.get(var)
            if not var or value is None:
                raise ConfigError(
                    where,
                    item,
                    f"the environment variable {var or '(empty name)'} is not set; "
                    f"set it to one or more comma-separated keys (consentmw keys generate)",
                )
            parts = [p.strip() for p in value.split(",") if p.strip()]
            if not parts:
                raise ConfigError(where, item, f"the environment variable {var} holds no key")
            for part in parts:
                keys.append(_check_key(where + f" (from ${var})", part, hide=True))
        else:
            keys.append(_check_key(where, item, hide=False))
    if not keys:
        raise ConfigError(
            s.where("secret_keys"),
            list(raw),
            "give at least one key of 16 or more bytes (consentmw keys generate prints one)",
        )
    mount = s.text("mount", "/_consent")
    if not re.fullmatch(r"/[A-Za-z0-9_\-./]*[A-Za-z0-9_\-]", mount) or "//" in mount:
        raise ConfigError(s.where("mount"), mount, "give a path such as /_consent (no trailing /)")
    s.done()
    return SiteConfig(name=name.strip(), secret_keys=tuple(keys), mount=mount)


def _check_key(where: str, key: str, *, hide: bool) -> bytes:
    raw = key.encode("utf-8")
    if len(raw) < _MIN_KEY_BYTES:
        shown = "(hidden)" if hide else f"({len(raw)} bytes)"
        raise ConfigError(
            where,
            shown,
            f"a secret key needs at least {_MIN_KEY_BYTES} bytes; "
            "generate one with: consentmw keys generate",
        )
    return raw


def _parse_purposes(s: _Section) -> dict[str, Purpose]:
    if not s.data:
        raise ConfigError(
            "purposes",
            _MISSING,
            "declare at least one purpose, e.g. [purposes.necessary] "
            'title = "Strictly necessary" required = true',
        )
    out: dict[str, Purpose] = {}
    for pid in s.data:
        if not _PURPOSE_ID.match(pid):
            raise ConfigError(
                s.where(pid),
                pid,
                "a purpose id is lower-case letters, digits, '_' or '-', "
                "starting with a letter, at most 32 characters",
            )
        p = s.section(pid)
        translations: dict[str, Mapping[str, str]] = {}
        tr = p.section("translations")
        for lang in tr.data:
            if not _LANG.match(lang):
                raise ConfigError(tr.where(lang), lang, "use a language tag such as de or pt-BR")
            t = tr.section(lang)
            entry = {k: t.text(k) for k in ("title", "description") if k in t.data}
            t.done()
            translations[lang] = MappingProxyType(entry)
        tr.done()
        out[pid] = Purpose(
            id=pid,
            title=p.text("title", pid.replace("_", " ").capitalize()),
            description=p.text("description", ""),
            required=p.flag("required", False),
            gpc_opt_out=p.flag("gpc_opt_out", False),
            translations=MappingProxyType(translations),
        )
        p.done()
    s.done()
    return out


def _parse_policy(s: _Section, ids: frozenset[str]) -> PolicyConfig:
    version = s.text("version", "1")
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,32}", version):
        raise ConfigError(
            s.where("version"),
            version,
            "use letters, digits, '.', '_' or '-' (at most 32), e.g. a date: 2014-12-12",
        )
    model = s.choice("model", MODELS, "opt-in")
    max_age = s.integer("consent_max_age_days", 180, minimum=1, maximum=3650)
    url = s.text("url", None)
    if url is not None and (not url.startswith(("/", "https://", "http://")) or
                            _BAD_ATTR_CHARS.search(url)):  # fmt: skip
        raise ConfigError(s.where("url"), url, "give a path (/privacy) or an http(s) URL")
    history: list[PolicyVersion] = []
    raw = s.get("history", (list, tuple), [])
    for i, entry in enumerate(raw):
        h = _Section(entry, f"{s.where('history')}[{i}]")
        hv = h.text("version")
        if hv == version:
            raise ConfigError(h.where("version"), hv, "history lists earlier versions only")
        hp = h.str_list("purposes", ())
        h.done()
        history.append(PolicyVersion(hv, frozenset(hp)))
    honor_dnt = s.flag("honor_dnt", False)
    s.done()
    return PolicyConfig(version, model, max_age, url, tuple(history), honor_dnt)


def _parse_cookies(root: _Section, ids: frozenset[str]) -> tuple[CookieRule, ...]:
    raw = root.get("cookies", (list, tuple), [])
    rules: list[CookieRule] = []
    for i, entry in enumerate(raw):
        c = _Section(entry, f"cookies[{i}]")
        name = c.text("name")
        match = c.choice("match", ("exact", "prefix", "regex"), "exact")
        pattern = None
        if match == "regex":
            try:
                pattern = re.compile(name)
            except re.error as exc:
                raise ConfigError(
                    c.where("name"), name, f"fix the regular expression: {exc}"
                ) from None
        elif not _COOKIE_NAME.match(name):
            raise ConfigError(
                c.where("name"),
                name,
                "a cookie name is letters, digits and !#$%&'*+-.^_`|~ only (no spaces, '=', ';')",
            )
        if name.lower().lstrip("_").startswith(("cmw_", "host-cmw_", "secure-cmw_")):
            raise ConfigError(c.where("name"), name, "cmw_ cookies are consentmw's own")
        purpose = c.text("purpose")
        if purpose not in ids:
            raise ConfigError(
                c.where("purpose"),
                purpose,
                f"declare [purposes.{purpose}] or use one of {', '.join(sorted(ids))}",
            )
        rules.append(
            CookieRule(
                name=name,
                purpose=purpose,
                match=match,
                description=c.text("description", ""),
                max_age_days=c.number("max_age_days", 0.0) if "max_age_days" in c.data else None,
                _pattern=pattern,
            )
        )
        c.done()
    return tuple(rules)


def _parse_cookie_settings(s: _Section) -> CookieSettings:
    domain = s.text("domain", None)
    if domain is not None:
        _attr(s, "domain", domain)
        if not _DOMAIN.match(domain) or "." not in domain.strip("."):
            raise ConfigError(
                s.where("domain"),
                domain,
                "give the parent domain, e.g. .example.com (omit for host-only)",
            )
    secure = s.flag("secure", True)
    samesite = s.text("samesite", "Lax")
    _attr(s, "samesite", samesite)
    canonical = {"lax": "Lax", "strict": "Strict", "none": "None"}.get(samesite.lower())
    if canonical is None:
        raise ConfigError(s.where("samesite"), samesite, "must be Lax, Strict or None")
    if canonical == "None" and not secure:
        raise ConfigError(
            s.where("samesite"),
            samesite,
            "SameSite=None needs secure = true (browsers reject it otherwise)",
        )
    path = _attr(s, "path", s.text("path", "/"))
    if not path.startswith("/"):
        raise ConfigError(s.where("path"), path, "must start with /")
    out = CookieSettings(
        domain=domain,
        secure=secure,
        samesite=canonical,
        undeclared=s.choice("undeclared", ("block", "allow", "report"), "block"),
        path=path,
        session_lifetime_hours=s.number("session_lifetime_hours", 24.0, minimum=0.01),
        cart_max_age_days=s.number("cart_max_age_days", 30.0, minimum=0.01),
    )
    s.done()
    return out


def _parse_jurisdictions(s: _Section) -> Jurisdictions:
    header = s.text("header", None)
    if header is not None and not _HEADER.match(header):
        raise ConfigError(s.where("header"), header, "give a header name such as CF-IPCountry")
    default = s.get("default", str, None)
    if default is not None and default not in MODELS:
        raise ConfigError(s.where("default"), default, f"must be one of {', '.join(MODELS)}")
    models: dict[str, str] = {}
    m = s.section("models")
    for model in m.data:
        if model not in MODELS:
            raise ConfigError(m.where(model), model, f"a model is one of {', '.join(MODELS)}")
        for code in m.str_list(model):
            if not _COUNTRY.match(code):
                raise ConfigError(m.where(model), code, "use ISO 3166 codes such as DE or US-CA")
            if code in models and models[code] != model:
                raise ConfigError(m.where(model), code, f"is already listed under {models[code]}")
            models[code] = model
    m.done()
    s.done()
    return Jurisdictions(header, default, MappingProxyType(models))


def _glob_regex(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def _parse_tracking(s: _Section, ids: frozenset[str]) -> TrackingConfig:
    default_purpose = "analytics" if "analytics" in ids else None
    purpose = s.text("tracking_purpose", default_purpose)
    if purpose is not None and purpose not in ids:
        raise ConfigError(
            s.where("tracking_purpose"),
            purpose,
            f"use a declared purpose: {', '.join(sorted(ids))}",
        )
    ignore_paths = s.str_list("ignore_paths", ())
    exts = tuple(
        e.lower() if e.startswith(".") else "." + e.lower()
        for e in s.str_list("ignore_extensions", _DEFAULT_STATIC)
    )
    actions: list[ActionRule] = []
    for i, entry in enumerate(s.get("actions", (list, tuple), [])):
        a = _Section(entry, f"{s.where('actions')}[{i}]")
        name = a.text("name")
        if not re.fullmatch(r"[a-z][a-z0-9_.-]{0,63}", name):
            raise ConfigError(
                a.where("name"), name, "use lower-case letters, digits, '_', '.', '-'"
            )
        method = a.text("method", "*").upper()
        if method != "*" and not re.fullmatch(r"[A-Z]{1,16}", method):
            raise ConfigError(a.where("method"), method, "give an HTTP method such as POST, or *")
        path = a.text("path", None)
        on_response = a.get("on_response", str, None)
        if on_response is not None and on_response != "attachment":
            raise ConfigError(a.where("on_response"), on_response, 'the only value is "attachment"')
        if path is None and on_response is None:
            raise ConfigError(
                a.where("path"),
                _MISSING,
                'give a path pattern (e.g. "/forums/*/post") or on_response',
            )
        if path is not None and not path.startswith("/"):
            raise ConfigError(a.where("path"), path, "a path pattern starts with /")
        rule_purpose = a.text("purpose", None)
        if rule_purpose is not None and rule_purpose not in ids:
            raise ConfigError(
                a.where("purpose"),
                rule_purpose,
                f"use a declared purpose: {', '.join(sorted(ids))}",
            )
        capture = a.str_list("capture", ())
        a.done()
        actions.append(
            ActionRule(
                name=name,
                method=method,
                path=path,
                on_response=on_response,
                capture=capture,
                purpose=rule_purpose,
                _regex=re.compile(fnmatch.translate(path)) if path else None,
            )
        )
    out = TrackingConfig(
        page_visits=s.flag("page_visits", True),
        tracking_purpose=purpose,
        aggregate_without_consent=s.flag("aggregate_without_consent", False),
        ignore_paths=ignore_paths,
        ignore_extensions=exts,
        ignore_bots=s.flag("ignore_bots", True),
        actions=tuple(actions),
        _ignore_regex=_glob_regex(ignore_paths),
    )
    s.done()
    return out


def _parse_resolve(s: _Section, ids: frozenset[str], tracking_purpose: str | None) -> ResolveConfig:
    hook = s.text("email_hook", None)
    if hook is not None and not _HOOK.match(hook):
        raise ConfigError(
            s.where("email_hook"), hook, "use 'module:function', e.g. myapp.auth:current_email"
        )
    domain_purpose = s.text("domain_purpose", tracking_purpose)
    if domain_purpose is not None and domain_purpose not in ids:
        raise ConfigError(s.where("domain_purpose"), domain_purpose, "use a declared purpose")
    pii: dict[str, tuple[str, ...]] = {}
    p = s.section("pii_fields")
    for fname in p.data:
        allowed = p.str_list(fname)
        for purpose in allowed:
            if purpose not in ids:
                raise ConfigError(p.where(fname), purpose, "use declared purposes")
        pii[fname] = allowed
    p.done()
    nameservers = s.str_list("rdns_nameservers", ())
    out = ResolveConfig(
        trusted_proxies=s.integer("trusted_proxies", 0, maximum=32),
        reverse_dns=s.flag("reverse_dns", False),
        rdns_verify=s.choice("rdns_verify", ("forward", "unverified"), "forward"),
        rdns_timeout_ms=s.integer("rdns_timeout_ms", 1000, minimum=10, maximum=30000),
        rdns_nameservers=nameservers,
        rdns_port=s.integer("rdns_port", 53, minimum=1, maximum=65535),
        domain_purpose=domain_purpose,
        email_hook=hook,
        anonymize_ip=s.choice("anonymize_ip", ("none", "truncate", "hash", "drop"), "truncate"),
        ipv4_prefix=s.integer("ipv4_prefix", 24, minimum=8, maximum=32),
        ipv6_prefix=s.integer("ipv6_prefix", 48, minimum=16, maximum=128),
        claimed_email=s.flag("claimed_email", True),
        pii_fields=MappingProxyType(pii),
    )
    s.done()
    return out


def _check_sink_url(s: _Section, key: str, url: str, schemes: Sequence[str], fix: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in schemes:
        raise ConfigError(s.where(key), url, fix)
    if scheme in ("sqlite", "jsonl") and not rest.lstrip("/"):
        raise ConfigError(
            s.where(key),
            url,
            f"give a file: {scheme}:///relative.db or {scheme}:////absolute/path.db",
        )
    return url


def _parse_sinks(s: _Section) -> SinksConfig:
    events = s.str_list("events", ("sqlite:///consentmw.db",))
    if not events:
        raise ConfigError(
            s.where("events"), [], 'list at least one sink URL, e.g. "sqlite:///events.db"'
        )
    fix = "use memory://, jsonl://, sqlite://, postgresql:// or redis://…?stream=name"
    for i, url in enumerate(events):
        _check_sink_url(s, f"events[{i}]", url, _SINK_SCHEMES, fix)
    default_log = events[0]
    consent_log = s.text("consent_log", None)
    if consent_log is None:
        consent_log = default_log
        where_fix = (
            "the first events sink is Redis, which cannot keep a hash chain across "
            "hosts; set sinks.consent_log to a sqlite:// or postgresql:// URL"
        )
        _check_sink_url(s, "events[0]", consent_log, _CONSENT_LOG_SCHEMES, where_fix)
    else:
        _check_sink_url(
            s,
            "consent_log",
            consent_log,
            _CONSENT_LOG_SCHEMES,
            "use memory://, jsonl://, sqlite:// or postgresql:// (Redis cannot keep "
            "a hash chain across hosts)",
        )
    s.done()
    return SinksConfig(events=events, consent_log=consent_log)


def _parse_dispatch(s: _Section) -> DispatchConfig:
    spool = s.get("spool", str, "auto")
    if spool == "":
        spool = None
    out = DispatchConfig(
        batch_size=s.integer("batch_size", 500, minimum=1, maximum=100_000),
        flush_interval_ms=s.integer("flush_interval_ms", 1000, minimum=1, maximum=3_600_000),
        queue_size=s.integer("queue_size", 10000, minimum=1, maximum=10_000_000),
        spool=spool,
        when_full=s.choice("when_full", ("drop_newest", "block"), "drop_newest"),
        max_retries=s.integer("max_retries", 5, maximum=100),
        retry_base_ms=s.integer("retry_base_ms", 200, minimum=1),
        retry_max_ms=s.integer("retry_max_ms", 30000, minimum=1),
        close_timeout_s=s.number("close_timeout_s", 5.0),
    )
    s.done()
    return out


def _parse_consent_mode(s: _Section, ids: frozenset[str]) -> ConsentModeConfig:
    enabled = s.flag("enabled", False)
    wait = s.integer("wait_for_update_ms", 500, maximum=60000)
    mapping: dict[str, tuple[str, ...]] = {}
    for ctype in CONSENT_MODE_TYPES:
        if ctype in s.data:
            purposes = s.str_list(ctype)
            for purpose in purposes:
                if purpose not in ids:
                    raise ConfigError(
                        s.where(ctype), purpose, f"use declared purposes: {', '.join(sorted(ids))}"
                    )
            mapping[ctype] = purposes
    if enabled and not mapping:
        raise ConfigError(
            s.where("enabled"),
            True,
            'map at least one consent type to purposes, e.g. analytics_storage = ["analytics"]',
        )
    s.done()
    return ConsentModeConfig(enabled, MappingProxyType(mapping), wait)


def _parse_ui(s: _Section) -> UIConfig:
    texts: dict[str, Mapping[str, str]] = {}
    t = s.section("texts")
    for lang in t.data:
        if not _LANG.match(lang):
            raise ConfigError(t.where(lang), lang, "use a language tag such as en or de")
        entry = t.section(lang)
        texts[lang] = MappingProxyType(
            {k: entry.text(k) for k in UIConfig.TEXT_KEYS if k in entry.data}
        )
        entry.done(UIConfig.TEXT_KEYS)
    t.done()
    lang = s.text("default_language", "en")
    if not _LANG.match(lang):
        raise ConfigError(s.where("default_language"), lang, "use a language tag such as en")
    nonce_key = s.text("csp_nonce_environ_key", "csp_nonce")
    if not nonce_key.strip():
        raise ConfigError(
            s.where("csp_nonce_environ_key"),
            nonce_key,
            "give the WSGI environ key your CSP middleware stores the nonce under",
        )
    out = UIConfig(
        banner=s.flag("banner", True),
        settings_link=s.flag("settings_link", True),
        default_language=lang,
        csp_nonce_environ_key=nonce_key,
        texts=MappingProxyType(texts),
        script_gating=s.flag("script_gating", True),
    )
    s.done()
    return out


def _parse_optout(s: _Section) -> OptoutConfig:
    base = s.text("base_url", None)
    if base is not None and (not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", base)):
        raise ConfigError(
            s.where("base_url"), base, "give an absolute URL, e.g. https://shop.example.com"
        )
    out = OptoutConfig(
        base_url=base.rstrip("/") if base else None,
        max_age_days=s.integer("max_age_days", 60, minimum=30, maximum=3650),
        contact=s.text("contact", None),
    )
    s.done()
    return out


def _parse_rights(s: _Section, sinks: SinksConfig) -> RightsConfig:
    store = s.text("store", None)
    if store is None:
        store = sinks.consent_log
    else:
        _check_sink_url(
            s,
            "store",
            store,
            _CONSENT_LOG_SCHEMES,
            "use sqlite://, postgresql://, jsonl:// or memory:// (the suppression list must "
            "outlive a Redis stream's trimming)",
        )
    out = RightsConfig(
        store=store,
        consent_retention_days=s.integer("consent_retention_days", 1095, maximum=36500),
    )
    s.done()
    return out
