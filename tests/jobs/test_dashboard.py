"""The operators' spend dashboard in the admin: the numbers behind the charts, and the charts drawn by plotly.js in
real headless Chromium against a real daphne (`make run`'s embedded server)."""

from __future__ import annotations

import os
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from agents import catalogue
from agents.models import Agent, CatalogueModel
from aihub.access.models import Membership
from jobs import services
from tests.agents.factories import AgentFactory
from tests.browser import save_screenshot
from tests.factories import MembershipFactory, UserFactory
from tests.jobs.helpers import run_now
from tests.servers import http_json

SPEND = "admin:jobs_job_spend"
CHART_IDS = [
    f"chart-{value}-{dimension}"
    for dimension in ("tenant", "user", "agent", "model")
    for value in ("cost", "total-tokens")
]


def price_offline() -> None:
    catalogue.catalogue_ensure_builtins()
    catalogue.catalogue_model_update(
        model=CatalogueModel.objects.get(model_id="offline/aihub-offline-1"),
        input_price_per_million=Decimal(1_000_000),
        output_price_per_million=Decimal(2_000_000),
    )  # 1 per input token, 2 per output token


@pytest.fixture
def admin_site(db: None) -> Client:
    client = Client()
    operator: User = UserFactory.create(username="operator", is_staff=True, is_superuser=True)
    client.force_login(operator)
    return client


@pytest.fixture
def spending(db: None) -> dict[str, Any]:
    """Two tenants' members with priced jobs: alice spends 9 (3 words), bob 6 (2 words)."""
    price_offline()
    alice: Membership = MembershipFactory.create(user=UserFactory.create(username="alice"), roles=["member"])
    bob: Membership = MembershipFactory.create(user=UserFactory.create(username="bob"), roles=["member"])
    agents: dict[str, Agent] = {}
    for member, text in ((alice, "one two three"), (bob, "one two")):
        agent = AgentFactory.create(tenant=member.tenant, slug="echo")
        agents[member.user.username] = agent
        run_now(services.job_submit(agent=agent, user=member.user, content=text)[0])
    return {"alice": alice, "bob": bob, "agents": agents}


@pytest.mark.django_db
def test_the_dashboard_charts_spend_and_tokens_per_tenant_user_agent_and_model(
    admin_site: Client, spending: dict[str, Any]
) -> None:
    response = admin_site.get(reverse(SPEND))

    assert response.status_code == 200
    figures = response.context["figures"]
    assert list(figures) == CHART_IDS
    by_user = {trace["name"]: sum(trace["y"]) for trace in figures["chart-cost-user"]["data"]}
    assert by_user == {"alice": 9.0, "bob": 6.0}
    tokens_by_tenant = {trace["name"]: sum(trace["y"]) for trace in figures["chart-total-tokens-tenant"]["data"]}
    assert sorted(tokens_by_tenant.values()) == [4, 6]
    assert [(row["user"], row["cost"]) for row in response.context["spenders"]] == [
        ("alice", Decimal(9)),
        ("bob", Decimal(6)),
    ]
    page = response.content.decode()
    assert reverse("admin:jobs_job_spend_plotly") in page
    assert 'id="spend-figures"' in page


@pytest.mark.django_db
def test_the_dashboard_narrows_to_one_tenant(admin_site: Client, spending: dict[str, Any]) -> None:
    response = admin_site.get(reverse(SPEND), {"tenant": spending["bob"].tenant.slug, "interval": "hour"})

    assert [row["user"] for row in response.context["spenders"]] == ["bob"]


@pytest.mark.django_db
def test_a_bad_period_is_a_form_error_not_a_crash(admin_site: Client, spending: dict[str, Any]) -> None:
    response = admin_site.get(reverse(SPEND), {"start": "2026-11-05", "end": "2026-11-01"})

    assert response.status_code == 200
    assert response.context["charts"] == []
    assert "must not be after" in response.content.decode()


@pytest.mark.django_db
def test_plotly_js_is_served_from_the_pinned_package(admin_site: Client) -> None:
    response = admin_site.get(reverse("admin:jobs_job_spend_plotly"))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/javascript"
    assert b"plotly.js" in response.getvalue()[:2000]


@pytest.mark.django_db
def test_the_dashboard_is_for_operators_only(client: Client) -> None:
    client.force_login(UserFactory.create(is_staff=False))

    response = client.get(reverse(SPEND))

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_the_jobs_list_links_to_the_dashboard(admin_site: Client) -> None:
    page = admin_site.get(reverse("admin:jobs_job_changelist")).content.decode()

    assert reverse(SPEND) in page


# --- In the browser --------------------------------------------------------------------------------------------


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 30) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


@pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")),
    reason="drives the embedded server, whatever the suite's configuration: run once, in the embedded suite",
)
def test_the_charts_render_with_data_in_headless_chromium(embedded_server: tuple[str, str], browser: WebDriver) -> None:
    base, token = embedded_server
    assert http_json(f"{base}/api/v1/demo/models", token=token)[0] == 200  # the built-in models' rows exist
    # An operator prices the offline model in the admin.
    browser.get(f"{base}/admin/login/?next=/admin/agents/cataloguemodel/%3Fq%3Doffline")
    browser.find_element(By.ID, "id_username").send_keys("demo")
    browser.find_element(By.ID, "id_password").send_keys("demo")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_for(browser, lambda d: "cataloguemodel" in d.current_url)
    browser.find_element(By.LINK_TEXT, "offline/aihub-offline-1").click()
    for field, price in (("id_input_price_per_million", "1000000"), ("id_output_price_per_million", "2000000")):
        box = browser.find_element(By.ID, field)
        box.clear()
        box.send_keys(price)
    browser.find_element(By.NAME, "_save").click()
    wait_for(browser, lambda d: "/change/" not in d.current_url)
    assert "changed successfully" in browser.page_source
    # Jobs of two demo agents, run by the server's embedded worker.
    for agent, text in (("echo", "one two three"), ("assistant", "hello there")):
        status, job = http_json(
            f"{base}/api/v1/demo/agents/{agent}/messages?wait=true", body={"content": text}, token=token
        )
        assert (status, job["status"]) == (200, "succeeded"), job

    browser.get(f"{base}/admin/jobs/job/spend/")
    wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-charts-ready") == "true")

    for chart in CHART_IDS:
        bars = browser.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0] + ' .trace.bars .point path'))"
            ".filter(p => p.getBoundingClientRect().height > 0).length;",
            f"#{chart}",
        )
        assert bars > 0, f"{chart} drew no bars"
    legend = browser.execute_script(
        "return Array.from(document.querySelectorAll('#chart-cost-agent .legendtext')).map(t => t.textContent);"
    )
    assert sorted(legend) == ["Assistant", "Echo"]
    spenders = browser.find_elements(By.CSS_SELECTOR, "#top-spenders tbody tr")
    assert spenders[0].text.startswith("demo demo 2")
    save_screenshot(browser, "spend-dashboard")
