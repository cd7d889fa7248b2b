"""The operators' management commands: create_tenant, create_user, create_token and seed_demo."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from aihub.access import services
from aihub.access.models import ApiToken, Membership, Tenant
from tests.factories import MembershipFactory, TenantFactory, UserFactory
from tests.helpers import API_TOKEN_SECRET

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    """Run a command in this process; returns (stdout, stderr)."""
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def role_names(membership: Membership) -> list[str]:
    return sorted(membership.roles.values_list("name", flat=True))


# --- create_tenant ---------------------------------------------------------------------------------------


def test_create_tenant_seeds_the_default_roles_and_makes_the_owner_its_admin() -> None:
    owner = UserFactory.create(username="olga")

    out, _ = run("create_tenant", "acme", "--name", "Acme", "--ceiling", "aihub.user.>", "--owner", "olga")

    tenant = Tenant.objects.get(slug="acme")
    assert tenant.name == "Acme"
    assert tenant.rule_ceiling == ["aihub.user.>"]
    assert set(tenant.roles.values_list("name", flat=True)) == set(services.DEFAULT_ROLES)
    assert role_names(Membership.objects.get(tenant=tenant, user=owner)) == ["admin"]
    assert "Created tenant acme" in out


def test_create_tenant_refuses_a_duplicate_slug() -> None:
    TenantFactory.create(slug="acme")

    with pytest.raises(CommandError, match=r"slug: .*already exists"):
        run("create_tenant", "acme", "--name", "Acme again")


@pytest.mark.parametrize("slug", ["active", "tokens", "Admin"])
def test_create_tenant_refuses_a_reserved_slug(slug: str) -> None:
    with pytest.raises(CommandError, match="reserved"):
        run("create_tenant", slug, "--name", "Nope")
    assert not Tenant.objects.exists()


def test_create_tenant_refuses_an_unknown_owner_and_a_bad_ceiling() -> None:
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        run("create_tenant", "acme", "--name", "Acme", "--owner", "ghost")
    with pytest.raises(CommandError, match=r"rule_ceiling: .*must start with 'aihub.'"):
        run("create_tenant", "acme", "--name", "Acme", "--ceiling", "everything")
    assert not Tenant.objects.exists()


# --- create_user -----------------------------------------------------------------------------------------


def test_create_user_without_a_password_gives_an_unusable_one() -> None:
    out, _ = run("create_user", "alice", "--email", "alice@example.com")

    alice = get_user_model().objects.get(username="alice")
    assert alice.email == "alice@example.com"
    assert not alice.has_usable_password()
    assert not alice.is_staff
    assert "no usable password" in out


def test_create_user_reads_the_password_from_a_file(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("  spaced correct horse battery  \n")

    run("create_user", "alice", "--password-file", str(password_file), "--staff")

    alice = get_user_model().objects.get(username="alice")
    assert alice.check_password("  spaced correct horse battery  ")
    assert alice.is_staff


def test_create_user_with_a_tenant_and_roles_makes_the_membership() -> None:
    tenant = TenantFactory.create(slug="acme")

    run(
        "create_user",
        "alice",
        "--password",
        "correct-horse-battery",
        "--tenant",
        "acme",
        "--role",
        "admin",
        "--role",
        "viewer",
    )

    alice = get_user_model().objects.get(username="alice")
    assert alice.check_password("correct-horse-battery")
    membership = Membership.objects.get(user=alice, tenant=tenant)
    assert role_names(membership) == ["admin", "viewer"]
    assert membership.is_default


def test_create_user_with_a_tenant_alone_makes_a_plain_member() -> None:
    TenantFactory.create(slug="acme")

    run("create_user", "alice", "--tenant", "acme")

    assert role_names(Membership.objects.get(user__username="alice")) == ["member"]


def test_create_user_refuses_an_unknown_tenant_and_leaves_no_user_behind() -> None:
    with pytest.raises(CommandError, match="No tenant with the slug 'nowhere'"):
        run("create_user", "alice", "--tenant", "nowhere")
    assert not get_user_model().objects.filter(username="alice").exists()


def test_create_user_refuses_an_unknown_role_and_leaves_no_user_behind() -> None:
    TenantFactory.create(slug="acme")

    with pytest.raises(CommandError, match="roles: Unknown role"):
        run("create_user", "alice", "--tenant", "acme", "--role", "wizard")
    assert not get_user_model().objects.filter(username="alice").exists()


def test_create_user_refuses_roles_without_a_tenant_weak_passwords_and_taken_names() -> None:
    UserFactory.create(username="taken")

    with pytest.raises(CommandError, match="--role needs --tenant"):
        run("create_user", "alice", "--role", "admin")
    with pytest.raises(CommandError, match="too weak"):
        run("create_user", "alice", "--password", "123")
    with pytest.raises(CommandError, match=r"username: .*already exists"):
        run("create_user", "taken")
    with pytest.raises(CommandError, match="Cannot read the password file"):
        run("create_user", "alice", "--password-file", "/nonexistent/password")


# --- create_token ----------------------------------------------------------------------------------------


def test_create_token_prints_only_the_secret_on_stdout(membership: Membership) -> None:
    username = membership.user.get_username()

    out, err = run("create_token", username, "--name", "ci")

    secret = out.removesuffix("\n")
    assert API_TOKEN_SECRET.fullmatch(secret)
    token = ApiToken.objects.get(user=membership.user, name="ci")
    assert token.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert (token.tenant, token.expires_at) == (None, None)
    assert "Created token 'ci'" in err
    assert token.display_prefix in err
    assert secret not in err


def test_create_token_restricts_to_a_tenant_and_expires(membership: Membership) -> None:
    username, slug = membership.user.get_username(), membership.tenant.slug

    run("create_token", username, "--name", "ci", "--tenant", slug, "--expires-in-days", "7")

    token = ApiToken.objects.get(name="ci")
    assert token.tenant == membership.tenant
    assert token.expires_at is not None
    assert abs(token.expires_at - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)


def test_create_token_refuses_an_unknown_user() -> None:
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        run("create_token", "ghost", "--name", "ci")


def test_create_token_refuses_an_unknown_tenant_and_one_the_user_is_not_in(membership: Membership) -> None:
    username = membership.user.get_username()
    TenantFactory.create(slug="elsewhere")

    with pytest.raises(CommandError, match="No tenant with the slug 'nowhere'"):
        run("create_token", username, "--name", "ci", "--tenant", "nowhere")
    with pytest.raises(CommandError, match=r"tenant: .*not a member"):
        run("create_token", username, "--name", "ci", "--tenant", "elsewhere")
    assert not ApiToken.objects.exists()


def test_create_token_refuses_a_non_positive_expiry_and_inactive_users(membership: Membership) -> None:
    UserFactory.create(username="gone", is_active=False)

    with pytest.raises(CommandError, match="--expires-in-days"):
        run("create_token", membership.user.get_username(), "--name", "ci", "--expires-in-days", "0")
    with pytest.raises(CommandError, match="inactive"):
        run("create_token", "gone", "--name", "ci")
    assert not ApiToken.objects.exists()


# --- seed_demo -------------------------------------------------------------------------------------------


@pytest.fixture
def debug_on(settings: Any) -> None:
    settings.DEBUG = True


@pytest.mark.usefixtures("debug_on")
def test_seed_demo_is_idempotent_and_makes_no_token_unless_asked() -> None:
    first, _ = run("seed_demo")
    second, _ = run("seed_demo")

    demo = get_user_model().objects.get(username="demo")
    assert demo.check_password("demo")
    assert Tenant.objects.filter(slug="demo").count() == 1
    assert role_names(Membership.objects.get(user=demo, tenant__slug="demo")) == ["admin"]
    assert not ApiToken.objects.exists()
    assert "demo / demo" in first
    assert "/admin/" in second
    assert "aih_" not in first + second


@pytest.mark.usefixtures("debug_on")
def test_seed_demo_prints_a_new_token_only_when_asked() -> None:
    run("seed_demo")

    out, _ = run("seed_demo", "--token")

    token = ApiToken.objects.get()
    printed = set(API_TOKEN_SECRET.findall(out))
    assert {hashlib.sha256(secret.encode()).hexdigest() for secret in printed} == {token.secret_hash}
    assert token.tenant == Tenant.objects.get(slug="demo")


@pytest.mark.usefixtures("debug_on")
def test_seed_demo_gives_an_existing_demo_member_the_admin_role() -> None:
    demo = UserFactory.create(username="demo")
    MembershipFactory.create(user=demo, tenant=TenantFactory.create(slug="demo"), roles=["viewer"])

    run("seed_demo")

    assert role_names(Membership.objects.get(user=demo)) == ["admin", "viewer"]


def test_seed_demo_with_debug_off_requires_a_password(settings: Any) -> None:
    settings.DEBUG = False

    with pytest.raises(CommandError, match="--password"):
        run("seed_demo")
    assert not get_user_model().objects.filter(username="demo").exists()

    run("seed_demo", "--password", "a-long-demo-password")
    assert get_user_model().objects.get(username="demo").check_password("a-long-demo-password")


# --- As a real process -----------------------------------------------------------------------------------


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def process_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a separate ``manage.py`` process, on its own freshly migrated SQLite database.

    A file of its own because the suite's database may be in memory, or inside this test's transaction.
    """
    folder = tmp_path_factory.mktemp("process")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    env |= {"SQLITE_PATH": str(folder / "aihub.sqlite3"), "AIHUB_VAR_DIR": str(folder), "DJANGO_DEBUG": "true"}
    migrated = manage("migrate", "--noinput", "-v", "0", env=env)
    assert migrated.returncode == 0, migrated.stderr
    created = manage("create_user", "alice", env=env)
    assert created.returncode == 0, created.stderr
    return env


def test_create_token_as_a_process_writes_exactly_the_secret_to_stdout(process_env: dict[str, str]) -> None:
    result = manage("create_token", "alice", "--name", "script", env=process_env)

    assert result.returncode == 0, result.stderr
    secret = result.stdout.removesuffix("\n")
    assert result.stdout == secret + "\n"
    assert API_TOKEN_SECRET.fullmatch(secret)
    assert "Created token 'script'" in result.stderr
    with sqlite3.connect(process_env["SQLITE_PATH"]) as db:
        stored = db.execute("SELECT secret_hash FROM access_apitoken WHERE name = 'script'").fetchall()
    assert stored == [(hashlib.sha256(secret.encode()).hexdigest(),)]


def test_a_failing_command_exits_non_zero_with_one_clear_line(process_env: dict[str, str]) -> None:
    result = manage("create_token", "ghost", "--name", "script", env=process_env)

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == "CommandError: No user named 'ghost'."
