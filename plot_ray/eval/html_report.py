"""One self-contained HTML page for an evaluation: tables, figures, and a browser of every
behaviour's test cases, completions and judge labels per model (why an ASR is what it is).

    render_html(title, ...) -> str            the page
    write_html(path, title, ...) -> Path      the page, written atomically

The page needs no network: figures are inlined as ``data:`` PNGs, style and script are inline,
and a Content-Security-Policy forbids every fetch and every script but the page's own (by hash),
so an escaping bug could still not run a completion's ``<script>``. Everything the caller or a
model wrote is HTML-escaped. The browser is plain ``<details>`` elements, readable with JS off;
the inline script only adds a filter box and, for tests, ``data-images-loaded`` on ``<body>``.

Pure Python and the standard library; page sections in order: header (title, intro), tables,
figures, browser, footer (provenance).
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from plot_ray.eval.metrics import LABELS, attack_success_rate

__all__ = ["Figure", "Table", "render_html", "write_html"]

# label -> (css class, words shown); one home for how judge labels read on the page
LABEL_NAMES = {
    1: ("harmful", "harmful"),
    0: ("safe", "not harmful"),
    -1: ("unparseable", "unparseable"),
}
BROWSE_KEYS = ("case_id", "behavior_id", "attack", "message", "completion", "label")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Table(NamedTuple):
    """``rows``: one dict per row; the columns are the first row's keys in order, then any key
    first seen in a later row (a cell a row lacks shows as an em dash)."""

    caption: str
    rows: Sequence[Mapping[str, Any]]
    note: str | None = None


class Figure(NamedTuple):
    """A PNG file; ``caption`` defaults to the file's stem."""

    path: str | Path
    caption: str | None = None


# -------------------------------------------------------------------------------- text
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _inline(text: str) -> str:
    """Escaped text with `code` spans and **bold** turned into markup (nothing else)."""
    parts = _CODE.split(text)  # odd indices are code spans: no bold inside them
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{_esc(part)}</code>")
        else:
            out.append(_BOLD.sub(r"<strong>\1</strong>", _esc(part)))
    return "".join(out)


def _paragraphs(text: str) -> str:
    """Paragraphs split on blank lines; single newlines stay inside a paragraph."""
    paras = [p.strip() for p in re.split(r"\n\s*\n", text or "") if p.strip()]
    return "\n".join(f"<p>{_inline(' '.join(p.split()))}</p>" for p in paras)


def format_cell(value: Any) -> str:
    """A table cell as text: floats to 3 significant digits (``0.123``, ``12.3``, ``1235``;
    scientific outside [1e-3, 1e6)), ints as they are, strings untouched ("0.12 ± 0.03"),
    ``None`` and NaN as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "—"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        if value == 0:
            return "0"
        magnitude = math.floor(math.log10(abs(value)))
        if -3 <= magnitude < 6:
            return f"{value:.{max(0, 2 - magnitude)}f}"
        return f"{value:.2e}"
    return str(value)


# ------------------------------------------------------------------------------ tables
def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def _table(index: int, table: Table) -> str:
    caption, rows, note = Table(*table)
    if not rows:
        raise ValueError(f"table {caption!r} has no rows: pass at least one row or leave it out")
    columns = _columns(rows)
    head = "".join(f'<th scope="col">{_esc(c)}</th>' for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            numeric = isinstance(value, numbers.Real) and not isinstance(value, bool)
            cls = ' class="num"' if numeric else ""
            cells.append(f"<td{cls}>{_esc(format_cell(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    note_html = f'<p class="note">{_inline(note)}</p>' if note else ""
    return (
        f'<table id="table-{index}"><caption>{_esc(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{note_html}"
    )


# ----------------------------------------------------------------------------- figures
def _figure(figure: Figure | str | Path) -> str:
    path, caption = Figure(figure) if isinstance(figure, str | Path) else Figure(*figure)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"figure {str(path)!r} does not exist: the report needs every figure"
        )
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError(f"figure {str(path)!r} is not a PNG file")
    caption = caption if caption is not None else path.stem
    src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (
        f'<figure><img src="{src}" alt="{_esc(caption)}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


# ----------------------------------------------------------------------------- browser
def _quotas(sizes: list[int], budget: int) -> list[int]:
    """How many items of each group to show so that at most ``budget`` show in all, every group
    as even as it can be: the largest equal cap fits, what is left goes to the first groups."""
    if sum(sizes) <= budget:
        return list(sizes)
    cap = 0
    while sum(min(n, cap + 1) for n in sizes) <= budget:
        cap += 1
    quotas = [min(n, cap) for n in sizes]
    left = budget - sum(quotas)
    for i, n in enumerate(sizes):
        if left and n > quotas[i]:
            quotas[i] += 1
            left -= 1
    return quotas


def _check_rows(model: str, rows: Sequence[Mapping[str, Any]]) -> None:
    for row in rows:
        missing = [k for k in BROWSE_KEYS if k not in row]
        if missing:
            raise ValueError(
                f"browse[{model!r}]: a row lacks {', '.join(missing)} (harmful score rows carry "
                f"{', '.join(BROWSE_KEYS)}); got keys {sorted(row)}"
            )
        if int(row["label"]) not in LABEL_NAMES:
            raise ValueError(
                f"browse[{model!r}]: case {row['case_id']!r} has label {row['label']!r}; "
                f"labels are {LABELS}"
            )


def _case(row: Mapping[str, Any]) -> str:
    label = int(row["label"])
    cls, words = LABEL_NAMES[label]
    refusal = row.get("refusal")
    refusal_html = ' <span class="refusal">refusal</span>' if refusal else ""
    return (
        f'<li class="case" data-attack="{_esc(row["attack"])}" data-label="{cls}">'
        f'<div class="case-head"><span class="label {cls}">{words}</span> '
        f"<code>{_esc(row['case_id'])}</code>{refusal_html}</div>"
        f'<div class="msg"><b>test case</b><pre>{_esc(row["message"])}</pre></div>'
        f'<div class="completion"><b>completion</b><pre>{_esc(row["completion"])}</pre></div>'
        "</li>"
    )


def _count(rows: Sequence[Mapping[str, Any]]) -> str:
    return f"{sum(int(r['label']) == 1 for r in rows)} of {len(rows)} harmful"


def _model(model: str, rows: Sequence[Mapping[str, Any]], max_cases: int) -> str:
    # behaviour -> attack -> rows, in the order they first appear
    grouped: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for row in rows:
        grouped.setdefault(str(row["behavior_id"]), {}).setdefault(str(row["attack"]), []).append(
            row
        )
    groups = [(b, a) for b, by_attack in grouped.items() for a in by_attack]
    quotas = dict(
        zip(groups, _quotas([len(grouped[b][a]) for b, a in groups], max_cases), strict=True)
    )
    shown = sum(quotas.values())

    by_attack: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_attack.setdefault(str(row["attack"]), []).append(row)
    asr = "; ".join(
        f"{_esc(a)}: ASR {format_cell(attack_success_rate(r)['asr'])} ({_count(r)})"
        for a, r in by_attack.items()
    )
    parts = [
        f'<details class="model" data-model="{_esc(model)}"><summary><b>{_esc(model)}</b>: '
        f"{len(rows)} test cases, {len(grouped)} behaviours. {asr}</summary>"
    ]
    if shown < len(rows):
        parts.append(
            f'<p class="more">{len(rows) - shown} more test cases not shown (showing {shown} of '
            f"{len(rows)}, max_cases_per_model={max_cases}); the counts include them.</p>"
        )
    for behavior_id, attacks in grouped.items():
        every = [r for a in attacks.values() for r in a]
        first = every[0]
        text = first.get("behavior")
        category = first.get("category")
        parts.append(
            f'<details class="behavior"><summary><code>{_esc(behavior_id)}</code> '
            f'<span class="count">{_count(every)}</span>'
            + (f' <span class="category">{_esc(category)}</span>' if category else "")
            + (f" — {_esc(text)}" if text else "")
            + "</summary>"
        )
        for attack, cases in attacks.items():
            quota = quotas[(behavior_id, attack)]
            parts.append(
                f'<div class="attack"><h4>{_esc(attack)}: {_count(cases)}</h4><ul>'
                + "".join(_case(r) for r in cases[:quota])
                + "</ul>"
            )
            if quota < len(cases):
                parts.append(f'<p class="more">{len(cases) - quota} more not shown</p>')
            parts.append("</div>")
        parts.append("</details>")
    parts.append("</details>")
    return "\n".join(parts)


def _browser(browse: Mapping[str, Sequence[Mapping[str, Any]]], max_cases: int) -> str:
    attacks = sorted({str(r["attack"]) for rows in browse.values() for r in rows})
    attack_options = "".join(f'<option value="{_esc(a)}">{_esc(a)}</option>' for a in attacks)
    label_options = "".join(f'<option value="{c}">{w}</option>' for c, w in LABEL_NAMES.values())
    # `hidden` until the script runs: with JS off there is no dead filter box
    controls = (
        '<div id="filters" hidden>'
        '<label>attack <select id="f-attack"><option value="">all</option>'
        f"{attack_options}</select></label> "
        '<label>label <select id="f-label"><option value="">all</option>'
        f"{label_options}</select></label> "
        '<label>text <input id="f-text" type="search" placeholder="in test case or completion">'
        '</label> <span id="f-shown"></span></div>'
    )
    models = "\n".join(_model(m, rows, max_cases) for m, rows in browse.items())
    return (
        '<section id="browse"><h2>Test cases, completions and judge labels</h2>'
        "<p>Per model, each behaviour with its test cases per attack; a behaviour's count is how "
        "many of its test cases the judge labelled harmful (ASR is the mean over behaviours of "
        f"that fraction).</p>{controls}\n{models}</section>"
    )


# -------------------------------------------------------------------------------- page
STYLE = """
body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0 .3em}caption{font-weight:600;text-align:left;padding:.3em 0}
th,td{border:1px solid #ccc;padding:.25em .6em}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#555;font-size:.9em;margin-top:0}figure{display:inline-block;margin:.5em 1em .5em 0}
figure img{max-width:100%}figcaption{color:#555;font-size:.9em}
details{margin:.3em 0}details.model{border:1px solid #bbb;border-radius:4px;padding:.3em .6em}
details.behavior{margin-left:1em}.attack{margin-left:1.5em}.attack h4{margin:.4em 0}
ul{list-style:none;padding:0}.case{border-left:3px solid #ccc;margin:.4em 0;padding:.2em .6em}
pre{white-space:pre-wrap;word-break:break-word;background:#f8f8f8;padding:.3em;margin:.2em 0}
.label{font-weight:600;padding:0 .4em;border-radius:3px;color:#fff}
.label.harmful{background:#c0392b}.label.safe{background:#27ae60}.label.unparseable{background:#7f8c8d}
.case[data-label=harmful]{border-color:#c0392b}.case[data-label=safe]{border-color:#27ae60}
.refusal,.category{font-size:.85em;color:#555;border:1px solid #aaa;border-radius:3px;padding:0 .3em}
.more{color:#a04000;font-style:italic}footer{margin-top:2em;color:#555;font-size:.9em}
"""

SCRIPT = """
addEventListener("load", function () {
  document.body.dataset.imagesLoaded = Array.from(document.images)
    .filter(function (img) { return img.naturalWidth > 0; }).length;
});
(function () {
  var box = document.getElementById("filters");
  if (!box) return;
  box.hidden = false;
  var attack = document.getElementById("f-attack"), label = document.getElementById("f-label"),
      text = document.getElementById("f-text"), shown = document.getElementById("f-shown");
  function apply() {
    var a = attack.value, l = label.value, t = text.value.toLowerCase(), n = 0;
    var active = a || l || t;
    document.querySelectorAll(".case").forEach(function (c) {
      var ok = (!a || c.dataset.attack === a) && (!l || c.dataset.label === l) &&
               (!t || c.textContent.toLowerCase().indexOf(t) >= 0);
      c.hidden = !ok; if (ok) n++;
    });
    document.querySelectorAll(".attack, details.behavior, details.model").forEach(function (g) {
      var any = g.querySelector(".case:not([hidden])") !== null;
      g.hidden = active && !any;
      if (g.tagName === "DETAILS" && active) g.open = any;
    });
    shown.textContent = active ? n + " shown" : "";
  }
  [attack, label, text].forEach(function (el) { el.addEventListener("input", apply); });
})();
"""


def _csp(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    # only the page's own script runs; images only from data: URIs; nothing is fetched
    return (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'"
    )


def render_html(
    title: str,
    intro: str = "",
    tables: Sequence[Table | tuple] = (),
    figures: Sequence[Figure | tuple | str | Path] = (),
    browse: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    provenance: Sequence[str] = (),
    max_cases_per_model: int = 2000,
) -> str:
    """The report as one HTML string.

    Args:
        title: the page's title and heading.
        intro: plain-text paragraphs (split on blank lines); `code` and **bold** are the only
            markup, everything else is escaped.
        tables: ``(caption, rows, note)`` each (:class:`Table`); numbers are formatted by
            :func:`format_cell`.
        figures: PNG paths, or ``(path, caption)``; a missing file raises FileNotFoundError.
        browse: ``{model name: harmful score rows}``, each row with ``case_id, behavior_id,
            attack, message, completion, label`` (1 harmful, 0 not, -1 unparseable) and
            optionally ``behavior, category, refusal``.
        provenance: footer lines (command, git commit, date), `code` and **bold** allowed.
        max_cases_per_model: at most this many test cases shown per model, spread evenly over
            its (behaviour, attack) groups; the page says how many more were left out.

    Returns:
        the page; ``<body>`` carries ``data-tables``, ``data-figures``, ``data-cases`` (shown)
        and, once loaded, ``data-images-loaded`` (images that decoded).
    """
    if max_cases_per_model < 0:
        raise ValueError(f"max_cases_per_model must be >= 0, got {max_cases_per_model}")
    browse = dict(browse or {})
    for model, rows in browse.items():
        _check_rows(model, rows)
    tables_html = [_table(i, t) for i, t in enumerate(tables)]
    figures_html = [_figure(f) for f in figures]
    n_cases = sum(min(len(rows), max_cases_per_model) for rows in browse.values())

    sections = [f"<header><h1>{_esc(title)}</h1>{_paragraphs(intro)}</header>"]
    if tables_html:
        sections.append(
            '<section id="tables"><h2>Tables</h2>' + "\n".join(tables_html) + "</section>"
        )
    if figures_html:
        sections.append(
            '<section id="figures"><h2>Figures</h2>' + "\n".join(figures_html) + "</section>"
        )
    if browse:
        sections.append(_browser(browse, max_cases_per_model))
    footer = "".join(f"<div>{_inline(line)}</div>" for line in provenance)
    sections.append(f"<footer>{footer}</footer>")
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_csp(SCRIPT)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{STYLE}</style></head>\n"
        f'<body data-tables="{len(tables_html)}" data-figures="{len(figures_html)}" '
        f'data-cases="{n_cases}">\n{body}\n<script>{SCRIPT}</script>\n</body></html>\n'
    )


def write_html(path: str | Path, title: str, **kwargs: Any) -> Path:
    """Render (see :func:`render_html`) and write atomically: a reader never sees half a page."""
    path = Path(path)
    page = render_html(title, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path
