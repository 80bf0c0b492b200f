"""The bounded memos: BoundedCache forgets the oldest entries, GenerationalCache a whole generation."""

from __future__ import annotations

import pytest

from did_registry.bounded_cache import BoundedCache, GenerationalCache, WeightedCache


def test_a_bounded_cache_forgets_its_oldest_entries_and_what_is_discarded() -> None:
    cache: BoundedCache[int, str] = BoundedCache(3)
    for n in range(5):
        cache.put(n, str(n))
    assert [cache.get(n) for n in range(5)] == [None, None, "2", "3", "4"]
    cache.discard(3)
    cache.discard(99)  # nothing kept under it: no error
    assert 3 not in cache and len(cache) == 2


def test_a_generational_cache_put_to_an_entry_at_a_time_never_holds_more_than_its_size() -> None:
    cache: GenerationalCache[int, int] = GenerationalCache(100)
    for n in range(1000):
        cache.update({n: n})
        assert len(cache) <= 100
    assert cache.get(999) == 999
    assert cache.get(0) is None


def test_what_is_used_is_carried_forward_and_what_is_not_is_forgotten() -> None:
    cache: GenerationalCache[int, int] = GenerationalCache(10)
    cache.update({0: 0})  # the entry a reader keeps coming back to (a map's root)
    for n in range(1, 100):
        assert cache.get(0) == 0
        cache.update({n: n})
    assert cache.get(0) == 0
    assert cache.get(1) is None  # put once, never read: gone two turns later


def test_in_batches_it_holds_less_than_its_size_and_one_batch() -> None:
    """A block's nodes come by the thousand: each generation turns once it holds half the size, so it
    holds less than half the size plus the batch that filled it, and both less than size + batch."""
    cache: GenerationalCache[int, int] = GenerationalCache(1000)
    for start in range(0, 30_000, 300):
        cache.update({n: n for n in range(start, start + 300)})
        assert len(cache) < 1000 + 300
        assert cache.get(start + 299) == start + 299


def test_a_large_batch_is_kept_whole_until_the_next_turn() -> None:
    cache: GenerationalCache[int, int] = GenerationalCache(10)
    cache.update({n: n for n in range(50)})  # more than the size at once
    assert all(cache.get(n) == n for n in range(49, 44, -1))
    cache.clear()
    assert len(cache) == 0 and cache.get(49) is None


@pytest.mark.parametrize("size", [0, 1, -5])
def test_a_generational_cache_too_small_to_turn_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        GenerationalCache(size)


def test_a_weighted_cache_forgets_the_oldest_past_its_weight() -> None:
    """Past ``max_weight`` the oldest entries go, however few they are; one heavier than the whole
    bound is not kept at all."""
    cache: WeightedCache[str, str] = WeightedCache(100, max_weight=10)
    cache.put("a", "A", 4)
    cache.put("b", "B", 4)
    cache.put("c", "C", 4)  # 12 > 10: "a" goes
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, "B", "C") and cache.weight == 8
    cache.put("huge", "H", 11)
    assert "huge" not in cache and cache.weight == 8
    cache.put("b", "B2", 1)  # put again: its weight is replaced
    cache.discard("c")
    assert cache.get("b") == "B2" and cache.weight == 1 and len(cache) == 1


def test_a_weighted_cache_also_holds_at_most_its_size() -> None:
    cache: WeightedCache[int, int] = WeightedCache(3, max_weight=1000)
    for n in range(5):
        cache.put(n, n, 1)
    assert [cache.get(n) for n in range(5)] == [None, None, 2, 3, 4]
