"""The values of chosen keys in a JSON Lines file, found with numpy instead of parsing each line.

A report needs a dozen short fields of millions of lines; ``orjson.loads`` per line builds every
field of every line as Python objects. Here the file is one byte array: every key is found at
once (a ``"`` followed by ``:``), recognised by the last bytes of its name, and only the keys asked
for are cut out, as fixed-width byte strings (``S`` arrays) that numpy groups and counts without
Python objects. Values keep JSON's spelling: ``b'"A'`` (a string, its opening quote kept so it
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
QUOTE, COLON, SPACE, TAB = 34, 58, 32, 9
ENDS = np.array([ord(c) for c in ',}] \t\r\n'], dtype=np.uint8)  # what ends a number, true or null


class Columns:
    def __init__(self, data: bytes) -> None:
        complete = data[:data.rfind(b"\n") + 1]
        self.bytes = np.zeros(FRONT + len(complete) + PAD, dtype=np.uint8)  # positions count from FRONT
        self.bytes[FRONT:FRONT + len(complete)] = np.frombuffer(complete, dtype=np.uint8)
        body = self.bytes[:FRONT + len(complete)]
        self.line_ends = np.flatnonzero(body == ord("\n"))
        quotes = np.flatnonzero(body == QUOTE)
        after = self.bytes[quotes + 1]
        colon = (after == COLON) | (((after == SPACE) | (after == TAB)) & (self.bytes[quotes + 2] == COLON))
        colon &= self.bytes[np.maximum(quotes - 1, 0)] != ord("\\")  # an escaped quote ends no key
        self._key_ends = quotes[colon]  # the closing quote of every key
        self._tails = _rows(self.bytes, self._key_ends - 8, 8).copy().view("<u8").ravel()

    @classmethod
    def read(cls, path: Path) -> "Columns":
        return cls(Path(path).read_bytes())

    @property
    def lines(self) -> int:
        return len(self.line_ends)

    def find(self, key: str) -> np.ndarray:
        """Where each ``"key":`` of the file ends (its closing quote), in file order."""
        name = b'"' + key.encode()
        tail = name[-8:].rjust(8, b"\0")
        mask = np.uint64((1 << (8 * min(len(name), 8))) - 1 << (8 * (8 - min(len(name), 8))))
        return self._key_ends[(self._tails & mask) == np.frombuffer(tail, "<u8")[0]]

    def line_of(self, positions: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.line_ends, positions)

    def values(self, positions: np.ndarray, width: int) -> np.ndarray:
        """The value after each key's closing quote (``S<width>``; longer values are cut)."""
        head = _rows(self.bytes, positions + 1, 3)  # ':' or ' :' or ': ' before the value
        skip = np.argmax((head != COLON) & (head != SPACE) & (head != TAB), axis=1)
        window = _rows(self.bytes, positions + 1 + skip, width).copy()
        string, array = window[:, 0] == QUOTE, window[:, 0] == ord("[")
        ends = np.where(string[:, None], window == QUOTE,
                        np.where(array[:, None], window == ord("]"), np.isin(window, ENDS)))
        ends[:, 0] &= ~string  # a string's end is the quote after its opening one
        end = np.where(ends.any(axis=1), np.argmax(ends, axis=1) + array, width)  # a list keeps its ]
        window[np.arange(width) >= end[:, None]] = 0
        return window.view(f"S{width}").ravel()

    def column(self, key: str, width: int, lines: int | None = None) -> np.ndarray:
        """One value per line (the line's last ``key``; ``b''`` where it has none)."""
        found = self.find(key)
        out = np.zeros(self.lines if lines is None else lines, dtype=f"S{width}")
        out[self.line_of(found)] = self.values(found, width)
        return out


def _rows(data: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """``data[s:s + width]`` for every start, as one (n, width) array (the data is padded)."""
    return sliding_window_view(data, width)[np.clip(starts, 0, len(data) - width)]


def text(values: np.ndarray) -> list[str | None]:
    """JSON spellings back to ids: strings unquoted, numbers as written, null and absent None."""
    return [None if v in (b"", b"null") else v[1:].decode() if v[:1] == b'"' else v.decode()
            for v in values.tolist()]
