"""The explain page: one HTML file that needs nothing else (no network, no framework).

An experiment computes what its page shows (`rnnlab.experiments.Explain`); this module only
puts those numbers, as JSON, into `explain.html` beside it, whose small vanilla script draws
the experiment's view (mnist, lm, langid, postag or seq2seq). Nothing here computes a model.
"""

from __future__ import annotations

import html
import json
import math
import re
from importlib import resources

KINDS = ("mnist", "lm", "langid", "postag", "seq2seq")  # the views the template draws
DECIMALS = 5  # floats kept in the page; it shows probabilities to 3 decimals
MARK = re.compile(r"\{\{(TITLE|DATA)\}\}")


def render_explain_page(page: dict) -> str:
    """The page for `page` (JSON-able; "kind" one of KINDS, "title" its heading) as HTML."""
    if page.get("kind") not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {page.get('kind')!r}")
    template = resources.files(__package__).joinpath("explain.html").read_text(encoding="utf-8")
    data = json.dumps(_rounded(page), allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    # inside <script> a text holding "</script>" or "<!--" would end or bend the element
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    values = {"TITLE": html.escape(str(page.get("title", "rnnlab explain"))), "DATA": data}
    return MARK.sub(lambda m: values[m.group(1)], template)  # one pass: data is never re-read


def _rounded(value):
    """`value` with every float rounded to DECIMALS places (the page stays small)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"the explain page holds a number that is not finite: {value}")
        return round(value, DECIMALS)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value
