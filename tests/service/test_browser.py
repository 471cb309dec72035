"""The web page in a real headless Chromium: fill the form, submit, read the report.

One uvicorn server (the real app, on a free loopback port) serves the session and one
browser the module. Debian's ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` are used
directly, with Selenium Manager kept offline, so nothing is downloaded. Set
``NETBOARD_SCREENSHOTS=DIR`` to save full-page PNGs of the filled form and of the answers.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import SHARED
from netboard.case import read_case
from netboard.engine.recommend import recommend
from netboard.fields import Choice, Flag, registry
from netboard.kb import KnowledgeBase
from netboard.parse.ask import ask

FIELDS = {path: f.spec for path, f in registry().top.items()}
LAB_FIELDS = {name: f.spec for name, f in registry().members["labs"].items()}

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOTE = "stage 4 NET of the sigmoid with liver metastases, Ki-67 8 %"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's /usr/bin/chromium and /usr/bin/chromedriver (CI installs them)",
    ),
]

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the service extra is not installed")

from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

from netboard.service.app import Settings, create_app  # noqa: E402


@pytest.fixture(scope="session")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real app on uvicorn, in a background thread, on a free loopback port."""
    db = tmp_path_factory.mktemp("browser") / "feedback.sqlite3"
    app = create_app(Settings(data_dir=str(db.parent)))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    # The health check goes straight to loopback, whatever proxy the environment names.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 15
    while True:
        try:
            with opener.open(f"{url}/healthz", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail("the test server did not answer /healthz")
            time.sleep(0.05)
    yield url
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless Chromium for the module, with a fresh profile and no network calls."""
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--no-proxy-server",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(arg)
    with pytest.MonkeyPatch.context() as mp:
        # Selenium Manager must never look for a browser or driver online.
        mp.setenv("SE_OFFLINE", "true")
        browser = webdriver.Chrome(
            service=Service(executable_path=str(CHROMEDRIVER)), options=options
        )
        try:
            browser.set_page_load_timeout(15)
            yield browser
        finally:
            browser.quit()


# --- helpers -------------------------------------------------------------------------------


def fill_case(driver: WebDriver, case: dict[str, Any]) -> None:
    """Type a contract case into an empty case form, field by field, as a user would."""
    form = driver.find_element(By.ID, "case-form")
    flat = {k: x for k, x in case.items() if k != "labs"}
    flat.update({f"labs.{k}": x for k, x in (case.get("labs") or {}).items()})
    for name, value in flat.items():
        if isinstance(value, list):
            for item in value or ["none"]:
                form.find_element(By.CSS_SELECTOR, f"input[name='{name}'][value='{item}']").click()
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if isinstance(FIELDS.get(name), Choice | Flag):
            option = f"select[name='{name}'] option[value='{text}']"
            form.find_element(By.CSS_SELECTOR, option).click()
        else:
            form.find_element(By.NAME, name).send_keys(text)


def submit_form(driver: WebDriver, form_id: str) -> None:
    """Click the form's submit button and wait for the next page."""
    # Mark the current document; the next page is the one without the mark. (Waiting for the
    # old <html> element to go stale races with Chrome, which may answer "node does not belong
    # to the document" instead of "stale element".)
    driver.execute_script("window.__netboardOldPage = true;")
    driver.find_element(By.CSS_SELECTOR, f"#{form_id} button[type='submit']").click()

    def next_page(d: WebDriver) -> bool:
        try:
            return bool(
                d.execute_script(
                    "return !window.__netboardOldPage && document.readyState === 'complete';"
                )
            )
        except WebDriverException:  # the page is being replaced
            return False

    WebDriverWait(driver, 10).until(next_page)


def recommendations(driver: WebDriver) -> list[tuple[str, str]]:
    """(code, status) of every recommendation on the page, in page order."""
    rows = driver.execute_script(
        "return [...document.querySelectorAll('article.recommendation')]"
        ".map(a => [a.dataset.code, a.dataset.status]);"
    )
    return [(code, status) for code, status in rows]


def assert_citations_resolve(driver: WebDriver) -> None:
    refs = driver.execute_script(
        "return [...document.querySelectorAll('section#references li[id^=\"ref-\"]')]"
        ".map(li => li.id);"
    )
    targets = driver.execute_script(
        "return [...document.querySelectorAll('a.cite')].map(a => a.getAttribute('href'));"
    )
    assert refs, "section#references lists no reference"
    assert targets, "no citation link on the page"
    dangling = [t for t in targets if not t.startswith("#ref-") or t[1:] not in refs]
    assert not dangling, f"citation links without a reference: {dangling}"


def shot(driver: WebDriver, name: str) -> None:
    """Save a full-page PNG when NETBOARD_SCREENSHOTS names a directory."""
    folder = os.environ.get("NETBOARD_SCREENSHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    png = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    Path(folder, f"{name}.png").write_bytes(base64.b64decode(png["data"]))


def value_of(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).get_property("value"))


# --- scenarios -----------------------------------------------------------------------------


def test_sigmoid_case_typed_into_the_form_gets_the_engine_answer(
    driver: WebDriver, base_url: str, kb: KnowledgeBase
) -> None:
    case = read_case(str(EXAMPLES / "sigmoid.yaml"))
    driver.get(base_url + "/")
    assert driver.find_elements(By.CSS_SELECTOR, "#problems") == []
    fill_case(driver, case.to_dict())
    shot(driver, "form-filled")
    submit_form(driver, "case-form")
    shot(driver, "answer-case")

    answer = recommend(case, kb=kb)
    assert recommendations(driver) == [(r.code, r.status) for r in answer.recommendations]
    refs = driver.find_elements(By.CSS_SELECTOR, "section#references li[id^='ref-']")
    assert len(refs) == len(answer.references)
    assert_citations_resolve(driver)
    assert driver.find_element(By.CSS_SELECTOR, ".case-id").text == "example-sigmoid-g2"
    # The way back: a new empty form, or this case again in the edit form.
    assert driver.find_element(By.LINK_TEXT, "New case").get_dom_attribute("href") == "/"
    assert value_of(driver, "f-ki67_percent") == "8"
    assert driver.find_element(By.ID, "f-comorbidities--none").is_selected()


def test_impossible_ki67_is_named_and_the_other_values_are_kept(
    driver: WebDriver, base_url: str
) -> None:
    driver.get(base_url + "/")
    fill_case(
        driver,
        {
            "id": "bad-ki67",
            "age_years": 62,
            "primary_site": "sigmoid_colon",
            "ki67_percent": 150,
            "metastatic_sites": ["liver"],
        },
    )
    # The browser's own check holds the form back first (min/max on the number input) ...
    driver.find_element(By.CSS_SELECTOR, "#case-form button[type='submit']").click()
    assert driver.execute_script(
        "return document.getElementById('f-ki67_percent').validity.rangeOverflow"
    )
    assert driver.find_elements(By.ID, "problems") == []
    # ... and the server judges what a browser without that check sends.
    driver.execute_script("document.getElementById('case-form').noValidate = true;")
    submit_form(driver, "case-form")
    shot(driver, "form-rejected")

    summary = driver.find_element(By.CSS_SELECTOR, "#problems[role='alert']")
    assert "ki67_percent" in summary.text
    assert "Ki-67 index" in summary.text
    assert "150 is outside the possible range 0-100" in summary.text
    beside = driver.find_element(By.ID, "f-ki67_percent-problem")
    assert "outside the possible range" in beside.text
    assert value_of(driver, "f-ki67_percent") == "150"
    assert value_of(driver, "f-id") == "bad-ki67"
    assert value_of(driver, "f-age_years") == "62"
    assert value_of(driver, "f-primary_site") == "sigmoid_colon"
    assert driver.find_element(By.ID, "f-metastatic_sites-liver").is_selected()
    assert not driver.find_element(By.ID, "f-metastatic_sites-bone").is_selected()


def test_pasted_note_gets_the_answer_of_ask(
    driver: WebDriver, base_url: str, kb: KnowledgeBase
) -> None:

    driver.get(base_url + "/")
    driver.find_element(By.ID, "f-text").send_keys(NOTE)
    submit_form(driver, "text-form")
    shot(driver, "answer-text")

    result = ask(NOTE, kb)
    assert recommendations(driver) == [(r.code, r.status) for r in result.answer.recommendations]
    understood = driver.execute_script(
        "return [...document.querySelectorAll('#understood tr[data-field]')]"
        ".map(tr => tr.dataset.field);"
    )
    assert understood == list(dict.fromkeys(u.field for u in result.parsed.spans_used))
    assert_citations_resolve(driver)
    # The case read from the note is in the edit form, ready to be corrected.
    assert value_of(driver, "f-primary_site") == "sigmoid_colon"
    assert value_of(driver, "f-text") == NOTE


def test_print_leaves_out_the_forms_and_keeps_the_report(driver: WebDriver, base_url: str) -> None:
    driver.get(base_url + "/")
    fill_case(driver, {"primary_site": "ileum", "ki67_percent": 2, "metastatic_sites": ["liver"]})
    submit_form(driver, "case-form")
    chrome = ["nav.page-nav", "#edit-case", "#case-form button[type='submit']", "nav.contents"]
    report = ["article.recommendation", "section#references", "#bottom-line"]

    def shown(selector: str) -> bool:
        return bool(driver.find_element(By.CSS_SELECTOR, selector).is_displayed())

    assert all(shown(s) for s in [*chrome, *report])
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        assert [s for s in chrome if shown(s)] == []
        assert all(shown(s) for s in report)
    finally:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    pdf = driver.execute_cdp_cmd("Page.printToPDF", {"printBackground": True})
    assert base64.b64decode(pdf["data"]).startswith(b"%PDF")


# --- issue 16: /docs offline, one click, narrow windows, the printout ----------------------


SEED = "Treatment of stage 4 neuroendocrine tumor of sigmoid with liver metastases"
SHARED_CASES = SHARED / "cases"
PDFTOTEXT = shutil.which("pdftotext")


def resources_loaded(driver: WebDriver) -> list[str]:
    """Every resource the page loaded (scripts, styles, images, fetches)."""
    return list(
        driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
    )


def test_the_api_page_renders_with_nothing_from_the_network(
    driver: WebDriver, base_url: str
) -> None:
    page, ready = "/docs", ".swagger-ui .opblock"
    # Requests to anywhere but this server are blocked, as on a hospital network.
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.setBlockedURLs",
        {"urls": ["*://*.net/*", "*://*.com/*", "*://*.org/*", "*://*.io/*", "*://*.ly/*"]},
    )
    try:
        driver.get(base_url + page)
        WebDriverWait(driver, 20).until(
            lambda d: d.execute_script(f"return document.querySelectorAll({ready!r}).length") > 0
        )
        text = driver.find_element(By.TAG_NAME, "body").text
        assert "netboard" in text
        assert "/v1/recommend" in text
        assert all(url.startswith(base_url) for url in resources_loaded(driver)), resources_loaded(
            driver
        )
        shot(driver, f"api-{page.strip('/')}")
    finally:
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})


def plan_codes_on_page(driver: WebDriver) -> list[str]:
    return list(
        driver.execute_script(
            "return [...document.querySelectorAll('tr.plan-step')].map(tr => tr.dataset.codes);"
        )
    )


def test_one_click_sstr_negative_takes_the_analog_out_of_the_plan(
    driver: WebDriver, base_url: str
) -> None:
    driver.get(base_url + "/")
    driver.find_element(By.ID, "f-text").send_keys(SEED)
    submit_form(driver, "text-form")
    assert "/answers/" in driver.current_url  # an address of its own, not "/"
    first = driver.current_url
    assert any("somatostatin_analog" in codes.split() for codes in plan_codes_on_page(driver))
    # The board's answer comes first: bottom line, plan, presumptions, what-ifs.
    order = driver.execute_script(
        "return [...document.querySelectorAll('main > section[id]')].map(s => s.id);"
    )
    assert order[:4] == ["bottom-line", "plan", "presumptions", "what-if"], order
    button = driver.find_element(
        By.CSS_SELECTOR,
        "li.what-if[data-field='sstr_imaging'] form.oneclick[data-value='negative'] button",
    )
    assert button.text.startswith("It is SSTR-negative")
    driver.execute_script("window.__netboardOldPage = true;")
    button.click()
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script(
            "return !window.__netboardOldPage && document.readyState === 'complete';"
        )
    )
    shot(driver, "answer-one-click")
    assert "/answers/" in driver.current_url
    assert driver.current_url != first
    codes = plan_codes_on_page(driver)
    assert codes, "no plan after the click"
    assert not any("somatostatin_analog" in c.split() for c in codes), codes
    assert "SSTR imaging" in driver.find_element(By.CSS_SELECTOR, "p.stated").text
    # The first answer is still at its own address.
    driver.get(first)
    assert any("somatostatin_analog" in c.split() for c in plan_codes_on_page(driver))


@pytest.mark.parametrize("width", [400, 390])
def test_narrow_windows_do_not_scroll_sideways(
    driver: WebDriver, base_url: str, width: int
) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        pages = []
        driver.get(base_url + "/")
        pages.append(("form", driver.execute_script(WIDTHS)))
        fill_case(driver, read_case(str(EXAMPLES / "sigmoid.yaml")).to_dict())
        submit_form(driver, "case-form")
        pages.append(("case answer", driver.execute_script(WIDTHS)))
        shot(driver, f"narrow-{width}-case")
        driver.get(base_url + "/")
        driver.find_element(By.ID, "f-text").send_keys(SEED)
        submit_form(driver, "text-form")
        pages.append(("text answer", driver.execute_script(WIDTHS)))
        shot(driver, f"narrow-{width}-text")
        for name, (scroll, client, wide) in pages:
            assert scroll <= client, f"{name}: {scroll} > {client}; too wide: {wide}"
        # The contents box sits above the bottom line and overlaps nothing.
        boxes = driver.execute_script(
            "const n = document.querySelector('nav.contents').getBoundingClientRect();"
            "const b = document.querySelector('#bottom-line').getBoundingClientRect();"
            "return [n.bottom, b.top, n.right];"
        )
        assert boxes[0] <= boxes[1]
        assert boxes[2] <= width
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


WIDTHS = (
    "const w = document.documentElement.clientWidth;"
    "return [document.documentElement.scrollWidth, w,"
    " [...document.querySelectorAll('body *')]"
    "  .filter(e => e.getBoundingClientRect().right > w + 1)"
    "  .slice(0, 5).map(e => e.tagName + '.' + e.className)];"
)


def test_the_printed_report_of_a_complete_case_is_short_and_carries_its_header(
    driver: WebDriver, tmp_path: Path, kb: KnowledgeBase
) -> None:
    import re

    import yaml

    from netboard.reports import render_html

    source = SHARED_CASES / "02-seed-sigmoid-case.yaml"
    if not source.exists():
        pytest.skip(f"{source} is not there")
    case = yaml.safe_load(source.read_text(encoding="utf-8"))["case"]
    answer = recommend(read_case_from(case), kb=kb)
    page = tmp_path / "report.html"
    page.write_text(
        render_html(answer, labels=kb.labels, generated="2026-01-01 09:30 UTC"), encoding="utf-8"
    )
    driver.get(page.as_uri())
    pdf = base64.b64decode(
        driver.execute_cdp_cmd(
            "Page.printToPDF", {"printBackground": True, "preferCSSPageSize": True}
        )["data"]
    )
    (tmp_path / "report.pdf").write_bytes(pdf)
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf))
    # 16 pages before issue 16; the board's answer, the appendix and every reference now
    # take five A4 pages (four and a half with this system's fonts).
    assert 3 <= pages <= 5, pages
    if PDFTOTEXT is None:
        pytest.skip("pdftotext (poppler-utils) is not installed: header and footer not read")
    text = subprocess.run(
        [PDFTOTEXT, "-layout", str(tmp_path / "report.pdf"), "-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    sheets = text.split("\f")[:pages]
    for n, sheet in enumerate(sheets, start=1):
        assert "netboard tumour board report · sigmoid-g2-unresectable" in sheet, n
        assert "generated 2026-01-01 09:30 UTC" in sheet, n
        assert f"page {n} of {pages}" in sheet, n
    assert text.count("not a substitute for clinical judgement") == 1
    assert "References" in sheets[-1] or "References" in sheets[-2]
    raw = subprocess.run(
        [PDFTOTEXT, str(tmp_path / "report.pdf"), "-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split("\f")[pages - 1]
    assert f"\n{len(answer.references)}. " in "\n" + raw  # the last reference, on the last page
    assert (
        text.index("Bottom line") < text.index("Appendix: every option") < text.rindex("References")
    )


def read_case_from(data: dict[str, Any]) -> Any:
    from netboard.case import load_case

    return load_case(data)
