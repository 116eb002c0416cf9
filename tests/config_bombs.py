"""Hostile config files, each under the 1 MB size limit: what a loader must survive cheaply.

Each builder returns the text of one YAML file. They are the worst cases we could think of for
a loader that walks typed fields: alias bombs through unknown keys, lists and known fields, deep
nesting, many small errors, long values repeated through aliases, and plain oversized lists.
"""

from __future__ import annotations


def _repeat(alias: str, times: int) -> str:
    return "[" + ", ".join([f"*{alias}"] * times) + "]"


def unknown_keys() -> str:
    """The reported one (~13 KB): 1,000 campaigns, each a mapping of 1,000 unknown keys."""
    keys = ", ".join(f"k{i}: 1" for i in range(1000))
    return f"u: &u {{{keys}}}\ncampaigns: {_repeat('u', 1000)}\n"


def unknown_keys_nested() -> str:
    """The ~350 KB variant: unknown-key mappings behind three levels of aliased lists."""
    keys = ", ".join(f"key_{i:05}: v" for i in range(20000))
    return (f"u: &u {{{keys}}}\n"
            f"a: &a {_repeat('u', 2000)}\n"
            f"b: &b {_repeat('a', 2000)}\n"
            f"campaigns: {_repeat('u', 20000)}\n")


def known_fields() -> str:
    """Valid objects through three levels of aliases: 8 billion nodes once expanded."""
    return (
        "v: &v {id: A, image_url: /x.svg}\n"
        f"cr: &cr {{id: c, size: 300x250, landing_url: 'https://x.example', variants: {_repeat('v', 2000)}}}\n"
        "camp: &camp {id: 1, name: n, advertiser: a, price: {model: cpm, amount: 1},\n"
        "  flight: {start: 2026-01-01T00:00:00Z, end: 2027-01-01T00:00:00Z},\n"
        f"  creatives: {_repeat('cr', 2000)}}}\n"
        f"campaigns: {_repeat('camp', 2000)}\n")


def through_lists() -> str:
    """Aliased lists of aliased lists of scalars, into a field that takes a list of strings."""
    return ("s: &s [" + ", ".join(["x"] * 1000) + "]\n"
            f"l: &l {_repeat('s', 1000)}\n"
            f"site: {{allowed_origins: {_repeat('s', 1000)}, name: *l}}\n"
            "campaigns: [{id: 1, name: n, advertiser: a, price: {model: cpm, amount: 1},\n"
            "  flight: {start: 2026-01-01T00:00:00Z, end: 2027-01-01T00:00:00Z}, creatives: [],\n"
            f"  targeting: {{sections: *l, countries: *s, placements: {_repeat('s', 1000)}}}}}]\n")


def deep_nesting() -> str:
    """A flow list 200,000 levels deep (libyaml's composer recurses once per level)."""
    return "campaigns: " + "[" * 200_000 + "]" * 200_000 + "\n"


def many_small_errors() -> str:
    """Tiny campaigns, each with an unknown key and six missing fields: 100,000 errors, no alias."""
    return "campaigns: [" + ", ".join(["{x: 1}"] * 15_000) + "]\n"


def long_values() -> str:
    """A 240 KB value quoted in errors, used as an unknown key and behind aliases in known fields."""
    value = "y" * 240_000
    refs = ", ".join(f"{{id: *big, name: *big, advertiser: *big, status: *big, tier: *big, "
                     f"creatives: [{{id: *big, size: *big, landing_url: *big}}]}}" for _ in range(300))
    return f"big: &big {value}\n*big : 1\ncampaigns: [{refs}]\n"


def long_keys() -> str:
    """300 unknown keys of 1,000 characters each: every listed error is as long as they get."""
    return "campaigns: [{" + ", ".join(f"{i:04}{'k' * 996}: 1" for i in range(300)) + "}]\n"


def flat_list() -> str:
    """~1 MB of one-character list items: half a million nodes as written."""
    return "site: {allowed_origins: [" + ",".join(["a"] * 500_000) + "]}\n"


ALL = {f.__name__: f for f in (unknown_keys, unknown_keys_nested, known_fields, through_lists,
                                deep_nesting, many_small_errors, long_values, long_keys, flat_list)}
