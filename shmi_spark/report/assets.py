"""The report's stylesheet and script, written inline into every page (no network, no CDN).

The script filters the trust table by period, text (a trust code or part of a
name), region, peer group and banding, and sorts it by any column from a
button in its header (keyboard: Tab to the button, Enter or Space), setting
``aria-sort`` so that a screen reader announces the order.
"""

from __future__ import annotations

__all__ = ["STYLE", "SCRIPT"]

STYLE = """
:root { --fg: #1b1b1b; --muted: #505a5f; --line: #b1b4b6; --bg-alt: #f3f2f1; --focus: #ffdd00;
        --higher: #b03000; --lower: #005a9c; }
* { box-sizing: border-box; }
body { font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Arial, sans-serif; color: var(--fg);
       margin: 0 auto; max-width: 1280px; padding: 0 1rem 3rem; }
header { border-bottom: 4px solid #005eb8; margin-bottom: 1rem; padding: .75rem 0; }
h1 { font-size: 1.8rem; margin: .2rem 0; } h2 { font-size: 1.4rem; margin-top: 2rem; }
h3 { font-size: 1.15rem; margin-top: 1.5rem; }
nav a { margin-right: 1rem; }
a { color: #005eb8; } a:focus, button:focus, select:focus, input:focus { outline: 3px solid var(--focus);
  outline-offset: 0; box-shadow: 0 0 0 5px var(--fg); }
.muted, figcaption { color: var(--muted); }
.note { background: var(--bg-alt); border-left: 5px solid #005eb8; padding: .5rem .75rem; }
dl.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr)); gap: .5rem 1rem; }
dl.facts div { background: var(--bg-alt); padding: .4rem .6rem; }
dl.facts dt { font-size: .85rem; color: var(--muted); } dl.facts dd { margin: 0; font-size: 1.25rem; font-weight: 600; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
.controls { display: flex; flex-wrap: wrap; gap: .75rem 1.25rem; align-items: end; margin: 1rem 0; }
.controls label { display: flex; flex-direction: column; font-size: .9rem; font-weight: 600; }
.controls input, .controls select { font: inherit; padding: .3rem .4rem; min-width: 11rem; }
table { border-collapse: collapse; width: 100%; font-size: .92rem; }
caption { text-align: left; font-weight: 600; padding: .4rem 0; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .45rem; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
thead th { background: var(--bg-alt); position: sticky; top: 0; }
th button { font: inherit; font-weight: 600; background: none; border: 0; padding: 0; cursor: pointer;
            color: inherit; text-align: inherit; }
th button::after { content: " \\2195"; color: var(--muted); }
th[aria-sort="ascending"] button::after { content: " \\2191"; }
th[aria-sort="descending"] button::after { content: " \\2193"; }
.band { white-space: nowrap; font-weight: 600; }
.band-1 { color: var(--higher); } .band-3 { color: var(--lower); } .band-2, .band-0 { color: var(--muted); }
.scroll { overflow-x: auto; }
tr.largest td { font-weight: 600; background: var(--bg-alt); }
table.hsmr-counts { width: auto; } table.hsmr-counts td { min-width: 6rem; }
"""

SCRIPT = """
(function () {
  "use strict";
  var $ = function (s, r) { return (r || document).querySelector(s); };
  var $$ = function (s, r) { return Array.prototype.slice.call((r || document).querySelectorAll(s)); };
  function apply() {
    var period = $("#period") ? $("#period").value : null;
    var text = ($("#trust-search") || {value: ""}).value.trim().toLowerCase();
    var region = ($("#region") || {value: ""}).value, peer = ($("#peer") || {value: ""}).value;
    var band = ($("#band") || {value: ""}).value;
    $$("section.period").forEach(function (s) { s.hidden = period !== null && s.dataset.period !== period; });
    $$("section.period").forEach(function (s) {
      if (s.hidden) { return; }
      var shown = 0;
      $$("table.trusts tbody tr", s).forEach(function (r) {
        var code = r.dataset.code.toLowerCase(), name = r.dataset.name.toLowerCase();
        var ok = (!text || code === text || code.indexOf(text) === 0 || name.indexOf(text) !== -1) &&
                 (!region || r.dataset.region === region) && (!peer || r.dataset.peer === peer) &&
                 (!band || r.dataset.band === band);
        r.hidden = !ok; if (ok) { shown += 1; }
      });
      var count = $(".shown", s);
      if (count) { count.textContent = shown + " of " + count.dataset.total + " trusts shown"; }
    });
  }
  function sortBy(th) {
    var table = th.closest("table"), body = table.tBodies[0];
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    $$("th", th.parentNode).forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var numeric = th.classList.contains("num"), sign = dir === "ascending" ? 1 : -1;
    var key = function (row) {
      var cell = row.children[index], v = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent;
      if (!numeric) { return v.toLowerCase(); }
      var n = parseFloat(v); return isNaN(n) ? -Infinity : n;
    };
    var rows = $$("tr", body);
    rows.sort(function (a, b) { var x = key(a), y = key(b); return x < y ? -sign : x > y ? sign : 0; });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    ["#period", "#region", "#peer", "#band"].forEach(function (s) {
      if ($(s)) { $(s).addEventListener("change", apply); }
    });
    if ($("#trust-search")) { $("#trust-search").addEventListener("input", apply); }
    $$("th button").forEach(function (b) { b.addEventListener("click", function () { sortBy(b.parentNode); }); });
    apply();
  });
}());
"""
