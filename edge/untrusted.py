"""Text the user does not control the shape of: file names, record fields, photo metadata.

Any name the file system allows can reach a page, a CSV cell or a plot label: bytes that are
not UTF-8 (Python carries them as lone surrogates, e.g. `Br\\udcfccke.jpg` for a Latin-1
`Brücke.jpg`), `#`, `?` and `%` that mean something in a URL, `$` that matplotlib reads as
mathtext, `=` that a spreadsheet reads as a formula, and OpenCV's video I/O, which crashes the
process on a name that is not UTF-8. Each way out has one function here, so
every writer treats the same name the same way. HTML escaping itself is Jinja2's autoescape
(edge/pages.py), not a function of ours.
"""

from __future__ import annotations

import os
import shutil
import tempfile
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


class OpenCvPath:
    """A path to `path` that OpenCV's VideoCapture and VideoWriter can take.

    OpenCV converts a Python str to UTF-8 and crashes (a segfault, not an exception) on a name
    that is not valid UTF-8. Such a file is reached through a symlink with an ASCII name (and
    the same suffix, which picks the container) in a private temporary folder; `close()`
    removes it. Other names are passed as they are."""

    def __init__(self, path: object) -> None:
        self.path = str(path)
        self._folder: str | None = None
        try:
            self.path.encode("utf-8")
        except UnicodeEncodeError:
            suffix = os.path.splitext(self.path)[1]
            suffix = suffix if suffix.isascii() and suffix.isprintable() else ""
            self._folder = tempfile.mkdtemp(prefix="rustseg-opencv-")
            link = os.path.join(self._folder, "media" + suffix)
            os.symlink(os.path.abspath(self.path), link)
            self.path = link

    def close(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self) -> "OpenCvPath":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
