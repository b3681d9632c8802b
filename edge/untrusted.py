"""Text the user does not control the shape of: file names, record fields, photo metadata.

Any name the file system allows can reach a page, a CSV cell or a plot label: bytes that are
not UTF-8 (Python carries them as lone surrogates, e.g. `Br\\udcfccke.jpg` for a Latin-1
`Brücke.jpg`), `#`, `?` and `%` that mean something in a URL, `$` that matplotlib reads as
mathtext, `=` that a spreadsheet reads as a formula. Each way out has one function here, so
every writer treats the same name the same way. HTML escaping itself is Jinja2's autoescape
(edge/pages.py), not a function of ours.
"""

from __future__ import annotations

import os
from urllib.parse import quote

# A cell that begins with one of these is a formula (or becomes one) in Excel, LibreOffice
# and Google Sheets: OWASP's "CSV injection" list.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def printable(text: object) -> str:
    """`text` as a valid Unicode string for people to read: bytes that were not UTF-8 in the
    file name are shown as `\\xNN` (the name stays recognisable, and nothing downstream, a page,
    a CSV or a plot, fails to encode it)."""
    value = str(text)
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return os.fsencode(value).decode("utf-8", "backslashreplace")


def href(path: object) -> str:
    """A relative link to the file `path` (a record's own path, forward slashes): every byte
    of the name percent-encoded except `/`, so `#`, `?`, `%`, spaces and non-UTF-8 bytes reach
    the file instead of ending the path. HTML escaping is left to the template."""
    return quote(os.fsencode(str(path)), safe="/")


def csv_cell(value: object) -> object:
    """A value for a CSV cell that a spreadsheet shows as text, never runs: a string that
    begins like a formula gets a leading apostrophe (OWASP). Numbers are ours, not text, and
    stay numbers (a negative longitude is not a formula)."""
    if not isinstance(value, str):
        return value
    value = printable(value)
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def plot_label(text: object) -> str:
    """A label for matplotlib: printable, with `$` escaped so that `pier_$5_$` is not read as
    mathtext (which fails or draws something else)."""
    return printable(text).replace("$", r"\$")
