"""Columns (numpy, 8 bytes at a time) against ``json.loads`` per line, on generated lines whose
values end anywhere in or across 8-byte words, as adserve's writers and ``json.dumps`` spell them."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from adserve.reports.columns import Columns

KEYS = ("a", "type", "campaign", "ign", "camp", "event_id", "sponsored")  # names long, short, suffixes
ids = st.text("abcdefghij-_0123456789.:/", max_size=70)  # ids hold no quotes, commas, braces or blanks
values = st.one_of(ids, st.integers(-10**15, 10**15), st.booleans(), st.none(),
                   st.lists(st.integers(0, 99999), max_size=12))
events = st.dictionaries(st.sampled_from(KEYS), values)


def spelled(value, width: int) -> bytes:
    """What Columns keeps of a JSON value: a string's opening quote, at most ``width`` bytes."""
    text = json.dumps(value, separators=(",", ":"))
    return (text[:-1] if isinstance(value, str) else text).encode()[:width]


@settings(max_examples=150, deadline=None)
@given(st.lists(events, min_size=1, max_size=20), st.sampled_from([(",", ":"), (", ", ": ")]),
       st.integers(1, 72))
def test_each_key_reads_as_json_loads_per_line(lines, separators, width):
    data = b"".join(json.dumps(line, separators=separators).encode() + b"\n" for line in lines)
    columns = Columns(data)
    for key in KEYS:
        def expected(line):
            value = line.get(key, ...)
            if value is ...:
                return b""
            return spelled(value, width) if not isinstance(value, list) else b""
        found, at = columns.find(key)
        listed = [i for i in at if isinstance(lines[i][key], list)]
        scalar = [j for j, i in enumerate(at) if not isinstance(lines[i][key], list)]
        got = columns.column(key, width) if not listed else None
        if got is not None:
            assert got.tolist() == [expected(line) for line in lines]
        assert columns.values(found[scalar], width).tolist() == [expected(lines[at[j]]) for j in scalar]
        assert columns.lists(found[[j for j, i in enumerate(at) if i in listed]], width).tolist() == [
            json.dumps(lines[i][key], separators=separators).encode()[:width] for i in listed]


@settings(max_examples=50, deadline=None)
@given(st.lists(events, min_size=1, max_size=20), st.integers(1, 400), st.booleans())
def test_pieces_of_a_file_hold_its_lines_once_each(tmp_path_factory, lines, size, unfinished):
    data = b"".join(json.dumps(line).encode() + b"\n" for line in lines) + b'{"type":"cli' * unfinished
    path = tmp_path_factory.mktemp("log") / "events.jsonl"
    path.write_bytes(data)
    pieces = list(Columns.pieces(path, size))
    for key in KEYS:
        assert b"".join(piece.column(key, 80).tobytes() for piece in pieces) == Columns(data).column(key, 80).tobytes()
