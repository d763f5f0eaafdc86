"""What is particular to each provider: where shares land, how names are found, its own limits
and error answers."""
from __future__ import annotations

import threading

import pytest
from cloudstrype.backends.base import BackendAuthError, BackendError, ShareNotFound, Usage
from cloudstrype.backends.box import BoxBackend
from cloudstrype.backends.dropbox import DropboxBackend
from cloudstrype.backends.gdrive import GoogleDriveBackend
from cloudstrype.backends.onedrive import OneDriveBackend
from cloudstrype.backends.registry import open_backend

from tests.fakes.gdrive import FOLDER


def connect(fake, retry):
    return open_backend(fake.name, {"token": fake.issue_token()}, retry=retry)


@pytest.mark.parametrize("backend_class, limit", [
    (DropboxBackend, 150 * 1024 * 1024),     # files/upload
    (GoogleDriveBackend, 5 * 1024 * 1024),   # uploadType=multipart
    (OneDriveBackend, 250 * 1024 * 1024),    # simple upload
    (BoxBackend, 50 * 1024 * 1024),          # direct upload
])
def test_single_request_upload_limits_are_the_documented_ones(backend_class, limit):
    assert backend_class.max_share_bytes == limit
    assert limit >= 4 * 1024 * 1024 + 64 * 1024   # room for a 4 MiB chunk's share and overhead


# --- Dropbox -------------------------------------------------------------------------------------

def test_dropbox_shares_are_files_in_the_app_folders_cloudstrype_directory(dropbox_fake,
                                                                           fast_retry):
    connect(dropbox_fake, fast_retry).put("abc.1", b"data")
    assert list(dropbox_fake.files) == ["/cloudstrype/abc.1"]


@pytest.mark.parametrize("allocation, expected", [
    ({".tag": "team", "used": 9000, "allocated": 50_000, "user_within_team_space_allocated": 0,
      "user_within_team_space_limit_type": {".tag": "off"}}, Usage(used=9000, capacity=50_000)),
    ({".tag": "team", "used": 9000, "allocated": 50_000, "user_within_team_space_allocated": 2000,
      "user_within_team_space_limit_type": {".tag": "stop_sync"}}, Usage(used=5, capacity=2000)),
    ({".tag": "other"}, Usage(used=5, capacity=None)),
])
def test_dropbox_team_space_is_read_from_the_allocation(dropbox_fake, fast_retry,
                                                      allocation, expected):
    backend = connect(dropbox_fake, fast_retry)
    backend.put("k", b"12345")
    dropbox_fake.space_allocation = allocation

    assert backend.usage() == expected


# --- Google Drive --------------------------------------------------------------------------------

def test_gdrive_shares_are_files_in_one_cloudstrype_folder(gdrive_fake, fast_retry):
    backend = connect(gdrive_fake, fast_retry)
    backend.put("k1", b"one")
    backend.put("k1", b"one again")      # updates the file, makes no second one
    connect(gdrive_fake, fast_retry).put("k2", b"two")   # a new backend finds the folder

    [folder_id] = gdrive_fake.folders_named("cloudstrype")
    assert gdrive_fake.files[folder_id]["parents"] == ["root"]
    assert gdrive_fake.names_in(folder_id) == ["k1", "k2"]


def test_gdrive_a_share_over_five_megabytes_is_refused_before_any_request(gdrive_fake, fast_retry):
    backend = connect(gdrive_fake, fast_retry)
    with pytest.raises(BackendError, match="multipart"):
        backend.put("k", bytes(5 * 1024 * 1024 + 1))
    assert gdrive_fake.api_calls == []
    backend.put("k", bytes(5 * 1024 * 1024))   # the limit itself is fine
    assert backend.get("k") == bytes(5 * 1024 * 1024)


def test_gdrive_finds_shares_in_every_duplicate_folder_and_writes_to_the_oldest(
        gdrive_fake, fast_retry):
    # Two processes raced to create the folder.
    oldest = gdrive_fake.add_file("cloudstrype", ["root"], mime_type=FOLDER)
    newer = gdrive_fake.add_file("cloudstrype", ["root"], mime_type=FOLDER)
    gdrive_fake.add_file("in-newer", [newer], b"from the newer folder")
    backend = connect(gdrive_fake, fast_retry)

    assert backend.get("in-newer") == b"from the newer folder"
    backend.put("fresh", b"x")
    assert gdrive_fake.names_in(oldest) == ["fresh"]


def test_gdrive_writes_at_once_after_the_folder_went_missing_make_one_and_find_every_share(
        gdrive_fake, fast_retry):
    """Eight writes at once after the user deleted our folder made up to eight folders, and
    the backend then searched only the last it made: 2-7 of the shares it had just written
    read as missing (providers sweep)."""
    backend = connect(gdrive_fake, fast_retry)
    backend.put("probe", b"p")                       # the connect's probe made the folder
    [folder] = gdrive_fake.folders_named("cloudstrype")
    with gdrive_fake.lock:                           # deleted in Drive, with what it held
        gdrive_fake.files = {i: f for i, f in gdrive_fake.files.items()
                             if i != folder and folder not in f["parents"]}
    start = threading.Barrier(8)

    def put(i: int) -> None:
        start.wait()
        backend.put(f"share-{i}", b"data %d" % i)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(gdrive_fake.folders_named("cloudstrype")) == 1
    assert [backend.get(f"share-{i}") for i in range(8)] == [b"data %d" % i for i in range(8)]
    # A 404 met late forgets only the folder its request used, not one found again since.
    found_again = backend._folders(create=False)
    backend._forget_folder([folder])
    assert backend._folders(create=False) == found_again and folder not in found_again


def test_gdrive_a_folder_made_at_the_same_moment_elsewhere_is_searched_too(gdrive_fake,
                                                                         fast_retry):
    """Two processes making the folder at once each make one: each, after making its own,
    looks again, searches both and writes to the oldest."""
    backend = connect(gdrive_fake, fast_retry)
    elsewhere = []
    make = gdrive_fake.add_file

    def racing_add_file(name, parents, *args, **kwargs):
        made = make(name, parents, *args, **kwargs)
        if kwargs.get("mime_type") == FOLDER and not elsewhere:
            elsewhere.append(make("cloudstrype", ["root"], mime_type=FOLDER))
            elsewhere.append(make("theirs", [elsewhere[0]], b"written by the other"))
        return made

    gdrive_fake.add_file = racing_add_file
    backend.put("mine", b"x")
    assert len(gdrive_fake.folders_named("cloudstrype")) == 2
    assert backend.get("theirs") == b"written by the other" and backend.get("mine") == b"x"


def test_gdrive_duplicate_names_read_the_newest_and_delete_removes_all(gdrive_fake, fast_retry):
    backend = connect(gdrive_fake, fast_retry)
    backend.put("seed", b"")
    [folder_id] = gdrive_fake.folders_named("cloudstrype")
    for index in range(120):   # more than one page of files.list
        gdrive_fake.add_file("dup", [folder_id], f"version {index}".encode())

    assert backend.get("dup") == b"version 119"
    backend.delete("dup")
    assert not backend.exists("dup")
    assert gdrive_fake.names_in(folder_id) == ["seed"]


def test_gdrive_rate_limit_answered_as_403_is_waited_out(gdrive_fake, fast_retry, sleeps):
    backend = connect(gdrive_fake, fast_retry)
    backend.put("k", b"data")
    gdrive_fake.fail_next(403, code="userRateLimitExceeded")

    assert backend.get("k") == b"data"
    assert len(sleeps.waits) == 1


def test_gdrive_other_403s_are_auth_errors(gdrive_fake, fast_retry):
    backend = connect(gdrive_fake, fast_retry)
    gdrive_fake.fail_next(403, code="insufficientFilePermissions")

    with pytest.raises(BackendAuthError, match="injected"):
        backend.usage()


# --- OneDrive ------------------------------------------------------------------------------------

def test_onedrive_shares_are_in_the_app_folder_and_names_ignore_case(onedrive_fake, fast_retry):
    backend = connect(onedrive_fake, fast_retry)
    backend.put("Share-A", b"first")
    backend.put("share-a", b"second")   # OneDrive: the same file

    assert list(onedrive_fake.items) == ["share-a"]
    assert backend.get("SHARE-A") == b"second"


def test_onedrive_downloads_follow_the_redirect_to_the_download_url(onedrive_fake, fast_retry):
    backend = connect(onedrive_fake, fast_retry)
    backend.put("k", b"payload")

    assert backend.get("k") == b"payload"
    assert onedrive_fake.api_calls[-1].endswith("approot:/k:/content")


# --- Box -----------------------------------------------------------------------------------------

def test_box_rewrites_an_existing_share_as_a_new_version(box_fake, fast_retry):
    backend = connect(box_fake, fast_retry)
    backend.put("k", b"first")
    backend.put("k", b"second")

    folder_id = box_fake.folder_named("cloudstrype")
    entry = box_fake.file_named("k", folder_id)
    assert (entry["data"], entry["versions"]) == (b"second", 2)
    assert len(box_fake.files) == 1


def test_box_finds_the_existing_folder_from_another_backend(box_fake, fast_retry):
    connect(box_fake, fast_retry).put("k", b"data")

    assert connect(box_fake, fast_retry).get("k") == b"data"
    assert [f["name"] for f in box_fake.folders.values()] == ["All Files", "cloudstrype"]


def test_box_a_download_that_is_not_ready_is_waited_for(box_fake, fast_retry, sleeps):
    backend = connect(box_fake, fast_retry)
    backend.put("k", b"data")
    # Box answers 202 with Retry-After while a new file is still being processed.
    box_fake.fail_next(202, retry_after=2, method="GET", path=r".*/files/\d+/content")

    assert backend.get("k") == b"data"
    assert sleeps.waits == [2.0]


def test_gdrive_a_deleted_folder_is_made_again(gdrive_fake, fast_retry):
    backend = connect(gdrive_fake, fast_retry)
    backend.put("k1", b"one")
    [old_folder] = gdrive_fake.folders_named("cloudstrype")
    for file_id in [old_folder, *[f["id"] for f in gdrive_fake.files.values()
                                  if old_folder in f["parents"]]]:
        del gdrive_fake.files[file_id]   # the user deleted the folder

    backend.put("k2", b"two")

    [new_folder] = gdrive_fake.folders_named("cloudstrype")
    assert new_folder != old_folder
    assert gdrive_fake.names_in(new_folder) == ["k2"]
    assert backend.get("k2") == b"two"


def test_box_a_deleted_folder_is_made_again_and_its_shares_are_gone(box_fake, fast_retry):
    backend = connect(box_fake, fast_retry)
    backend.put("k1", b"one")
    old_folder = box_fake.folder_named("cloudstrype")
    del box_fake.folders[old_folder]   # the user deleted the folder with its files
    box_fake.files.clear()

    backend.put("k2", b"two")

    assert box_fake.folder_named("cloudstrype") not in (None, old_folder)
    assert backend.get("k2") == b"two"


def test_box_lookups_in_a_deleted_folder_find_nothing(box_fake, fast_retry):
    backend = connect(box_fake, fast_retry)
    backend.put("k1", b"one")
    del box_fake.folders[box_fake.folder_named("cloudstrype")]
    box_fake.files.clear()

    assert not backend.exists("k1")
    with pytest.raises(ShareNotFound):
        backend.get("k1")
    backend.delete("k1")
