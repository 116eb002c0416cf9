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
yet) is left for the next read; a torn line that was ended by the writer yields what it holds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

PAD = 160  # zero bytes after the data, so a value's window never runs past the end
FRONT = 8  # and before it, so the first key's name is read like any other
QUOTE, COLON, SPACE = 34, 58, 32
ENDS = tuple(b'",} \t')  # what ends a value: a string's closing quote, or what follows a number,
CLOSE = tuple(b"]")       # true or null (ids hold none of these); what ends a flat list


class Columns:
    def __init__(self, data: bytes) -> None:
        complete = data[:data.rfind(b"\n") + 1]
        self.bytes = np.zeros(FRONT + len(complete) + PAD, dtype=np.uint8)  # positions count from FRONT
        self.bytes[FRONT:FRONT + len(complete)] = np.frombuffer(complete, dtype=np.uint8)
        body = self.bytes[:FRONT + len(complete) + 1]
        self.line_ends = np.flatnonzero(body == ord("\n"))
        colons = np.flatnonzero(body == COLON)
        keys = colons[self.bytes[colons - 1] == QUOTE] - 1  # '":' ends every key
        self._key_ends = keys[self.bytes[keys - 1] != ord("\\")]  # an escaped quote ends no key
        self._key_lines = np.searchsorted(self.line_ends, self._key_ends)
        # Each key's name, or its last 8 bytes, as one integer: bytes before its opening quote zeroed
        tails = sliding_window_view(self.bytes, 8)[self._key_ends - 8].copy()
        quotes = (tails == QUOTE).view("<u8").ravel()  # 0x01 in each byte that is a quote
        opening = (np.log2(np.maximum(quotes, 1)).astype(np.uint64) // np.uint64(8)) * np.uint64(8)
        self._names = tails.view("<u8").ravel() & ~((np.uint64(1) << opening) - np.uint64(1))

    @classmethod
    def read(cls, path: Path) -> "Columns":
        return cls(Path(path).read_bytes())

    @property
    def lines(self) -> int:
        return len(self.line_ends)

    def find(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Where each ``"key":`` of the file ends (its closing quote), and its line, in file order."""
        name = (b'"' + key.encode())[-8:].rjust(8, b"\0")
        code = np.frombuffer(name, "<u8")[0]
        chosen = np.flatnonzero(self._names == code)  # one pass per key asked: cheaper than sorting all
        return self._key_ends[chosen], self._key_lines[chosen]

    def values(self, positions: np.ndarray, width: int) -> np.ndarray:
        """The value after each key's ``":`` (``S<width>``; longer values are cut)."""
        return self._cut(positions, width, ENDS, 0)

    def lists(self, positions: np.ndarray, width: int) -> np.ndarray:
        """The flat list after each key, ``]`` included (``S<width>``, e.g. ``b'[1,2]'``)."""
        return self._cut(positions, width, CLOSE, 1)

    def _cut(self, positions: np.ndarray, width: int, stops: tuple[int, ...], keep: int) -> np.ndarray:
        starts = positions + 2
        starts += self.bytes[starts] == SPACE  # json.dumps writes '": '
        window = sliding_window_view(self.bytes, width)[starts]
        found = window == stops[0]
        for stop in stops[1:]:
            found |= window == stop
        found[:, 0] = False  # a string's opening quote
        end = np.where(found.any(axis=1), np.argmax(found, axis=1) + keep, width)
        return (window * (np.arange(width) < end[:, None])).view(f"S{width}").ravel()

    def column(self, key: str, width: int) -> np.ndarray:
        """One value per line (the line's last ``key``; ``b''`` where it has none)."""
        found, line = self.find(key)
        out = np.zeros(self.lines, dtype=f"S{width}")
        out[line] = self.values(found, width)
        return out


def text(values: np.ndarray) -> list[str | None]:
    """JSON spellings back to ids: strings unquoted, numbers as written, null and absent None."""
    return [None if v in (b"", b"null") else v[1:].decode() if v[:1] == b'"' else v.decode()
            for v in values.tolist()]
