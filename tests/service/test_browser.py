"""The web page in a real headless Chromium: fill the form, submit, read the report.

One uvicorn server (the real app, on a free loopback port) serves the session and one
browser the module. Debian's ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` are used
directly, with Selenium Manager kept offline, so nothing is downloaded. Set
``NETBOARD_SCREENSHOTS=DIR`` to save full-page PNGs of the filled form and of the answers.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
