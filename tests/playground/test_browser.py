"""The playground in real headless Chromium against a real daphne (`make run`'s embedded server).

Logs in as the demo user, talks to the demo agents over the WebSocket, drops the socket (and reloads the page)
mid-answer and checks that the page shows every event of the thread exactly once — the same ids, in the same
order, as the REST event log — and that the cancel button stops a job.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser import save_screenshot
from tests.servers import http_json

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")),
    reason="drives the embedded server, whatever the suite's configuration: run once, in the embedded suite",
)

LONG_MESSAGE = " ".join(f"word{n}" for n in range(60))  # the echo agent streams a word per 50 ms: 3 seconds


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 20) -> Any:
    # An element found just before the page navigates (the login's redirect) is stale when it is read: look again.
    wait = WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,))
    return wait.until(condition)


def page(driver: WebDriver, script: str) -> Any:
    return driver.execute_script(f"return window.aihubPlayground.{script};")


def text_of(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def say(driver: WebDriver, text: str) -> None:
    box = driver.find_element(By.ID, "message")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.ID, "send").click()


def assistant_texts(driver: WebDriver) -> list[str]:
    return [str(e.text) for e in driver.find_elements(By.CSS_SELECTOR, "#transcript .bubble.assistant")]


def log_in_and_open_a_thread(driver: WebDriver, base: str, agent: str) -> None:
    driver.get(f"{base}/playground/")
    if "/playground/login/" in driver.current_url:
        driver.find_element(By.ID, "id_username").send_keys("demo")
        driver.find_element(By.ID, "id_password").send_keys("demo")
        driver.find_element(By.ID, "login-submit").click()
    wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    Select(driver.find_element(By.ID, "agent")).select_by_value(agent)
    Select(driver.find_element(By.ID, "thread")).select_by_value("")
    driver.find_element(By.ID, "open-thread").click()
    wait_for(driver, lambda d: text_of(d, "connection") == "live")


def event_log(base: str, token: str, thread: str) -> list[dict[str, Any]]:
    status, body = http_json(f"{base}/api/v1/demo/threads/{thread}/events/?limit=200", token=token)
    assert status == 200, body
    return list(body["items"])


def test_the_page_streams_an_answer_and_survives_a_dropped_socket_without_losing_or_repeating_events(
    embedded_server: tuple[str, str], browser: WebDriver
) -> None:
    base, token = embedded_server
    log_in_and_open_a_thread(browser, base, "echo")

    say(browser, "hello streaming world")
    wait_for(browser, lambda d: text_of(d, "job-status") == "succeeded")
    assert assistant_texts(browser) == ["hello streaming world"]
    assert "total" in text_of(browser, "usage")

    # A second answer, and the socket drops while it streams in.
    say(browser, LONG_MESSAGE)
    wait_for(browser, lambda d: len(assistant_texts(d)) == 2 and "word5" in assistant_texts(d)[1])
    page(browser, "dropConnection()")
    dropped_after = page(browser, "state.lastEventId")
    wait_for(browser, lambda d: page(d, "state.connects") == 2 and text_of(d, "connection") == "live")
    wait_for(browser, lambda d: text_of(d, "job-status") == "succeeded")
    save_screenshot(browser, "playground-after-reconnect")

    assert assistant_texts(browser) == ["hello streaming world", LONG_MESSAGE]
    thread = page(browser, "state.thread")
    logged = event_log(base, token, thread)
    assert page(browser, "renderedEventIds()") == [event["id"] for event in logged]
    assert page(browser, "state.repeated") == 0  # the server resumed after the last id: nothing came twice
    assert [e["id"] for e in logged] == list(range(1, len(logged) + 1))
    assert dropped_after < logged[-1]["id"] - 20, "the socket dropped in the middle of the answer"
    chunks = [e for e in logged if e["type"] == "llm.chunk"]
    assert len(chunks) == 3 + 60  # each word arrived as a token of its own


def test_a_new_user_types_and_sends_and_the_first_message_starts_the_thread(
    embedded_server: tuple[str, str], browser: WebDriver
) -> None:
    base, token = embedded_server
    browser.get(f"{base}/playground/")
    if "/playground/login/" in browser.current_url:
        browser.find_element(By.ID, "id_username").send_keys("demo")
        browser.find_element(By.ID, "id_password").send_keys("demo")
        browser.find_element(By.ID, "login-submit").click()
    wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    Select(browser.find_element(By.ID, "agent")).select_by_value("echo")
    Select(browser.find_element(By.ID, "thread")).select_by_value("")

    # No "Open" first: Send is ready on a new thread, and sending opens it.
    assert browser.find_element(By.ID, "send").is_enabled()
    say(browser, "hello without opening")
    wait_for(browser, lambda d: text_of(d, "job-status") == "succeeded")

    assert assistant_texts(browser) == ["hello without opening"]
    assert text_of(browser, "connection") == "live"
    thread = page(browser, "state.thread")
    assert Select(browser.find_element(By.ID, "thread")).first_selected_option.get_attribute("value") == thread
    logged = event_log(base, token, thread)
    assert logged[0]["type"] == "message.created"
    assert page(browser, "renderedEventIds()") == [event["id"] for event in logged]


def test_a_reload_mid_answer_shows_the_thread_again_and_the_answer_completes_without_duplicates(
    embedded_server: tuple[str, str], browser: WebDriver
) -> None:
    base, token = embedded_server
    log_in_and_open_a_thread(browser, base, "echo")
    say(browser, "before the reload")
    wait_for(browser, lambda d: text_of(d, "job-status") == "succeeded")

    say(browser, LONG_MESSAGE)
    wait_for(browser, lambda d: len(assistant_texts(d)) == 2 and "word5" in assistant_texts(d)[1])
    browser.refresh()
    wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    wait_for(browser, lambda d: text_of(d, "job-status") == "succeeded")

    assert assistant_texts(browser) == ["before the reload", LONG_MESSAGE]
    logged = event_log(base, token, page(browser, "state.thread"))
    assert page(browser, "renderedEventIds()") == [event["id"] for event in logged]
    assert page(browser, "state.repeated") == 0


def test_a_conversation_starter_sends_the_first_message_and_the_page_shows_the_tool_calls(
    embedded_server: tuple[str, str], browser: WebDriver
) -> None:
    base, _token = embedded_server
    log_in_and_open_a_thread(browser, base, "calculator")

    starters = browser.find_elements(By.CSS_SELECTOR, "#starters button.starter")
    assert [str(s.text) for s in starters] == ["calculate 2 * (3 + 4)", "use current_time"]
    starters[0].click()
    wait_for(browser, lambda d: text_of(d, "job-status") == "succeeded")

    assert [str(e.text) for e in browser.find_elements(By.CSS_SELECTOR, "#transcript .bubble.user")] == [
        "calculate 2 * (3 + 4)"
    ]
    # Once answered, the starters give way to the agent's quick replies.
    replies = browser.find_elements(By.CSS_SELECTOR, "#starters button")
    assert [(str(r.text), r.get_attribute("class")) for r in replies] == [("calculate 6 * 7", "quick-reply")]

    tools = [str(e.text) for e in browser.find_elements(By.CSS_SELECTOR, "#transcript .bubble.tool")]
    assert tools[0].startswith("→ calculator(")
    assert tools[1].startswith("← calculator: ") and "14" in tools[1]
    assert assistant_texts(browser)[-1] == "The result is 14."


def test_the_cancel_button_stops_the_running_job(embedded_server: tuple[str, str], browser: WebDriver) -> None:
    base, token = embedded_server
    log_in_and_open_a_thread(browser, base, "echo")

    say(browser, LONG_MESSAGE)
    wait_for(browser, lambda d: assistant_texts(d) and "word2" in assistant_texts(d)[0])
    browser.find_element(By.ID, "cancel").click()
    wait_for(browser, lambda d: text_of(d, "job-status") == "cancelled")

    assert browser.find_element(By.ID, "cancel").get_attribute("disabled") is not None
    job = browser.find_element(By.ID, "job-status").get_attribute("data-job")
    status, body = http_json(f"{base}/api/v1/demo/jobs/{job}/", token=token)
    assert (status, body["status"]) == (200, "cancelled")
    assert page(browser, "renderedEventIds()") == [
        e["id"] for e in event_log(base, token, page(browser, "state.thread"))
    ]
