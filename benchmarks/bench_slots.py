"""Slot fill throughput and latency against a bare aiohttp handler, over loopback with wrk.

Two realistic page views against 1,000 campaigns, a 100,000-article catalog and a trained model:
the light page of the reference layout (one 300x250 and a "You Might Like" widget of 6) and a
heavier one (two display slots and the widget). Every request has its own reader (half of them
readers the model knows) and one of 4,160 article contexts, so nothing can be cached per
response; caps and budgets are live counters.
"""

from __future__ import annotations

import json
import sys
import urllib.request

from common import OUT, BareServer, LiveServer, median_spread, wrk
from world import build

PAGE_REQUEST = {
    "page": {"item_id": "PAGE", "section": "SECTION", "keywords": ["election", "budget"],
             "url": "https://news.example/PAGE"},
    "user": {"id": "USER"}, "device": "desktop", "country": "US",
    "slots": [{"id": "side", "placement": "sidebar-300x250"}, {"id": "top", "placement": "top-banner"},
              {"id": "ymal", "placement": "you-might-like"}],
}
PAGES = {  # name -> (slots, what the section heading says)
    "light": ([PAGE_REQUEST["slots"][0], PAGE_REQUEST["slots"][2]], "one 300x250 + a widget of 6"),
    "heavy": (PAGE_REQUEST["slots"], "2 display slots + a widget of 6"),
}
LUA = """
local template = [==[%s]==]
local sections = {"politics", "world", "economy", "technology", "science", "culture", "sports", "opinion"}
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  local user = (counter %% 2 == 0) and ("reader-" .. (counter %% 3000)) or ("anon-" .. counter)
  local section = sections[counter %% 8 + 1]
  local page = section .. "-" .. string.format("%%04d", counter %% 520)
  local body = template:gsub("USER", user):gsub("SECTION", section):gsub("PAGE", page)
  return wrk.format(nil, nil, nil, body)
end
"""


def sample_answer(url: str, page: dict) -> bytes:
    body = json.dumps(page).replace("USER", "reader-7").replace("SECTION", "politics") \
        .replace("PAGE", "politics-0007").encode()
    request = urllib.request.Request(url + "/v1/slots", data=body, headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(request).read()


def run(repeats: int = 3, seconds: int = 10, connections: int = 32, pages: tuple[str, ...] = tuple(PAGES)) -> str:
    folder = OUT / "world-1000"
    build(folder, campaigns=1000, items=100_000)
    sections = []
    with LiveServer(folder) as server:
        for name in pages:
            slots, label = PAGES[name]
            page = {**PAGE_REQUEST, "slots": slots}
            script = OUT / f"slots-{name}.lua"
            script.write_text(LUA % json.dumps(page))
            sections.append(_measure(server, page, script, label, repeats, seconds, connections))
    return "\n".join(sections)


def _measure(server, page: dict, script, label: str, repeats: int, seconds: int, connections: int) -> str:
    answer = sample_answer(server.url, page)
    runs = {"adserve": [], "bare": []}
    with BareServer(answer) as bare:
        wrk(server.url + "/v1/slots", script, connections, 3)  # warm-up
        for _ in range(repeats):
            runs["adserve"].append(wrk(server.url + "/v1/slots", script, connections, seconds))
            runs["bare"].append(wrk(bare.url + "/v1/slots", script, connections, seconds))
    ratio = [a.rps / b.rps for a, b in zip(runs["adserve"], runs["bare"])]
    rows = [f"| {name} | {median_spread([r.rps for r in got], 0)} | {median_spread([r.p50_ms for r in got], 2)} "
            f"| {median_spread([r.p99_ms for r in got], 2)} | {sum(r.non_2xx for r in got)} |"
            for name, got in runs.items()]
    return "\n".join([
        f"### Slot fill, {label}: 1,000 campaigns, 100k catalog, trained model",
        f"wrk, 1 thread, {connections} connections, {seconds} s x {repeats} runs, one server worker; "
        f"answer body {len(answer)} bytes (the bare handler answers the same bytes).",
        "", "| server | requests/s | p50 ms | p99 ms | non-2xx |", "|---|---:|---:|---:|---:|", *rows, "",
        f"**adserve / bare handler throughput: {median_spread(ratio, 2)}** (target >= 0.30 on the light "
        f"page; p99 target <= 10 ms)", ""])


if __name__ == "__main__":  # python bench_slots.py [REPEATS [PAGE ...]]
    print(run(int(sys.argv[1]), pages=tuple(sys.argv[2:]) or tuple(PAGES)) if len(sys.argv) > 1 else run())
