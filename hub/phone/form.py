"""What a citizen may send from the phone page, and how a posted form is checked.

The indicators (DOMAIN.md, seed 000 §11): an overall rating (总体评价) and, each optional, a
business rating (业务评价) and a service rating (服务评价), all five levels, 5 = 非常满意 … 1 =
非常不满意 as everywhere in the hub; tags that refine the rating (the questions of 000 §14: clear
guidance, convenient procedure, few materials; and the usual complaints), free text, and an
optional real name and phone number. A follow-up (追加评价) has everything but the overall rating.

`parse` never raises on what a client sends: it returns the Submission or the errors, each a
message key of the catalogue (messages.toml) per field.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .crypto import normalize_name, normalize_phone

SUPPLEMENTARY = "supplementary"  # 补充评价: the service's one overall rating, given on the phone
FOLLOWUP = "followup"  # 追加评价: after the overall rating (counter or phone), once; no overall
KINDS = (SUPPLEMENTARY, FOLLOWUP)
SCORES = (5, 4, 3, 2, 1)  # the order the page lists them: 非常满意 first
MAX_COMMENT = 500  # characters of free text
MAX_FIELD = 2000  # characters of any one posted value: more is not a person typing

# Tag codes, in the order the page shows them (labels in messages.toml, `tag.<code>`).
GOOD_TAGS = ("guide_clear", "convenient", "few_materials", "friendly", "one_visit", "efficient")
BAD_TAGS = ("guide_unclear", "cumbersome", "many_materials", "unfriendly", "many_visits", "long_wait")
TAGS = GOOD_TAGS + BAD_TAGS

SINGLE_FIELDS = ("score", "business", "service", "comment", "name", "phone")


@dataclass(frozen=True)
class Submission:
    """A checked form: `score` only for a supplementary rating; `name` and `phone` normalised."""

    kind: str
    score: int | None
    business: int | None
    service: int | None
    tags: tuple[str, ...]
    comment: str | None
    name: str | None
    phone: str | None

    @property
    def has_contact(self) -> bool:
        return self.name is not None or self.phone is not None


def _level(value: str | None) -> int | None | str:
    """A level 1..5, None for no answer, or "bad"."""
    if value is None or value == "":
        return None
    if value in ("1", "2", "3", "4", "5"):
        return int(value)
    return "bad"


def _comment(text: str) -> str | None | bool:
    """The comment as stored (NFC, line ends as \\n, ends trimmed), None if empty, False if it holds
    a control character other than line breaks and tabs."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n")).strip()
    if not text:
        return None
    for ch in text:
        if ch not in "\n\t" and unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn"):
            return False
    return text


def parse(kind: str, fields: Mapping[str, Sequence[str]],
          contact_allowed: bool) -> tuple[Submission | None, dict[str, str]]:
    """Check a posted form of `kind`. `fields`: every value posted under each name. Returns the
    Submission and no errors, or None and {field: message key}. `contact_allowed`: the hub can seal
    a name and phone number (it has a key file); if not, a posted name or number is refused."""
    errors: dict[str, str] = {}
    one: dict[str, str | None] = {}
    for name in SINGLE_FIELDS:
        values = list(fields.get(name, ()))
        if len(values) > 1:
            errors[name] = "error.repeated"
        elif values and len(values[0]) > MAX_FIELD:
            errors[name] = "error.too_long"
        one[name] = values[0] if len(values) == 1 else None

    levels: dict[str, int | None] = {}
    for name in ("score", "business", "service"):
        level = _level(one[name]) if name not in errors else None
        if level == "bad":
            errors[name] = "error.level"
            level = None
        levels[name] = level  # type: ignore[assignment]
    if kind == SUPPLEMENTARY and levels["score"] is None and "score" not in errors:
        errors["score"] = "error.score_required"
    if kind == FOLLOWUP:
        levels["score"] = None  # a follow-up never carries an overall rating

    tags = list(fields.get("tag", ()))
    if any(t not in TAGS for t in tags) or len(tags) > len(TAGS):
        errors["tag"] = "error.tag"
    chosen = tuple(t for t in TAGS if t in tags)

    comment: str | None = None
    if one["comment"] is not None and "comment" not in errors:
        checked = _comment(one["comment"])
        if checked is False:
            errors["comment"] = "error.comment_chars"
        elif checked is not None and len(checked) > MAX_COMMENT:
            errors["comment"] = "error.comment_long"
        else:
            comment = checked or None

    name = phone = None
    for field, normalize, message in (("name", normalize_name, "error.name"),
                                      ("phone", normalize_phone, "error.phone")):
        text = (one[field] or "").strip()
        if not text or field in errors:
            continue
        if not contact_allowed:
            errors[field] = "error.contact_off"
            continue
        value = normalize(text)
        if value is None:
            errors[field] = message
        elif field == "name":
            name = value
        else:
            phone = value

    if kind == FOLLOWUP and not errors and not (levels["business"] or levels["service"] or chosen or comment):
        errors["form"] = "error.followup_empty"
    if errors:
        return None, errors
    return Submission(kind, levels["score"], levels["business"], levels["service"], chosen, comment,
                      name, phone), {}
