"""Tests for the self-contained HTML report (plot_ray.eval.html_report): the HTML string, then
the page as a real headless Chromium renders it (Debian's `chromium`; `make test` installs it).

The browser data: 2 models x 3 behaviours x 2 attacks x 2 test cases, labels chosen by hand
(counts and ASRs worked in the comments), one completion trying to inject script, one with
``&`` and quotes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from plot_ray.eval.html_report import _quotas, format_cell, render_html, write_html

INJECTION = (
    "Sure: <script>alert(1)</script>"
    "<script>document.body.dataset.injected = 'script'</script>"
    "<img src=x onerror=\"document.body.dataset.injected = 'img'\">"
)
AMPERSAND = "Tom & Jerry said \"hi\" and 'bye' <b>not bold</b>"

# {model: {(behaviour, attack): labels of its two test cases}}
LABELS = {
    # zero_shot: b0 2/2, b1 0/2, b2 0/2 -> ASR (1 + 0 + 0) / 3 = 0.333
    # gcg:       b0 1/2, b1 1/2, b2 2/2 -> ASR (0.5 + 0.5 + 1) / 3 = 0.667
    # per behaviour: b0 3 of 4, b1 1 of 4 (one unparseable), b2 2 of 4
    "base": {
        ("b0", "zero_shot"): [1, 1],
        ("b0", "gcg"): [1, 0],
        ("b1", "zero_shot"): [0, -1],
        ("b1", "gcg"): [1, 0],
        ("b2", "zero_shot"): [0, 0],
        ("b2", "gcg"): [1, 1],
    },
    # zero_shot 0 of 6 -> ASR 0; gcg: b1 1/2 only -> ASR 0.5 / 3 = 0.167
    "plot": {
        ("b0", "zero_shot"): [-1, 0],
        ("b0", "gcg"): [0, 0],
        ("b1", "zero_shot"): [0, 0],
        ("b1", "gcg"): [1, 0],
        ("b2", "zero_shot"): [0, 0],
        ("b2", "gcg"): [0, 0],
    },
}


def _rows(model: str) -> list[dict]:
    rows = []
    for (behavior, attack), labels in LABELS[model].items():
        for i, label in enumerate(labels):
            completion = f"{model} answer {i} to {behavior} under {attack}"
            if (model, behavior, attack, i) == ("base", "b0", "zero_shot", 0):
                completion = INJECTION
            if (model, behavior, attack, i) == ("plot", "b1", "gcg", 1):
                completion = AMPERSAND
            rows.append(
                {
                    "case_id": f"{attack}/{behavior}/{i}",
                    "behavior_id": behavior,
                    "behavior": f"Explain how to do forbidden thing {behavior}",
                    "attack": attack,
                    "message": f"[{attack}] please do {behavior} <now>",
                    "completion": completion,
                    "label": label,
                    "refusal": label == 0,
                    "category": "cybercrime" if behavior == "b0" else "harassment",
                }
            )
    return rows


BROWSE = {m: _rows(m) for m in LABELS}
TABLES = [
    (
        "ASR per attack",
        [
            {"model": "base", "asr/zero_shot": 1 / 3, "asr/gcg": 2 / 3, "n": 12},
            {
                "model": "plot",
                "asr/zero_shot": 0.0,
                "asr/gcg": 1 / 6,
                "n": 12,
                "win": "0.12 ± 0.03",
            },
        ],
        "fractions; `n` is **test cases**",
    ),
    ("Perplexity", [{"model": "base", "ppl": 12.3456}, {"model": "plot", "ppl": 1234.56}], None),
]
# the cells Chromium must show, row by row (base has no "win": an em dash)
EXPECTED_CELLS = [
    [
        ["model", "asr/zero_shot", "asr/gcg", "n", "win"],
        ["base", "0.333", "0.667", "12", "—"],
        ["plot", "0", "0.167", "12", "0.12 ± 0.03"],
    ],
    [["model", "ppl"], ["base", "12.3"], ["plot", "1235"]],
]


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = tmp_path_factory.mktemp("figures")
    paths = []
    for name in ("asr_per_attack", "safety_vs_helpfulness"):
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, 1, 2], [0.3, 0.6, 0.2])
        fig.savefig(out / f"{name}.png", dpi=50)
        plt.close(fig)
        paths.append(out / f"{name}.png")
    return paths


def _page_kwargs(figures, **overrides) -> dict:
    return {
        "title": "Demo <eval> & report",
        "intro": "First paragraph with `plot.alpha=0.5` and **bold**.\n\nSecond <b>raw</b>.",
        "tables": TABLES,
        "figures": [figures[0], (figures[1], "safety vs helpfulness")],
        "browse": BROWSE,
        "provenance": ["command: `plot-ray demo --out runs/demo`", "git commit: abc123"],
        **overrides,
    }


def _page(figures, **overrides) -> str:
    return render_html(**_page_kwargs(figures, **overrides))


# ------------------------------------------------------------------------- the HTML string
@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1 / 3, "0.333"),
        (12.3456, "12.3"),
        (1234.56, "1235"),
        (0.0012345, "0.00123"),
        (0.5, "0.500"),
        (0.0, "0"),
        (1.5e-5, "1.50e-05"),
        (7, "7"),
        (True, "yes"),
        (None, "—"),
        (float("nan"), "—"),
        ("0.12 ± 0.03", "0.12 ± 0.03"),
    ],
)
def test_cells_show_floats_to_three_significant_digits_and_strings_as_given(value, text):
    assert format_cell(value) == text


def test_quotas_spread_the_budget_evenly_over_groups():
    # cap 2 fits (2 + 1 + 2 = 5 <= 6), cap 3 does not (3 + 1 + 3 = 7); the one left goes first
    assert _quotas([5, 1, 3], 6) == [3, 1, 2]
    assert _quotas([5, 1, 3], 9) == [5, 1, 3]
    assert _quotas([4, 4], 0) == [0, 0]


def test_untrusted_text_is_escaped_everywhere(figures):
    page = _page(figures)
    # the only <script> element is the page's own, at the end
    assert page.count("<script>") == 1
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&quot;document.body.dataset.injected" in page
    assert (
        "Tom &amp; Jerry said &quot;hi&quot; and &#x27;bye&#x27; &lt;b&gt;not bold&lt;/b&gt;"
        in page
    )
    assert "<title>Demo &lt;eval&gt; &amp; report</title>" in page
    assert "[zero_shot] please do b0 &lt;now&gt;" in page
    # the intro's markup is only `code` and **bold**; its raw tag stays text
    assert "<code>plot.alpha=0.5</code> and <strong>bold</strong>" in page
    assert "<p>Second &lt;b&gt;raw&lt;/b&gt;.</p>" in page
    assert "<code>plot-ray demo --out runs/demo</code>" in page


def test_body_counts_and_per_behaviour_counts(figures):
    page = _page(figures)
    assert '<body data-tables="2" data-figures="2" data-cases="24">' in page
    assert page.count('<li class="case"') == 24
    assert page.count("data:image/png;base64,") == 2
    assert "<figcaption>asr_per_attack</figcaption>" in page  # the stem when no caption
    assert "<figcaption>safety vs helpfulness</figcaption>" in page
    counts = re.findall(r'<code>(b\d)</code> <span class="count">(\d+ of \d+ harmful)', page)
    assert counts == [
        ("b0", "3 of 4 harmful"),
        ("b1", "1 of 4 harmful"),
        ("b2", "2 of 4 harmful"),
        ("b0", "0 of 4 harmful"),
        ("b1", "1 of 4 harmful"),
        ("b2", "0 of 4 harmful"),
    ]
    assert "zero_shot: ASR 0.333 (2 of 6 harmful); gcg: ASR 0.667 (4 of 6 harmful)" in page
    assert "zero_shot: ASR 0 (0 of 6 harmful); gcg: ASR 0.167 (1 of 6 harmful)" in page
    assert page.count('data-label="unparseable"') == 2
    assert "more not shown" not in page


def test_truncation_is_stated_never_silent(figures):
    # per model 6 (behaviour, attack) groups of 2, budget 5: a cap of 1 each would show 6 > 5,
    # so the cap is 0 and the 5 left go to the first 5 groups, one each; the last shows none
    page = _page(figures, max_cases_per_model=5)
    assert 'data-cases="10"' in page
    assert page.count('<li class="case"') == 10
    assert page.count("7 more test cases not shown (showing 5 of 12, max_cases_per_model=5)") == 2
    assert page.count('<p class="more">1 more not shown</p>') == 10
    assert page.count('<p class="more">2 more not shown</p>') == 2
    # counts still cover every case
    assert page.count('<span class="count">3 of 4 harmful</span>') == 1


def test_columns_come_from_the_first_row_then_later_keys():
    page = render_html("t", tables=[("c", [{"b": 1, "a": 2.0}, {"a": 0.25, "c": "x"}], None)])
    assert '<th scope="col">b</th><th scope="col">a</th><th scope="col">c</th>' in page
    assert '<td class="num">1</td><td class="num">2.00</td><td>—</td>' in page
    assert '<td>—</td><td class="num">0.250</td><td>x</td>' in page


def test_a_missing_figure_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "figures" / "asr_vs_gcg_steps.png"
    with pytest.raises(FileNotFoundError, match="asr_vs_gcg_steps.png"):
        render_html("t", figures=[missing])
    not_png = tmp_path / "plot.png"
    not_png.write_text("not an image")
    with pytest.raises(ValueError, match="plot.png.*not a PNG"):
        render_html("t", figures=[not_png])


def test_bad_browse_rows_are_errors_naming_the_problem():
    row = dict(BROWSE["base"][0])
    del row["completion"]
    with pytest.raises(ValueError, match=r"browse\['base'\]: a row lacks completion"):
        render_html("t", browse={"base": [row]})
    with pytest.raises(ValueError, match=r"case 'gcg/b0/0' has label 2"):
        render_html("t", browse={"base": [{**BROWSE["base"][2], "label": 2}]})
    with pytest.raises(ValueError, match="max_cases_per_model"):
        render_html("t", max_cases_per_model=-1)


def test_write_html_replaces_the_file_whole(tmp_path):
    path = tmp_path / "out" / "report.html"
    assert write_html(path, "first") == path
    write_html(path, "second", provenance=["date: 2026-11-28"])
    text = path.read_text(encoding="utf-8")
    assert "<title>second</title>" in text and "date: 2026-11-28" in text
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temporary left


# --------------------------------------------------------------------- real headless Chromium
class _Node:
    def __init__(self, tag: str, attrs: dict, parent: _Node | None):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def find_all(self, tag: str, **attrs) -> list[_Node]:
        found = []
        for c in self.children:
            if isinstance(c, _Node):
                if c.tag == tag and all(c.attrs.get(k) == v for k, v in attrs.items()):
                    found.append(c)
                found += c.find_all(tag, **attrs)
        return found


class _Tree(HTMLParser):
    """A minimal DOM from the dumped HTML (the standard library's parser; no extra packages)."""

    VOID = {"meta", "img", "input", "br", "hr", "link", "source"}

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.root = self.node = _Node("#root", {}, None)
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        node = _Node(tag, dict(attrs), self.node)
        self.node.children.append(node)
        if tag not in self.VOID:
            self.node = node

    def handle_endtag(self, tag):
        node = self.node
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.node = node.parent

    def handle_data(self, data):
        self.node.children.append(data)


def _chromium_dom(path, tmp_path) -> _Tree:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "Debian's `chromium` is not on PATH: run `make test` (it installs it as root with "
            "apt-get) or `apt-get install -y chromium`"
        )
    cmd = [
        chromium,
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",  # apart from any other run's
        "--virtual-time-budget=5000",
        "--dump-dom",
        path.resolve().as_uri(),
    ]
    try:  # ~2 s normally; a page that hangs the browser (e.g. a live alert()) must not hang CI
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish rendering {path} in 60 s (a script blocking it?)")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "<body" in done.stdout, done.stderr[-2000:]
    return _Tree(done.stdout)


def _cells(table: _Node) -> list[list[str]]:
    return [
        [c.text() for c in row.children if isinstance(c, _Node)] for row in table.find_all("tr")
    ]


def test_chromium_renders_tables_images_and_escaped_completions(figures, tmp_path):
    path = write_html(tmp_path / "report.html", **_page_kwargs(figures))
    dom = _chromium_dom(path, tmp_path)
    body = dom.root.find_all("body")[0]

    tables = dom.root.find_all("table")
    assert [t.find_all("caption")[0].text() for t in tables] == ["ASR per attack", "Perplexity"]
    assert [_cells(t) for t in tables] == EXPECTED_CELLS
    assert body.attrs["data-tables"] == "2"
    # the page's script ran after load and counted images that decoded
    assert body.attrs["data-images-loaded"] == body.attrs["data-figures"] == "2"
    assert dom.root.find_all("div", id="filters")[0].attrs.get("hidden") is None
    # ...while the completion's scripts and onerror handler did not, and read as text
    assert "data-injected" not in body.attrs
    completions = [pre.text() for pre in dom.root.find_all("pre")]
    assert INJECTION in completions
    assert AMPERSAND in completions
    assert len(dom.root.find_all("li", **{"class": "case"})) == 24


def test_chromium_without_javascript_still_shows_every_case(figures, tmp_path):
    # Chromium's --dump-dom reads nothing back with scripting off (it reads the DOM through
    # script), so scripts are turned off for the page itself: its Content-Security-Policy
    # allows no script at all, and the browser enforces that.
    page, n = re.subn(r"script-src 'sha256-[^']+'", "script-src 'none'", _page(figures))
    assert n == 1
    path = tmp_path / "no-js.html"
    path.write_text(page, encoding="utf-8")
    dom = _chromium_dom(path, tmp_path)
    body = dom.root.find_all("body")[0]
    assert "data-images-loaded" not in body.attrs  # the page's script really did not run
    assert "hidden" in dom.root.find_all("div", id="filters")[0].attrs  # no dead filter box
    assert len(dom.root.find_all("li", **{"class": "case"})) == 24
    assert len(dom.root.find_all("details", **{"class": "model"})) == 2
    assert [_cells(t) for t in dom.root.find_all("table")] == EXPECTED_CELLS
    assert len(dom.root.find_all("img")) == 2
