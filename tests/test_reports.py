"""Delivery reports: what the log carries for them, rollups per UTC day, and the report command.

The reports' counts must be exactly what counted toward caps and budgets: a live run fires
pixels and clicks (repeats, bots, over-limit and late ones) and the report is compared with the
log's own ``counted``/``billable`` verdicts.
"""

from __future__ import annotations

from .test_server import local, logged, post_slots

WIDGET_PAGE = {"page": {"item_id": "iran-push-us-forces-iraq", "section": "politics"},
               "user": {"id": "reader-7"}, "device": "desktop",
               "slots": [{"id": "el-1", "placement": "special-offer"},
                         {"id": "el-2", "placement": "you-might-like"},
                         {"id": "el-3", "type": "display", "sizes": ["728x90"]}]}


async def test_events_carry_placement_strategy_and_sponsorship(client, workdir):
    """Reports group by placement (not the page's element id) and by widget strategy."""
    slots = await post_slots(client, WIDGET_PAGE)
    decision = logged(workdir, "decision")[-1]
    assert [s.get("placement") for s in decision["slots"]] == ["special-offer", "you-might-like", None]
    widget = slots["el-2"]
    native = next(item for item in widget["items"] if item["sponsored"])
    organic = next(item for item in widget["items"] if not item["sponsored"])
    for url in (slots["el-1"]["impression_url"], widget["impression_url"], native["impression_url"],
                slots["el-3"]["impression_url"], organic["click_url"], native["click_url"]):
        await client.get(local(url), allow_redirects=False)
    hits = logged(workdir, "impression") + logged(workdir, "click")
    seen = [(e["type"], e["placement"], e.get("strategy"), e.get("sponsored")) for e in hits]
    strategy = widget["strategy"]
    assert seen == [("impression", "special-offer", None, None),
                    ("impression", "you-might-like", strategy, False),
                    ("impression", "you-might-like", strategy, True),
                    ("impression", None, None, None),
                    ("click", "you-might-like", strategy, False),
                    ("click", "you-might-like", strategy, True)]
