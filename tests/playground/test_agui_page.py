"""The playground's AG-UI page in real headless Chromium against a real daphne: a run with a frontend tool,
interrupted, answered from the page, and finished — the events rendered as they stream."""

from __future__ import annotations

import os

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.browser import save_screenshot
from tests.playground.test_browser import text_of, wait_for

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")),
    reason="drives the embedded server, whatever the suite's configuration: run once, in the embedded suite",
)


def test_the_page_runs_an_agent_through_ag_ui_and_answers_its_frontend_tool(
    embedded_server: tuple[str, str], browser: WebDriver
) -> None:
    base, _token = embedded_server
    browser.get(f"{base}/playground/ag-ui/")
    if "/playground/login/" in browser.current_url:
        browser.find_element(By.ID, "id_username").send_keys("demo")
        browser.find_element(By.ID, "id_password").send_keys("demo")
        browser.find_element(By.ID, "login-submit").click()
    try:
        wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
        Select(browser.find_element(By.ID, "agent")).select_by_value("calculator")
        browser.find_element(By.ID, "message").send_keys('use confirm_order {"item": "tea"}')
        browser.find_element(By.ID, "send").click()
        wait_for(browser, lambda d: text_of(d, "run-status") == "interrupted")
        assert "confirm_order" in text_of(browser, "pending-tool")

        browser.find_element(By.ID, "tool-result").send_keys("yes")
        browser.find_element(By.ID, "send-result").click()
        wait_for(browser, lambda d: text_of(d, "run-status") == "finished")
    except Exception:
        save_screenshot(browser, "agui-page")
        raise

    bubbles = [str(e.text) for e in browser.find_elements(By.CSS_SELECTOR, "#transcript .bubble.assistant")]
    assert bubbles[-1] == "The result is yes."
    types = [e.get_attribute("data-type") for e in browser.find_elements(By.CSS_SELECTOR, "#events li")]
    assert types.count("RUN_STARTED") == 2
    assert types[0] == "RUN_STARTED" and types[-1] == "RUN_FINISHED"
    assert "TOOL_CALL_START" in types and "TEXT_MESSAGE_CONTENT" in types
