"""wallet.http_signatures.split_url: urlsplit without keeping a sender's long URLs in the standard
library's cache (CPython keeps the last 128 URLs split, whatever their length)."""

from __future__ import annotations

from urllib.parse import urlsplit

from wallet.http_signatures import SPLIT_CACHED_MAX, HttpRequest, parse_signatures, signature_base, split_url


def _misses() -> int:
    return int(urlsplit.cache_info().misses)  # type: ignore[attr-defined]


def test_a_long_url_is_split_without_the_cache() -> None:
    """A URL over SPLIT_CACHED_MAX characters is split as urlsplit splits it, and not cached."""
    url = "https://service.example/" + "a" * SPLIT_CACHED_MAX
    misses = _misses()
    assert split_url(url) == urlsplit.__wrapped__(url)  # type: ignore[attr-defined]
    assert _misses() == misses


def test_a_short_url_uses_the_cache() -> None:
    """An ordinary URL goes through urlsplit and its cache, as before."""
    url = "https://service.example/readings?unique=split-url-test"
    misses = _misses()
    assert split_url(url) == urlsplit(url)
    assert _misses() == misses + 1


def test_derived_components_of_a_long_target_leave_the_cache_alone() -> None:
    """@authority of a request with a long target is read without caching the target."""
    url = "https://service.example/" + "b" * (2 * SPLIT_CACHED_MAX)
    request = HttpRequest("GET", url, {}, b"")
    misses = _misses()
    headers = {"signature-input": 'sig1=("@authority");created=1;keyid="k"', "signature": "sig1=:AAAA:"}
    [parsed] = parse_signatures(headers)
    assert signature_base(request, parsed).startswith(b'"@authority": service.example')
    assert _misses() == misses
