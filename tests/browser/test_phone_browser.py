"""A citizen rates a service on the phone page in Chromium with a phone's viewport (390x844),
with JavaScript off (the page needs none), against the real hub process, and the rating is at
the hub. Screenshots are kept in test-artifacts/browser/test_phone_browser/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.services import HubProcess
from tests.fixtures.hub import ADMIN_TOKEN
from tests.fixtures.phone import PhoneHub, write_key_file

from .conftest import ARTIFACTS, DEFAULT_TIMEOUT_MS

MOBILE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True,
          "has_touch": True}


class PhoneHubProcess(HubProcess):
    """The real hub process with a phone key file (HCP_HUB_PHONE_KEY_FILE)."""

    def __init__(self, workdir: Path, key_file: Path):
        super().__init__(workdir, admin_token=ADMIN_TOKEN)
        self.key_file = key_file

    def env(self) -> dict[str, str]:
        return {**super().env(), "HCP_HUB_PHONE_KEY_FILE": str(self.key_file)}


@pytest.fixture
def phone(tmp_path: Path) -> Iterator[PhoneHub]:
    hub = PhoneHubProcess(tmp_path / "hub", write_key_file(tmp_path / "keys")).start()
    try:
        p = PhoneHub(hub).setup()  # type: ignore[arg-type]
        yield p
        p.close()
    finally:
        hub.close()


@pytest.fixture
def artifacts() -> Path:
    folder = ARTIFACTS / "test_phone_browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _luminance(rgb: tuple[int, int, int]) -> float:
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two CSS rgb() colours."""
    la, lb = (_luminance(tuple(int(x) for x in c[c.index("(") + 1:c.index(")")].split(",")[:3])) for c in (a, b))
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def test_a_citizen_rates_on_the_phone_page(browser, phone, artifacts):
    phone.service("svc-browser", ticket="A023")
    url = f"{phone.hub.url}/r/{phone.token('svc-browser')}"

    context = browser.new_context(**MOBILE, java_script_enabled=False, locale="zh-CN")
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(url)
        assert page.locator("html").get_attribute("lang") == "zh-Hans"
        assert page.get_by_role("heading", level=1).inner_text() == "补充评价"
        overall = page.get_by_role("group", name="总体评价")
        assert overall.get_by_role("radio").count() == 5
        for word in ("非常满意", "满意", "基本满意", "不满意", "非常不满意"):
            assert overall.get_by_label(word, exact=True).count() == 1
        overall.get_by_label("不满意", exact=True).check()
        page.get_by_role("group", name="服务评价（态度、指导） （可选）").get_by_label("不满意", exact=True).check()
        page.get_by_label("等待时间长").check()
        page.get_by_label("多次跑腿").check()
        page.get_by_label("文字评价").fill("取号后等了一个多小时，窗口只开了两个。")
        page.get_by_label("姓名").fill("张三")
        page.get_by_label("手机号").fill("138 0013 8000")
        page.screenshot(path=str(artifacts / "phone-form-zh-Hans.png"), full_page=True)
        page.get_by_role("button", name="提交评价").tap()
        page.wait_for_url("**sent=supplementary")
        assert "您的评价已记录：不满意。" in page.inner_text("main")
        page.screenshot(path=str(artifacts / "phone-thanks-zh-Hans.png"), full_page=True)
        page.get_by_role("link", name="追加评价").tap()
        assert page.get_by_role("heading", level=1).inner_text() == "追加评价"
        assert page.get_by_role("group", name="总体评价").count() == 0  # never a second overall rating
    finally:
        context.close()

    (rating,) = phone.phone_ratings()
    assert (rating["kind"], rating["score"], rating["service_score"], rating["tags"]) == (
        "supplementary", 2, 2, ["many_visits", "long_wait"])
    assert rating["contact"] == {"name": "张*", "phone": "138****8000"}
    assert phone.today_stats()["bad"] == 1

    # the same page measured with scripts on: fits the screen, large targets, readable contrast
    context = browser.new_context(**MOBILE)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(f"{phone.hub.url}/r/{phone.token('svc-measure')}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        heights = page.eval_on_selector_all("label.choice, button, nav.langs a",
                                            "els => els.map(e => e.getBoundingClientRect().height)")
        assert heights and min(heights) >= 44, heights
        widths = page.eval_on_selector_all("label.choice, button", "els => els.map(e => e.getBoundingClientRect().width)")
        assert min(widths) >= 44, widths
        colours = page.evaluate("""() => {
            const s = e => getComputedStyle(document.querySelector(e));
            return {text: s('body').color, back: s('body').backgroundColor, hint: s('.hint').color,
                    button: s('button').color, buttonBack: s('button').backgroundColor};
        }""")
        assert contrast(colours["text"], colours["back"]) >= 7
        assert contrast(colours["hint"], colours["back"]) >= 4.5
        assert contrast(colours["button"], colours["buttonBack"]) >= 4.5
        unlabelled = page.eval_on_selector_all(
            "input:not([type=hidden]), textarea",
            "els => els.filter(e => !(e.labels && e.labels.length)).map(e => e.name)")
        assert unlabelled == []
        page.goto(f"{phone.hub.url}/r/{phone.token('svc-measure')}?lang=ug")
        assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(artifacts / "phone-form-ug.png"), full_page=True)
    finally:
        context.close()
