"""gallery.html: every val photo, one row each (grayscale input | every combination and seed |
ground truth), with its per-image scores, sortable and filterable by any per-image metric of
any column and by the paired difference of two combinations on a metric: the per-photo
numbers `bench compare` tests.

A static page: no server, no CDN, one file of HTML, CSS and JavaScript with the scores in it,
and the images `bench run` wrote (bench/score/images.py) linked relative to it and loaded
lazily. Every name a user chose reaches the page as JSON data and is set as text by the
script, never parsed as HTML.

Thousands of photos: the script filters and sorts the photos' indices (numbers only), and
builds the rows of one page of them (50 by default) when that page is shown, so the document
holds a few thousand elements whatever the val split's size; the pages are form controls,
reached with the keyboard like the others. A page building every row took 10 s to open in
Chromium at 2,000 photos and 13 s to re-sort (benchmarks/README.md).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from urllib.parse import quote

from bench.escape import code
from bench.report.summary import direction, table_rows
from bench.rundir.layout import BASELINES, GRAY, TRUTH
from bench.rundir.read import Run
from bench.rundir.write import atomic_write_text
from bench.score.images import FULL, SCORED
from bench.score.metrics import METRICS, PER_IMAGE
from bench.score.per_image import read_per_image


def _url(path: Path, start: Path) -> str:
    """``path`` relative to ``start``, as a URL (each segment percent-encoded)."""
    return "/".join(quote(part) for part in Path(os.path.relpath(path, start)).parts)


def _values(frame, images: list[str], metric: str) -> list[float | None]:
    """``metric``'s value for each of ``images`` (mean over the frame's seeds), None where missing."""
    rows = frame[frame.metric == metric]
    if rows.empty:
        return [None] * len(images)
    means = rows.groupby("image")["value"].mean()
    return [None if (v := means.get(name)) is None or not math.isfinite(v) else round(float(v), 6) for name in images]


def _images(folder: Path, start: Path, count: int) -> dict | None:
    """Where a column's images are: its folder as a URL and how many photos have one."""
    if not folder.is_dir():
        return None
    shown = 0
    while (folder / SCORED.format(shown)).is_file() and shown < count:
        shown += 1
    full = (folder / FULL.format(0)).is_file()
    return {"dir": _url(folder, start), "count": shown, "full": full} if shown else None


def gallery_data(runs: list[Run], out: Path) -> tuple[dict, list[str]]:
    """The page's data, and what was left out of it and why. Only runs scored on the first
    run's val photos share its rows."""
    first, notes = runs[0], []
    key = first.config.get("data", {}).get("val_files_sha256")
    same = [r for r in runs if r is first or (key and r.config.get("data", {}).get("val_files_sha256") == key)]
    notes += [f"{code(r.name)} left out of the gallery: scored on other val photos than {code(first.name)}"
              for r in runs if r not in same]
    base = read_per_image(first)
    gray_rows = base.frame[base.frame.combination == GRAY]
    images = list(dict.fromkeys(gray_rows["image"]))  # the split's order: file <i> is photo i
    metrics = [m for m in dict.fromkeys(base.frame.metric) if m in METRICS and METRICS[m].kind == PER_IMAGE]
    size = int(first.options.get("size", 0))
    columns = [{
        "key": GRAY, "label": "grayscale input", "combination": GRAY, "seed": None, "kind": GRAY,
        "images": _images(first.folder.gallery / GRAY, out, len(images)),
        "scores": {m: _values(gray_rows, images, m) for m in metrics},
    }]
    combinations = []  # what the sort and difference controls offer: each combination, mean over seeds
    by_run = {r.name: r for r in same}
    for row in table_rows(same):
        if row.combination in BASELINES or row.run not in by_run:
            continue
        run = by_run[row.run]
        per_image = base if run is first else read_per_image(run)
        cells = per_image.frame[per_image.frame.combination == row.combination]
        if cells.empty:
            notes.append(f"{code(row.label)} has no per-image scores ({', '.join(sorted(set(per_image.missing.values()))) or 'none'})")
            continue
        outside = run.seedless(row.combination)  # an outside colorizer: one column, no seed
        seeds = [None] if outside else [s for s in run.seeds if (cells.seed == s).any()]
        for seed in seeds:
            frame = cells if outside else cells[cells.seed == seed]
            columns.append({
                "key": f"{row.label}\u0000{seed}", "label": row.label + (f" (seed {seed})" if len(seeds) > 1 else ""),
                "combination": row.label, "seed": seed, "kind": "model",
                "images": _images(run.scored_folder(row.combination, seed).gallery, out, len(images)),
                "scores": {m: _values(frame, images, m) for m in metrics},
            })
        # one seed: the combination's scores are its column's, named by index rather than repeated
        combinations.append({"label": row.label, "seeds": len(seeds), "column": len(columns) - 1} if len(seeds) == 1
                            else {"label": row.label, "seeds": len(seeds),
                                  "scores": {m: _values(cells, images, m) for m in metrics}})
    truth_rows = base.frame[base.frame.combination == TRUTH]
    columns.append({
        "key": TRUTH, "label": "ground truth", "combination": TRUTH, "seed": None, "kind": TRUTH,
        "images": _images(first.folder.gallery / TRUTH, out, len(images)),
        "scores": {m: _values(truth_rows, images, m) for m in metrics if (truth_rows.metric == m).any()},
    })
    if columns[0]["images"] is None:
        notes.append("the gallery shows scores only: this run wrote no gallery images (made before them, or "
                     "with --gallery-photos 0)")
    data = {
        "run": first.name, "size": size, "photos": images,
        "metrics": [{"name": m, "direction": direction(m), "description": METRICS[m].description} for m in metrics],
        "columns": columns,
        "choices": [{"label": GRAY, "seeds": 1, "column": 0}] + combinations,
    }
    return data, notes


def _json_for_script(data: dict) -> str:
    """JSON that cannot end its <script> element early, whatever a name holds."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(data: dict) -> str:
    """The page for ``gallery_data``'s data."""
    return PAGE.replace("__DATA__", _json_for_script(data)).replace("__TITLE__", "Colorbench gallery")


def write_gallery(runs: list[Run], out: Path, path: Path) -> list[str]:
    """Write the gallery page to ``path``; returns what was left out of it."""
    data, notes = gallery_data(runs, out)
    atomic_write_text(path, render_page(data))
    return notes


PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
  :root { --fg: #1d1d1f; --muted: #6b6b70; --line: #dedee3; --accent: #0b63c5; --good: #137333; --bad: #b3261e; }
  * { box-sizing: border-box; }
  html { overflow-y: scroll; }  /* a steady scrollbar: the thumbnails are sized to the width left beside it */
  body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: #fafafa; }
  header { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid var(--line); padding: 10px 16px; }
  h1 { font-size: 17px; margin: 0 0 8px; }
  form, nav { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: end; }
  form div { display: flex; flex-direction: column; gap: 2px; }
  nav { margin-top: 8px; align-items: center; gap: 6px 8px; font-size: 13px; }
  label { font-size: 12px; color: var(--muted); }
  nav label { font-size: 13px; }
  select, input, button { font: inherit; padding: 3px 6px; border: 1px solid #b9b9c0; border-radius: 4px; background: #fff; }
  nav button { cursor: pointer; } nav button:disabled { cursor: default; color: #aaa; }
  input[type=number] { width: 7em; } input[type=search] { width: 12em; } #page { width: 5em; }
  select:focus-visible, input:focus-visible, button:focus-visible { outline: 3px solid var(--accent); outline-offset: 1px; }
  #status { margin: 8px 0 0; color: var(--muted); font-size: 13px; }
  main { padding: 8px 16px 40px; }
  table { border-collapse: collapse; }
  th { position: sticky; top: var(--head, 96px); background: #fafafa; z-index: 1; font-size: 12px; font-weight: 600;
       text-align: left; padding: 6px 6px 4px; border-bottom: 1px solid var(--line); vertical-align: bottom; max-width: 150px; }
  td { padding: 6px; border-bottom: 1px solid var(--line); vertical-align: top; }
  th:first-child, td.photo { width: 10em; min-width: 10em; max-width: 10em; }
  td.photo { font-size: 12px; overflow-wrap: anywhere; }
  td.photo .key { display: block; margin-top: 4px; font-weight: 600; }
  td.photo .rank { display: block; color: var(--muted); }
  .key.pos { color: var(--good); } .key.neg { color: var(--bad); }
  button.thumb { display: block; padding: 0; border: 0; background: none; cursor: zoom-in; }
  button.thumb img { display: block; width: var(--thumb); height: var(--thumb); image-rendering: pixelated; background: #eee; }
  .noimg { width: var(--thumb); height: var(--thumb); display: flex; align-items: center; justify-content: center;
           font-size: 11px; color: var(--muted); background: #f0f0f0; text-align: center; padding: 4px; }
  dl { margin: 3px 0 0; font-size: 11px; display: grid; grid-template-columns: auto auto; gap: 0 6px; color: var(--muted); }
  dt, dd { margin: 0; } dd { text-align: right; font-variant-numeric: tabular-nums; color: var(--fg); }
  dt.sorted, dd.sorted { font-weight: 700; color: var(--accent); }
  dialog { max-width: 96vw; max-height: 96vh; border: 0; border-radius: 6px; padding: 12px; }
  dialog::backdrop { background: rgba(0,0,0,.6); }
  dialog img { display: block; max-width: 90vw; max-height: 80vh; }
  dialog p { margin: 8px 0 0; font-size: 13px; }
</style>
</head>
<body>
<header>
  <h1 id="title">Colorbench gallery</h1>
  <form id="controls" onsubmit="return false">
    <div><label for="metric">Sort by metric</label><select id="metric"></select></div>
    <div><label for="first">of</label><select id="first"></select></div>
    <div><label for="second">minus (paired difference)</label><select id="second"></select></div>
    <div><label for="order">Order</label><select id="order">
      <option value="desc">largest first</option><option value="asc">smallest first</option></select></div>
    <div><label for="name">Photo name contains</label><input id="name" type="search" size="16"></div>
    <div><label for="low">Sort value from</label><input id="low" type="number" step="any" size="8"></div>
    <div><label for="high">to</label><input id="high" type="number" step="any" size="8"></div>
  </form>
  <nav id="pager" aria-label="Pages of photos">
    <button id="prev" type="button">&lsaquo; Previous</button>
    <label for="page">Page</label><input id="page" type="number" min="1" step="1" value="1">
    <span id="pages"></span>
    <button id="next" type="button">Next &rsaquo;</button>
    <label for="per-page">Photos per page</label><select id="per-page">
      <option>25</option><option selected>50</option><option>100</option><option>200</option></select>
  </nav>
  <p id="status" role="status" aria-live="polite"></p>
</header>
<main>
  <table id="gallery"><thead><tr id="head"></tr></thead><tbody id="rows"></tbody></table>
</main>
<dialog id="viewer" aria-labelledby="viewer-caption">
  <img id="viewer-img" alt="">
  <p id="viewer-caption"></p>
  <form method="dialog"><button id="viewer-close">Close</button></form>
</dialog>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...kids) => { const n = document.createElement(tag); Object.assign(n, props);
  for (const k of kids) n.append(k); return n; };
const metrics = Object.fromEntries(data.metrics.map((m) => [m.name, m]));
const total = data.photos.length;
// The thumbnails share the window's width: one column per image column beside the photo
// names, no smaller than 112 px (wider tables scroll), no taller than two rows in the
// window under the header. Recomputed when the window is resized.
const MIN_THUMB = 112;
let thumb = Math.max(data.size, MIN_THUMB);
function fitThumbs() {
  const main = document.querySelector("main"), style = getComputedStyle(main);
  const width = main.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const first = document.querySelector("#head th");
  const free = width - (first ? first.getBoundingClientRect().width : 160);
  const cellPad = 13;  // a cell's padding and border
  const fits = Math.floor(free / data.columns.length - cellPad);
  const tall = Math.floor((window.innerHeight - document.querySelector("header").offsetHeight) / 2) - 60;
  thumb = Math.max(MIN_THUMB, Math.min(fits, Math.max(tall, MIN_THUMB)));
  document.documentElement.style.setProperty("--thumb", thumb + "px");
}
$("title").textContent = `Colorbench gallery: ${data.run} (${total} val photos, scored at ${data.size} px)`;
const fmt = (v) => v === null || v === undefined ? "—" : Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4);
const arrow = (m) => ({higher: " ↑", lower: " ↓"})[metrics[m].direction] || "";
// a choice with one seed names its column rather than repeating its scores
const scoresOf = (c) => c.scores || data.columns[c.column].scores;

for (const m of data.metrics) $("metric").append(el("option", {value: m.name, textContent: m.name + arrow(m.name), title: m.description}));
data.choices.forEach((c, i) => $("first").append(el("option", {value: i, textContent: c.label + (c.seeds > 1 ? ` (mean of ${c.seeds} seeds)` : "")})));
$("second").append(el("option", {value: "", textContent: "— nothing (its own value) —"}));
data.choices.forEach((c, i) => $("second").append(el("option", {value: i, textContent: c.label + (c.seeds > 1 ? ` (mean of ${c.seeds} seeds)` : "")})));
if (data.choices.length > 1) $("first").value = "1";
const pref = ["de00", "psnr"].find((m) => m in metrics); if (pref) $("metric").value = pref;

const head = $("head");
head.append(el("th", {scope: "col", textContent: "photo"}));
for (const c of data.columns) head.append(el("th", {scope: "col", textContent: c.label}));
fitThumbs();
let fitting = false;
window.addEventListener("resize", () => {
  if (fitting) return;
  fitting = true;
  requestAnimationFrame(() => { fitting = false; fitThumbs(); });
});

const viewer = $("viewer");
function enlarge(col, i) {
  const name = data.photos[i], full = col.images && col.images.full;
  $("viewer-img").src = `${col.images.dir}/${i}.${full ? "full.jpg" : "webp"}`;
  $("viewer-img").alt = `${col.label}: ${name}`;
  $("viewer-caption").textContent = `${col.label} — ${name}` + (full ? " (at the photo's own resolution)" : ` (as scored, ${data.size} px)`);
  viewer.showModal();
}

// The state: the sort's values, the photos' indices filtered and sorted, and the page shown.
// Only the rows of that page exist in the document, built when it is shown.
let view = {values: [], label: "", paired: false, shown: [], desc: true};
let page = 0;

function row(i, rank) {
  const name = data.photos[i], v = view.values[i], sorted = $("metric").value;
  const tr = el("tr");
  tr.dataset.index = i;
  const key = el("span", {className: "key" + (view.paired && v ? (v > 0 ? " pos" : " neg") : ""), textContent: fmt(v)});
  tr.append(el("td", {className: "photo"}, el("span", {textContent: name}), key, el("span", {className: "rank", textContent: `#${rank}`})));
  for (const c of data.columns) {
    const td = el("td");
    if (c.images && i < c.images.count) {
      const img = el("img", {loading: "lazy", decoding: "async", src: `${c.images.dir}/${i}.webp`, alt: `${c.label}: ${name}`, width: thumb, height: thumb});
      const b = el("button", {type: "button", className: "thumb", title: "Enlarge"}, img);
      b.setAttribute("aria-label", `Enlarge ${c.label} of ${name}`);
      b.addEventListener("click", () => enlarge(c, i));
      td.append(b);
    } else {
      td.append(el("div", {className: "noimg", textContent: c.images ? "no image (beyond --gallery-photos)" : "no image"}));
    }
    const dl = el("dl");
    for (const m of Object.keys(c.scores)) {
      const cls = m === sorted ? "sorted" : "";
      dl.append(el("dt", {textContent: m, className: cls}), el("dd", {textContent: fmt(c.scores[m][i]), className: cls}));
    }
    td.append(dl);
    tr.append(td);
  }
  return tr;
}

function sortValues() {
  const m = $("metric").value, a = data.choices[+$("first").value], bi = $("second").value;
  const av = scoresOf(a)[m] || [];
  if (bi === "") return {values: av, label: `${a.label}'s ${m}`, paired: false};
  const b = data.choices[+bi], bv = scoresOf(b)[m] || [];
  const sign = metrics[m].direction === "lower" ? -1 : 1;
  const values = av.map((v, i) => v === null || bv[i] === null || bv[i] === undefined ? null : (v - bv[i]) * sign);
  const how = metrics[m].direction === "descriptive" ? `${a.label} − ${b.label}` :
    `how much better ${a.label} is than ${b.label} (positive: ${a.label} better)`;
  return {values, label: `${m}: ${how}`, paired: true};
}

// Filter and sort every photo (numbers only: fast at any size), then show the first page.
function render() {
  const {values, label, paired} = sortValues();
  const desc = $("order").value === "desc", needle = $("name").value.trim().toLowerCase();
  const low = $("low").value === "" ? -Infinity : +$("low").value, high = $("high").value === "" ? Infinity : +$("high").value;
  const bounded = low > -Infinity || high < Infinity;
  const shown = [];
  for (let i = 0; i < total; i++) {
    const v = values[i];
    if (needle && !data.photos[i].toLowerCase().includes(needle)) continue;
    if (bounded && (v === null || v === undefined || v < low || v > high)) continue;
    shown.push(i);
  }
  shown.sort((x, y) => {
    const a = values[x] ?? null, b = values[y] ?? null;
    if (a === null || b === null) return (a === null) - (b === null) || x - y;
    return (desc ? b - a : a - b) || x - y;
  });
  view = {values, label, paired, shown, desc};
  page = 0;
  showPage(false);
}

function showPage(scroll = true) {
  const per = +$("per-page").value, pages = Math.max(1, Math.ceil(view.shown.length / per));
  page = Math.min(Math.max(page, 0), pages - 1);
  const start = page * per, slice = view.shown.slice(start, start + per);
  const frag = document.createDocumentFragment();
  slice.forEach((i, k) => frag.append(row(i, start + k + 1)));
  $("rows").replaceChildren(frag);
  $("page").value = page + 1;
  $("page").max = pages;
  $("pages").textContent = `of ${pages}`;
  $("prev").disabled = page === 0;
  $("next").disabled = page >= pages - 1;
  const range = slice.length ? `; showing ${start + 1}–${start + slice.length} (page ${page + 1} of ${pages})` : "";
  $("status").textContent = `${view.shown.length} of ${total} photos, sorted by ${view.label}, ${view.desc ? "largest" : "smallest"} first${range}.`;
  document.documentElement.style.setProperty("--head", document.querySelector("header").offsetHeight + "px");
  if (scroll) window.scrollTo(0, 0);
}

for (const id of ["metric", "first", "second", "order"]) $(id).addEventListener("change", render);
for (const id of ["name", "low", "high"]) $(id).addEventListener("input", render);
$("prev").addEventListener("click", () => { page -= 1; showPage(); });
$("next").addEventListener("click", () => { page += 1; showPage(); });
$("page").addEventListener("change", () => { page = Math.round(+$("page").value || 1) - 1; showPage(); });
$("per-page").addEventListener("change", () => { page = 0; showPage(); });
render();
</script>
</body>
</html>
"""
