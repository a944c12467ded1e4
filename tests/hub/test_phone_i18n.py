"""The phone page's languages: the catalogue is complete and is the only source of the pages'
words, the language is chosen as documented, and each language renders (Uyghur right to left)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.phone import form, web
from hub.phone.i18n import CATALOGUE, LANGS, CatalogueError, catalogue, choose
from tests.fixtures.hub import running_app
from tests.fixtures.phone import PhoneHub, hidden, text, write_key_file

ROOT = Path(web.__file__).parent
LEVEL_WORDS = {
    "zh-Hans": ["非常满意", "满意", "基本满意", "不满意", "非常不满意"],
    "zh-Hant": ["非常滿意", "滿意", "基本滿意", "不滿意", "非常不滿意"],
    "en": ["Very satisfied", "Satisfied", "Basically satisfied", "Dissatisfied", "Very dissatisfied"],
    "ug": ["ناھايىتى رازى", "رازى", "ئاساسەن رازى", "نارازى", "ناھايىتى نارازى"],
}


def used_keys() -> set[str]:
    """Every message key the page can ask for: the literal ones in the templates and web.py, and
    the ones it builds from the form's and the rules' values."""
    sources = [p.read_text(encoding="utf-8") for p in (ROOT / "templates").glob("*.html")]
    sources.append((ROOT / "web.py").read_text(encoding="utf-8"))
    keys = {m for s in sources for m in re.findall(r"""\bt\(\s*["']([a-z0-9_.]+)["']""", s) if not m.endswith(".")}
    keys |= {m for s in sources[:-1] for m in re.findall(r'"(tags\.[a-z]+)"', s)}  # headings listed in form.html
    keys |= {f"level.{s}" for s in (*form.SCORES, "none")} | {f"tag.{c}" for c in form.TAGS}
    keys |= {f"field.{n}" for n in ("business", "service")} | {f"submit.{k}" for k in form.KINDS}
    keys |= {f"refused.{r}" for r in ("malformed", "unknown_hall", "forged", "expired")}
    keys |= {f"followup.intro.{c}" for c in ("counter", "phone")}
    errors = re.findall(r'"(error\.[a-z_]+)"', (ROOT / "form.py").read_text(encoding="utf-8"))
    return keys | set(errors) | {"error.summary"}


def test_every_word_the_page_uses_is_in_the_catalogue_in_every_language_and_none_is_unused():
    words = catalogue()
    assert set(words.languages) == set(LANGS)
    assert [words.languages[c].dir for c in LANGS] == ["ltr", "ltr", "ltr", "rtl"]
    used = used_keys()
    assert used - set(words.messages) == set()
    assert set(words.messages) - used == set()
    for key, texts in words.messages.items():
        assert set(texts) == set(LANGS), key
        fields = {code: sorted(re.findall(r"{(\w+)}", texts[code])) for code in LANGS}
        assert len({tuple(f) for f in fields.values()}) == 1 or key == "date", (key, fields)
    for code in LANGS:
        assert [words.text(code, f"level.{s}") for s in form.SCORES] == LEVEL_WORDS[code]


def test_no_words_are_written_into_the_templates():
    for path in (ROOT / "templates").glob("*.html"):
        body = re.sub(r"{%.*?%}|{{.*?}}|<style>.*?</style>|<[^>]+>", " ", path.read_text(encoding="utf-8"), flags=re.S)
        leftovers = [w for w in body.split() if re.search(r"[^\W\d_]", w) and '="' not in w]
        assert leftovers == [], (path.name, leftovers)


def test_a_broken_catalogue_is_refused(tmp_path):
    broken = tmp_path / "messages.toml"
    good = CATALOGUE.read_text(encoding="utf-8")
    broken.write_text(good.replace('ug = "رازى"\n', "", 1), encoding="utf-8")
    with pytest.raises(CatalogueError, match="missing"):
        catalogue(broken)
    broken.write_text(good.replace('dir = "rtl"', 'dir = "up"'), encoding="utf-8")
    with pytest.raises(CatalogueError, match="languages.ug"):
        catalogue(broken)


@pytest.mark.parametrize(("query", "header", "lang"), [
    (None, None, "zh-Hans"), (None, "", "zh-Hans"), (None, "de-DE,fr;q=0.9", "zh-Hans"),
    (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh-Hans"), (None, "zh-TW", "zh-Hant"), (None, "zh-HK;q=1", "zh-Hant"),
    (None, "zh-Hant-TW", "zh-Hant"), (None, "zh-Hans-CN", "zh-Hans"), (None, "en-GB,en;q=0.9", "en"),
    (None, "ug-CN", "ug"), (None, "fr;q=0.9, ug;q=0.8, en;q=0.5", "ug"), (None, "en;q=0.3, zh-TW;q=0.4", "zh-Hant"),
    (None, "en;q=0, zh", "zh-Hans"), (None, "*", "zh-Hans"), (None, "en;q=abc", "zh-Hans"),
    (None, ";;;,,,x-;q=", "zh-Hans"), ("ug", "en", "ug"), ("en", "zh-TW", "en"), ("xx", "zh-TW", "zh-Hant"),
    ("EN", None, "zh-Hans"), (None, "en," * 500, "en"),
])
def test_the_language_chosen(query, header, lang):
    assert choose(query, header) == lang


@pytest.fixture(scope="module")
def phone(tmp_path_factory) -> Iterator[PhoneHub]:
    tmp = tmp_path_factory.mktemp("phone-i18n")
    with running_app(tmp / "hub", phone_key_file=write_key_file(tmp / "keys")) as hub:
        p = PhoneHub(hub).setup()
        yield p
        p.close()


@pytest.mark.parametrize("lang", LANGS)
def test_each_language_renders_its_own_words(phone, lang):
    token = phone.token(f"svc-{lang}")
    page = phone.show(token, lang=lang)
    assert page.status_code == 200
    direction = "rtl" if lang == "ug" else "ltr"
    assert f'<html lang="{lang}" dir="{direction}">' in page.text
    words = text(page.text)
    for word in LEVEL_WORDS[lang]:
        assert word in words
    assert not re.search(r"\b(level|tag|field|error|refused|submit)\.[a-z_]+", words)  # no key shows
    assert 'type="tel"' in page.text and 'dir="ltr"' in page.text  # digits read left to right, in ug too
    if lang in ("en", "ug"):  # the program's own words stay beside a translation
        assert '<span class="official" lang="zh-Hans">非常满意</span>' in page.text
    for code in LANGS:
        assert f'hreflang="{code}"' in page.text
    assert f'hreflang="{lang}" aria-current="true"' in page.text
    sent = phone.post(token, {**hidden(page.text), "score": "4"})
    assert sent.status_code == 303 and f"lang={lang}" in sent.headers["location"]
    thanks = phone.http.get(sent.headers["location"])
    assert catalogue().text(lang, "thanks.supplementary", level=LEVEL_WORDS[lang][1]) in text(thanks.text)
    assert (phone.phone_ratings(service=f"svc-{lang}"))[0]["lang"] == lang


def test_accept_language_picks_the_page_and_the_switcher_wins(phone):
    token = phone.token("svc-switch")
    assert '<html lang="zh-Hant"' in phone.show(token, accept_language="zh-TW,en;q=0.5").text
    assert '<html lang="ug" dir="rtl"' in phone.show(token, accept_language="ug").text
    assert '<html lang="en"' in phone.show(token, lang="en", accept_language="ug").text
    expired = phone.show(phone.token("svc-x", exp=1), accept_language="en")
    assert expired.status_code == 410 and "This rating link has expired" in text(expired.text)
    errors = phone.post(token, {**hidden(phone.show(token, lang="ug").text)})
    assert errors.status_code == 422 and '<html lang="ug" dir="rtl">' in errors.text
    assert catalogue().text("ug", "error.score_required") in text(errors.text)
