"""The HTML pages (the run report, the batch index, the live console) from Jinja2 templates.

Every value a page shows comes from a record, a file name or a photo and is untrusted, so the
templates escape by default (autoescape): a value is only ever markup when a template says so.
Each role keeps its templates in its own package folder `templates/`, installed with it as
package data. Two filters are added for what escaping alone does not cover:
    href       a link to a file, percent-encoded (edge/untrusted.py `href`)
    printable  a name with non-UTF-8 bytes shown as \\xNN (edge/untrusted.py `printable`)
"""

from __future__ import annotations

from functools import lru_cache

from edge.errors import MissingDependencyError
from edge.untrusted import href, printable


@lru_cache(maxsize=None)
def _environment(package: str):
    try:
        import jinja2
    except ImportError:
        raise MissingDependencyError("the HTML pages need Jinja2: pip install "
                                     "'rustseg-edge[edge]' or '[report]' (or pip install "
                                     "jinja2)") from None
    environment = jinja2.Environment(loader=jinja2.PackageLoader(package, "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined,
                                     trim_blocks=True, lstrip_blocks=True)
    environment.filters["href"] = href
    environment.filters["printable"] = printable
    return environment


def render(package: str, template: str, **values) -> str:
    """The page `template` of role package `package` (e.g. "edge.record") filled with
    `values`; a missing value is an error, never an empty spot on the page."""
    return _environment(package).get_template(template).render(**values)
