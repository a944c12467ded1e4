"""A citizen rates a service on the phone page in Chromium with a phone's viewport (390x844),
with JavaScript off (the page needs none), against the real hub process, and the rating is at
the hub. Then the page is measured in the same viewport: every target at least 44 CSS px each way,
every input labelled, readable contrast of the computed colours (tests/hub/test_contrast.py
checks every colour pair of the stylesheet). Screenshots are kept in
test-artifacts/browser/test_phone_browser.<test>/ (tests/README.md, "Artifacts")."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.services import HubProcess
from tests.fixtures.hub import ADMIN_TOKEN
from tests.fixtures.phone import PhoneHub, write_key_file
from tests.fixtures.wcag import contrast

from .conftest import DEFAULT_TIMEOUT_MS, artifact_dir

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
def artifacts(request: pytest.FixtureRequest) -> Path:
    """This test's artifacts folder (the `page` fixture's convention, tests/browser/conftest.py)."""
    folder = artifact_dir(request.node)
    shutil.rmtree(folder, ignore_errors=True)  # this run's screenshots only
    folder.mkdir(parents=True, exist_ok=True)
    return folder


TARGET_PX = 44  # WCAG 2.5.5 (AAA, "Target Size (Enhanced)"): at least 44 by 44 CSS px
# Every target a person taps: links (but those inside a sentence, which 2.5.5 exempts: the error
# summary's), buttons, the whole labelled boxes of the choices, text fields.
TARGETS = ("a:not(.summary a), button, label.choice, "
           "input:not([type=hidden]):not([type=radio]):not([type=checkbox]), textarea")
MEASURE = """sel => [...document.querySelectorAll(sel)].map(e => {
    const r = e.getBoundingClientRect();
    const what = e.tagName + (e.className ? '.' + e.className : '') + ' '
                 + (e.name || e.textContent.trim().slice(0, 20));
    return {what, width: r.width, height: r.height};
})"""


def small_targets(page) -> list[dict]:
    found = page.evaluate(MEASURE, TARGETS)
    assert found, "nothing measured"
    return [t for t in found if t["width"] < TARGET_PX or t["height"] < TARGET_PX]


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
        assert page.evaluate("window.innerWidth") == 390
        assert small_targets(page) == []
        # a radio button or box is tapped through its whole labelled box (measured above)
        assert page.eval_on_selector_all("input[type=radio], input[type=checkbox]",
                                         "els => els.filter(e => !e.closest('label.choice')).length") == 0
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
        assert small_targets(page) == []
        page.screenshot(path=str(artifacts / "phone-form-ug.png"), full_page=True)
        page.locator("input[name=score][value='4']").check()  # the overall rating: 满意
        page.get_by_role("button").click()
        page.wait_for_url("**sent=supplementary**")
        assert page.locator("a.button").count() == 1  # the thanks page's link to the follow-up
        assert small_targets(page) == []
        page.screenshot(path=str(artifacts / "phone-thanks-ug.png"), full_page=True)
    finally:
        context.close()
