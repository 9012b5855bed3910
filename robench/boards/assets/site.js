// robench leaderboard site: the board page's sortable, searchable, filterable table and its Pareto scatter.
//
// Plain JavaScript, no library, no network: the board's data is embedded in the page as JSON
// (<script type="application/json" id="board-data">), so the site works from file:// as well as from a
// web server. Every string from the data reaches the page through textContent or setAttribute on
// attributes that cannot run code (never innerHTML), so a model card cannot inject markup.
"use strict";

(function () {
  const data = JSON.parse(document.getElementById("board-data").textContent);
  const SVG = "http://www.w3.org/2000/svg";
  const state = { sort: "rank", dir: 1, x: data.x_default, y: "board_y" };

  function el(tag, attrs, text) {
    const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // An accuracy triple [value, low, high] (fractions) for a model on an axis id; null when not measured.
  function acc(m, axis) {
    const threat = axis === "board_y" ? m.y_threat : axis;
    return (threat && m.acc[threat]) || null;
  }
  const pct = (v) => (100 * v).toFixed(1);
  const withCi = (a) => (a ? `${pct(a[0])} [${pct(a[1])}, ${pct(a[2])}]` : "—");
  function ciCell(a) {  // the value, then its interval in small grey type
    if (!a) return "—";
    const frag = document.createDocumentFragment();
    frag.append(pct(a[0]), el("span", { class: "ci" }, ` [${pct(a[1])}, ${pct(a[2])}]`));
    return frag;
  }
  const label = (axes, id) => axes.find((a) => a.id === id).label;

  // --- filters ---------------------------------------------------------------------------------------
  const search = document.getElementById("search");
  const selects = { arch: document.getElementById("f-arch"), recipe: document.getElementById("f-recipe") };
  const flagged = document.getElementById("f-flags");
  for (const [key, select] of Object.entries(selects)) {
    const values = [...new Set(data.models.map((m) => m[key]))].sort();
    for (const v of values) select.appendChild(el("option", { value: v }, v));
  }
  function visible(m) {
    const q = search.value.trim().toLowerCase();
    if (q && !(m.model.toLowerCase().includes(q) || m.name.toLowerCase().includes(q))) return false;
    for (const [key, select] of Object.entries(selects)) if (select.value && m[key] !== select.value) return false;
    if (flagged.value === "flagged" && !m.flags.length) return false;
    if (flagged.value === "clean" && m.flags.length) return false;
    return true;
  }

  // --- the table -------------------------------------------------------------------------------------
  const columns = [
    { key: "rank", head: "#", num: true, value: (m) => m.rank, cell: (m) => String(m.rank) },
    { key: "front", head: "Front", value: (m) => (m.front ? 0 : 1), cell: (m) => (m.front ? (m.tie ? "★≈" : "★") : "") },
    { key: "model", head: "Model", value: (m) => m.name.toLowerCase(), cell: modelCell },
    { key: "arch", head: "Architecture", value: (m) => m.arch, cell: (m) => m.arch },
    { key: "recipe", head: "Recipe", value: (m) => m.recipe, cell: (m) => m.recipe },
    { key: "x", head: data.x.label, num: true, value: (m) => sortable(acc(m, data.x.threat)), cell: (m) => ciCell(acc(m, data.x.threat)) },
    { key: "y", head: data.y_label, num: true, value: (m) => sortable(acc(m, "board_y")), cell: (m) => ciCell(acc(m, "board_y")) },
    { key: "yby", head: "y measured by", value: (m) => m.y_by, cell: (m) => m.y_by },
    { key: "clean", head: "Clean", num: true, value: (m) => sortable(acc(m, "clean")), cell: (m) => ciCell(acc(m, "clean")) },
    { key: "flags", head: "Flags", value: (m) => m.flags.length, cell: (m) => (m.flags.length ? "⚠ " + m.flags.join(", ") : "") },
  ];
  function sortable(a) { return a ? a[0] : -1; }
  function modelCell(m) {
    const a = el("a", { href: m.href }, m.name);
    const frag = document.createDocumentFragment();
    frag.appendChild(a);
    if (m.name !== m.model) frag.appendChild(el("span", { class: "muted" }, ` (${m.model})`));
    return frag;
  }
  const table = document.getElementById("models");
  const headRow = el("tr");
  for (const c of columns) {
    const th = el("th", { class: "sortable" + (c.num ? " num" : ""), "data-key": c.key, tabindex: "0" }, c.head);
    th.addEventListener("click", () => sortBy(c.key));
    th.addEventListener("keydown", (e) => { if (e.key === "Enter") sortBy(c.key); });
    headRow.appendChild(th);
  }
  table.appendChild(el("thead")).appendChild(headRow);
  const body = table.appendChild(el("tbody"));

  function sortBy(key) {
    state.dir = state.sort === key ? -state.dir : (columns.find((c) => c.key === key).num && key !== "rank" ? -1 : 1);
    state.sort = key;
    render();
  }
  function renderTable(rows) {
    const col = columns.find((c) => c.key === state.sort);
    const sorted = rows.slice().sort((a, b) => {
      const va = col.value(a), vb = col.value(b);
      return (va < vb ? -1 : va > vb ? 1 : 0) * state.dir || a.rank - b.rank;
    });
    body.replaceChildren();
    for (const m of sorted) {
      const tr = el("tr", { "data-model": m.model });
      for (const c of columns) {
        const td = el("td", c.num ? { class: "num" } : {});
        const content = c.cell(m);
        if (typeof content === "string") td.textContent = content; else td.appendChild(content);
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    for (const th of headRow.children) {
      th.setAttribute("aria-sort", th.dataset.key === state.sort ? (state.dir > 0 ? "ascending" : "descending") : "none");
    }
    document.getElementById("count").textContent = `${rows.length} of ${data.models.length} models shown`;
  }

  // --- the scatter -----------------------------------------------------------------------------------
  const W = 560, H = 420, L = 52, R = 16, T = 14, B = 44;
  const sx = (v) => L + (v * 100 + 3) / 106 * (W - L - R);
  const sy = (v) => H - B - (v * 100 + 3) / 106 * (H - T - B);
  const plot = document.getElementById("scatter");
  const tip = document.getElementById("tip");
  for (const [id, axes, key] of [["ax-x", data.xs, "x"], ["ax-y", data.ys, "y"]]) {
    const select = document.getElementById(id);
    for (const a of axes) select.appendChild(el("option", { value: a.id }, a.label));
    select.value = state[key];
    select.addEventListener("change", () => { state[key] = select.value; render(); });
  }

  // Pareto front of the shown points on the chosen axes: nobody at least as good on both, better on one.
  function front(points) {
    return points.filter((p) => !points.some((q) => q.x >= p.x && q.y >= p.y && (q.x > p.x || q.y > p.y)));
  }
  function renderPlot(rows) {
    plot.replaceChildren();
    plot.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const axis = plot.appendChild(el("svg:g", { class: "axis" }));
    for (let v = 0; v <= 100; v += 20) {
      axis.appendChild(el("svg:line", { class: "grid", x1: sx(v / 100), x2: sx(v / 100), y1: T, y2: H - B }));
      axis.appendChild(el("svg:line", { class: "grid", x1: L, x2: W - R, y1: sy(v / 100), y2: sy(v / 100) }));
      axis.appendChild(el("svg:text", { x: sx(v / 100), y: H - B + 14, "text-anchor": "middle" }, String(v)));
      axis.appendChild(el("svg:text", { x: L - 6, y: sy(v / 100) + 4, "text-anchor": "end" }, String(v)));
    }
    axis.appendChild(el("svg:text", { x: (L + W - R) / 2, y: H - 8, "text-anchor": "middle" }, label(data.xs, state.x) + " (%)"));
    axis.appendChild(el("svg:text", { x: 12, y: (T + H - B) / 2, "text-anchor": "middle",
      transform: `rotate(-90 12 ${(T + H - B) / 2})` }, label(data.ys, state.y) + " (%)"));
    const points = rows.map((m) => ({ m, a: acc(m, state.x), b: acc(m, state.y) })).filter((p) => p.a && p.b)
      .map((p) => ({ ...p, x: p.a[0], y: p.b[0] }));
    const best = new Set(front(points));
    const steps = [...best].sort((p, q) => p.x - q.x || q.y - p.y);
    if (steps.length) {
      let d = `M ${sx(steps[0].x)} ${sy(steps[0].y)}`;
      for (const p of steps.slice(1)) d += ` V ${sy(p.y)} H ${sx(p.x)}`;  // the best y still reachable drops at p
      plot.appendChild(el("svg:path", { d, fill: "none", stroke: "#c0392b", "stroke-width": 1.2 }));
    }
    // dominated points first, so front members are drawn on top and stay hoverable
    for (const p of points.slice().sort((p, q) => best.has(p) - best.has(q))) {
      const dot = el("svg:circle", { cx: sx(p.x), cy: sy(p.y), r: best.has(p) ? 6 : 4.5, "data-model": p.m.model,
        fill: best.has(p) ? "#c0392b" : "#7f8c8d", stroke: "#fff", "stroke-width": 1 });
      dot.addEventListener("mouseenter", () => showTip(p));
      dot.addEventListener("mouseleave", () => { tip.hidden = true; });
      dot.addEventListener("click", () => { window.location.href = p.m.href; });
      plot.appendChild(dot);
    }
  }
  function showTip(p) {
    tip.replaceChildren(el("strong", {}, p.m.name + (p.m.name !== p.m.model ? ` (${p.m.model})` : "")));
    tip.appendChild(el("div", {}, `${label(data.xs, state.x)}: ${withCi(p.a)}`));
    tip.appendChild(el("div", {}, `${label(data.ys, state.y)}: ${withCi(p.b)}`));
    const box = plot.getBoundingClientRect(), scale = box.width / W;
    tip.style.left = `${sx(p.x) * scale + 12}px`;
    tip.style.top = `${sy(p.y) * scale - 10}px`;
    tip.hidden = false;
  }

  function render() {
    tip.hidden = true;  // its point may be gone or moved
    const rows = data.models.filter(visible);
    renderTable(rows);
    renderPlot(rows);
  }
  for (const input of [search, flagged, ...Object.values(selects)]) {
    for (const kind of ["input", "change"]) input.addEventListener(kind, render);  // browsers differ on which fires
  }
  render();
})();
