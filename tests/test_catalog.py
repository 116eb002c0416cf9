"""The catalog's publish-time index: fresh and newest articles without a pass over the archive."""

from __future__ import annotations

import random

import pytest

from adserve.catalog import Catalog, CatalogError, Item, item_from_dict


def item(item_id: str, published: float | None, live: bool = True) -> Item:
    return Item(item_id=item_id, url=f"/articles/{item_id}", title=item_id, published=published, live=live)


def scan(catalog: Catalog, cutoff: float, n: int) -> tuple[list[str], list[str]]:
    """What the index must answer, computed the slow way."""
    dated = sorted((i.published, i.item_id) for i in catalog.items.values()
                   if i.live and i.published is not None)
    return [i for t, i in dated if t >= cutoff], [i for _, i in reversed(dated)][:n]


def test_fresh_and_newest_follow_upserts(tmp_path):
    catalog = Catalog({i.item_id: i for i in (item("a", 100.0), item("b", 300.0), item("undated", None))},
                      journal=tmp_path / "journal.jsonl")
    catalog.upsert(item("c", 200.0))
    assert catalog.published_since(150.0) == ["c", "b"] and catalog.newest(2) == ["b", "c"]
    catalog.upsert(item("b", 50.0))       # re-dated: moves, and is not listed twice
    catalog.upsert(item("c", 200.0, live=False))  # taken down: stays indexed, never listed
    assert catalog.published_since(0.0) == ["b", "a"] and catalog.newest(5) == ["a", "b"]
    reloaded = Catalog.load(tmp_path / "none.jsonl", tmp_path / "journal.jsonl")
    assert reloaded.published_since(0.0) == ["b"] and reloaded.newest(5) == ["b"]


def test_index_agrees_with_a_scan_after_random_upserts():
    rng = random.Random(7)
    catalog = Catalog()
    for _ in range(2000):
        published = rng.choice([None, float(rng.randrange(1000))])
        catalog.upsert(item(f"i{rng.randrange(300)}", published, live=rng.random() > 0.2), persist=False)
    for cutoff in (0.0, 250.0, 999.0, 2000.0):
        fresh, newest = scan(catalog, cutoff, 40)
        assert catalog.published_since(cutoff) == fresh
        assert catalog.newest(40) == newest


@pytest.mark.parametrize("field, value", [
    ("published", 1e308), ("published", -1.0), ("published", float("nan")), ("published", float("inf")),
    ("item_id", "a\n"), ("url", "https://news.example/a\n"),
])
def test_items_refuse_values_no_page_can_show(field, value):
    raw = {"item_id": "a", "url": "https://news.example/a", "title": "A", field: value}
    with pytest.raises(CatalogError, match=field):
        item_from_dict(raw)


def test_a_widget_card_follows_the_item_object_and_the_base_url(monkeypatch):
    """Cards are kept per item: an upsert and another public URL (the Host header's, when
    ``public_url`` is unset) must each show on the next card, an item asked twice gets its one
    kept card, and the memo stays bounded."""
    catalog = Catalog({"a": Item(item_id="a", url="/articles/a", title="Old", image_url="/img/a.jpg",
                                 section="world")})
    [first] = catalog.cards(["a"], "https://news.example")
    assert first == {"item_id": "a", "title": "Old", "url": "https://news.example/articles/a",
                     "image_url": "https://news.example/img/a.jpg", "section": "world", "sponsored": False}
    twice = catalog.cards(["a", "a"], "https://news.example")
    assert twice[0] is first and twice[1] is first  # kept, not remade
    [other] = catalog.cards(["a"], "http://127.0.0.1:8080")
    assert other["url"] == "http://127.0.0.1:8080/articles/a" and other["image_url"].startswith("http://127.0.0.1")
    catalog.upsert(Item(item_id="a", url="https://elsewhere.example/a", title="New"), persist=False)
    assert catalog.cards(["a"], "http://127.0.0.1:8080") == [
        {"item_id": "a", "title": "New", "url": "https://elsewhere.example/a", "image_url": None, "section": None,
         "sponsored": False}]
    monkeypatch.setattr("adserve.catalog.CARDS_KEPT", 2)
    for n in range(5):
        catalog.upsert(item(f"b{n}", None), persist=False)
        catalog.cards([f"b{n}"], "https://news.example")
    assert len(catalog._cards) <= 2


def test_cards_for_a_long_host_header_are_not_kept():
    """Without ``public_url`` a card's URLs start with the request's Host header, which a client
    chooses (up to ~8 kB): kept cards made from such hosts would pin two copies per item, for
    every item widgets show. Cards for a base URL no site has are made, not kept."""
    catalog = Catalog({f"a{n}": Item(item_id=f"a{n}", url=f"/articles/a{n}", title="T", image_url=f"/img/{n}.jpg")
                       for n in range(200)})
    base = "http://" + "h" * 8000
    for n in range(200):
        [card] = catalog.cards([f"a{n}"], base)
        assert card["url"] == f"{base}/articles/a{n}"
    kept = sum(len(url or "") for _, _, entry in catalog._cards.values() for url in (entry["url"], entry["image_url"]))
    assert kept < 200 * 1000  # not 200 x 2 x 8 kB
