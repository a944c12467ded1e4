"""The pages' colours meet WCAG: the phone rating page (hub/phone/templates/base.html) and the
operator pages (hub/web/static/hub.css, where text is held to 7:1). In each, every text colour the
stylesheet sets, on every background text can sit on, is at least 4.5:1
(1.4.3); the boundaries of the controls and the focus outline are at least 3:1 against those
backgrounds (1.4.11). The pairs are read from the stylesheet itself, so a colour added or
changed is checked without touching this test. (tests/browser/test_phone_browser.py measures the
computed colours, labels and target sizes in Chromium.)"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import hub.phone
from tests.fixtures.wcag import NON_TEXT, TEXT_AA, contrast

BASE = Path(hub.phone.__file__).parent / "templates" / "base.html"
HUB_CSS = Path(hub.phone.__file__).parent.parent / "web" / "static" / "hub.css"
# Rules whose border only separates or frames (not a control's boundary), per stylesheet.
DECORATIVE = {"phone": {"header"}, "hub": {"header.top", ".role", ".card", ".tiles a", "th, td"}}


@dataclass(frozen=True)
class Rule:
    selector: str
    decls: dict[str, str]


def css_of(sheet: str) -> str:
    """The CSS text of `sheet`: "phone" (the <style> of the phone page's base.html) or "hub" (the
    operator pages' static/hub.css)."""
    if sheet == "hub":
        return HUB_CSS.read_text(encoding="utf-8")
    css = re.search(r"<style>(.*?)</style>", BASE.read_text(encoding="utf-8"), re.S)
    assert css, "no <style> in the phone page's base template"
    return css.group(1)


def stylesheet(sheet: str = "phone") -> tuple[dict[str, str], list[Rule]]:
    """The custom properties of `:root` and the rules (selector, declarations) of `sheet`."""
    rules = []
    for selector, body in re.findall(r"([^{}]+)\{([^{}]*)\}", re.sub(r"/\*.*?\*/", "", css_of(sheet), flags=re.S)):
        decls = {}
        for decl in body.split(";"):
            if ":" in decl:
                name, value = decl.split(":", 1)
                decls[name.strip()] = value.strip()
        rules.append(Rule(" ".join(selector.split()), decls))
    root = next(r for r in rules if r.selector == ":root")
    variables = {k: v for k, v in root.decls.items() if k.startswith("--")}
    return variables, [r for r in rules if r.selector != ":root"]


def colour_in(value: str, variables: dict[str, str]) -> str | None:
    """The colour a declaration's value names (a hex colour or a var() of one), else None."""
    value = re.sub(r"var\((--[\w-]+)\)", lambda m: variables[m.group(1)], value)
    found = re.search(r"#[0-9a-fA-F]{6}\b|#[0-9a-fA-F]{3}\b", value)
    return found.group(0) if found else None


def pairs(sheet: str = "phone") -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """(text colour, background, where) the text pairs; (colour, background, where) the non-text ones.

    Text colours set with their own background are checked on it (a button). The others (and
    the body's colour, which every element inherits) are checked on every background text can
    sit on: the body's, and each one a rule sets without setting a text colour of its own (a
    checked choice, a notice box, an input)."""
    variables, rules = stylesheet(sheet)
    body = next(r for r in rules if r.selector == "body")
    surfaces = {colour_in(body.decls["background"], variables): "body"}
    free_text = {colour_in(body.decls["color"], variables): "body"}
    text: set[tuple[str, str, str]] = set()
    for r in rules:
        if r is body:
            continue
        fg = colour_in(r.decls.get("color", ""), variables)
        bg = colour_in(r.decls.get("background", r.decls.get("background-color", "")), variables)
        if fg and bg:
            text.add((fg, bg, r.selector))
        elif fg:
            free_text.setdefault(fg, r.selector)
        elif bg:
            surfaces.setdefault(bg, r.selector)
    for fg, fg_where in free_text.items():
        for bg, bg_where in surfaces.items():
            text.add((fg, bg, f"{fg_where} on {bg_where}"))
    non_text = set()
    for r in rules:
        if r.selector in DECORATIVE[sheet]:
            continue
        for name, value in r.decls.items():
            if name.startswith(("border", "outline")) and (c := colour_in(value, variables)):
                for bg, bg_where in surfaces.items():
                    non_text.add((c, bg, f"{r.selector} {name} on {bg_where}"))
    return text, non_text


def test_the_stylesheet_is_read():
    """The parse finds what the page uses, so the checks below check something."""
    text, non_text = pairs()
    found = {(fg, bg) for fg, bg, _ in text}
    assert {("#1a1a1a", "#fff"), ("#444", "#fff"), ("#444", "#eef4fb"), ("#fff", "#0b57a4"),
            ("#a4001d", "#fff"), ("#0b57a4", "#eef4fb")} <= found
    assert {"#767676", "#0b57a4", "#b35900", "#a4001d"} <= {c for c, _, _ in non_text}
    assert "#d0d0d0" not in {c for c, _, _ in non_text}  # the header's rule, decorative


def test_the_operator_stylesheet_is_read():
    text, non_text = pairs("hub")
    found = {(fg, bg) for fg, bg, _ in text}
    assert {("#1a1a1a", "#fff"), ("#444", "#f3f5f8"), ("#fff", "#0b4f9c"), ("#9b1c1c", "#fdf2f2"),
            ("#0b4f9c", "#fff")} <= found
    assert {"#6b7480", "#0b4f9c"} <= {c for c, _, _ in non_text}  # inputs' and buttons' boundaries
    assert "#c8ced6" not in {c for c, _, _ in non_text}  # the cards' and tables' lines, decorative


SHEET_PAIRS = [(sheet, *pair) for sheet in ("phone", "hub") for pair in sorted(pairs(sheet)[0])]
SHEET_NON_TEXT = [(sheet, *pair) for sheet in ("phone", "hub") for pair in sorted(pairs(sheet)[1])]


@pytest.mark.parametrize("sheet,fg,bg,where", SHEET_PAIRS)
def test_text_contrast(sheet, fg, bg, where):
    assert contrast(fg, bg) >= TEXT_AA, f"{sheet} {where}: {fg} on {bg} is {contrast(fg, bg):.2f}:1"


def test_operator_text_is_at_least_7_to_1():
    """docs/accounts.md promises the operator pages 7:1 (WCAG AAA, 1.4.6) for their text."""
    low = [(fg, bg, where, round(contrast(fg, bg), 2)) for fg, bg, where in pairs("hub")[0] if contrast(fg, bg) < 7]
    assert not low


@pytest.mark.parametrize("sheet,colour,bg,where", SHEET_NON_TEXT)
def test_control_boundaries_and_focus_contrast(sheet, colour, bg, where):
    assert contrast(colour, bg) >= NON_TEXT, f"{where}: {colour} on {bg} is {contrast(colour, bg):.2f}:1"


def test_the_figures_docs_phone_md_gives():
    """What docs/phone.md says: 17:1 for text, 9.7:1 for hints, 7.2:1 for the button."""
    variables, _ = stylesheet()
    assert round(contrast(variables["--ink"], "#fff"), 1) == 17.4
    assert round(contrast(variables["--muted"], "#fff"), 1) == 9.7
    assert round(contrast(variables["--accent-ink"], variables["--accent"]), 1) == 7.2


def test_a_low_contrast_colour_would_be_caught(monkeypatch, tmp_path):
    """The check fails on a grey that is too light (#999 on white is 2.85:1)."""
    page = tmp_path / "base.html"
    page.write_text(BASE.read_text(encoding="utf-8").replace("--muted: #444", "--muted: #999"), encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "BASE", page)
    low = [(fg, bg) for fg, bg, _ in pairs()[0] if contrast(fg, bg) < TEXT_AA]
    assert ("#999", "#fff") in low
