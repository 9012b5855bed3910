// robench leaderboard site: the board page's sortable, searchable, filterable table and its Pareto scatter.
//
// Plain JavaScript, no library, no network: the board's data is embedded in the page as JSON
// (<script type="application/json" id="board-data">), so the site works from file:// as well as from a
// web server. Every string from the data reaches the page through textContent or setAttribute on
// attributes that cannot run code (never innerHTML), so a model card cannot inject markup.
//
// Without this script the page shows the committed plot and table (elements of class no-js); the
// class "js" on <html> swaps them for the interactive ones (class js-only). The view (axes, search,
// filters, sort) is kept in the address's #fragment, so a copied address opens the same view.
"use strict";

document.documentElement.classList.add("js");

(function () {
  const holder = document.getElementById("board-data");
  if (!holder) return;  // a page without a board table
  const data = JSON.parse(holder.textContent);
  const SVG = "http://www.w3.org/2000/svg";
  const FRONT = "#c0392b", OTHER = "#7f8c8d";
  const defaults = { sort: "rank", dir: "1", x: data.x_default, y: "board_y", q: "", arch: "", recipe: "", flags: "" };
  const state = { ...defaults };

  function el(tag, attrs, text) {
    const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // The threat a model is measured by on an axis id ("board_y": the board's y, which may differ per model).
  const threatOf = (m, axis) => (axis === "board_y" ? m.y_threat : axis);
  // An accuracy triple [value, low, high] (fractions) for a model on an axis id; null when not measured.
  const acc = (m, axis) => m.acc[threatOf(m, axis)] || null;
  const pct = (v) => (100 * v).toFixed(1);
  const withCi = (a) => (a ? `${pct(a[0])} [${pct(a[1])}, ${pct(a[2])}]` : "—");
  function ciCell(a) {  // the value, then its interval in small grey type
    if (!a) return "—";
    const frag = document.createDocumentFragment();
    frag.append(pct(a[0]), el("span", { class: "ci" }, ` [${pct(a[1])}, ${pct(a[2])}]`));
    return frag;
  }
  const label = (axes, id) => axes.find((a) => a.id === id).label;
  const boardAxes = () => state.x === data.x_default && state.y === "board_y";
  // Flags of the records the table shows for a model (x, y, clean), never those of a threat not shown.
  const shownFlags = (m) => m.flags.filter((t) => [threatOf(m, state.x), threatOf(m, state.y), "clean"].includes(t));

  // --- the view in the address -----------------------------------------------------------------------
  const controls = {
    x: document.getElementById("ax-x"), y: document.getElementById("ax-y"), q: document.getElementById("search"),
    arch: document.getElementById("f-arch"), recipe: document.getElementById("f-recipe"),
    flags: document.getElementById("f-flags"),
  };
  for (const [id, axes] of [["x", data.xs], ["y", data.ys]]) {
    for (const a of axes) controls[id].appendChild(el("option", { value: a.id }, a.label));
  }
  for (const key of ["arch", "recipe"]) {
    for (const v of [...new Set(data.models.map((m) => m[key]))].sort()) controls[key].appendChild(el("option", { value: v }, v));
  }
  function readAddress() {
    const given = new URLSearchParams(window.location.hash.slice(1));
    Object.assign(state, defaults);  // what the address does not say is the default
    for (const key of Object.keys(defaults)) {
      const value = given.get(key);
      if (value === null) continue;
      const select = controls[key];
      const known = select && select.tagName === "SELECT" ? [...select.options].some((o) => o.value === value) : true;
      if (known) state[key] = value;  // a value the page does not offer (an old or edited address) is ignored
    }
    if (!columns.some((c) => c.key === state.sort)) state.sort = defaults.sort;
    if (!["1", "-1"].includes(state.dir)) state.dir = defaults.dir;
    for (const [key, input] of Object.entries(controls)) input.value = state[key];
  }
  function writeAddress() {
    const changed = new URLSearchParams();
    for (const [key, value] of Object.entries(state)) if (value !== defaults[key]) changed.set(key, value);
    const hash = changed.toString();
    const address = window.location.pathname + window.location.search + (hash ? `#${hash}` : "");
    try { history.replaceState(null, "", address); } catch (e) { window.location.hash = hash; }
  }

  // --- the table -------------------------------------------------------------------------------------
  const columns = [
    { key: "rank", head: () => "#", num: true, value: (m) => m.view.rank, cell: (m) => String(m.view.rank) },
    { key: "front", head: () => "Front", value: (m) => (m.view.front ? 0 : 1), cell: (m) => m.view.mark },
    { key: "model", head: () => "Model", value: (m) => m.name.toLowerCase(), cell: modelCell },
    { key: "arch", head: () => "Architecture", value: (m) => m.arch, cell: (m) => m.arch },
    { key: "recipe", head: () => "Recipe", value: (m) => m.recipe, cell: (m) => m.recipe },
    { key: "x", head: () => label(data.xs, state.x), num: true, value: (m) => sortable(acc(m, state.x)), cell: (m) => ciCell(acc(m, state.x)) },
    { key: "y", head: () => label(data.ys, state.y), num: true, value: (m) => sortable(acc(m, state.y)), cell: (m) => ciCell(acc(m, state.y)) },
    { key: "yby", head: () => "y measured by", value: (m) => yBy(m), cell: (m) => yBy(m) },
    { key: "clean", head: () => "Clean", num: true, value: (m) => sortable(acc(m, "clean")), cell: (m) => ciCell(acc(m, "clean")) },
    { key: "flags", head: () => "Flags", value: (m) => shownFlags(m).length, cell: (m) => (shownFlags(m).length ? "⚠ " + shownFlags(m).join(", ") : "") },
  ];
  function sortable(a) { return a ? a[0] : -1; }
  function yBy(m) { return state.y === "board_y" ? m.y_by : (acc(m, state.y) ? label(data.ys, state.y) : "—"); }
  function modelCell(m) {
    const frag = document.createDocumentFragment();
    frag.appendChild(el("a", { href: m.href }, m.name));
    if (m.name !== m.model) frag.appendChild(el("span", { class: "muted" }, ` (${m.model})`));
    return frag;
  }
  const table = document.getElementById("models");
  const headRow = el("tr");
  for (const c of columns) {
    const th = el("th", { class: "sortable" + (c.num ? " num" : ""), "data-key": c.key, tabindex: "0" });
    th.addEventListener("click", () => sortBy(c.key));
    th.addEventListener("keydown", (e) => { if (e.key === "Enter") sortBy(c.key); });
    headRow.appendChild(th);
  }
  table.appendChild(el("thead")).appendChild(headRow);
  const body = table.appendChild(el("tbody"));

  function sortBy(key) {
    const num = columns.find((c) => c.key === key).num && key !== "rank";
    state.dir = state.sort === key ? String(-Number(state.dir)) : (num ? "-1" : "1");
    state.sort = key;
    render();
  }
  function renderTable(rows) {
    const col = columns.find((c) => c.key === state.sort), dir = Number(state.dir);
    const sorted = rows.slice().sort((a, b) => {
      const va = col.value(a), vb = col.value(b);
      return (va < vb ? -1 : va > vb ? 1 : 0) * dir || a.view.rank - b.view.rank;
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
    for (const [i, th] of [...headRow.children].entries()) {
      th.textContent = columns[i].head();
      th.setAttribute("aria-sort", th.dataset.key === state.sort ? (dir > 0 ? "ascending" : "descending") : "none");
    }
    document.getElementById("count").textContent = `${rows.length} of ${data.models.length} models shown`;
  }

  // --- the ranking and front on the chosen axes --------------------------------------------------------
  // As the board ranks (robench.boards.render): by y, then x, best first, then by name; unmeasured last.
  function rank(models) {
    const key = (m) => [acc(m, state.y), acc(m, state.x)].map((a) => (a ? a[0] : -Infinity));
    const order = models.slice().sort((a, b) => {
      const [ya, xa] = key(a), [yb, xb] = key(b);
      return yb - ya || xb - xa || (a.model < b.model ? -1 : a.model > b.model ? 1 : 0);
    });
    order.forEach((m, i) => { m.view = { rank: i + 1, front: false, mark: "" }; });
  }
  // Pareto front (robench.boards.pareto): nobody at least as good on both axes and better on one.
  function front(points) {
    return points.filter((p) => !points.some((q) => q.x >= p.x && q.y >= p.y && (q.x > p.x || q.y > p.y)));
  }

  // --- the scatter -----------------------------------------------------------------------------------
  const L = 52, R = 16, T = 14, B = 44;
  const plot = document.getElementById("scatter");
  const wrap = document.getElementById("plot-wrap");
  const tip = document.getElementById("tip");
  let size = { W: 640, H: 440 };
  const sx = (v) => L + (v * 100 + 3) / 106 * (size.W - L - R);
  const sy = (v) => size.H - B - (v * 100 + 3) / 106 * (size.H - T - B);

  // Points at the same place (to 0.05 points) are one marker: hovering it lists every model there.
  function groups(rows) {
    const at = new Map();
    for (const m of rows) {
      const a = acc(m, state.x), b = acc(m, state.y);
      if (!a || !b) continue;
      const key = `${a[0].toFixed(4)},${b[0].toFixed(4)}`;
      if (!at.has(key)) at.set(key, { x: a[0], y: b[0], members: [] });
      at.get(key).members.push({ m, a, b });
    }
    return [...at.values()];
  }
  function renderPlot(rows) {
    size = { W: Math.max(300, Math.min(960, Math.round(wrap.clientWidth || 640))), H: 0 };
    size.H = Math.round(Math.min(520, Math.max(300, size.W * 0.68)));
    plot.replaceChildren();
    plot.setAttribute("viewBox", `0 0 ${size.W} ${size.H}`);
    plot.setAttribute("width", size.W);
    plot.setAttribute("height", size.H);
    const { W, H } = size;
    const axis = plot.appendChild(el("svg:g", { class: "axis" }));
    for (let v = 0; v <= 100; v += 20) {
      axis.appendChild(el("svg:line", { class: "grid", x1: sx(v / 100), x2: sx(v / 100), y1: T, y2: H - B }));
      axis.appendChild(el("svg:line", { class: "grid", x1: L, x2: W - R, y1: sy(v / 100), y2: sy(v / 100) }));
      axis.appendChild(el("svg:text", { x: sx(v / 100), y: H - B + 14, "text-anchor": "middle" }, String(v)));
      axis.appendChild(el("svg:text", { x: L - 6, y: sy(v / 100) + 4, "text-anchor": "end" }, String(v)));
    }
    axis.appendChild(el("svg:text", { x: (L + W - R) / 2, y: H - 8, "text-anchor": "middle" }, label(data.xs, state.x) + " (%)"));
    axis.appendChild(el("svg:text", { x: 12, y: (T + H - B) / 2, "text-anchor": "middle",
      transform: `rotate(-90 12 ${(T + H - B) / 2})` }, (state.y === "board_y" ? data.y_label : label(data.ys, state.y)) + " (%)"));
    const all = groups(rows);
    const best = new Set(front(all));
    for (const g of best) for (const p of g.members) p.m.view.front = true;
    const steps = [...best].sort((p, q) => p.x - q.x || q.y - p.y);
    if (steps.length) {
      let d = `M ${sx(steps[0].x)} ${sy(steps[0].y)}`;
      for (const p of steps.slice(1)) d += ` V ${sy(p.y)} H ${sx(p.x)}`;  // the best y still reachable drops at p
      plot.appendChild(el("svg:path", { d, fill: "none", stroke: FRONT, "stroke-width": 1.2 }));
    }
    if (!all.length) {
      plot.appendChild(el("svg:text", { x: (L + W - R) / 2, y: (T + H - B) / 2, "text-anchor": "middle", class: "empty" },
        "No shown model has records for both axes"));
    }
    // whiskers first (95% intervals), then dominated points, then the front on top, then the front's names
    const ordered = all.slice().sort((p, q) => best.has(p) - best.has(q));
    for (const g of ordered) {
      const colour = best.has(g) ? FRONT : OTHER, { a, b } = g.members[0];
      const whisker = { stroke: colour, "stroke-width": 1, opacity: 0.6, class: "whisker" };
      plot.appendChild(el("svg:line", { ...whisker, x1: sx(a[1]), x2: sx(a[2]), y1: sy(g.y), y2: sy(g.y) }));
      plot.appendChild(el("svg:line", { ...whisker, x1: sx(g.x), x2: sx(g.x), y1: sy(b[1]), y2: sy(b[2]) }));
    }
    for (const g of ordered) {
      const names = g.members.map((p) => p.m.name).join(", ");
      const dot = el("svg:circle", { cx: sx(g.x), cy: sy(g.y), r: (best.has(g) ? 6 : 4.5) + (g.members.length > 1 ? 1.5 : 0),
        "data-model": g.members[0].m.model, "data-models": g.members.map((p) => p.m.model).join(" "),
        fill: best.has(g) ? FRONT : OTHER, stroke: "#fff", "stroke-width": 1, tabindex: "0", role: "link",
        "aria-label": `${names}: ${pct(g.x)}, ${pct(g.y)}` });
      dot.addEventListener("mouseenter", () => showTip(g));
      dot.addEventListener("mouseleave", () => { tip.hidden = true; });
      dot.addEventListener("focus", () => showTip(g));
      dot.addEventListener("blur", () => { tip.hidden = true; });
      dot.addEventListener("click", () => { window.location.href = g.members[0].m.href; });
      dot.addEventListener("keydown", (e) => { if (e.key === "Enter") window.location.href = g.members[0].m.href; });
      plot.appendChild(dot);
    }
    labelFront(steps, all);
  }
  // The front's names, each beside its point where it covers no marker and no earlier name and stays inside
  // the plot; a name that fits nowhere is left out (the point's tooltip still names it).
  function labelFront(points, markers) {
    const CHAR = 6.2, HEIGHT = 13;
    const taken = markers.map((g) => [sx(g.x) - 6, sy(g.y) - 6, sx(g.x) + 6, sy(g.y) + 6]);
    for (const g of points) {
      const text = g.members[0].m.name + (g.members.length > 1 ? ` +${g.members.length - 1}` : "");
      const w = CHAR * text.length, px = sx(g.x), py = sy(g.y);
      const spots = [[9, -6], [9, 12], [-9 - w, -6], [-9 - w, 12], [-w / 2, -12], [-w / 2, 20]];
      let spot = null;
      for (const [dx, dy] of spots) {
        const box = [px + dx, py + dy - HEIGHT + 3, px + dx + w, py + dy + 3];
        const inside = box[0] >= L && box[2] <= size.W - R && box[1] >= T && box[3] <= size.H - B;
        if (inside && !taken.some((o) => box[0] < o[2] && o[0] < box[2] && box[1] < o[3] && o[1] < box[3])) {
          spot = [dx, dy, box];
          break;
        }
      }
      if (!spot) continue;
      taken.push(spot[2]);
      plot.appendChild(el("svg:text", { x: px + spot[0], y: py + spot[1], class: "front-label" }, text));
    }
  }
  function showTip(g) {
    tip.replaceChildren();
    for (const { m, a, b } of g.members) {
      const entry = tip.appendChild(el("div", { class: "entry" }));
      entry.appendChild(el("strong", {}, m.name + (m.name !== m.model ? ` (${m.model})` : "")));
      entry.appendChild(el("div", {}, `${label(data.xs, state.x)}: ${withCi(a)}`));
      entry.appendChild(el("div", {}, `${label(data.ys, state.y)}: ${withCi(b)}`));
    }
    tip.hidden = false;
    const box = plot.getBoundingClientRect(), scale = box.width / size.W;
    const left = Math.min(sx(g.x) * scale + 12, Math.max(0, box.width - tip.offsetWidth - 4));
    tip.style.left = `${left}px`;
    tip.style.top = `${sy(g.y) * scale + 12}px`;
  }

  function render() {
    tip.hidden = true;  // its point may be gone or moved
    rank(data.models);
    const rows = data.models.filter(visible);
    renderPlot(rows);  // sets view.front on the drawn front
    for (const m of data.models) {
      m.view.mark = m.view.front ? "★" + (m.tie && boardAxes() ? "≈" : "") : "";
    }
    renderTable(rows);
    writeAddress();
  }
  function visible(m) {
    const q = state.q.trim().toLowerCase();
    if (q && !(m.model.toLowerCase().includes(q) || m.name.toLowerCase().includes(q))) return false;
    for (const key of ["arch", "recipe"]) if (state[key] && m[key] !== state[key]) return false;
    if (state.flags === "flagged" && !shownFlags(m).length) return false;
    if (state.flags === "clean" && shownFlags(m).length) return false;
    return true;
  }
  for (const [key, input] of Object.entries(controls)) {
    const update = () => { state[key] = input.value; render(); };
    for (const kind of ["input", "change"]) input.addEventListener(kind, update);  // browsers differ on which fires
  }
  window.addEventListener("resize", render);
  window.addEventListener("hashchange", () => { readAddress(); render(); });
  readAddress();
  render();
})();
