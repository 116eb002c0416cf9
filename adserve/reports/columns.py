"""The values of chosen keys in a JSON Lines file, found with numpy instead of parsing each line.

A report needs a dozen short fields of millions of lines; ``orjson.loads`` per line builds every
field of every line as Python objects. Here the file is one byte array: every key is found at
once (a ``"`` followed by ``:``) and named by its last 8 bytes as one integer, and only the keys
asked for are cut out, as fixed-width byte strings (``S`` arrays) that numpy groups and counts
without Python objects. Values keep JSON's spelling: ``b'"A'`` (a string, its opening quote kept so it
never equals ``null``), ``b'123'``, ``b'true'``, ``b'null'``, ``b'[1,2]'`` (a flat list);
``b''`` for a key a line lacks.

What it assumes of the log, which adserve's writers keep: ids hold no escaped quotes, and each
slot record of a decision starts with its ``slot`` key. A line still being written (no newline
yet) is left for the next read; a torn line that was ended by the writer yields what it holds
(a value is never read past its line's end).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

PIECE = 4 << 20  # bytes of the file read at a time
PAD = 160  # zero bytes after the data, so a value's words never run past the end
FRONT = 8  # and before it, so the first key's name is read like any other
QUOTE, COLON, SPACE = 34, 58, 32
# What ends a value: a string's closing quote, or what follows a number, true or null (ids hold
# none of these); and the end of its line, so a line torn after its key never reads the next one.
ENDS = b'",} \t\n'
CLOSE = b"]\n"  # what ends a flat list (a torn one keeps its newline, which int() ignores)
ONES, LOW7, HIGH = (np.uint64(0x0101010101010101 * b) for b in (1, 0x7F, 0x80))


class Columns:
    """Keys and values are read 8 bytes at a time, as unaligned little-endian ``uint64`` words
    (``_words``), and bytes are compared within a word (SWAR): a byte pass per key or per stop
    character over a ``(values, width)`` window cost more than the whole ``orjson`` scan."""

    def __init__(self, data: bytes) -> None:
        complete = data[:data.rfind(b"\n") + 1]
        self.bytes = np.zeros(FRONT + len(complete) + PAD, dtype=np.uint8)  # positions count from FRONT
        self.bytes[FRONT:FRONT + len(complete)] = np.frombuffer(complete, dtype=np.uint8)
        self._words = np.ndarray(len(self.bytes) - 7, "<u8", self.bytes, strides=(1,))  # one per byte
        body = self.bytes[:FRONT + len(complete) + 1]
        self.line_ends = np.flatnonzero(body == ord("\n"))
        colons = np.flatnonzero(body == COLON)
        keys = colons[self.bytes[colons - 1] == QUOTE] - 1  # '":' ends every key
        self._key_ends = keys[self.bytes[keys - 1] != ord("\\")]  # an escaped quote ends no key
        keys_before = np.searchsorted(self._key_ends, self.line_ends)  # per line: cheaper than per key
        self._key_lines = np.repeat(np.arange(self.lines), np.diff(keys_before, prepend=0))
        # Each key's name, or its last 8 bytes, as one integer: bytes before its opening quote zeroed
        tails = self._words[self._key_ends - 8]
        quotes = _matches(tails, b'"') >> np.uint64(7)  # 0x01 in each byte that is a quote
        for shift in (8, 16, 32):  # ... and in every byte below the last quote
            quotes |= quotes >> np.uint64(shift)
        self._names = tails & ~((quotes >> np.uint64(8)) * np.uint64(0xFF))

    @classmethod
    def pieces(cls, path: Path, size: int = PIECE) -> Iterator["Columns"]:
        """The file's lines in pieces of about ``size`` bytes, so that each piece's arrays stay in
        the processor's cache between the passes over them."""
        data, start = Path(path).read_bytes(), 0
        while start < len(data):
            end = len(data) if start + size >= len(data) else data.rfind(b"\n", start, start + size) + 1
            if end <= start:  # a line longer than a piece
                end = data.find(b"\n", start + size) + 1 or len(data)
            yield cls(data[start:end])
            start = end

    @property
    def lines(self) -> int:
        return len(self.line_ends)

    def find(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Where each ``"key":`` of the file ends (its closing quote), and its line, in file order."""
        name = (b'"' + key.encode())[-8:].rjust(8, b"\0")
        code = np.frombuffer(name, "<u8")[0]
        chosen = np.flatnonzero(self._names == code)  # a pass per key asked: cheaper than sorting all
        return self._key_ends[chosen], self._key_lines[chosen]

    def values(self, positions: np.ndarray, width: int) -> np.ndarray:
        """The value after each key's ``":`` (``S<width>``; longer values are cut)."""
        return self._cut(positions, width, ENDS, 0)

    def lists(self, positions: np.ndarray, width: int) -> np.ndarray:
        """The flat list after each key, ``]`` included (``S<width>``, e.g. ``b'[1,2]'``)."""
        return self._cut(positions, width, CLOSE, 1)

    def _cut(self, positions: np.ndarray, width: int, stops: bytes, keep: int) -> np.ndarray:
        starts = positions + 2
        starts += self.bytes[starts] == SPACE  # json.dumps writes '": '
        words = np.zeros((len(starts), -(-width // 8)), dtype=np.uint64)
        rows = np.arange(len(starts))  # those whose value has not ended yet: ids are short
        for i in range(words.shape[1]):
            word = self._words[starts[rows] + 8 * i]
            found = _matches(word, stops)
            if i == 0:  # a string's opening quote ends nothing (a newline there still does)
                found &= ~(_matches(word, b'"') & np.uint64(0x80))
            ended = found != 0
            found = found[ended]
            lowest = (found & (~found + np.uint64(1))) >> np.uint64(7)  # 0x01 in the first stop's byte
            word[ended] &= (lowest << np.uint64(8 * keep)) - np.uint64(1)
            words[rows, i] = word
            rows = rows[~ended]
            if not len(rows):
                break
        out = words.view(np.uint8)[:, :width]
        return np.ascontiguousarray(out).view(f"S{width}").ravel()

    def column(self, key: str, width: int) -> np.ndarray:
        """One value per line (the line's last ``key``; ``b''`` where it has none)."""
        found, line = self.find(key)
        out = np.zeros(self.lines, dtype=f"S{width}")
        out[line] = self.values(found, width)
        return out


def _matches(words: np.ndarray, chars: bytes) -> np.ndarray:
    """0x80 in each byte of ``words`` that is one of ``chars``, 0 elsewhere (exact, no carries)."""
    differ = np.full(len(words), ~np.uint64(0))
    for char in chars:
        x = words ^ (ONES * np.uint64(char))
        differ &= ((x & LOW7) + LOW7) | x  # 0x80 set in each byte that is not ``char``
    return ~differ & HIGH


def text(values: np.ndarray) -> list[str | None]:
    """JSON spellings back to ids: strings unquoted, numbers as written, null and absent None.
    Bytes that are not UTF-8 (a foreign writer, an id cut inside a character) show as U+FFFD."""
    return [None if v in (b"", b"null") else (v[1:] if v[:1] == b'"' else v).decode(errors="replace")
            for v in values.tolist()]
