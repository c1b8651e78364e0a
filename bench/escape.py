"""Every user-supplied string (a run's folder name, a combination, a photo's file name)
escaped for where it goes: a markdown code span, table cell or link, the terminal, a CSV
cell a spreadsheet opens. One place, so no sink is forgotten."""
from __future__ import annotations

import re
from urllib.parse import quote

# control characters but the line break and the tab, C1 controls, line separators and bidi
# overrides (which reorder what follows them on the line)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def terminal(text) -> str:
    """``text`` with control characters (ANSI escapes, carriage returns, bidi overrides)
    shown as ``\\xNN`` instead of acting on the terminal; line breaks and tabs kept."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def code(text) -> str:
    """A markdown code span holding ``text`` literally, whatever it contains: backticks
    (a longer fence), HTML and emphasis characters (inert inside a span), line breaks
    (spaces: a span is one line)."""
    text = terminal(str(text).replace("\r\n", " ").replace("\n", " ").replace("\t", " "))
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text[:1] == "`" or text[-1:] == "`" or (text[:1] == " " and text[-1:] == " " and text.strip()) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def cell(text) -> str:
    """``code(text)`` for a markdown table cell: a ``|`` would end the cell, even in a span."""
    return code(text).replace("|", "\\|")


def link_target(path: str) -> str:
    """A relative path as a markdown link's destination: percent-encoded, so spaces,
    parentheses, ``<``, ``|`` in folder names neither end the link nor become HTML."""
    return quote(path, safe="/._-~")


def csv_cell(value):
    """A value for a CSV a spreadsheet opens: text starting ``=``, ``+``, ``-``, ``@`` (or a
    tab or carriage return) gets a leading ``'``, so it is never run as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def spreadsheet_frame(frame):
    """A copy of a pandas table with every text cell through ``csv_cell``: for the CSVs a
    person opens (summary.csv, pairwise.csv), not those Colorbench reads back."""
    from pandas.api.types import (  # here: `bench --help` imports this module
        is_object_dtype,
        is_string_dtype,
    )

    out = frame.copy()
    for column in out.columns:
        if is_object_dtype(out[column]) or is_string_dtype(out[column]):
            out[column] = out[column].map(csv_cell)
    return out


# LaTeX's special characters as the commands that print them; ``< > |`` and the backtick
# too (the default font encoding misprints them), and the report's own `` · `` separator
_LATEX = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "_": r"\_", "&": r"\&", "%": r"\%", "$": r"\$",
          "#": r"\#", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
          ">": r"\textgreater{}", "|": r"\textbar{}", "`": r"\textasciigrave{}", "·": r"\textperiodcentered{}"}


def latex(text) -> str:
    """``text`` as LaTeX that typesets it literally, in a table cell or a caption: every
    special character as its command, ``--`` kept two hyphens (not a dash), control
    characters shown as ``terminal`` shows them, line breaks as spaces."""
    text = terminal(str(text).replace("\r\n", " ").replace("\n", " ").replace("\t", " "))
    return "".join(_LATEX.get(ch, ch) for ch in text).replace("--", "-{}-").replace("--", "-{}-")
