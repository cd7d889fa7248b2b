"""Files: the services that store them and the /files/ API (upload, list, get, download, delete)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from rest_framework.exceptions import UnsupportedMediaType
from rest_framework.test import APIClient

from aihub.access import services as access_services
from aihub.access.models import Membership
from aihub.access.principal import principal_for
from aihub.api.problems import PayloadTooLarge
from tests.factories import MembershipFactory
from tests.helpers import ClientAs, assert_invalid, assert_problem
from tests.sample_files import make_docx, make_pdf, png
from tests.threads.factories import FileFactory
from threads import selectors, services
from threads.models import File

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def stored(media_root: Path) -> list[str]:
    return sorted(str(p.relative_to(media_root)) for p in media_root.rglob("*") if p.is_file())


def files_url(membership: Membership, *rest: Any) -> str:
    base = f"/api/v1/{membership.tenant.slug}/files/"
    return base + "".join(f"{part}/" for part in rest) if rest else base


def upload(client: APIClient, membership: Membership, filename: str, data: bytes, **extra: Any) -> Any:
    content_type = extra.pop("content_type", "application/octet-stream")
    return client.post(
        files_url(membership),
        {"file": SimpleUploadedFile(filename, data, content_type=content_type), **extra},
        format="multipart",
    )


# --- Services ---------------------------------------------------------------------------------------------------


def test_a_document_is_stored_under_its_tenant_with_its_text(membership: Membership, media_root: Path) -> None:
    data = make_pdf("Invoice 1042")
    file = services.file_create(tenant=membership.tenant, uploaded_by=membership.user, name="invoice.pdf", data=data)
    assert (file.media_type, file.size, file.text) == ("application/pdf", len(data), "Invoice 1042")
    assert file.sha256 == hashlib.sha256(data).hexdigest()
    assert stored(media_root) == [f"files/{membership.tenant.pk}/{file.pk}"]
    assert file.content.read() == data


def test_the_type_comes_from_the_bytes_not_the_name_or_the_client(membership: Membership) -> None:
    file = services.file_create(
        tenant=membership.tenant, uploaded_by=membership.user, name="cat.txt", data=png(), declared_type="text/plain"
    )
    assert (file.media_type, file.text) == ("image/png", None)


def test_a_declared_type_refines_plain_text_only(membership: Membership) -> None:
    file = services.file_create(
        tenant=membership.tenant,
        uploaded_by=membership.user,
        name="notes",
        data=b"# Title\n",
        declared_type="text/markdown",
    )
    assert file.media_type == "text/markdown"


def test_names_lose_their_folders_and_control_characters(membership: Membership) -> None:
    file = FileFactory.create(tenant=membership.tenant, uploaded_by=membership.user, name="../../etc/\x00pass\nwd.txt")
    assert file.name == "passwd.txt"


def test_a_word_document_gives_its_text(membership: Membership) -> None:
    file = FileFactory.create(tenant=membership.tenant, uploaded_by=membership.user, name="h.docx", data=make_docx())
    assert file.text is not None and "Twenty-five days a year." in file.text


def test_a_file_over_the_limit_is_refused_and_nothing_is_stored(
    membership: Membership, settings: Any, media_root: Path
) -> None:
    settings.AIHUB = {"FILE_MAX_BYTES": 10}
    with pytest.raises(PayloadTooLarge, match="at most 10"):
        FileFactory.create(tenant=membership.tenant, uploaded_by=membership.user, data=b"x" * 11)
    assert (File.objects.count(), stored(media_root)) == (0, [])


@pytest.mark.parametrize(
    ("data", "kind"),
    [(b"PK\x03\x04" + b"\x00" * 30, "application/octet-stream"), (b"\x00\x01binary", "application/octet-stream")],
)
def test_types_off_the_list_are_refused(membership: Membership, data: bytes, kind: str) -> None:
    with pytest.raises(UnsupportedMediaType, match=kind):
        FileFactory.create(tenant=membership.tenant, uploaded_by=membership.user, data=data)


def test_the_accepted_types_come_from_the_settings(membership: Membership, settings: Any) -> None:
    settings.AIHUB = {"FILE_MEDIA_TYPES": ["text/plain"]}
    with pytest.raises(UnsupportedMediaType, match="image/png"):
        FileFactory.create(tenant=membership.tenant, uploaded_by=membership.user, data=png())


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty.txt", b"", "empty"),
        ("broken.pdf", b"%PDF-1.4 garbage", "damaged"),
        ("bad.json", b"{nope", "JSON"),
    ],
)
def test_empty_and_damaged_files_are_refused_naming_the_file(
    membership: Membership, name: str, data: bytes, message: str, media_root: Path
) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        FileFactory.create(tenant=membership.tenant, uploaded_by=membership.user, name=name, data=data)
    assert caught.value.message_dict.keys() == {"file"}
    assert stored(media_root) == []


def test_deleting_a_file_removes_its_bytes_once_committed(
    membership: Membership, media_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    file = FileFactory.create(tenant=membership.tenant, uploaded_by=membership.user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.file_delete(file=file)
    assert len(stored(media_root)) == 1  # not before the commit: a rollback would keep the row
    for callback in callbacks:
        callback()
    assert (File.objects.count(), stored(media_root)) == (0, [])


def test_deleting_the_tenant_removes_its_files_bytes_once_committed(
    membership: Membership, media_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    FileFactory.create(tenant=membership.tenant, uploaded_by=membership.user)
    kept = FileFactory.create(data=b"Another tenant's notes.")
    with django_capture_on_commit_callbacks(execute=True):
        access_services.tenant_delete(tenant=membership.tenant)
    assert list(File.objects.all()) == [kept]
    assert stored(media_root) == [kept.content.name]


def test_bytes_of_a_rolled_back_file_can_be_discarded(membership: Membership, media_root: Path) -> None:
    created: list[File] = []
    with pytest.raises(RuntimeError), transaction.atomic():
        created.append(FileFactory.create(tenant=membership.tenant, uploaded_by=membership.user))
        raise RuntimeError("the submission failed")
    services.files_discard_stored(files=created)
    assert (File.objects.count(), stored(media_root)) == (0, [])


def test_uploaders_see_their_own_files_and_admins_all(membership: Membership) -> None:
    colleague = MembershipFactory.create(tenant=membership.tenant, roles=["member"])
    mine = FileFactory.create(tenant=membership.tenant, uploaded_by=membership.user)
    theirs = FileFactory.create(tenant=membership.tenant, uploaded_by=colleague.user)
    FileFactory.create()  # another tenant's
    as_member = principal_for(user=membership.user, tenant_ref=membership.tenant.slug)
    assert list(selectors.file_list(principal=as_member)) == [mine]
    admin = MembershipFactory.create(tenant=membership.tenant, roles=["admin"])
    as_admin = principal_for(user=admin.user, tenant_ref=membership.tenant.slug)
    assert set(selectors.file_list(principal=as_admin)) == {mine, theirs}


# --- API --------------------------------------------------------------------------------------------------------


@pytest.fixture
def client(membership: Membership, client_as: ClientAs) -> APIClient:
    return client_as(membership)


def test_uploading_a_file(client: APIClient, membership: Membership) -> None:
    response = upload(client, membership, "invoice.pdf", make_pdf("Invoice 1042"), content_type="text/plain")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "invoice.pdf"
    assert (body["media_type"], body["has_text"], body["source_url"]) == ("application/pdf", True, "")
    assert body["uploaded_by"]["username"] == membership.user.username
    assert body["url"] == f"/api/v1/{membership.tenant.slug}/files/{body['id']}/content"
    assert File.objects.get(pk=body["id"]).text == "Invoice 1042"


def test_a_name_given_with_the_upload_wins(client: APIClient, membership: Membership) -> None:
    response = upload(client, membership, "upload.bin", b"hello", name="greeting.txt")
    assert response.json()["name"] == "greeting.txt"
    assert response.json()["media_type"] == "text/plain"


def test_an_upload_over_the_limit_is_a_413_problem(
    client: APIClient, membership: Membership, settings: Any, media_root: Path
) -> None:
    settings.AIHUB = {"FILE_MAX_BYTES": 1000}
    body = assert_problem(upload(client, membership, "big.txt", b"x" * 5000), 413)
    assert "1000" in body["detail"]
    assert (File.objects.count(), stored(media_root)) == (0, [])


def test_an_upload_of_a_refused_type_is_a_415_problem(client: APIClient, membership: Membership) -> None:
    body = assert_problem(upload(client, membership, "tool.exe", b"MZ\x90\x00\x03\x00\x00\x00"), 415)
    assert "application/octet-stream" in body["detail"]


def test_a_damaged_upload_is_a_400_naming_the_file(client: APIClient, membership: Membership) -> None:
    body = assert_invalid(upload(client, membership, "broken.pdf", b"%PDF-1.7 no body"), "file")
    assert "broken.pdf" in body["errors"][0]["message"]


def test_an_upload_needs_a_file(client: APIClient, membership: Membership) -> None:
    assert_invalid(client.post(files_url(membership), {"name": "x"}, format="multipart"), "file")
    assert_problem(client.post(files_url(membership), {"file": "x"}, format="json"), 415)


def test_a_caller_without_threads_may_not_upload(membership: Membership, client_as: ClientAs) -> None:
    access_services.role_create(tenant=membership.tenant, name="agents-only", rules=["aihub.user.agents.>"])
    outsider = MembershipFactory.create(tenant=membership.tenant, roles=["agents-only"])
    assert_problem(upload(client_as(outsider), outsider, "a.txt", b"hello"), 404)
    assert client_as(outsider).get(files_url(outsider)).json()["items"] == []


def test_the_list_shows_the_callers_files_newest_first(client: APIClient, membership: Membership) -> None:
    first = FileFactory.create(tenant=membership.tenant, uploaded_by=membership.user)
    second = FileFactory.create(tenant=membership.tenant, uploaded_by=membership.user)
    FileFactory.create(tenant=membership.tenant)  # a colleague's
    body = client.get(files_url(membership)).json()
    assert [item["id"] for item in body["items"]] == [str(second.pk), str(first.pk)]
    assert body["total"] == 2


def test_a_colleagues_or_another_tenants_file_is_a_404(
    client: APIClient, membership: Membership, media_root: Path
) -> None:
    colleagues = FileFactory.create(tenant=membership.tenant)
    foreign = FileFactory.create()
    for file in (colleagues, foreign):
        assert_problem(client.get(files_url(membership, file.pk)), 404)
        assert_problem(client.get(files_url(membership, file.pk) + "content"), 404)
        assert_problem(client.delete(files_url(membership, file.pk)), 404)
    assert File.objects.count() == 2


def test_a_threads_admin_sees_and_deletes_any_file_of_the_tenant(
    membership: Membership, client_as: ClientAs, media_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    admin = MembershipFactory.create(tenant=membership.tenant, roles=["admin"])
    file = FileFactory.create(tenant=membership.tenant, uploaded_by=membership.user)
    assert client_as(admin).get(files_url(admin, file.pk)).json()["id"] == str(file.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assert client_as(admin).delete(files_url(admin, file.pk)).status_code == 204
    assert (File.objects.count(), stored(media_root)) == (0, [])


def test_downloading_gives_the_bytes_as_an_attachment(client: APIClient, membership: Membership) -> None:
    page = b"<html><body><script>alert(1)</script></body></html>"
    file = FileFactory.create(tenant=membership.tenant, uploaded_by=membership.user, name="page.html", data=page)
    response = client.get(files_url(membership, file.pk) + "content")
    assert response.status_code == 200
    assert response.getvalue() == page
    assert response["Content-Type"] == "text/html"
    assert response["Content-Disposition"] == 'attachment; filename="page.html"'
    assert response["Content-Security-Policy"] == "sandbox"


def test_the_uploader_deletes_a_file_with_its_bytes(
    client: APIClient, membership: Membership, media_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    file = FileFactory.create(tenant=membership.tenant, uploaded_by=membership.user)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(files_url(membership, file.pk)).status_code == 204
    assert (File.objects.count(), stored(media_root)) == (0, [])
    assert_problem(client.get(files_url(membership, file.pk)), 404)
