"""A student's notebook shown as a web page without running any of it: the Formgrader, feedback.

Every page nbconvert makes of a submission puts the student's own text into HTML: markdown
cells, outputs, and metadata the templates interpolate (grade ids, stream names, execution
counts). As nbconvert and nbgrader render them, a ``<script>`` or ``<img onerror=…>`` in a
markdown cell, a ``display(HTML(…))`` or a JavaScript output runs in the page — and the
Formgrader's page is served by the instructor's Jupyter server, with the instructor's session:
such a script could read the gradebook and solutions, change grades or run code as the
instructor. So (grader/nbgrader_config.py sets it for every HTMLExporter the course's
configuration builds — the Formgrader's, nbgrader's feedback and the course's):

* ``markdown_html`` renders markdown (its attachments kept, its ``$…$`` math as MathML) and
  keeps only an allowlist of tags, attributes and URL schemes (``clean``: ammonia, the Rust
  sanitizer, through nh3 — what PyPI renders READMEs with — over the whole result, the MathML
  included: latex2mathml passes ``\\text{<script>}`` and ``\\href{javascript:…}`` through).
  bleach, which nbconvert's own sanitizer uses, is deprecated and ~1,000 times slower: 2 MiB
  of table HTML (a notebook's output cap) took it 208 s, ammonia 0.2 s;
* ``clean`` replaces nbconvert's ``clean_html`` filter (HTML and markdown outputs, raw cells)
  with the same allowlist; ``HTMLExporter.sanitize_html`` keeps JavaScript outputs and widget
  state off the page;
* ``SafeOutputs`` (an exporter preprocessor, before any template sees the notebook) keeps
  only outputs of a known shape: known output types and MIME types, cleaned HTML, image data
  that is base64 and nothing else, numeric widths and heights, ``stdout``/``stderr`` stream
  names, integer execution counts, nbgrader metadata without markup.

Where markup that could run was removed, the page says so: a TA sees that it was tried. The
feedback pages, which need no script at all, also carry a Content-Security-Policy that allows
none (``templates/backprop_feedback/page.html.j2``).
"""

from __future__ import annotations

import html
import re

import nh3
from jinja2 import pass_context
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


HTML_TAGS = _words(
    "a abbr b blockquote br code dd del details div dl dt em h1 h2 h3 h4 h5 h6 hr i img kbd li "
    "ol p pre q s samp small span strong sub summary sup table tbody td tfoot th thead tr u ul var"
)
MATHML_TAGS = _words(
    "math annotation menclose merror mfenced mfrac mi mmultiscripts mn mo mover mpadded mphantom "
    "mprescripts mroot mrow ms mspace msqrt mstyle msub msubsup msup mtable mtd mtext mtr munder "
    "munderover none semantics"
)
MATHML_ATTRIBUTES = _words(
    "xmlns display displaystyle scriptlevel mathvariant mathsize stretchy fence form separator "
    "separators lspace rspace accent accentunder movablelimits largeop symmetric minsize maxsize "
    "linethickness notation width height depth open close columnalign rowalign columnspacing "
    "rowspacing columnlines rowlines frame framespacing encoding"
)
# No id (an id could stand in for one of the page's own elements), no style, no event handler.
ATTRIBUTES: dict[str, frozenset[str]] = {
    "a": frozenset({"href", "title"}),
    "abbr": frozenset({"title"}),
    "img": frozenset({"src", "alt", "title", "width", "height"}),
    "td": frozenset({"align", "colspan", "rowspan"}),
    "th": frozenset({"align", "colspan", "rowspan"}),
    **dict.fromkeys(("div", "span", "pre", "code"), frozenset({"class"})),  # code highlighting
    **dict.fromkeys(MATHML_TAGS, MATHML_ATTRIBUTES),
}
_IMAGE_DATA = re.compile(r"data:image/(png|jpeg|gif|webp|svg\+xml)[;,]", re.I)
# What ammonia removes silently and a TA should know was there (only for the notice: the
# cleaning itself is ammonia's).
_RUNNABLE = re.compile(
    r"<\s*/?\s*(script|iframe|object|embed|style|link|meta|base|form)\b|\son\w+\s*=|javascript:", re.I
)
# Plain markup, so that cleaning a cleaned text again keeps it.
REMOVED_NOTICE = "<p><em>[markup that could run in this page was removed from what follows]</em></p>"


def _data_only_as_image(tag: str, attribute: str, value: str) -> str | None:
    """``data:`` URLs only as an image (an attachment, a plot): a link to ``data:`` could
    carry a page of its own. ammonia checks every URL's scheme as well."""
    if value.strip().lower().startswith("data:"):
        return value if tag == "img" and attribute == "src" and _IMAGE_DATA.match(value.strip()) else None
    return value


_cleaner = nh3.Cleaner(
    tags=set(HTML_TAGS | MATHML_TAGS),
    clean_content_tags={"script", "style"},
    attributes={tag: set(names) for tag, names in ATTRIBUTES.items()},
    attribute_filter=_data_only_as_image,
    url_schemes={"http", "https", "mailto", "data"},
    strip_comments=True,
)


def clean(text) -> str:
    """``text`` as HTML with only the allowlisted tags, attributes and URL schemes (ammonia,
    through nh3); a notice where something that could run was removed. Replaces nbconvert's
    ``clean_html`` filter."""
    text = text.decode() if isinstance(text, bytes) else str(text)
    cleaned = _cleaner.clean(text)
    return REMOVED_NOTICE + cleaned if _RUNNABLE.search(text) else cleaned


# Math as markdown2html leaves it (HTML-escaped), outside <code> and <pre>. Inline math may
# wrap onto the next line (the notebooks' sentences do); as in TeX's prose, it does not start
# or end with a space, so a lone dollar ("costs $5 and $10") is left as text. Matching only
# within one line paired the end of one formula with the start of the next, and the words
# between became italic math letters with no spaces.
_CODE = re.compile(r"(<(code|pre)\b.*?</\2>)", re.S)
_MATH = re.compile(r"\$\$(.+?)\$\$|\$(?!\s)((?:(?!\n\s*\n)[^$])+?)(?<!\s)\$", re.S)


def _to_mathml(latex: str, display: bool) -> str | None:
    from latex2mathml.converter import convert

    try:
        return convert(html.unescape(latex), display="block" if display else "inline")
    except Exception:  # not LaTeX that latex2mathml knows: leave the text as it was
        return None


def mathml(rendered: str) -> str:
    """Rendered markdown with its ``$…$`` / ``$$…$$`` math as MathML (code left alone). Not
    safe by itself (``markdown_html`` cleans after it): latex2mathml copies text through."""

    def convert(match: re.Match) -> str:
        display = match.group(1) is not None
        converted = _to_mathml(match.group(1) if display else match.group(2), display)
        return converted if converted is not None else match.group(0)

    parts = _CODE.split(rendered)
    # split() with two groups yields: text, whole code element, tag name, text, ...
    return "".join(
        _MATH.sub(convert, part) if i % 3 == 0 else part for i, part in enumerate(parts) if i % 3 != 2
    )


@pass_context
def markdown_html(context, source: str) -> str:
    """nbconvert's ``markdown2html`` (the cell's attachments kept) with the math as MathML, made
    safe by ``clean``: the filter every course page renders markdown with."""
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

    cell = context.get("cell", {})
    path = context.get("resources", {}).get("metadata", {}).get("path", "")
    renderer = IPythonRenderer(escape=False, attachments=cell.get("attachments", {}), path=path)
    return clean(mathml(MarkdownWithMath(renderer=renderer).render(source)))


# ---------------------------------------------------------------------- outputs and metadata
SHOWN_MIME_TYPES = (
    "text/plain",
    "text/html",
    "text/markdown",
    "text/latex",
    "image/png",
    "image/jpeg",
    "image/svg+xml",
)
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")
_PLAIN_ID = re.compile(r"[A-Za-z0-9_.\-]*")


def _number(value, kinds: tuple[type, ...] = (int, float)):
    """``value`` if it is a number of ``kinds`` (a bool is not), else None."""
    return value if isinstance(value, kinds) and not isinstance(value, bool) else None


def _text(value) -> str:
    """nbformat's multiline string (a string, or a list of lines) as one string."""
    return "".join(str(v) for v in value) if isinstance(value, list) else str(value)


def safe_data(data: dict) -> dict:
    """The MIME bundle of an output, with only the types a page shows, each of a safe shape."""
    kept = {}
    for mime in SHOWN_MIME_TYPES:
        if not isinstance(data.get(mime), str | list):
            continue
        value = _text(data[mime])
        if mime in ("image/png", "image/jpeg") and not _BASE64.fullmatch(value):
            continue  # not base64: it would end up inside an attribute
        kept[mime] = clean(value) if mime == "text/html" else value
    if not kept:
        kept["text/plain"] = "[an output of a kind this page does not show]"
    return kept


def safe_output(output: dict) -> dict | None:
    """One output of a shape the templates render safely, or None to drop it."""
    kind = output.get("output_type")
    if kind == "stream":
        name = output.get("name") if output.get("name") in ("stdout", "stderr") else "stdout"
        return {"output_type": "stream", "name": name, "text": _text(output.get("text", ""))}
    if kind == "error":
        traceback = [str(line) for line in output.get("traceback", []) if isinstance(line, str)]
        return {
            "output_type": "error",
            "ename": str(output.get("ename", "")),
            "evalue": str(output.get("evalue", "")),
            "traceback": traceback,
        }
    if kind in ("display_data", "execute_result"):
        data = safe_data(output.get("data") or {})
        metadata = {}
        for mime, meta in (output.get("metadata") or {}).items():
            if mime in data and isinstance(meta, dict):
                sizes = {k: _number(meta.get(k)) for k in ("width", "height")}
                metadata[mime] = {k: v for k, v in sizes.items() if v is not None}
        safe = {"output_type": kind, "data": data, "metadata": metadata}
        if kind == "execute_result":
            safe["execution_count"] = _number(output.get("execution_count"), (int,))
        return safe
    return None


def plain_metadata(value):
    """nbgrader metadata with any string that is not a plain id HTML-escaped: templates put
    grade ids into attributes as they are. A well-formed id is left as it is."""
    if isinstance(value, dict):
        return {k: plain_metadata(v) for k, v in value.items()}
    if isinstance(value, str) and not _PLAIN_ID.fullmatch(value):
        return html.escape(value, quote=True)
    return value


class SafeOutputs(Preprocessor):
    """Every output, execution count and nbgrader metadata string of a notebook in a shape the
    page templates render without running anything (see the module's docstring)."""

    enabled = Bool(True, help="nbconvert preprocessors are off unless enabled").tag(config=True)

    def preprocess(self, nb, resources):
        from nbformat import from_dict

        nb.metadata.pop("widgets", None)
        for cell in nb.cells:
            if cell.get("cell_type") not in ("code", "markdown", "raw"):
                cell["cell_type"], cell["metadata"] = "raw", {}
            if "nbgrader" in cell.get("metadata", {}):
                cell.metadata["nbgrader"] = from_dict(plain_metadata(cell.metadata["nbgrader"]))
            if cell.cell_type != "code":
                continue
            cell.execution_count = _number(cell.get("execution_count"), (int,))
            outputs = (safe_output(o) for o in cell.get("outputs", []) if isinstance(o, dict))
            cell.outputs = [from_dict(o) for o in outputs if o is not None]
        return nb, resources
