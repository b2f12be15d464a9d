// plait ui: the pages read /api/ and draw it; text from the journal only ever goes
// in through textContent (model output is data, never markup).
"use strict";
const plaitUI = (() => {
  const RUN_POLL_MS = 1000;   // a run's page while it runs
  const LIST_POLL_MS = 2000;  // the runs list while any runs
  const IDLE_POLL_MS = 10000; // the runs list when none does (a new run may start)
  const PAGE_ROWS = 100;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("data-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function getJSON(url) {
    const response = await fetch(url, {cache: "no-store"});
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
    return body;
  }

  function showError(error) {
    const box = document.getElementById("error");
    box.hidden = !error;
    box.textContent = error ? String(error.message || error) : "";
  }

  function setLive(on) { document.getElementById("live").hidden = !on; }

  // One poller per page: the next request starts when the last one ended, so a
  // slow journal is never asked twice at once.
  function poll(load, delay) {
    let timer = null;
    async function tick() {
      let next = null;
      try {
        next = await load();
        showError(null);
      } catch (error) {
        showError(error);
        next = IDLE_POLL_MS;
      }
      if (next) timer = setTimeout(tick, next);
    }
    tick();
    return () => clearTimeout(timer);
  }

  const fmt = {
    when(ts) { return ts ? new Date(ts * 1000).toLocaleString() : "-"; },
    seconds(s) { return s === null || s === undefined ? "-" : `${s.toFixed(3)}s`; },
    money(amount, currency, estimated) {
      if (currency === null || currency === undefined || amount === null || amount === undefined) return "?";
      const digits = amount >= 1 || amount === 0 ? 2 : amount >= 0.0001 ? 4 : 6;
      const text = currency === "USD" ? `$${amount.toFixed(digits)}` : `${amount.toFixed(digits)} ${currency}`;
      return estimated ? `~${text}` : text;
    },
    value(v) {
      if (v === null || v === undefined) return "";
      if (typeof v === "string") return v;
      return JSON.stringify(v, (k, x) => (x && typeof x === "object" && Object.keys(x).length === 1 && "$ref" in x) ? `$${x.$ref}` : x);
    },
    cut(text, width) { return text.length <= width ? text : text.slice(0, width - 1) + "…"; },
  };

  function runLink(run) {
    return el("a", {href: `/runs/${encodeURIComponent(run.run_id)}`}, run.run_id);
  }

  function costText(run) {
    if (run.currency === null || run.currency === undefined) return "? (a dataset job's calls are not priced)";
    let text = fmt.money(run.cost, run.currency, run.cost_estimated);
    if (run.cost_unpriced && run.cost_unpriced.length) text += ` (no price for ${run.cost_unpriced.join(", ")})`;
    return text;
  }

  function fact(dl, name, value, cls) {
    dl.append(el("dt", {}, name), el("dd", {class: cls || null, "data-fact": name}, value));
  }

  function header(journal) { document.getElementById("journal").textContent = journal; }

  function runId() {
    return decodeURIComponent(location.pathname.replace(/^\/runs\//, ""));
  }

  // ------------------------------------------------------------------ the runs list

  function index() {
    poll(async () => {
      const data = await getJSON("/api/runs");
      header(data.journal);
      const body = document.querySelector("#runs tbody");
      body.replaceChildren(...data.runs.map((r) => el("tr", {"data-run-id": r.run_id, "data-status": r.status},
        el("td", {class: "run"}, runLink(r)),
        el("td", {class: "what", title: r.what}, fmt.cut(r.what, 80),
           r.error ? el("div", {class: "error-text"}, fmt.cut(r.error, 120)) : null),
        el("td", {class: `status ${r.status}`}, r.status),
        el("td", {class: "started"}, fmt.when(r.started_at)),
        el("td", {class: "num duration"}, fmt.seconds(r.duration)),
        el("td", {class: "num calls"}, r.calls === null ? "-" : r.calls),
        el("td", {class: "num tokens"}, r.tokens),
        el("td", {class: "num cost", title: costText(r)}, fmt.money(r.cost, r.currency, r.cost_estimated)),
      )));
      document.getElementById("empty").hidden = data.runs.length > 0;
      const running = data.runs.some((r) => r.status === "running");
      setLive(running);
      return running ? LIST_POLL_MS : IDLE_POLL_MS;
    });
  }

  // ------------------------------------------------------------------ a run

  function runFacts(run, calls) {
    const dl = document.getElementById("facts");
    dl.replaceChildren();
    fact(dl, "status", run.status, `status ${run.status}`);
    fact(dl, run.entry.startsWith("ask:") ? "question" : "workflow", run.what);
    fact(dl, "entry", run.entry);
    fact(dl, "started", fmt.when(run.started_at));
    fact(dl, "duration", fmt.seconds(run.duration));
    if (calls !== null) fact(dl, "calls", calls);
    fact(dl, "tokens", run.tokens);
    fact(dl, "cost", costText(run));
    if (run.replayed) {
      fact(dl, "saved", `${fmt.money(run.cost_saved, run.currency)} by replaying ${run.replayed} call${run.replayed === 1 ? "" : "s"} from the journal`);
    }
    if (run.error) fact(dl, "error", run.error, "error-text");
  }

  function callText(c) {
    const args = c.arguments;
    const request = args && typeof args === "object" && args.request && args.request.messages ? args.request : null;
    const head = request ? `${c.tool}(${request.messages.length} message${request.messages.length === 1 ? "" : "s"})`
      : `${c.tool}(${fmt.cut(fmt.value(args), 200)})`;
    const tail = c.error !== null && c.error !== undefined ? `error: ${c.error}`
      : c.state === "done" ? fmt.cut(fmt.value(c.value), 300) : c.state;
    return `${head} → ${tail}`;
  }

  function drawSteps(question) {
    const section = document.getElementById("question");
    section.hidden = !question;
    if (!question) return;
    const steps = document.getElementById("steps");
    steps.replaceChildren(
      el("p", {class: "q"}, el("b", {}, "question: "), question.question || ""),
      ...question.steps.map((s) => {
        if (s.kind === "plan") return el("pre", {class: "plan", "data-call": s.call}, s.text !== undefined ? s.text : `${s.state}: ${s.error || ""}`);
        if (s.kind === "task") return el("p", {class: `task ${s.error ? "failed" : ""}`, "data-call": s.call},
          `task #${s.call} ${s.tool}(${fmt.cut(fmt.value(s.arguments), 200)}) → ${s.error ? "error: " + s.error : fmt.cut(fmt.value(s.value), 200)}`);
        return el("p", {class: "decision", "data-call": s.call}, `decision: ${s.action || s.state}${s.answer ? ": " + s.answer : ""}`);
      }),
      el("p", {class: "answer"}, el("b", {}, "answer: "), question.answer === null || question.answer === undefined ? "(none)" : question.answer),
    );
  }

  function drawCalls(calls, total, currency) {
    const t0 = calls.length ? Math.min(...calls.map((c) => c.started_at)) : 0;
    document.getElementById("calls-count").textContent = total > calls.length ? `(${calls.length} of ${total})` : `(${total})`;
    document.querySelector("#calls tbody").replaceChildren(...calls.map((c) => el("tr",
      {"data-n": c.n, "data-state": c.state, "data-tool": c.tool, class: c.state.replace(" ", "-")},
      el("td", {class: "num"}, c.n),
      el("td", {class: "tool"}, c.tool),
      el("td", {class: "state"}, c.state),
      el("td", {class: "num"}, c.attempts),
      el("td", {class: "session"}, c.session === null || c.session === undefined ? "-" : `${c.session}${c.replayed ? " replayed" : ""}`),
      el("td", {class: "num"}, `+${(c.started_at - t0).toFixed(3)}s`),
      el("td", {class: "num"}, fmt.seconds(c.duration)),
      el("td", {class: "num"}, c.tokens),
      el("td", {class: "num cost"}, fmt.money(c.cost, currency, c.cost && c.record && c.record.estimated)),
      el("td", {class: "call"}, callText(c)),
    )));
  }

  function run() {
    const id = runId();
    document.title = `plait · ${id}`;
    const base = `/api/runs/${encodeURIComponent(id)}`;
    poll(async () => {
      const [data, timeline] = await Promise.all([getJSON(base), getJSON(`${base}/timeline`)]);
      // Drawn anew with each poll's data: the timeline keeps its zoom and selection.
      plaitTimeline.render(document.getElementById("plait-timeline"), timeline);
      header(data.journal);
      document.getElementById("title").textContent = `run ${data.run.run_id}`;
      runFacts(data.run, data.calls_total);
      drawSteps(data.question);
      drawCalls(data.calls, data.calls_total, data.run.currency);
      const running = data.run.status === "running";
      setLive(running);
      return running ? RUN_POLL_MS : null;
    });
  }

  // ------------------------------------------------------------------ a dataset job

  function job() {
    const id = runId();
    document.title = `plait · ${id}`;
    const params = new URLSearchParams(location.search);
    const state = {status: params.get("status") || "all", cursors: [-1], next: null};
    if (!["all", "done", "dropped", "failed"].includes(state.status)) state.status = "all";
    let stop = null;

    async function load() {
      const base = `/api/runs/${encodeURIComponent(id)}`;
      const after = state.cursors[state.cursors.length - 1];
      const [data, page] = await Promise.all([
        getJSON(base),
        getJSON(`${base}/rows?status=${state.status}&after=${after}&limit=${PAGE_ROWS}`),
      ]);
      header(data.journal);
      const run = data.run;
      document.getElementById("title").textContent = `dataset job ${run.run_id}`;
      runFacts(run, null);
      const counts = run.rows;
      const all = counts.done + counts.dropped + counts.failed;
      for (const button of document.querySelectorAll("#filters button")) {
        const s = button.dataset.status;
        button.querySelector(".count").textContent = (s === "all" ? all : counts[s]).toLocaleString();
        button.classList.toggle("active", s === state.status);
      }
      document.querySelector("#rows tbody").replaceChildren(...page.rows.map((r) => el("tr",
        {"data-status": r.status, "data-ordinal": r.ordinal, class: r.status},
        el("td", {class: "num"}, r.ordinal),
        el("td", {class: "key"}, r.key),
        el("td", {class: "status"}, r.status),
        el("td", {class: "num"}, r.tokens),
        el("td", {class: r.status === "failed" ? "error-text" : "value"},
           r.status === "failed" ? r.error : fmt.cut(fmt.value(r.value), 500)),
      )));
      state.next = page.next;
      const first = (state.cursors.length - 1) * PAGE_ROWS + 1;
      document.getElementById("page-info").textContent = page.rows.length
        ? `rows ${first.toLocaleString()}–${(first + page.rows.length - 1).toLocaleString()} (${state.status})`
        : `no ${state.status === "all" ? "" : state.status + " "}rows`;
      document.getElementById("prev").disabled = state.cursors.length === 1;
      document.getElementById("next").disabled = page.next === null;
      const running = run.status === "running";
      setLive(running);
      return running ? LIST_POLL_MS : null;
    }

    function reload() {
      if (stop) stop();
      stop = poll(load);
    }
    // A job's timeline reads every call it made: drawn once, when asked for.
    const box = document.getElementById("timeline-box");
    box.addEventListener("toggle", async () => {
      if (!box.open || box.dataset.drawn) return;
      box.dataset.drawn = "1";
      try {
        const timeline = await getJSON(`/api/runs/${encodeURIComponent(id)}/timeline`);
        plaitTimeline.render(document.getElementById("plait-timeline"), timeline);
      } catch (error) {
        delete box.dataset.drawn;
        showError(error);
      }
    });
    for (const button of document.querySelectorAll("#filters button")) {
      button.addEventListener("click", () => {
        state.status = button.dataset.status;
        state.cursors = [-1];
        const url = new URL(location.href);
        url.searchParams.set("status", state.status);
        history.replaceState(null, "", url);
        reload();
      });
    }
    document.getElementById("next").addEventListener("click", () => {
      if (state.next === null) return;
      state.cursors.push(state.next);
      reload();
    });
    document.getElementById("prev").addEventListener("click", () => {
      if (state.cursors.length > 1) state.cursors.pop();
      reload();
    });
    reload();
  }

  return {index, run, job, fmt};
})();
