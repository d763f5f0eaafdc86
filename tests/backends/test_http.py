"""The shared request helper's pieces: Retry-After, error messages, log-safe URLs, backoff."""
from __future__ import annotations

import email.utils
import json
import time

import pytest
import requests
from cloudstrype.backends.http import RetryPolicy, error_detail, loggable_url, retry_after_seconds


def response(status=200, body=b"", headers=None) -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer.headers.update(headers or {})
    return answer


@pytest.mark.parametrize("value, expected", [
    ("7", 7.0), ("0", 0.0), ("1.5", 1.5), ("-3", 0.0), ("", None), ("soon", None),
    ("inf", None), ("nan", None), ("1e999", None), ("99999999999", 3600.0),
])
def test_retry_after_in_seconds(value, expected):
    headers = {"Retry-After": value} if value else {}
    assert retry_after_seconds(response(429, headers=headers)) == expected


def test_retry_after_as_an_http_date():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = retry_after_seconds(response(503, headers={"Retry-After": when}))
    assert 27 <= seconds <= 31


def test_retry_after_as_a_date_years_away_is_an_hour():
    when = email.utils.formatdate(time.time() + 10 * 365 * 86400, usegmt=True)
    assert retry_after_seconds(response(503, headers={"Retry-After": when})) == 3600.0


def test_retry_after_in_the_past_means_now():
    when = email.utils.formatdate(time.time() - 300, usegmt=True)
    assert retry_after_seconds(response(503, headers={"Retry-After": when})) == 0.0


@pytest.mark.parametrize("body, expected", [
    ({"error_summary": "path/not_found/..", "error": {".tag": "path"}}, "path/not_found/.."),
    ({"error": {"code": 403, "message": "The user's Drive storage quota has been exceeded."}},
     "The user's Drive storage quota has been exceeded."),
    ({"error": {"code": "itemNotFound", "message": ""}}, "itemNotFound"),
    ({"type": "error", "status": 409, "code": "item_name_in_use", "message": "Item exists"},
     "Item exists"),
    ({"error": "invalid_grant", "error_description": "expired code"},
     "invalid_grant: expired code"),
    (b"Service Unavailable", "Service Unavailable"),
    (b"", ""),
])
def test_error_detail_reads_every_providers_error_shape(body, expected):
    assert error_detail(response(400, body)) == expected


def test_error_detail_is_short():
    assert len(error_detail(response(500, b"x" * 10_000))) == 200


def test_loggable_url_drops_the_query_string_which_may_hold_credentials():
    url = "https://public.dm.files.1drv.com/y4m/download?tempauth=SECRET&x=1"
    assert loggable_url(url) == "https://public.dm.files.1drv.com/y4m/download"


def test_backoff_grows_and_stays_under_its_cap():
    policy = RetryPolicy(backoff=1.0, max_backoff=5.0)
    delays = [[policy.backoff_delay(n) for _ in range(200)] for n in (1, 2, 3, 10)]
    assert all(0.5 <= d <= 1.0 for d in delays[0])
    assert all(1.0 <= d <= 2.0 for d in delays[1])
    assert all(2.0 <= d <= 4.0 for d in delays[2])
    assert all(2.5 <= d <= 5.0 for d in delays[3])
    assert len(set(delays[0])) > 1   # jittered
