"""The phone page's languages: the message catalogue (messages.toml: every key in every language,
side by side) and the choice of language for a request.

The language is, in order: `?lang=` (the visible switcher's links and the form's hidden field), the
first language of Accept-Language the page has (by q-value, then order), else zh-Hans. Chinese
tags map by script: zh-Hant, zh-TW, zh-HK and zh-MO read traditional characters; other zh tags
simplified.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CATALOGUE = Path(__file__).with_name("messages.toml")
DEFAULT = "zh-Hans"
LANGS = ("zh-Hans", "zh-Hant", "en", "ug")
_TRADITIONAL = ("zh-hant", "zh-tw", "zh-hk", "zh-mo")
_RANGE = re.compile(r"\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([0-9.]{1,5}))?\s*")
MAX_ACCEPT = 50  # language ranges read from one header


class CatalogueError(ValueError):
    """messages.toml is incomplete or malformed (a test and the app's start catch it)."""


@dataclass(frozen=True)
class Language:
    code: str
    name: str  # in its own language, for the switcher
    dir: str  # ltr | rtl


@dataclass(frozen=True)
class Catalogue:
    languages: dict[str, Language]
    messages: dict[str, dict[str, str]]  # key -> lang -> text

    def text(self, lang: str, key: str, **values: object) -> str:
        template = self.messages[key][lang]  # a KeyError is a bug: tests check every key the pages use
        return template.format(**values) if values else template


@cache
def catalogue(path: Path = CATALOGUE) -> Catalogue:
    """The catalogue, checked: each language of LANGS with its name and direction, each message in
    every language, non-empty."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CatalogueError(f"{path}: {exc}") from None
    languages = {}
    for code in LANGS:
        entry = doc.get("languages", {}).get(code)
        if not isinstance(entry, dict) or not entry.get("name") or entry.get("dir") not in ("ltr", "rtl"):
            raise CatalogueError(f"{path}: languages.{code} needs a name and a dir (ltr or rtl)")
        languages[code] = Language(code, entry["name"], entry["dir"])
    messages: dict[str, dict[str, str]] = {}
    for key, texts in doc.get("messages", {}).items():
        missing = [code for code in LANGS if not isinstance(texts.get(code), str) or not texts[code].strip()]
        extra = sorted(set(texts) - set(LANGS))
        if missing or extra:
            raise CatalogueError(f"{path}: message {key!r}: missing {missing}, unknown {extra}")
        messages[key] = dict(texts)
    return Catalogue(languages, messages)


def _match(tag: str) -> str | None:
    tag = tag.lower()
    if tag == "zh" or tag.startswith("zh-"):
        return "zh-Hant" if any(tag == t or tag.startswith(t + "-") for t in _TRADITIONAL) else "zh-Hans"
    for code in ("en", "ug"):
        if tag == code or tag.startswith(code + "-"):
            return code
    return None


def choose(query_lang: str | None, accept_language: str | None) -> str:
    """The page's language for a request (module docstring)."""
    if query_lang in LANGS:
        return query_lang  # type: ignore[return-value]
    ranked = []
    for position, part in enumerate((accept_language or "").split(",")[:MAX_ACCEPT]):
        match = _RANGE.fullmatch(part)
        if match is None or match[1] == "*":
            continue
        try:
            q = float(match[2]) if match[2] is not None else 1.0
        except ValueError:
            continue
        code = _match(match[1])
        if code is not None and q > 0:
            ranked.append((-q, position, code))
    return min(ranked)[2] if ranked else DEFAULT
