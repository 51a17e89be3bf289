"""`harness view`: one self-contained HTML page to read what a model did in a run (or two runs side by side).

The run folder is read with harness.store (`read_run`, so an unfinished run shows what is done and a damaged
folder is one error line). Every record goes into the page as JSON inside `<script type="application/json">`
with `<`, `>` and `&` written as \\u escapes, so no model text can close the script; the inline JavaScript puts
text into the DOM with `textContent` only (never innerHTML), so a `<script>` in a response renders as text.
Rows are rendered a page at a time (PAGE_SIZE), so a 900-sample run stays quick to open.

On load the script writes `<body data-ready=1 data-samples=N data-mode=run|compare>`, which the
headless-Chromium test reads back.
"""
from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from harness import store
from harness.contract import RunHeader, SampleRecord, Summary
from harness.errors import HarnessError

PAGE_SIZE = 50


def _json_for_script(data: Any) -> str:
    # the characters that could end the <script> element or start a comment are written as JSON escapes
    text = json.dumps(data, ensure_ascii=False, default=str)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def load_run(run_dir: Path) -> tuple[RunHeader, list[SampleRecord], Summary | None]:
    """Header, records (index order) and the summary when there is one (an unfinished run has none)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HarnessError(f"{run_dir}: not a folder; give a run folder written by `harness run`.")
    header, records = store.read_run(run_dir)
    summary = store.read_summary(run_dir) if (run_dir / store.SUMMARY).exists() else None
    return header, sorted(records, key=lambda r: r.index), summary


def _sample(record: SampleRecord) -> dict[str, Any]:
    data = record.model_dump(mode="json")
    data["empty"] = not record.output.strip() and record.dialogue is None
    return data


def _run_data(run_dir: Path) -> dict[str, Any]:
    header, records, summary = load_run(run_dir)
    return {"dir": str(run_dir), "header": header.model_dump(mode="json", exclude={"packages", "writers", "data"}),
            "summary": summary.model_dump(mode="json") if summary else None, "samples": [_sample(r) for r in records]}


CSS = """
:root { --ink:#1d2733; --muted:#5f6b7a; --line:#d9dee5; --bad:#fde2e1; --warn:#fff3c4; --a:#eef4fb; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; color: var(--ink); margin: 0 auto;
       padding: 18px 24px 60px; max-width: 1500px; }
h1 { font-size: 21px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 0; }
.muted { color: var(--muted); } code { background:#f2f4f7; padding:0 3px; border-radius:3px; }
table.m { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 6px 0; }
table.m th, table.m td { padding: 2px 8px; border-bottom: 1px solid var(--line); text-align: right; vertical-align: top; }
table.m th:first-child, table.m td:first-child { text-align: left; }
#controls { position: sticky; top: 0; background: white; padding: 8px 0; border-bottom: 2px solid var(--line); z-index: 2; }
#controls input, #controls select, #controls button { font: inherit; margin-right: 8px; }
.sample { border: 1px solid var(--line); border-radius: 6px; margin: 10px 0; padding: 8px 12px; }
.sample.bad { border-left: 6px solid #d9534f; } .sample.empty { border-left: 6px solid #e0a800; }
.tag { font-size: 11px; border-radius: 3px; padding: 0 4px; margin-left: 6px; }
.tag.bad { background: var(--bad); } .tag.empty { background: var(--warn); }
.field { margin: 4px 0; } .field > b { display: inline-block; min-width: 90px; color: var(--muted); font-weight: 600; }
.text { white-space: pre-wrap; }
.turn { margin: 2px 0 2px 12px; white-space: pre-wrap; } .turn .who { font-weight: 600; margin-right: 6px; }
.turn.supporter { color: #1b4f8a; } .details { font-size: 12px; color: var(--muted); margin-left: 12px; }
.scores span { display: inline-block; margin-right: 12px; font-variant-numeric: tabular-nums; }
.aspects span { margin-right: 10px; } .yes { color: #1e7b34; } .no { color: #a33; }
pre.raw { white-space: pre-wrap; background: #f7f8fa; margin: 2px 0; padding: 4px; font-size: 12px; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; } .cols > div { background: var(--a); padding: 4px 8px; border-radius: 4px; }
.diffpos { color: #1e7b34; } .diffneg { color: #a33; }
#pager { margin: 10px 0; }
"""

SCRIPT = r"""
(function () {
  var DATA = JSON.parse(document.getElementById('view-data').textContent);
  var PAGE = DATA.page_size, page = 0, shown = [];
  function el(tag, cls, text) { var e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined && text !== null) e.textContent = String(text); return e; }
  function fmt(v) { return (typeof v === 'number') ? (Math.round(v * 100) / 100).toString() : (v === null || v === undefined ? '--' : String(v)); }
  function field(parent, label, text, cls) { var f = el('div', 'field'); f.appendChild(el('b', null, label)); f.appendChild(el('span', cls || 'text', text)); parent.appendChild(f); return f; }

  function header(run, where) {
    var h = run.header, box = el('div', 'run');
    box.appendChild(el('h1', null, h.task + ' \u00b7 ' + h.model + ' \u00b7 ' + h.split));
    box.appendChild(el('div', 'muted', 'run ' + h.run_id + ' \u00b7 status ' + h.status + (h.error ? ' (' + h.error + ')' : '') + ' \u00b7 '
      + run.samples.length + ' of ' + h.n_samples + ' samples \u00b7 started ' + h.started_at + (h.finished_at ? ', finished ' + h.finished_at : '')));
    var args = {task_args: h.task_args, model_args: h.model_args};
    if (h.roles && Object.keys(h.roles).length) { var roles = {}; Object.keys(h.roles).forEach(function (r) { roles[r] = h.roles[r].model + ' ' + JSON.stringify(h.roles[r].model_args); }); args.roles = roles; }
    box.appendChild(el('div', 'muted', JSON.stringify(args)));
    var s = run.summary;
    if (s) {
      var t = el('table', 'm'), tr = el('tr'); ['metric', 'value', '95% interval', 'missing'].forEach(function (x) { tr.appendChild(el('th', null, x)); }); t.appendChild(tr);
      Object.keys(s.metrics).forEach(function (m) {
        var r = el('tr'), ci = s.intervals[m]; r.appendChild(el('td', null, m)); r.appendChild(el('td', null, fmt(s.metrics[m])));
        r.appendChild(el('td', null, ci ? '[' + fmt(ci[0]) + ', ' + fmt(ci[1]) + ']' : '')); r.appendChild(el('td', null, s.missing[m] || '')); t.appendChild(r);
      });
      box.appendChild(t);
      box.appendChild(el('div', 'muted', 'format errors ' + s.format_errors + ' \u00b7 empty outputs ' + s.empty_outputs));
    } else { box.appendChild(el('div', 'muted', 'no summary.json yet (the run is not finished): showing the samples done so far')); }
    where.appendChild(box);
  }

  function trajectory(values) {
    var NS = 'http://www.w3.org/2000/svg', w = 320, hgt = 110, pad = 22;
    var svg = document.createElementNS(NS, 'svg'); svg.setAttribute('width', w); svg.setAttribute('height', hgt); svg.setAttribute('class', 'trajectory');
    function y(v) { return hgt - pad - (v / 100) * (hgt - 2 * pad); }
    function x(i) { return pad + (values.length > 1 ? i * (w - 2 * pad) / (values.length - 1) : 0); }
    [0, 50, 100].forEach(function (v) { var l = document.createElementNS(NS, 'line'); l.setAttribute('x1', pad); l.setAttribute('x2', w - pad); l.setAttribute('y1', y(v)); l.setAttribute('y2', y(v)); l.setAttribute('stroke', '#d9dee5'); svg.appendChild(l);
      var t = document.createElementNS(NS, 'text'); t.setAttribute('x', 2); t.setAttribute('y', y(v) + 4); t.setAttribute('font-size', '10'); t.textContent = String(v); svg.appendChild(t); });
    var p = document.createElementNS(NS, 'polyline'); p.setAttribute('fill', 'none'); p.setAttribute('stroke', '#1b4f8a'); p.setAttribute('stroke-width', '2');
    p.setAttribute('points', values.map(function (v, i) { return x(i) + ',' + y(v); }).join(' ')); svg.appendChild(p);
    values.forEach(function (v, i) { var c = document.createElementNS(NS, 'circle'); c.setAttribute('cx', x(i)); c.setAttribute('cy', y(v)); c.setAttribute('r', 3); c.setAttribute('fill', '#1b4f8a');
      var t = document.createElementNS(NS, 'title'); t.textContent = 'turn ' + i + ': ' + v; c.appendChild(t); svg.appendChild(c); });
    return svg;
  }

  function judges(parent, outcome, label) {
    Object.keys(outcome).forEach(function (k) {
      if ((outcome[k + '_raw'] || outcome[k + '_panel']) && outcome[k] && typeof outcome[k] === 'object') {
        var raws = outcome[k + '_raw'] || {};
        var t = el('table', 'm judge'), tr = el('tr'); [label + k + (outcome[k + '_panel'] ? ' (panel mean)' : ''), 'value', 'raw answer'].forEach(function (x) { tr.appendChild(el('th', null, x)); }); t.appendChild(tr);
        Object.keys(outcome[k]).forEach(function (a) { var r = el('tr'); r.appendChild(el('td', null, a)); r.appendChild(el('td', null, fmt(outcome[k][a])));
          var raw = el('td'); if (a in raws) raw.appendChild(el('pre', 'raw', raws[a])); r.appendChild(raw); t.appendChild(r); });
        parent.appendChild(t);
      }
      if (/_panel$/.test(k) && outcome[k] && typeof outcome[k] === 'object') {
        Object.keys(outcome[k]).forEach(function (role) { judges(parent, outcome[k][role], role + ': '); });
      }
    });
  }

  function sampleBody(s) {
    var box = el('div');
    if (s.history && s.history.length) { var f = field(box, 'history', ''); s.history.forEach(function (t) { var d = el('div', 'turn'); d.appendChild(el('span', 'who', t.speaker + ':')); d.appendChild(document.createTextNode(t.text)); f.appendChild(d); }); }
    if (s.dialogue) {
      var g = field(box, 'dialogue', '');
      s.dialogue.forEach(function (t, i) { var d = el('div', 'turn ' + t.role); d.appendChild(el('span', 'who', i + ' ' + t.role + ':')); d.appendChild(document.createTextNode(t.text)); g.appendChild(d);
        if (t.details && Object.keys(t.details).length) g.appendChild(el('div', 'details', JSON.stringify(t.details))); });
      var traj = s.outcome && s.outcome.trajectory;
      if (Array.isArray(traj) && traj.length) { var tf = field(box, 'emotion', ''); tf.appendChild(trajectory(traj)); }
    }
    if (s.reference) field(box, 'reference', s.reference);
    if (!s.dialogue) field(box, 'response', s.response);
    if (s.output !== s.response) field(box, 'raw output', s.output);
    if (s.thinking !== null && s.thinking !== undefined) field(box, 'thinking', s.thinking);
    var asp = s.parse_details && s.parse_details.aspects;
    if (asp) { var af = field(box, 'aspects', '', 'aspects'); Object.keys(asp).forEach(function (a) { af.lastChild.appendChild(el('span', asp[a] ? 'yes' : 'no', (asp[a] ? '\u2713 ' : '\u2717 ') + a)); });
      var extra = {}; Object.keys(s.parse_details).forEach(function (k) { if (k !== 'aspects') extra[k] = s.parse_details[k]; }); af.appendChild(el('span', 'details', JSON.stringify(extra))); }
    else if (s.parse_details && Object.keys(s.parse_details).length) field(box, 'parse', JSON.stringify(s.parse_details));
    if (s.outcome && Object.keys(s.outcome).length) {
      judges(box, s.outcome, '');
      var rest = {}; Object.keys(s.outcome).forEach(function (k) { if (!/(_raw|_panel)$/.test(k) && !s.outcome[k + '_raw'] && !s.outcome[k + '_panel'] && k !== 'trajectory') rest[k] = s.outcome[k]; });
      if (Object.keys(rest).length) field(box, 'outcome', JSON.stringify(rest));
    }
    return box;
  }

  function scoresLine(scores) { var d = el('div', 'scores'); Object.keys(scores).forEach(function (k) { d.appendChild(el('span', null, k + ' ' + fmt(scores[k]))); }); return d; }

  function sampleCard(s, other) {
    var card = el('div', 'sample' + (s.format_ok ? '' : ' bad') + (s.empty ? ' empty' : '')); card.setAttribute('data-id', s.id);
    var h = el('h2', null, '#' + s.index + ' ' + s.id); if (!s.format_ok) h.appendChild(el('span', 'tag bad', 'format error')); if (s.empty) h.appendChild(el('span', 'tag empty', 'empty output'));
    card.appendChild(h);
    if (!other) { card.appendChild(scoresLine(s.scores)); card.appendChild(sampleBody(s)); return card; }
    var diffs = el('div', 'scores'); Object.keys(s.scores).forEach(function (k) { if (k in other.scores) { var d = s.scores[k] - other.scores[k];
      diffs.appendChild(el('span', d > 0 ? 'diffpos' : d < 0 ? 'diffneg' : '', k + ' A\u2212B ' + (d > 0 ? '+' : '') + fmt(d))); } });
    card.appendChild(diffs);
    var cols = el('div', 'cols'), a = el('div'), b = el('div');
    a.appendChild(el('b', null, 'A')); a.appendChild(scoresLine(s.scores)); a.appendChild(sampleBody(s));
    b.appendChild(el('b', null, 'B')); b.appendChild(scoresLine(other.scores)); b.appendChild(sampleBody(other));
    cols.appendChild(a); cols.appendChild(b); card.appendChild(cols); return card;
  }

  var A = DATA.runs[0], B = DATA.runs[1] || null, byId = {};
  if (B) B.samples.forEach(function (s) { byId[s.id] = s; });
  var samples = B ? A.samples.filter(function (s) { return s.id in byId; }) : A.samples;
  var keys = {}; samples.forEach(function (s) { Object.keys(s.scores).forEach(function (k) { keys[k] = 1; }); });
  var top = document.getElementById('top'); header(A, top); if (B) { top.appendChild(el('h2', null, 'compared with (B):')); header(B, top);
    top.appendChild(el('div', 'muted', samples.length + ' shared samples (matched by id)')); }
  var sortSel = document.getElementById('sort');
  Object.keys(keys).forEach(function (k) { [[k, k]].concat(B ? [['diff:' + k, k + ' A\u2212B']] : []).forEach(function (o) { var op = el('option', null, o[1]); op.value = o[0]; sortSel.appendChild(op); }); });
  function value(s, key) { if (key === 'index') return s.index; if (key.indexOf('diff:') === 0) { var k = key.slice(5), o = byId[s.id]; return (k in s.scores && o && k in o.scores) ? s.scores[k] - o.scores[k] : null; } return key in s.scores ? s.scores[key] : null; }
  function text(s) { return JSON.stringify([s.id, s.history, s.reference, s.response, s.output, s.thinking, s.dialogue, s.outcome]).toLowerCase(); }
  function apply() {
    var q = document.getElementById('q').value.toLowerCase(), bad = document.getElementById('bad').checked, empty = document.getElementById('empty').checked;
    var key = sortSel.value, desc = document.getElementById('desc').checked;
    shown = samples.filter(function (s) { var o = byId[s.id];
      if (bad && s.format_ok && !(o && !o.format_ok)) return false; if (empty && !s.empty && !(o && o.empty)) return false;
      return !q || text(s).indexOf(q) >= 0 || (o && text(o).indexOf(q) >= 0); });
    shown.sort(function (x, y) { var a = value(x, key), b = value(y, key); if (a === null) return b === null ? x.index - y.index : 1; if (b === null) return -1; return desc ? b - a : a - b; });
    page = 0; render();
  }
  function render() {
    var list = document.getElementById('samples'); list.textContent = '';
    shown.slice(page * PAGE, (page + 1) * PAGE).forEach(function (s) { list.appendChild(sampleCard(s, B ? byId[s.id] : null)); });
    var pages = Math.max(1, Math.ceil(shown.length / PAGE));
    document.getElementById('where').textContent = shown.length + ' of ' + samples.length + ' samples \u00b7 page ' + (page + 1) + ' of ' + pages;
    document.getElementById('prev').disabled = page === 0; document.getElementById('next').disabled = page + 1 >= pages;
  }
  ['q', 'bad', 'empty', 'sort', 'desc'].forEach(function (id) { document.getElementById(id).addEventListener(id === 'q' ? 'input' : 'change', apply); });
  document.getElementById('prev').addEventListener('click', function () { page -= 1; render(); window.scrollTo(0, 0); });
  document.getElementById('next').addEventListener('click', function () { page += 1; render(); window.scrollTo(0, 0); });
  document.getElementById('all').addEventListener('click', function () { PAGE = Math.max(1, shown.length); page = 0; render(); });
  apply();
  document.body.setAttribute('data-samples', String(samples.length));
  document.body.setAttribute('data-mode', B ? 'compare' : 'run');
  document.body.setAttribute('data-ready', '1');
})();
"""


def render(run_dir: Path, compare: Path | None = None) -> str:
    """The page of one run, or of run `run_dir` (A) beside `compare` (B) on their shared samples."""
    runs = [_run_data(Path(run_dir))] + ([_run_data(Path(compare))] if compare is not None else [])
    title = f"{runs[0]['header']['task']} / {runs[0]['header']['model']}" + (f" vs {runs[1]['header']['model']}" if compare is not None else "")
    data = {"runs": runs, "page_size": PAGE_SIZE}
    return "\n".join([
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">', '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        '<div id="top"></div>',
        '<div id="controls"><input id="q" type="search" placeholder="search text" size="28">'
        '<label><input id="bad" type="checkbox">only format errors</label> <label><input id="empty" type="checkbox">only empty outputs</label> '
        'sort by <select id="sort"><option value="index">index</option></select><label><input id="desc" type="checkbox">descending</label> '
        '<button id="prev">&larr; prev</button><button id="next">next &rarr;</button><button id="all">show all</button> <span id="where" class="muted"></span></div>',
        '<div id="samples"></div>',
        f'<script type="application/json" id="view-data">{_json_for_script(data)}</script>',
        f"<script>{SCRIPT}</script></body></html>",
    ]) + "\n"
