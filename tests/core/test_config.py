"""Config.load: the sample file, every refusal with its field and fix, and robustness."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import tomllib
from hypothesis import given, settings
from hypothesis import strategies as st

from consentmw import Config, ConfigError
from tests.core.support import BASE, make_config

SAMPLE = """
[site]
name = "shop.example.test"
secret_keys = ["old-secret-0123456789abcdef", "new-secret-0123456789abcdef"]
mount = "/_consent"
[policy]
version = "2014-12-12"
model = "opt-in"
consent_max_age_days = 180
[purposes.necessary]
title = "Strictly necessary"
required = true
[purposes.analytics]
title = "Improve our content"
[purposes.marketing]
title = "Marketing contact"
gpc_opt_out = true
[[cookies]]
name = "_ga"
match = "prefix"
purpose = "analytics"
[[cookies]]
name = "promo"
purpose = "marketing"
[cookie_settings]
secure = false
samesite = "Lax"
undeclared = "block"
[sinks]
events = ["memory://"]
"""


def test_the_issue_sample_loads_as_is(tmp_path: Path) -> None:
    path = tmp_path / "consentmw.toml"
    path.write_text(SAMPLE)
    config = Config.load(path)
    assert config.site.name == "shop.example.test"
    assert config.site.secret_keys == (
        b"old-secret-0123456789abcdef",
        b"new-secret-0123456789abcdef",
    )
    assert config.policy.model == "opt-in" and config.policy.consent_max_age_days == 180
    assert config.purpose_ids == {"necessary", "analytics", "marketing"}
    assert config.required == {"necessary"}
    assert config.gpc_purposes == {"marketing"}
    assert (
        config.cookie_rule("_ga_XYZ") is not None
        and config.cookie_rule("_ga_XYZ").purpose == "analytics"
    )
    assert config.cookie_rule("promo").purpose == "marketing"
    assert config.cookie_rule("promo2") is None
    assert config.sinks.events == ("memory://",) and config.sinks.consent_log == "memory://"
    assert Config.load(str(path)) == config
    assert Config.load(tomllib.loads(SAMPLE)).site == config.site
    assert Config.load(config) is config


def test_config_is_immutable() -> None:
    config = Config.load(make_config())
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.site = config.site  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.purposes["x"] = config.purposes["analytics"]  # type: ignore[index]


def test_keys_never_appear_in_repr() -> None:
    config = Config.load(make_config())
    assert "0123456789" not in repr(config.site) and "0123456789" not in repr(config)


def test_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMW_KEYS", "first-key-0123456789ab, second-key-0123456789ab")
    config = Config.load(make_config(site={"secret_keys": ["env:CMW_KEYS"]}))
    assert config.site.secret_keys == (b"first-key-0123456789ab", b"second-key-0123456789ab")


def _broken(path: str, value: Any) -> dict[str, Any]:
    data = make_config()
    target: Any = data
    parts = path.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
    last = parts[-1]
    if value is _DELETE:
        del target[last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field", "fix"),
    [
        pytest.param(
            "cookies.1.purpose",
            "nope",
            "cookies[1].purpose",
            "declare [purposes.nope]",
            id="unknown-purpose",
        ),
        pytest.param(
            "cookie_settings.domain",
            "a.test\r\nX: y",
            "cookie_settings.domain",
            "remove control characters",
            id="crlf-domain",
        ),
        pytest.param(
            "cookie_settings.domain",
            "a.test; Secure",
            "cookie_settings.domain",
            "';'",
            id="semicolon-domain",
        ),
        pytest.param(
            "cookie_settings.samesite",
            "Lax\n",
            "cookie_settings.samesite",
            "remove control",
            id="lf-samesite",
        ),
        pytest.param(
            "cookie_settings.path", "/a;b", "cookie_settings.path", "';'", id="semicolon-path"
        ),
        pytest.param(
            "cookie_settings.samesite",
            "Sometimes",
            "cookie_settings.samesite",
            "Lax, Strict or None",
            id="bad-samesite",
        ),
        pytest.param("site.secret_keys", [], "site.secret_keys", "at least one key", id="no-keys"),
        pytest.param(
            "site.secret_keys", _DELETE, "site.secret_keys", "required", id="missing-keys"
        ),
        pytest.param(
            "site.secret_keys",
            ["short"],
            "site.secret_keys[0]",
            "at least 16 bytes",
            id="short-key",
        ),
        pytest.param(
            "site.secret_keys",
            ["env:CMW_NOT_SET_ANYWHERE"],
            "site.secret_keys[0]",
            "is not set",
            id="env-missing",
        ),
        pytest.param(
            "policy.model", "maybe", "policy.model", "opt-in, opt-out, notice", id="unknown-model"
        ),
        pytest.param(
            "policy.consent_max_age_days",
            0,
            "policy.consent_max_age_days",
            "between 1",
            id="zero-age",
        ),
        pytest.param(
            "policy.consent_max_age_days",
            True,
            "policy.consent_max_age_days",
            "integer",
            id="bool-age",
        ),
        pytest.param(
            "cookie_settings.undeclared",
            "ignore",
            "cookie_settings.undeclared",
            "block, allow, report",
            id="bad-undeclared",
        ),
        pytest.param(
            "cookies.0.match", "glob", "cookies[0].match", "exact, prefix, regex", id="bad-match"
        ),
        pytest.param(
            "cookies.0.name", "bad name", "cookies[0].name", "cookie name", id="bad-cookie-name"
        ),
        pytest.param(
            "cookies.0.name", "cmw_prefs", "cookies[0].name", "consentmw's own", id="our-cookie"
        ),
        pytest.param("site.mount", "/_consent/", "site.mount", "no trailing /", id="mount-slash"),
        pytest.param("site.mount", "_consent", "site.mount", "a path", id="mount-relative"),
        pytest.param("sinks.events", ["ftp://x"], "sinks.events[0]", "sqlite://", id="bad-sink"),
        pytest.param(
            "sinks.consent_log",
            "redis://127.0.0.1/0?stream=x",
            "sinks.consent_log",
            "hash chain",
            id="redis-log",
        ),
        pytest.param(
            "dispatch.when_full",
            "panic",
            "dispatch.when_full",
            "drop_newest, block",
            id="bad-when-full",
        ),
        pytest.param("dispatch.batch_size", 0, "dispatch.batch_size", "between 1", id="zero-batch"),
        pytest.param("purposes", {}, "purposes", "at least one purpose", id="no-purposes"),
        pytest.param(
            "tracking",
            {"tracking_purpose": "nope"},
            "tracking.tracking_purpose",
            "declared purpose",
            id="unknown-tracking-purpose",
        ),
        pytest.param(
            "tracking",
            {"actions": [{"name": "x"}]},
            "tracking.actions[0].path",
            "path pattern",
            id="rule-without-path",
        ),
        pytest.param(
            "resolve",
            {"anonymize_ip": "scramble"},
            "resolve.anonymize_ip",
            "none, truncate, hash, drop",
            id="bad-anonymize",
        ),
        pytest.param(
            "jurisdictions",
            {"models": {"opt-in": ["Germany"]}},
            "jurisdictions.models.opt-in",
            "ISO 3166",
            id="bad-country",
        ),
        pytest.param("site.nmae", "x", "site.nmae", "did you mean 'name'", id="typo"),
    ],
)
def test_bad_configs_name_the_field_and_the_fix(
    path: str, value: Any, field: str, fix: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Config.load(_broken(path, value))
    assert info.value.field == field
    assert fix in str(info.value)
    assert str(info.value).startswith(field)


def test_samesite_none_needs_secure() -> None:
    with pytest.raises(ConfigError, match="secure = true"):
        Config.load(make_config(cookie_settings={"samesite": "None", "secure": False}))
    assert (
        Config.load(
            make_config(cookie_settings={"samesite": "none", "secure": True})
        ).cookie_settings.samesite
        == "None"
    )


def test_toml_syntax_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[site\nname = 1")
    with pytest.raises(ConfigError, match="TOML syntax"):
        Config.load(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        Config.load(tmp_path / "missing.toml")


def test_secret_key_from_env_is_hidden_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMW_SHORT", "tiny-secret")
    with pytest.raises(ConfigError) as info:
        Config.load(make_config(site={"secret_keys": ["env:CMW_SHORT"]}))
    assert "tiny-secret" not in str(info.value)


def test_regex_cookie_rule_and_history() -> None:
    config = Config.load(
        make_config(
            cookies=[{"name": r"_hj\w+", "match": "regex", "purpose": "analytics"}],
            policy={"history": [{"version": "2013-06-01", "purposes": ["necessary"]}]},
        )
    )
    assert config.cookie_rule("_hjSession") is not None and config.cookie_rule("x_hjA") is None
    assert config.version_purposes("2013-06-01") == {"necessary"}
    assert config.version_purposes("2014-12-12") == config.purpose_ids
    assert config.version_purposes("1999") is None


def test_jurisdictions_choose_the_model() -> None:
    config = Config.load(
        make_config(
            jurisdictions={
                "header": "CF-IPCountry",
                "default": "notice",
                "models": {"opt-in": ["DE"], "opt-out": ["US-CA"]},
            }
        )
    )
    j = config.jurisdictions
    assert j.environ_key == "HTTP_CF_IPCOUNTRY"
    assert j.model_for("de", "opt-in") == "opt-in"
    assert j.model_for("US-CA", "opt-in") == "opt-out"
    assert j.model_for("US-NY", "opt-in") == "notice"
    assert j.model_for(None, "opt-in") == "notice"


_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.lists(st.text(max_size=8), max_size=3),
)
_value = st.recursive(
    _leaf, lambda inner: st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=8
)


@settings(max_examples=300, deadline=None)
@given(
    section=st.sampled_from(
        [*sorted(BASE), "tracking", "resolve", "ui", "consent_mode", "jurisdictions", "optout"]
    ),
    key=st.text(max_size=20),
    value=_value,
)
def test_any_mangled_section_gives_a_config_or_a_config_error(
    section: str, key: str, value: Any
) -> None:
    data = copy.deepcopy(BASE)
    target = data.setdefault(section, {})
    if isinstance(target, dict):
        target[key] = value
    else:
        data[section] = value
    with contextlib.suppress(ConfigError):
        Config.load(data)
