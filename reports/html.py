"""The leaderboard as one self-contained static HTML page: inline CSS, figures as base64 PNG, a few lines
of inline JavaScript (sort a table by clicking a column header); no CDN, no external request. The measured
rows and each published source's rows are a `<tbody>` of their own (a source's opens with a row naming
it), and sorting reorders the rows inside each, so the groups stay.

On load the script writes what rendered into `<body data-tables=N data-figures=M data-ready=1>` (tables,
figures whose image decoded), which the headless-Chromium test reads back.
"""
from __future__ import annotations

import base64
import datetime as _dt
from html import escape
from pathlib import Path
from typing import Any, Sequence

from .leaderboard import DAGGER, Row, Table, cell_numbers, describe_variants, footnotes, row_groups, source_heading

CSS = """
:root { --ink:#1d2733; --muted:#5f6b7a; --line:#d9dee5; --measured:#eef4fb; --best:#fff3c4; --ref:#fbeaea; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--ink);
       margin: 0 auto; padding: 24px 28px 60px; max-width: 1500px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 36px 0 8px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 22px 0 6px; }
.meta, .notes, figcaption, .muted { color: var(--muted); }
nav a { margin-right: 14px; }
.scroll { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
table.lb { border-collapse: collapse; font-variant-numeric: tabular-nums; min-width: 100%; }
table.lb th, table.lb td { padding: 4px 9px; border-bottom: 1px solid var(--line); white-space: nowrap; text-align: right; vertical-align: top; }
table.lb th { background: #f5f7fa; position: sticky; top: 0; cursor: pointer; user-select: none; font-weight: 600; }
table.lb th.sorted-asc::after { content: " \\25B4"; } table.lb th.sorted-desc::after { content: " \\25BE"; }
table.lb td.label, table.lb th.label, table.lb td.source, table.lb th.source { text-align: left; }
table.lb tr.measured td { background: var(--measured); }
table.lb tr.reference td { background: var(--ref); }
table.lb tr.published td.label::after { content: " published"; font-size: 10px; color: var(--muted); border: 1px solid var(--line);
       border-radius: 3px; padding: 0 3px; margin-left: 5px; }
table.lb td.best { background: var(--best) !important; }
table.lb td .ci { display: block; font-size: 11px; color: var(--muted); }
table.lb td .sig { color: #b03030; font-weight: 700; margin-left: 2px; }
table.lb td.none { color: #b7bec8; }
table.lb tr.group td { text-align: left; font-weight: 600; font-style: italic; background: #f5f7fa; border-top: 2px solid var(--line); }
ul.notes { font-size: 12.5px; padding-left: 18px; } ul.notes li { margin: 2px 0; }
figure { margin: 18px 0; } figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; background: white; }
figcaption { font-size: 12.5px; margin-top: 4px; }
code { background: #f2f4f7; padding: 0 3px; border-radius: 3px; }
"""

SCRIPT = """
(function () {
  function sortBody(body, index, descending) {  // a group's heading row stays first
    var rows = Array.prototype.filter.call(body.rows, function (r) { return !r.classList.contains('group'); });
    rows.sort(function (a, b) {
      var x = a.cells[index].getAttribute('data-value'), y = b.cells[index].getAttribute('data-value');
      if (x === null || x === '') return 1;
      if (y === null || y === '') return -1;
      var nx = parseFloat(x), ny = parseFloat(y);
      var order = (isNaN(nx) || isNaN(ny)) ? String(x).localeCompare(String(y)) : nx - ny;
      return descending ? -order : order;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  function sortBy(th) {
    var table = th.closest('table'), index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var descending = !th.classList.contains('sorted-desc');
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.classList.remove('sorted-asc', 'sorted-desc'); });
    th.classList.add(descending ? 'sorted-desc' : 'sorted-asc');
    Array.prototype.forEach.call(table.tBodies, function (body) { sortBody(body, index, descending); });
  }
  document.querySelectorAll('table.lb thead th').forEach(function (th) { th.addEventListener('click', function () { sortBy(th); }); });
  window.addEventListener('load', function () {
    var images = document.querySelectorAll('figure img'), decoded = 0;
    images.forEach(function (img) { if (img.complete && img.naturalWidth > 0) decoded += 1; });
    document.body.setAttribute('data-tables', String(document.querySelectorAll('table.lb').length));
    document.body.setAttribute('data-figures', String(decoded));
    document.body.setAttribute('data-ready', '1');
  });
})();
"""


def _table_html(table: Table) -> str:
    head = ['<th class="label">model</th>', '<th class="source">source</th>', "<th>n</th>"]
    for column in table.columns:
        head.append(f'<th title="{escape(describe_variants(column.variants))}">{escape(column.label)} {column.arrow}</th>')
    bodies = []
    for origin, rows in row_groups(table):
        body = [] if origin is None else [f'<tr class="group"><td colspan="{3 + len(table.columns)}">{escape(source_heading(origin))}</td></tr>']
        body.extend(_row_html(table, row) for row in rows)
        bodies.append("<tbody>" + "".join(body) + "</tbody>")
    return (f'<div class="scroll"><table class="lb" id="table-{escape(table.name)}" data-task="{escape(table.task)}" data-split="{escape(table.split)}">'
            f"<thead><tr>{''.join(head)}</tr></thead>{''.join(bodies)}</table></div>")


def _row_html(table: Table, row: Row) -> str:
    classes = [row.kind] + (["reference"] if row.reference else [])
    title = escape(" ".join(x for x in (row.group, row.note) if x))
    label = escape(row.label) + (" <em>(reference)</em>" if row.reference else "")
    cells = [f'<td class="label" data-value="{escape(row.label)}" title="{title}">{label}</td>',
             f'<td class="source" data-value="{escape(row.source)}">{escape(row.source)}</td>',
             f'<td data-value="{"" if row.n is None else row.n}">{"" if row.n is None else row.n}</td>']
    for column in table.columns:
        cell = row.cells.get(column.key)
        if cell is None:
            cells.append('<td class="none" data-value="">--</td>')
            continue
        value, interval = cell_numbers(column, cell)
        inner = f"<strong>{value}</strong>" if cell.best else value
        if cell.significant:
            inner += f'<span class="sig">{DAGGER}</span>'
        if interval:
            inner += f'<span class="ci">{interval}</span>'
        hover = f' title="p = {cell.p_value:.4f} against the reference"' if cell.p_value is not None else ""
        cells.append(f'<td class="num{" best" if cell.best else ""}" data-value="{cell.value!r}"{hover}>{inner}</td>')
    return f'<tr class="{" ".join(classes)}">' + "".join(cells) + "</tr>"


def _figure_html(figure: Any) -> str:
    png = figure.files.get("png")
    if png is None:
        return ""
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    links = " ".join(f"<code>{escape(Path(p).name)}</code>" for p in figure.files.values())
    return (f'<figure id="figure-{escape(figure.name)}"><h3>{escape(figure.title)}</h3>'
            f'<img alt="{escape(figure.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(figure.caption)} Files: {links}.</figcaption></figure>")


def shown_folder(folder: Path) -> str:
    """The runs folder as the page names it: relative to the current directory (as typed when relative), so
    a page built inside a checkout names no path of the machine; a folder outside it keeps its absolute path."""
    folder = Path(folder)
    if not folder.is_absolute():
        return str(folder)
    for base, path in ((Path.cwd(), folder), (Path.cwd().resolve(), folder.resolve())):  # as typed, then through links
        try:
            return str(path.relative_to(base)) or "."
        except ValueError:
            continue
    return str(folder)


def render_page(tables: Sequence[Table], figures: Sequence[Any] = (), runs_root: Path | None = None, title: str = "ESC harness leaderboard") -> str:
    measured = sum(len(t.measured) for t in tables)
    published = sum(len(t.rows) - len(t.measured) for t in tables)
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">', '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{escape(title)}</h1>",
        f'<p class="meta">Generated {generated} by <code>harness leaderboard</code>'
        + (f" from <code>{escape(shown_folder(runs_root))}</code>" if runs_root else "")
        + f": {measured} measured row(s), {published} published row(s), {len(figures)} figure(s). Measured rows are shaded; "
        "published rows carry the numbers as printed in their source. Click a column header to sort.</p>",
        "<nav>" + "".join(f'<a href="#section-{escape(t.name)}">{escape(t.task)} ({escape(t.split)})</a>' for t in tables) + "</nav></header>",
    ]
    for table in tables:
        parts.append(f'<section id="section-{escape(table.name)}"><h2>{escape(table.task)} ({escape(table.split)})</h2>')
        parts.append(_table_html(table))
        parts.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in footnotes(table)) + "</ul>")
        parts.extend(_figure_html(f) for f in figures if f.table == table.name)
        parts.append("</section>")
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"
