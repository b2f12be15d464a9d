/* plait timeline: draws one run's calls in time, from plait.timeline.to_json data.
 *
 *   plaitTimeline.render(container, data)
 *
 * Callable again with new data (a live run): the container is drawn anew, keeping
 * the selected call, the zoom and the scroll. Plain JS and SVG, no dependencies.
 *
 * Up to MANY calls, every call is a bar (`.pt-bar[data-n]`), packed into lanes:
 * calls that overlap in time sit in different lanes. Past that (a dataset job),
 * calls are shown by stage (tool: calls in flight over time) and by row, and a
 * stage or a row opens as bars below (drill-down).
 *
 * When drawn, the container gets data-render-ms (time spent in render) and
 * data-rendered-at (performance.now() once the frame after it ran).
 */
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var MANY = 1500;
  var LANE = 24, BAR = 18, TOP = 34, GAP_PX = 64, MIN_BAR = 3;
  var DRILL_CALLS = 300;
  var CHROME = 20;
  var CHAR_PX = 6.6;  // about one character of a bar's label
  var OUTSIDE_LABELS = 200;  // up to this many bars, a short bar's label goes after it  // a chart's padding either side of its axis
  var ROWS_PAGE = 100;

  // ------------------------------------------------------------------ helpers

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function sv(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    if (attrs) for (var k in attrs) if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function secs(t) {
    if (t === null || t === undefined) return "–";
    var a = Math.abs(t);
    if (a === 0) return "0 s";
    if (a < 0.001) return (t * 1e6).toFixed(0) + " µs";
    if (a < 1) return (t * 1000).toFixed(a < 0.01 ? 2 : 0) + " ms";
    if (a < 60) return t.toFixed(a < 10 ? 2 : 1) + " s";
    if (a < 3600) return Math.floor(t / 60) + " min " + Math.round(t % 60) + " s";
    if (a < 86400) return Math.floor(t / 3600) + " h " + Math.round((t % 3600) / 60) + " min";
    return (t / 86400).toFixed(1) + " days";
  }
  function tick(t, step) {
    if (step >= 3600) return (t / 3600).toFixed(step % 3600 ? 1 : 0) + "h";
    if (step >= 60) return (t / 60).toFixed(step % 60 ? 1 : 0) + "m";
    var d = step >= 1 ? 0 : step >= 0.1 ? 1 : step >= 0.01 ? 2 : 3;
    return t.toFixed(d) + "s";
  }
  function num(x) { return (x || 0).toLocaleString("en-US"); }
  // A cost as plait.cost gives it: null is unknown (a model without a price), never 0.
  function money(amount, currency, estimated) {
    if (amount === null || amount === undefined || !currency) return "?";
    var digits = amount >= 1 || amount === 0 ? 2 : amount >= 0.0001 ? 4 : 6;
    var text = currency === "USD" ? "$" + amount.toFixed(digits) : amount.toFixed(digits) + " " + currency;
    return estimated ? "~" + text : text;
  }
  function oneLine(s, n) {
    if (!s) return "";
    s = s.replace(/\s+/g, " ").trim();
    return s.length > n ? s.slice(0, n - 1) + "…" : s;
  }
  function clock(epoch) {
    var d = new Date(epoch * 1000);
    function p(x) { return (x < 10 ? "0" : "") + x; }
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " +
      p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }
  function quantile(sorted, q) {
    if (!sorted.length) return null;
    return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  }

  // ------------------------------------------------------------------ the model

  function prepare(data) {
    var nodes = data.nodes || [];
    var byN = {};
    var children = {};
    for (var i = 0; i < nodes.length; i++) {
      var nd = nodes[i];
      byN[nd.n] = nd;
      for (var j = 0; j < nd.parents.length; j++) {
        (children[nd.parents[j]] = children[nd.parents[j]] || []).push(nd.n);
      }
    }
    var critical = {};
    var path = (data.critical && data.critical.nodes) || [];
    for (var c = 0; c < path.length; c++) critical[path[c]] = c;
    var marksOf = {};
    (data.marks || []).forEach(function (m) { (marksOf[m.node] = marksOf[m.node] || []).push(m); });
    return { data: data, nodes: nodes, byN: byN, children: children, critical: critical,
             path: path, marksOf: marksOf, gaps: data.gaps || [], sessions: data.sessions || [] };
  }

  /* A time axis over [t0, t1] in `width` pixels in which each crash gap takes
     GAP_PX pixels whatever its length: hours of downtime do not squash the run. */
  function makeAxis(t0, t1, gaps, width) {
    var inside = gaps.filter(function (g) { return g.end > t0 && g.start < t1; })
      .map(function (g) { return { start: Math.max(g.start, t0), end: Math.min(g.end, t1), g: g }; });
    var lost = 0;
    inside.forEach(function (g) { lost += g.end - g.start; });
    var active = Math.max(1e-6, t1 - t0 - lost);
    var scale = Math.max(1, width - inside.length * GAP_PX) / active;
    function x(t) {
      var px = 0, from = t0;
      for (var i = 0; i < inside.length; i++) {
        var g = inside[i];
        if (t <= g.start) break;
        px += (g.start - from) * scale;
        if (t < g.end) return px + (t - g.start) / (g.end - g.start) * GAP_PX;
        px += GAP_PX;
        from = g.end;
      }
      return px + (t - from) * scale;
    }
    return { x: x, t0: t0, t1: t1, gaps: inside, scale: scale, width: x(t1) };
  }

  /* Greedy interval packing: each call in the lowest lane free at its start, so
     calls that overlap in time never share a lane (as many lanes as calls ever
     ran at once). Visual overlap counts: a call's bar is at least MIN_BAR wide. */
  function pack(nodes, axis) {
    var order = nodes.slice().sort(function (a, b) { return a.start - b.start || a.n - b.n; });
    var laneEnd = [];
    var lane = {};
    var outside = nodes.length <= OUTSIDE_LABELS;
    for (var i = 0; i < order.length; i++) {
      var nd = order[i];
      var x0 = axis.x(nd.start), x1 = Math.max(axis.x(nd.until), x0 + MIN_BAR) + 1;
      // A bar too short for its label has it after its end: keep that free too.
      if (outside && fits(x1 - x0) < 3) x1 += 6 + label(nd).length * CHAR_PX;
      var k = 0;
      while (k < laneEnd.length && laneEnd[k] > x0) k++;
      laneEnd[k] = x1;
      lane[nd.n] = k;
    }
    return { lane: lane, count: Math.max(1, laneEnd.length) };
  }

  // ------------------------------------------------------------------ the page

  function render(container, data) {
    var began = performance.now();
    var prev = container.__plait || {};
    var state = {
      selected: prev.selected || null, zoom: prev.zoom || 1, drill: prev.drill || null,
      rowFilter: prev.rowFilter || "all", rowsShown: prev.rowsShown || ROWS_PAGE,
      scroll: prev.scrollEl ? prev.scrollEl.scrollLeft : 0,
    };
    container.__plait = state;
    container.textContent = "";
    container.classList.add("plait-timeline");
    var model = prepare(data);
    state.model = model;
    state.container = container;

    header(container, model);
    var many = model.nodes.length > MANY;
    container.setAttribute("data-view", many ? "stages" : "calls");
    legend(container, model, state, !many);
    state.main = el("div", { "class": "pt-main" });
    container.appendChild(state.main);
    state.drillBox = el("div", { "class": "pt-drill-box" });
    state.details = el("div", { "class": "pt-details empty" }, "Hover a bar for its call; click it for everything about it.");
    if (many) {
      stages(state.main, model, state);
      container.appendChild(state.drillBox);
      container.appendChild(state.details);
      if (model.data.rows && model.data.rows.length) rowsSection(container, model, state);
    } else {
      drawMain(state);
      container.appendChild(state.details);
      container.appendChild(state.drillBox);
      if (model.data.rows && model.data.rows.length) rowsSection(container, model, state);
    }
    tooltip(container, state);
    if (state.drill) openDrill(state, state.drill);
    if (state.selected && model.byN[state.selected.n] && model.byN[state.selected.n].key === state.selected.key) {
      select(state, state.selected.n);
    } else {
      state.selected = null;
    }
    container.setAttribute("data-render-ms", (performance.now() - began).toFixed(1));
    requestAnimationFrame(function () {
      setTimeout(function () {
        container.setAttribute("data-rendered-at", performance.now().toFixed(1));
      }, 0);
    });
  }

  function header(container, model) {
    var d = model.data, run = d.run;
    var box = el("div", { "class": "pt-header" });
    var h = el("h1", null, "plait run " + run.run_id);
    var st = el("span", { "class": "pt-status s-" + run.status }, run.status);
    h.appendChild(st);
    box.appendChild(h);
    box.appendChild(el("div", { "class": "pt-what" }, run.what));
    var llm = 0, failed = 0, replayed = 0, doubt = 0;
    model.nodes.forEach(function (nd) {
      if (nd.kind === "llm") llm++;
      if (nd.state === "failed") failed++;
      if (nd.replayed) replayed++;
      if (nd.state === "in doubt") doubt++;
    });
    var parts = [];
    if (run.origin) parts.push("started " + clock(run.origin + (run.created_at || 0)));
    parts.push(secs(d.end) + " from first call to last");
    parts.push(num(model.nodes.length) + " calls (" + num(llm) + " LLM, " + num(model.nodes.length - llm) + " tool)");
    if (failed) parts.push(num(failed) + " failed");
    if (replayed) parts.push(num(replayed) + " replayed from the journal");
    if (doubt) parts.push(num(doubt) + " in doubt");
    parts.push(num(run.tokens) + " tokens");
    if (run.currency) {
      var cost = "cost " + money(run.cost, run.currency, run.cost_estimated);
      if (run.cost_unpriced && run.cost_unpriced.length) cost += " (no price for " + run.cost_unpriced.join(", ") + ")";
      if (run.replayed) cost += ", saved " + money(run.cost_saved, run.currency) + " by replaying " + num(run.replayed);
      parts.push(cost);
    }
    if (model.sessions.length > 1) parts.push(model.sessions.length + " sessions (resumed " + (model.sessions.length - 1) + "×)");
    box.appendChild(el("div", { "class": "pt-sub" }, parts.join(" · ")));
    if (run.error) box.appendChild(el("div", { "class": "pt-note", style: "color:#c4282e" }, run.error));
    var crit = d.critical || {};
    var path = el("div", { "class": "pt-path" });
    if (crit.known && model.path.length) {
      path.appendChild(el("b", null, "Critical path" + ((d.rows || []).length ? " (of the row that ended last)" : "") + ": "));
      var names = model.path.map(function (n) { var nd = model.byN[n]; return "#" + n + " " + nd.tool; });
      var shown = names.length > 8 ? names.slice(0, 3).concat(["… " + (names.length - 6) + " more …"], names.slice(-3)) : names;
      path.appendChild(document.createTextNode(model.path.length + " calls, " + secs(crit.length) +
        (d.end ? " of " + secs(d.end) : "") + ": " + shown.join(" → ")));
      box.appendChild(path);
      if (crit.inferred) {
        box.appendChild(el("div", { "class": "pt-note" },
          "Links that are waits, not inputs: " + crit.inferred + " (a call that takes no other call's value " +
          "is taken to wait for the plan line that dispatched it, or else for the call that ended last before it started)."));
      }
    } else {
      path.appendChild(el("b", null, "Critical path: "));
      path.appendChild(document.createTextNode("unknown (no call has ended)"));
      box.appendChild(path);
    }
    var planners = model.nodes.filter(function (nd) { return nd.tool === "planner" && nd.state === "done"; });
    if (planners.length && !(d.marks || []).length) {
      box.appendChild(el("div", { "class": "pt-note" },
        "Plan lines: not in this journal (recorded since plait 0.1): the planner calls are drawn without their line marks."));
    }
    container.appendChild(box);
  }

  function swatch(kind) {
    var s = sv("svg", { width: 26, height: 12 });
    var r;
    if (kind === "mark") {
      s.appendChild(sv("line", { x1: 13, x2: 13, y1: 0, y2: 12, stroke: "#3b2a99", "stroke-width": 1.5 }));
      s.appendChild(sv("path", { d: "M9 0 L17 0 L13 5 Z", fill: "#3b2a99" }));
      return s;
    }
    if (kind === "gap") {
      s.appendChild(patterns());
      s.appendChild(sv("rect", { x: 1, y: 1, width: 24, height: 10, fill: "url(#pt-hatch-gap)", stroke: "#afb8c1" }));
      return s;
    }
    if (kind === "ttft") {
      s.appendChild(sv("rect", { x: 1.5, y: 1.5, width: 23, height: 9, rx: 2, fill: "var(--pt-llm)" }));
      s.appendChild(sv("rect", { x: 1.5, y: 1.5, width: 12, height: 9, fill: "#000", "fill-opacity": 0.18 }));
      return s;
    }
    var fill = { llm: "var(--pt-llm)", tool: "var(--pt-tool)", failed: "var(--pt-failed)",
                 critical: "var(--pt-tool)", replayed: "var(--pt-tool)", doubt: "var(--pt-tool)" }[kind];
    r = sv("rect", { x: 1.5, y: 1.5, width: 23, height: 9, rx: 2, fill: fill });
    if (kind === "critical") { r.setAttribute("stroke", "var(--pt-critical)"); r.setAttribute("stroke-width", 3); }
    if (kind === "replayed") r.setAttribute("fill-opacity", 0.35);
    if (kind === "doubt") { r.setAttribute("fill-opacity", 0.25); r.setAttribute("stroke", "#1f2328"); r.setAttribute("stroke-dasharray", "4 3"); }
    s.appendChild(r);
    if (kind === "replayed") {
      s.appendChild(patterns());
      s.appendChild(sv("rect", { x: 1.5, y: 1.5, width: 23, height: 9, fill: "url(#pt-hatch)" }));
    }
    return s;
  }

  function legend(container, model, state, zoomable) {
    var box = el("div", { "class": "pt-legend" });
    function item(kind, text, title) {
      var s = el("span", { title: title });
      s.appendChild(swatch(kind));
      s.appendChild(document.createTextNode(text));
      box.appendChild(s);
    }
    item("llm", "LLM call", "planner, joiner, generate...");
    item("ttft", "waiting for its first token");
    item("tool", "tool call");
    item("failed", "failed");
    item("critical", "critical path");
    item("replayed", "replayed (paid in an earlier session)");
    item("doubt", "in doubt / running (no result)");
    item("mark", "plan line parsed (task dispatched)");
    item("gap", "gap: no process ran it (crash or stop → resume)");
    box.appendChild(el("span", null, "↻N retried (N attempts)"));
    if (zoomable) {
      var tools = el("span", { "class": "pt-tools" });
      [["−", 0.5], ["fit", 0], ["+", 2]].forEach(function (b) {
        var btn = el("button", { type: "button", title: b[1] ? "zoom (or ctrl + wheel on the chart)" : "fit the width" }, b[0]);
        btn.addEventListener("click", function () { zoom(state, b[1] ? state.zoom * b[1] : 1); });
        tools.appendChild(btn);
      });
      box.appendChild(tools);
    }
    container.appendChild(box);
  }

  /* The width a chart may take in the container without a scroll bar. */
  function room(state) {
    var c = state.container, cs = window.getComputedStyle(c);
    var inner = (c.clientWidth || 1240) - parseFloat(cs.paddingLeft || 0) - parseFloat(cs.paddingRight || 0);
    return Math.max(600, inner - 2);
  }

  function zoom(state, z) {
    state.zoom = Math.max(1, Math.min(400, z));
    state.scroll = state.scrollEl ? state.scrollEl.scrollLeft : 0;
    drawMain(state);
    if (state.selected) select(state, state.selected.n);
  }

  function drawMain(state) {
    var model = state.model;
    state.main.textContent = "";
    var chart = calls(model.nodes, model, state, {
      t0: 0, t1: Math.max(model.data.end || 0, 1e-3), width: room(state) * state.zoom - CHROME,
      sessions: true, marks: true, edges: true,
    });
    state.main.appendChild(chart);
    state.scrollEl = chart;
    chart.scrollLeft = state.scroll || 0;
    chart.addEventListener("wheel", function (e) {
      if (!e.ctrlKey && !e.metaKey) return;
      e.preventDefault();
      zoom(state, state.zoom * (e.deltaY < 0 ? 1.25 : 0.8));
    }, { passive: false });
  }

  function patterns() {
    var defs = sv("defs");
    var p = sv("pattern", { id: "pt-hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
    p.appendChild(sv("rect", { width: 2.2, height: 6, fill: "rgba(31,35,40,0.45)" }));
    defs.appendChild(p);
    var g = sv("pattern", { id: "pt-hatch-gap", width: 8, height: 8, patternUnits: "userSpaceOnUse", patternTransform: "rotate(-45)" });
    g.appendChild(sv("rect", { width: 8, height: 8, fill: "#f3f4f6" }));
    g.appendChild(sv("rect", { width: 3, height: 8, fill: "#d5d9de" }));
    defs.appendChild(g);
    return defs;
  }

  /* Calls as bars, in lanes, on a time axis: the main view, and each drill-down. */
  function calls(nodes, model, state, opt) {
    var axis = makeAxis(opt.t0, opt.t1, model.gaps, opt.width);
    var packed = pack(nodes, axis);
    var pad = 10;
    var W = Math.floor(axis.width + 2 * pad);
    var H = TOP + packed.count * LANE + 10;
    var scroll = el("div", { "class": "pt-scroll" });
    var svg = sv("svg", { "class": "pt-chart", width: W, height: H, viewBox: "0 0 " + W + " " + H });
    svg.appendChild(patterns());
    var X = function (t) { return pad + axis.x(t); };

    // The axis: ticks at round times in each stretch between gaps.
    var ax = sv("g", { "class": "pt-axis" });
    var step = niceStep((axis.width / axis.scale) / Math.max(2, axis.width / 110));
    var stretches = [];
    var from = axis.t0;
    axis.gaps.forEach(function (g) { stretches.push([from, g.start]); from = g.end; });
    stretches.push([from, axis.t1]);
    stretches.forEach(function (s) {
      for (var t = Math.ceil(s[0] / step) * step; t <= s[1] + 1e-9; t += step) {
        var x = X(t);
        ax.appendChild(sv("line", { x1: x, x2: x, y1: TOP - 6, y2: H }));
        if (x < W - 36) ax.appendChild(sv("text", { x: x + 3, y: TOP - 10 }, tick(t, step)));
      }
    });
    svg.appendChild(ax);

    // Sessions (when there are several) and the gaps between them.
    if (opt.sessions && model.sessions.length > 1) {
      model.sessions.forEach(function (s) {
        if (s.end < axis.t0 || s.start > axis.t1) return;
        svg.appendChild(sv("text", { "class": "pt-session-label", x: X(Math.max(s.start, axis.t0)) + 3, y: 11 },
          "session " + s.session + (s.session === model.sessions[0].session ? "" : " (resumed)")));
      });
    }
    axis.gaps.forEach(function (g) {
      var gg = sv("g", { "class": "pt-gap", "data-after": g.g.after, "data-before": g.g.before });
      var x0 = X(g.start), x1 = X(g.end);
      gg.appendChild(sv("rect", { x: x0, y: TOP - 4, width: Math.max(2, x1 - x0), height: H - TOP }));
      gg.appendChild(sv("text", { x: (x0 + x1) / 2, y: TOP + 14, "text-anchor": "middle" }, "resumed"));
      gg.appendChild(sv("text", { x: (x0 + x1) / 2, y: TOP + 28, "text-anchor": "middle" }, secs(g.g.end - g.g.start)));
      gg.appendChild(sv("title", null, "no process ran the run for " + secs(g.g.end - g.g.start) +
        " (session " + g.g.after + " stopped: a crash or a stop; session " + g.g.before + " resumed it)"));
      svg.appendChild(gg);
    });

    var y = function (n) { return TOP + packed.lane[n] * LANE + (LANE - BAR) / 2; };
    var shown = {};
    nodes.forEach(function (nd) { shown[nd.n] = true; });

    // The critical path's links, under the bars.
    if (opt.edges) {
      var edges = sv("g", { "class": "pt-edges" });
      for (var i = 1; i < model.path.length; i++) {
        var a = model.byN[model.path[i - 1]], b = model.byN[model.path[i]];
        if (!shown[a.n] || !shown[b.n]) continue;
        var xa = Math.min(X(a.until), X(b.start)), ya = y(a.n) + BAR / 2, xb = X(b.start), yb = y(b.n) + BAR / 2;
        edges.appendChild(sv("path", { "class": "pt-edge", d: "M" + xa + " " + ya + " C" + (xa + xb) / 2 + " " + ya +
          " " + (xa + xb) / 2 + " " + yb + " " + xb + " " + yb }));
      }
      svg.appendChild(edges);
    }

    var bars = sv("g", { "class": "pt-bars" });
    nodes.forEach(function (nd) {
      var x0 = X(nd.start), x1 = Math.max(X(nd.until), x0 + MIN_BAR), w = x1 - x0, yy = y(nd.n);
      var cls = "pt-bar kind-" + nd.kind + " state-" + nd.state.replace(" ", "-");
      if (nd.replayed) cls += " replayed";
      if (model.critical[nd.n] !== undefined) cls += " critical";
      var g = sv("g", { "class": cls, "data-n": nd.n, "data-key": nd.key, "data-tool": nd.tool,
                        "data-state": nd.state, "data-lane": packed.lane[nd.n] });
      g.appendChild(sv("rect", { "class": "pt-body", x: x0, y: yy, width: w, height: BAR }));
      var ttft = nd.stats && nd.stats.ttft;
      if (nd.kind === "llm" && typeof ttft === "number" && nd.end !== null && !nd.replayed) {
        var began = nd.end - (nd.stats.elapsed || (nd.end - nd.start));
        var xf = X(Math.min(began + ttft, nd.end));
        if (xf - x0 > 1) g.appendChild(sv("rect", { "class": "pt-ttft", x: x0, y: yy, width: xf - x0, height: BAR }));
      }
      if (nd.replayed) g.appendChild(sv("rect", { "class": "pt-hatch", x: x0, y: yy, width: w, height: BAR }));
      var text0 = label(nd);
      var room = fits(w);
      if (room >= 3) {
        var text = text0;
        if (room > text0.length + 4 && nd.kind === "tool") text = text0 + " " + oneLine(nd.args.replace(/^\w+ = /gm, ""), room - text0.length - 1);
        g.appendChild(sv("text", { x: x0 + 5, y: yy + BAR - 5 }, text.length > room ? text.slice(0, room - 1) + "…" : text));
      } else if (nodes.length <= OUTSIDE_LABELS) {
        g.appendChild(sv("text", { "class": "pt-outside", x: x1 + 4, y: yy + BAR - 5 }, text0));
      }
      bars.appendChild(g);
    });
    svg.appendChild(bars);

    // Plan lines, at the moment each was complete (and its task dispatched).
    if (opt.marks) {
      var marks = sv("g", { "class": "pt-marks" });
      (model.data.marks || []).forEach(function (m, k) {
        if (!shown[m.node] || !m.text) return;
        var x = X(m.t), yy = y(m.node);
        var g = sv("g", { "class": "pt-mark" + (m.task ? " task" : ""), "data-node": m.node, "data-mark": k });
        g.appendChild(sv("line", { x1: x, x2: x, y1: yy - 3, y2: yy + BAR + 2 }));
        g.appendChild(sv("path", { d: "M" + (x - 4) + " " + (yy - 4) + " L" + (x + 4) + " " + (yy - 4) + " L" + x + " " + (yy + 1) + " Z" }));
        g.appendChild(sv("rect", { x: x - 4, y: yy - 5, width: 8, height: BAR + 8 }));
        marks.appendChild(g);
      });
      svg.appendChild(marks);
    }
    scroll.appendChild(svg);
    svg.addEventListener("click", function (e) {
      var g = e.target.closest && e.target.closest(".pt-bar");
      if (g) select(state, +g.getAttribute("data-n"));
    });
    return scroll;
  }

  /* A bar's label: its tool, with what happened to it. */
  function label(nd) {
    return (nd.attempts > 1 ? "↻" + nd.attempts + " " : "") + (nd.replayed ? "↺ " : "") +
      (nd.state === "failed" ? "✕ " : "") + nd.tool + (nd.state === "in doubt" ? " (in doubt)" : "");
  }
  /* How many characters fit in a bar `w` pixels wide. */
  function fits(w) { return Math.floor((w - 8) / CHAR_PX); }

  function niceStep(raw) {
    var units = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300,
                 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
    for (var i = 0; i < units.length; i++) if (units[i] >= raw) return units[i];
    return units[units.length - 1];
  }

  // ------------------------------------------------------------------ hover and click

  /* The tooltip. Its listeners go on the container once, whatever the number of
     renders (a live view renders again and again): they read the state of the
     latest render from the container. */
  function tooltip(container, state) {
    state.tip = el("div", { "class": "pt-tip", hidden: "" });
    container.appendChild(state.tip);
    if (container.__plaitListening) return;
    container.__plaitListening = true;
    container.addEventListener("mousemove", function (e) {
      var state = container.__plait, tip = state.tip;
      var t = e.target.closest && e.target.closest(".pt-bar, .pt-mark");
      if (!t) { tip.hidden = true; return; }
      var model = state.model;
      tip.textContent = "";
      if (t.classList.contains("pt-mark")) {
        var m = model.data.marks[+t.getAttribute("data-mark")];
        tip.appendChild(el("b", null, (m.task ? "task line" : "plan line") + " parsed at +" + secs(m.t)));
        tip.appendChild(document.createTextNode("\n" + m.text + "\n(in #" + m.node + " " + model.byN[m.node].tool + ")"));
      } else {
        var nd = model.byN[+t.getAttribute("data-n")];
        tip.appendChild(el("b", null, "#" + nd.n + " " + nd.tool + " · " + (nd.kind === "llm" ? "LLM call" : "tool call") + " · " + nd.state));
        var lines = ["+" + secs(nd.start) + " → " + (nd.end === null ? "(no result)" : "+" + secs(nd.end)) +
          (nd.end !== null ? "   " + secs(nd.end - nd.start) : "")];
        if (nd.tokens) lines.push(num(nd.tokens) + " tokens");
        if (nd.attempts > 1) lines.push(nd.attempts + " attempts");
        if (nd.replayed) lines.push("replayed: paid in session " + nd.session + ", taken from the journal after");
        if (model.critical[nd.n] !== undefined) lines.push("on the critical path");
        if (nd.row) lines.push("row " + oneLine(nd.row, 60));
        lines.push(oneLine(nd.args, 160));
        if (nd.error) lines.push("error: " + oneLine(nd.error, 200));
        else if (nd.value !== null) lines.push("→ " + oneLine(nd.value, 160));
        tip.appendChild(document.createTextNode("\n" + lines.join("\n")));
      }
      tip.hidden = false;
      var x = e.clientX + 14, y = e.clientY + 14;
      var r = tip.getBoundingClientRect();
      if (x + r.width > window.innerWidth - 8) x = Math.max(8, e.clientX - r.width - 14);
      if (y + r.height > window.innerHeight - 8) y = Math.max(8, e.clientY - r.height - 14);
      tip.style.left = x + "px";
      tip.style.top = y + "px";
    });
    container.addEventListener("mouseleave", function () { container.__plait.tip.hidden = true; });
    container.addEventListener("keydown", function (e) {
      if (e.key === "Escape") select(container.__plait, null);
    });
  }

  function select(state, n) {
    var container = state.container, model = state.model;
    Array.prototype.forEach.call(container.querySelectorAll(".pt-bar.selected, .pt-bar.related"), function (g) {
      g.classList.remove("selected");
      g.classList.remove("related");
    });
    var box = state.details;
    box.textContent = "";
    if (n === null || !model.byN[n]) {
      state.selected = null;
      box.className = "pt-details empty";
      box.textContent = "Hover a bar for its call; click it for everything about it.";
      return;
    }
    var nd = model.byN[n];
    state.selected = { n: n, key: nd.key };
    Array.prototype.forEach.call(container.querySelectorAll('.pt-bar[data-n="' + n + '"]'), function (g) { g.classList.add("selected"); });
    var rel = nd.parents.concat(model.children[n] || []);
    rel.forEach(function (r) {
      Array.prototype.forEach.call(container.querySelectorAll('.pt-bar[data-n="' + r + '"]'), function (g) { g.classList.add("related"); });
    });
    box.className = "pt-details";
    box.setAttribute("data-n", n);
    box.appendChild(el("h3", null, "#" + nd.n + " " + nd.tool + " · " + (nd.kind === "llm" ? "LLM call" : "tool call") + " · " + nd.state));
    var dl = el("dl");
    function row(k, v, node) {
      dl.appendChild(el("dt", null, k));
      var dd = el("dd", null, node ? null : v);
      if (node) dd.appendChild(node);
      dl.appendChild(dd);
    }
    function links(ns) {
      var span = el("span");
      ns.forEach(function (p, i) {
        if (i) span.appendChild(document.createTextNode(", "));
        var a = el("a", { href: "#" }, "#" + p + " " + model.byN[p].tool);
        a.addEventListener("click", function (e) { e.preventDefault(); select(state, p); });
        span.appendChild(a);
      });
      return span;
    }
    row("key", nd.key);
    row("started", "+" + secs(nd.start));
    row("ended", nd.end === null ? "no result (" + nd.state + ")" : "+" + secs(nd.end));
    if (nd.end !== null) row("duration", secs(nd.end - nd.start));
    row("session", (nd.session === null ? "?" : String(nd.session)) + (nd.replayed ? " (replayed by a later session: not paid again)" : ""));
    row("attempts", String(nd.attempts));
    if (nd.tokens) row("tokens", num(nd.tokens));
    if (nd.tokens && model.data.run.currency) row("cost", money(nd.cost, model.data.run.currency, (nd.stats || {}).estimated));
    var s = nd.stats || {};
    if (s.prompt_tokens !== undefined) row("prompt / completion", num(s.prompt_tokens) + " / " + num(s.completion_tokens) + (s.estimated ? " (estimated)" : ""));
    if (typeof s.ttft === "number") row("time to first token", secs(s.ttft));
    if (s.finish_reason) row("finish reason", s.finish_reason);
    Object.keys(s).forEach(function (k) {
      if (["prompt_tokens", "completion_tokens", "estimated", "ttft", "elapsed", "finish_reason"].indexOf(k) < 0) {
        row(k, typeof s[k] === "string" ? s[k] : JSON.stringify(s[k]));
      }
    });
    if (nd.row) row("row", nd.row);
    if (nd.parents.length) row("inputs", null, links(nd.parents));
    if ((model.children[n] || []).length) row("used by", null, links(model.children[n]));
    if (model.critical[n] !== undefined) row("critical path", "step " + (model.critical[n] + 1) + " of " + model.path.length);
    var marks = model.marksOf[n];
    box.appendChild(dl);
    if (marks && marks.length) {
      box.appendChild(el("div", { "class": "pt-note" }, "lines, at the moment each was parsed:"));
      box.appendChild(el("pre", null, marks.map(function (m) { return "+" + secs(m.t) + "  " + m.text; }).join("\n")));
    }
    box.appendChild(el("div", { "class": "pt-note" }, "arguments"));
    box.appendChild(el("pre", null, nd.args));
    if (nd.error) {
      box.appendChild(el("div", { "class": "pt-note" }, "error"));
      box.appendChild(el("pre", { "class": "pt-error" }, nd.error));
    } else if (nd.value !== null) {
      box.appendChild(el("div", { "class": "pt-note" }, "value"));
      box.appendChild(el("pre", null, nd.value));
    }
  }

  // ------------------------------------------------------------------ many calls

  function stages(box, model, state) {
    var end = Math.max(model.data.end || 0, 1e-3);
    var groups = {}, order = [];
    model.nodes.forEach(function (nd) {
      var g = groups[nd.tool];
      if (!g) { g = groups[nd.tool] = { tool: nd.tool, kind: nd.kind, nodes: [], failed: 0, replayed: 0, doubt: 0, tokens: 0, first: nd.start }; order.push(g); }
      g.nodes.push(nd);
      if (nd.state === "failed") g.failed++;
      if (nd.replayed) g.replayed++;
      if (nd.end === null) g.doubt++;
      g.tokens += nd.tokens || 0;
    });
    box.appendChild(el("h2", null, "Calls by stage (" + num(model.nodes.length) + " calls, " + order.length + " stages): calls in flight over time"));
    var width = room(state);
    var labelW = 150, pad = 10, laneH = 46;
    var axis = makeAxis(0, end, model.gaps, width - labelW - 2 * pad);
    var H = TOP + order.length * laneH + 8, W = width;
    var scroll = el("div", { "class": "pt-scroll" });
    var svg = sv("svg", { "class": "pt-chart pt-stages", width: W, height: H, viewBox: "0 0 " + W + " " + H });
    svg.appendChild(patterns());
    var X = function (t) { return labelW + pad + axis.x(t); };
    var ax = sv("g", { "class": "pt-axis" });
    var step = niceStep((axis.width / axis.scale) / Math.max(2, axis.width / 110));
    var from = 0, stretches = [];
    axis.gaps.forEach(function (g) { stretches.push([from, g.start]); from = g.end; });
    stretches.push([from, end]);
    stretches.forEach(function (s) {
      for (var t = Math.ceil(s[0] / step) * step; t <= s[1] + 1e-9; t += step) {
        ax.appendChild(sv("line", { x1: X(t), x2: X(t), y1: TOP - 6, y2: H }));
        if (X(t) < W - 36) ax.appendChild(sv("text", { x: X(t) + 3, y: TOP - 10 }, tick(t, step)));
      }
    });
    svg.appendChild(ax);
    axis.gaps.forEach(function (g) {
      var gg = sv("g", { "class": "pt-gap", "data-after": g.g.after, "data-before": g.g.before });
      gg.appendChild(sv("rect", { x: X(g.start), y: TOP - 4, width: GAP_PX, height: H - TOP }));
      gg.appendChild(sv("text", { x: X(g.start) + GAP_PX / 2, y: TOP + 14, "text-anchor": "middle" }, "resumed"));
      gg.appendChild(sv("text", { x: X(g.start) + GAP_PX / 2, y: TOP + 28, "text-anchor": "middle" }, secs(g.g.end - g.g.start)));
      svg.appendChild(gg);
    });
    // In flight per pixel column: each call adds its overlap with the column.
    var cols = Math.max(50, Math.floor(axis.width / 2));
    order.forEach(function (g, k) {
      var ok = new Float64Array(cols), bad = new Float64Array(cols);
      g.nodes.forEach(function (nd) {
        var a = axis.x(nd.start) / axis.width * cols, b = Math.max(axis.x(nd.until) / axis.width * cols, a + 0.05);
        var into = nd.state === "failed" ? bad : ok;
        for (var c = Math.floor(a); c < Math.min(cols, Math.ceil(b)); c++) {
          into[c] += Math.min(b, c + 1) - Math.max(a, c);
        }
      });
      var peak = 0;
      for (var c = 0; c < cols; c++) peak = Math.max(peak, ok[c] + bad[c]);
      var y0 = TOP + k * laneH, base = y0 + laneH - 6, hh = laneH - 12;
      var lane = sv("g", { "class": "pt-stage kind-" + g.kind, "data-tool": g.tool });
      lane.appendChild(sv("title", null, g.tool + ": " + num(g.nodes.length) + " calls, " + num(g.failed) +
        " failed, at most about " + Math.round(peak) + " in flight at once; click its row in the table below for its calls"));
      lane.appendChild(sv("text", { "class": "pt-stage-label", x: 6, y: y0 + 18 }, oneLine(g.tool, 20)));
      lane.appendChild(sv("text", { x: 6, y: y0 + 33, fill: "#656d76" }, num(g.nodes.length) + " calls, ≤" + Math.round(peak) + " at once"));
      function area(vals, under, color) {
        var d = "M" + X(0) + " " + base;
        for (var c = 0; c < cols; c++) {
          var v = (vals[c] + (under ? under[c] : 0)) / (peak || 1) * hh;
          var xa = labelW + pad + c / cols * axis.width, xb = labelW + pad + (c + 1) / cols * axis.width;
          d += " L" + xa.toFixed(1) + " " + (base - v).toFixed(1) + " L" + xb.toFixed(1) + " " + (base - v).toFixed(1);
        }
        d += " L" + (labelW + pad + axis.width) + " " + base + " Z";
        lane.appendChild(sv("path", { d: d, fill: color, "fill-opacity": 0.85 }));
      }
      area(ok, bad, g.kind === "llm" ? "var(--pt-llm)" : "var(--pt-tool)");
      if (g.failed) area(bad, null, "var(--pt-failed)");
      lane.appendChild(sv("line", { x1: labelW, x2: W, y1: base + 0.5, y2: base + 0.5, stroke: "#d0d7de" }));
      svg.appendChild(lane);
    });
    scroll.appendChild(svg);
    box.appendChild(scroll);

    // The stages as a table: click one for its slowest and failed calls.
    var table = el("table", { "class": "pt-table pt-stage-table" });
    var head = el("tr");
    ["stage", "kind", "calls", "failed", "replayed", "no result", "median", "p95", "max", "tokens"].forEach(function (h, i) {
      head.appendChild(el("th", { "class": i > 1 ? "num" : null }, h));
    });
    table.appendChild(head);
    order.forEach(function (g) {
      var d = g.nodes.filter(function (nd) { return nd.end !== null; }).map(function (nd) { return nd.end - nd.start; }).sort(function (a, b) { return a - b; });
      var tr = el("tr", { "class": "pt-click", "data-tool": g.tool, title: "draw this stage's slowest and failed calls" });
      [g.tool, g.kind, num(g.nodes.length), num(g.failed), num(g.replayed), num(g.doubt), secs(quantile(d, 0.5)),
       secs(quantile(d, 0.95)), secs(d.length ? d[d.length - 1] : null), num(g.tokens)].forEach(function (v, i) {
        tr.appendChild(el("td", { "class": (i > 1 ? "num" : "") + (i === 3 && g.failed ? " st-failed" : "") }, v));
      });
      tr.addEventListener("click", function () { openDrill(state, { stage: g.tool }); });
      table.appendChild(tr);
    });
    box.appendChild(el("h2", null, "Stages"));
    box.appendChild(table);
  }

  function rowsSection(container, model, state) {
    var rows = model.data.rows;
    var box = el("div", { "class": "pt-rows" });
    var counts = { all: rows.length, done: 0, dropped: 0, failed: 0, started: 0 };
    rows.forEach(function (r) { counts[r.status] = (counts[r.status] || 0) + 1; });
    box.appendChild(el("h2", null, "Rows (" + num(rows.length) + "): click one for its calls"));
    var filter = el("div", { "class": "pt-filter" });
    var table = el("table", { "class": "pt-table pt-row-table" });
    var more = el("button", { type: "button", "class": "pt-more" }, "more rows");
    function span(r) {
      var a = Infinity, b = -Infinity;
      r.nodes.forEach(function (n) { var nd = model.byN[n]; if (nd) { a = Math.min(a, nd.start); b = Math.max(b, nd.until); } });
      return a === Infinity ? [null, null] : [a, b];
    }
    function draw() {
      table.textContent = "";
      var head = el("tr");
      ["#", "key", "status", "calls", "start", "duration", "tokens", "error"].forEach(function (h, i) {
        head.appendChild(el("th", { "class": [0, 3, 4, 5, 6].indexOf(i) >= 0 ? "num" : null }, h));
      });
      table.appendChild(head);
      var picked = rows.filter(function (r) { return state.rowFilter === "all" || r.status === state.rowFilter; });
      // Failed rows first, then the slowest: what one opens a job's timeline for.
      var spans = picked.map(function (r) { return { r: r, s: span(r) }; });
      spans.sort(function (a, b) {
        var fa = a.r.status === "failed" ? 0 : 1, fb = b.r.status === "failed" ? 0 : 1;
        if (fa !== fb) return fa - fb;
        return ((b.s[1] - b.s[0]) || 0) - ((a.s[1] - a.s[0]) || 0);
      });
      spans.slice(0, state.rowsShown).forEach(function (x) {
        var r = x.r;
        var tr = el("tr", { "class": "pt-click", "data-row": r.key });
        [r.ordinal === null ? "–" : String(r.ordinal), oneLine(r.key, 40), r.status, String(r.nodes.length),
         x.s[0] === null ? "–" : "+" + secs(x.s[0]), x.s[0] === null ? "–" : secs(x.s[1] - x.s[0]), num(r.tokens),
         r.error ? oneLine(r.error, 100) : ""].forEach(function (v, i) {
          tr.appendChild(el("td", { "class": ([0, 3, 4, 5, 6].indexOf(i) >= 0 ? "num" : "") + (i === 2 ? " st-" + r.status : "") + (i === 7 ? " pt-err-cell" : "") }, v));
        });
        tr.addEventListener("click", function () { openDrill(state, { row: r.key }); });
        table.appendChild(tr);
      });
      more.hidden = spans.length <= state.rowsShown;
      more.textContent = "show " + Math.min(ROWS_PAGE, spans.length - state.rowsShown) + " more (of " + num(spans.length) + ")";
    }
    ["all", "failed", "done", "dropped", "started"].forEach(function (f) {
      if (f !== "all" && !counts[f]) return;
      var b = el("button", { type: "button", "class": state.rowFilter === f ? "on" : null, "data-filter": f }, f + " " + num(counts[f] || 0));
      b.addEventListener("click", function () {
        state.rowFilter = f;
        state.rowsShown = ROWS_PAGE;
        Array.prototype.forEach.call(filter.querySelectorAll("button"), function (x) { x.classList.toggle("on", x === b); });
        draw();
      });
      filter.appendChild(b);
    });
    more.addEventListener("click", function () { state.rowsShown += ROWS_PAGE; draw(); });
    box.appendChild(filter);
    box.appendChild(table);
    box.appendChild(more);
    draw();
    container.appendChild(box);
  }

  function openDrill(state, what) {
    var model = state.model;
    var picked, title;
    if (what.stage) {
      var all = model.nodes.filter(function (nd) { return nd.tool === what.stage; });
      var failed = all.filter(function (nd) { return nd.state === "failed"; }).slice(0, DRILL_CALLS);
      var rest = all.filter(function (nd) { return nd.state !== "failed"; })
        .sort(function (a, b) { return (b.until - b.start) - (a.until - a.start); }).slice(0, DRILL_CALLS);
      picked = failed.concat(rest);
      title = "Stage " + what.stage + ": " + (picked.length < all.length ? "the " + rest.length + " slowest and " + failed.length + " failed of " + num(all.length) + " calls" : "its " + all.length + " calls");
    } else {
      var row = model.data.rows.filter(function (r) { return r.key === what.row; })[0];
      if (!row) { state.drill = null; return; }
      picked = row.nodes.map(function (n) { return model.byN[n]; }).filter(Boolean);
      title = "Row " + oneLine(row.key, 60) + (row.ordinal !== null ? " (#" + row.ordinal + ")" : "") + ": " + row.status + ", " + picked.length + " calls";
    }
    state.drill = what;
    var box = state.drillBox;
    box.textContent = "";
    if (!picked.length) return;
    var wrap = el("div", { "class": "pt-drill", "data-drill": what.stage ? "stage" : "row" });
    var head = el("div", { "class": "pt-drill-head" });
    head.appendChild(el("h2", null, title));
    var close = el("button", { type: "button" }, "close");
    close.addEventListener("click", function () { state.drill = null; box.textContent = ""; });
    head.appendChild(close);
    wrap.appendChild(head);
    var t0 = Infinity, t1 = -Infinity;
    picked.forEach(function (nd) { t0 = Math.min(t0, nd.start); t1 = Math.max(t1, nd.until); });
    wrap.appendChild(calls(picked, model, state, { t0: t0, t1: Math.max(t1, t0 + 1e-3), width: room(state) - CHROME,
      sessions: false, marks: true, edges: true }));
    box.appendChild(wrap);
  }

  window.plaitTimeline = { render: render, version: 1 };
})();
