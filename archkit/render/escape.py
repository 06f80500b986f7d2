"""Untrusted strings made harmless for each kind of output.

Everything named inside an ONNX file is chosen by whoever wrote the file: graph, node, tensor,
input and output names, op types, domains, the producer, metadata values. archkit shows them
as data, never as markup or commands. Each renderer passes every untrusted string through
exactly one of these functions where it places the string into text of some format:

    name(s)       display form: invisible and control characters as visible escapes, long strings cut
    terminal(s)   a one-line terminal message: the same, with a longer limit
    md(s)         markdown text and table cells (markdown/HTML-active characters escaped)
    md_code(s)    a name shown as `code` in markdown
    csv_cell(s)   a CSV cell (spreadsheet formula injection guarded); csv_frame(df) for a frame
    plot(s)       matplotlib text (no mathtext)

JSON needs none of them: json.dumps escapes control characters and keeps the exact value.

All functions are pure, accept any str without raising, and return ordinary names
(`conv2d_1`, `/layer1/layer1.0/conv1/Conv`, `input:image`) unchanged. md and md_code return
`Markdown`, the str subclass table renderers take as already safe.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CSV_LIMIT",
    "NAME_LIMIT",
    "TERMINAL_LIMIT",
    "Markdown",
    "csv_cell",
    "csv_frame",
    "md",
    "md_code",
    "name",
    "plot",
    "terminal",
]

NAME_LIMIT = 200  # characters of a name shown in markdown, text, DOT and pictures
TERMINAL_LIMIT = 1_000  # characters of a one-line terminal message
CSV_LIMIT = 1_000  # characters of a CSV cell (notes written by archkit reach ~450)

# Characters never shown raw: C0 and C1 controls and DEL (Cc: terminal escape sequences,
# newlines, NUL), format characters (Cf: bidi embeddings, overrides and isolates U+202A-202E,
# U+2066-2069, marks U+200E/F, zero-width U+200B-200D, U+FEFF, soft hyphen, tag characters),
# lone surrogates (Cs: cannot be encoded) and line/paragraph separators (Zl, Zp: line breaks
# to str.splitlines and to JavaScript).
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


class Markdown(str):
    """Text already fit to stand in markdown: escaped by md()/md_code(), or written by archkit.
    Table renderers place it as it is and escape any other str with md()."""

    __slots__ = ()


def _hidden(ch: str) -> bool:
    o = ord(ch)
    if o < 0x80:
        return o < 0x20 or o == 0x7F
    return unicodedata.category(ch) in _HIDDEN


def _visible(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    o = ord(ch)
    if o < 0x100:
        return f"\\x{o:02x}"
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def name(s: str, limit: int | None = NAME_LIMIT) -> str:
    """The display form of an untrusted string: control, format (bidi, zero-width) and
    separator characters as visible escapes (ESC → `\\x1b`, newline → `\\n`, U+202E → `\\u202e`),
    and, beyond `limit` characters of output, the rest replaced by `…[+N chars]`, N the number
    of characters of `s` left out. `limit=None`: no cut. Backslashes are kept as they are, so
    the form is for reading, not for parsing back (JSON holds the exact string).

    >>> name("conv\\x1b[2J\\u202e")
    'conv\\\\x1b[2J\\\\u202e'
    """
    if not isinstance(s, str):
        s = str(s)
    if (limit is None or len(s) <= limit) and s.isascii() and s.isprintable():
        return s  # the common case: nothing to do
    out: list[str] = []
    n = 0
    for i, ch in enumerate(s):
        piece = _visible(ch) if _hidden(ch) else ch
        if limit is not None and n + len(piece) > limit:
            return "".join(out) + f"…[+{len(s) - i:,} chars]"
        out.append(piece)
        n += len(piece)
    return "".join(out)


def terminal(s: str, limit: int | None = TERMINAL_LIMIT) -> str:
    """A one-line terminal message: name() with a longer limit (no escape sequence, newline or
    bidi override reaches the terminal)."""
    return name(s, limit)


# Markdown and HTML-active characters: backslash (escapes), backtick (code spans), pipe (table
# cells), brackets (links, images), angle brackets (raw HTML, autolinks), ampersand (entities:
# `&#x202e;` would become a bidi override). `_` and `*` stay: they can only make emphasis, and
# names like conv2d_1 read as they are.
_MD_ACTIVE = re.compile(r"([\\`|\[\]<>&])")
_CODE_UNSAFE = re.compile(r"[`<>&]")


def _md_escape(shown: str) -> Markdown:
    return Markdown(_MD_ACTIVE.sub(r"\\\1", shown))


def md(s: str, limit: int | None = NAME_LIMIT) -> Markdown:
    """Markdown text or a table cell showing `s` literally: name(s), then `\\ ` | [ ] < > &`
    backslash-escaped (CommonMark escapes; GFM tables read `\\|` as a literal pipe)."""
    return _md_escape(name(s, limit))


def md_code(s: str, limit: int | None = NAME_LIMIT, *, table: bool = True) -> Markdown:
    """`s` as an inline code span, as archkit shows names: `` `conv1` ``. A code span cannot
    escape a backtick, and `<`/`>`/`&` inside one are left to the renderer's care, so a name
    holding any of them (or, in a table, a backslash before a pipe, which table parsers read
    differently) is shown as md() text instead: literal, not in code font. `table`: the span
    stands in a table cell, where `|` must be written `\\|` even in code."""
    shown = name(s, limit)
    if _CODE_UNSAFE.search(shown) or (table and "\\|" in shown):
        return _md_escape(shown)
    return Markdown("`" + (shown.replace("|", "\\|") if table else shown) + "`")


# A spreadsheet reads a cell starting with one of these as a formula (OWASP, CSV injection);
# full-width forms included, as some spreadsheets fold them.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_NUMBER = re.compile(r"[+-]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?%?")


def csv_cell(s: str, limit: int | None = CSV_LIMIT) -> str:
    """A CSV cell showing `s`: name(s, limit), and a leading `'` where the cell would start a
    formula (`=`, `+`, `-`, `@`, tab, CR, or their full-width forms); a cell that is a plain
    number (`-12`, `+3.5%`, `-1,024`) is left as it is."""
    shown = name(s, limit)
    if shown.startswith(_FORMULA_START) and not _NUMBER.fullmatch(shown):
        return "'" + shown
    return shown


def csv_frame(df: pd.DataFrame, *, limit: int | None = CSV_LIMIT,
              limits: Mapping[object, int | None] | None = None) -> pd.DataFrame:
    """`df` with csv_cell applied to every str cell of its text (object/string) columns;
    numbers, missing values and numeric columns are left alone. `limits`: column → its own
    limit (None: no cut, for a column of names each already cut by name()). Returns `df` itself
    when no cell changes (no copy), else a copy with the changed columns replaced."""
    import pandas as pd  # heavy (~0.4 s): archkit.render.escape stays cheap for the command line

    limits = limits or {}
    changed: dict[int, list] = {}
    for i, (column, dtype) in enumerate(zip(df.columns, df.dtypes)):
        if not (dtype == object or isinstance(dtype, pd.StringDtype)):
            continue
        cut = limits.get(column, limit)
        values = df.iloc[:, i].tolist()
        new, differ = [], False
        for v in values:
            if isinstance(v, str):
                c = csv_cell(v, cut)
                differ = differ or c is not v and c != v
                new.append(c)
            else:
                new.append(v)
        if differ:
            changed[i] = new
    if not changed:
        return df
    out = df.copy()
    for i, new in changed.items():
        out.isetitem(i, pd.Series(new, index=df.index, dtype=object))
    return out


def plot(s: str, limit: int | None = NAME_LIMIT) -> str:
    """Text for a matplotlib title, label or tick: name(s) with every `$` written `\\$`, so no
    part of it is read as mathtext (which would fail to parse or render markup)."""
    return name(s, limit).replace("$", "\\$")
