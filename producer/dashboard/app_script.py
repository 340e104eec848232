"""The dashboard's application (app.js): sign-in with the key in session storage, tasks with live progress, pages,
usage, a crawl form; every value goes into the page through textContent or created elements."""

from __future__ import annotations

APP_JS = r""""use strict";
(function () {
  const KEY_SLOT = "scrapeq.apiKey";
  const ACTIVE = new Set(["queued", "running"]);
  const STATUSES = new Set(["queued", "running", "completed", "failed", "cancelled"]);
  const TERMINAL_EVENTS = new Set(["task.completed", "task.failed", "task.cancelled"]);
  const $ = (id) => document.getElementById(id);
  const state = { session: null, rows: new Map(), parts: new WeakMap(), nextTasks: null, ticking: false, ticks: 0,
    timer: null, refreshing: null };

  class ProblemError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
      this.status = status;
      this.problem = problem || {};
    }
  }

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  const aborted = (error) => error && error.name === "AbortError";

  function describe(error) {
    if (!(error instanceof ProblemError)) return "The service could not be reached: " + String(error.message || error);
    const p = error.problem;
    const parts = [`${p.title || "Error"} (${error.status})`];
    if (p.detail) parts.push(p.detail);
    if (Array.isArray(p.errors)) {
      for (const e of p.errors.slice(0, 5)) parts.push(`${(e.loc || []).join(".")}: ${e.msg || ""}`);
    }
    return parts.join(" — ");
  }

  function showMessage(id, text) {
    const node = $(id);
    node.textContent = text || "";
    node.hidden = !text;
  }

  function report(error) {
    if (!aborted(error)) showMessage("app-error", describe(error));
  }

  // Every call: the key from session storage as a Bearer header (never in a URL), no cookies, no referrer.
  async function api(path, options = {}) {
    const key = options.key || sessionStorage.getItem(KEY_SLOT);
    const headers = { Accept: "application/json, application/problem+json" };
    if (key) headers.Authorization = "Bearer " + key;
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const signal = options.key ? undefined : state.session && state.session.signal;
    const response = await fetch(path, {
      method: options.method || "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal,
      cache: "no-store",
      credentials: "omit",
      redirect: "error",
      referrerPolicy: "no-referrer",
    });
    const type = response.headers.get("Content-Type") || "";
    const data = type.includes("json") ? await response.json().catch(() => null) : null;
    if (!response.ok) {
      const error = new ProblemError(response.status, data);
      if (response.status === 401 && !options.key) signOut("Signed out: " + describe(error));
      throw error;
    }
    return data;
  }

  async function signIn(event) {
    event.preventDefault();
    const input = $("api-key");
    const key = input.value.trim();
    input.value = "";
    showMessage("sign-in-error", "");
    if (!key) return;
    try {
      await api("/tasks?limit=1", { key });
    } catch (error) {
      showMessage("sign-in-error", describe(error));
      return;
    }
    sessionStorage.setItem(KEY_SLOT, key);
    start();
  }

  function start() {
    state.session = new AbortController();
    $("sign-in-view").hidden = true;
    $("app-view").hidden = false;
    $("sign-out").hidden = false;
    showMessage("app-error", "");
    loadKnowledgeBases();
    refreshTasks();
    loadUsage();
    followFeed(state.session.signal);
    state.timer = setInterval(tick, 1000);
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY_SLOT);
    if (state.session) state.session.abort();
    state.session = null;
    clearInterval(state.timer);
    state.rows.clear();
    pages.close();
    state.nextTasks = null;
    for (const id of ["task-rows", "page-list", "page-view", "usage-chart", "errors-chart", "crawl-kb"]) {
      $(id).replaceChildren();
    }
    for (const id of ["usage-note", "crawl-message", "who", "pages-task"]) $(id).textContent = "";
    for (const id of ["app-view", "pages-view", "sign-out", "more-tasks", "app-error"]) $(id).hidden = true;
    $("sign-in-view").hidden = false;
    showMessage("sign-in-error", message || "");
    $("api-key").focus();
  }

  async function loadKnowledgeBases() {
    try {
      const data = await api("/knowledge-bases");
      const select = $("crawl-kb");
      select.replaceChildren();
      for (const kb of data.knowledge_bases) {
        const option = el("option", kb.knowledge_base_id);
        option.value = kb.knowledge_base_id;
        select.appendChild(option);
      }
    } catch (error) {
      report(error);
    }
  }

  function when(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? String(iso) : date.toISOString().slice(0, 19).replace("T", " ");
  }

  function percent(task) {
    if (task.status === "completed") return 100;
    const done = (task.progress && task.progress.pages_done) || 0;
    return Math.min(99, Math.floor((100 * done) / Math.max(1, task.limit || 1)));
  }

  function buildRow(taskId) {
    const row = el("tr");
    row.dataset.taskId = taskId;
    const cells = {};
    for (const name of ["created", "url", "kb", "status", "progress", "actions"]) {
      cells[name] = el("td", undefined, name);
      row.appendChild(cells[name]);
    }
    const bar = el("progress");
    bar.max = 100;
    bar.value = 0;
    const share = el("span", "", "percent");
    const counts = el("span", "", "muted counts");
    cells.progress.append(bar, share, document.createTextNode(" "), counts);
    const open = el("button", "Pages", "open-pages");
    open.type = "button";
    open.addEventListener("click", () => pages.open(taskId));
    cells.actions.appendChild(open);
    state.parts.set(row, { cells, bar, share, counts });
    return row;
  }

  function upsert(task) {
    let row = state.rows.get(task.task_id);
    if (!row) {
      row = buildRow(task.task_id);
      state.rows.set(task.task_id, row);
    }
    const { cells, bar, share, counts } = state.parts.get(row);
    const status = STATUSES.has(task.status) ? task.status : "unknown";
    const value = percent(task);
    const progress = task.progress || {};
    row.dataset.status = status;
    row.dataset.percent = String(value);
    cells.created.textContent = when(task.created_at);
    cells.url.textContent = task.url;
    cells.kb.textContent = task.knowledge_base_id;
    cells.status.textContent = task.error ? `${status} (${task.error.code})` : status;
    cells.status.className = "status status-" + status;
    bar.value = value;
    share.textContent = value + " %";
    const extra = [];
    if (progress.pages_failed) extra.push(`${progress.pages_failed} failed`);
    if (progress.pages_skipped) extra.push(`${progress.pages_skipped} skipped`);
    const tail = extra.length ? `, ${extra.join(", ")}` : "";
    counts.textContent = `${progress.pages_done || 0} / ${task.limit} pages${tail}`;
    return row;
  }

  async function refreshTasks() {
    if (state.refreshing) return state.refreshing;
    state.refreshing = (async () => {
      try {
        const data = await api("/tasks?limit=20");
        const body = $("task-rows");
        const shown = data.tasks.map(upsert);
        const older = [...body.children].filter((row) => !shown.includes(row));
        body.replaceChildren(...shown, ...older);
        if (state.nextTasks === null || !older.length) state.nextTasks = data.next_cursor;
        $("more-tasks").hidden = !state.nextTasks;
        $("tasks-empty").hidden = body.children.length > 0;
      } catch (error) {
        report(error);
      } finally {
        state.refreshing = null;
      }
    })();
    return state.refreshing;
  }

  async function moreTasks() {
    if (!state.nextTasks) return;
    try {
      const data = await api("/tasks?limit=20&cursor=" + encodeURIComponent(state.nextTasks));
      for (const task of data.tasks) $("task-rows").appendChild(upsert(task));
      state.nextTasks = data.next_cursor;
      $("more-tasks").hidden = !state.nextTasks;
    } catch (error) {
      report(error);
    }
  }

  // Every second: the counts of each queued or running task (its live progress); the list every 15 s.
  async function tick() {
    if (state.ticking || !state.session) return;
    state.ticking = true;
    state.ticks += 1;
    try {
      if (state.ticks % 15 === 0) await refreshTasks();
      const active = [...state.rows.values()].filter((row) => ACTIVE.has(row.dataset.status)).slice(0, 10);
      for (const row of active) {
        const task = await api("/tasks/" + encodeURIComponent(row.dataset.taskId));
        upsert(task);
        if (!ACTIVE.has(task.status)) finished(task.task_id);
      }
    } catch (error) {
      report(error);
    } finally {
      state.ticking = false;
    }
  }

  function finished(taskId) {
    loadUsage();
    if (pages.current() === taskId && !$("page-list").children.length) pages.open(taskId);
  }

  function feedPath(after, wait) {
    const query = new URLSearchParams({ limit: "1000", wait: String(wait) });
    if (after) query.set("after", after);
    return "/events?" + query.toString();
  }

  // The tenant's event feed: caught up to its end, then long-polled; lifecycle events refresh the list.
  async function followFeed(signal) {
    let after = null;
    try {
      for (let n = 0; n < 50; n += 1) {
        const page = await api(feedPath(after, 0));
        if (page.events.length) after = page.events[page.events.length - 1].id;
        if (!page.next_after) break;
      }
      while (!signal.aborted) {
        const page = await api(feedPath(after, 20));
        if (!page.events.length) continue;
        after = page.events[page.events.length - 1].id;
        await refreshTasks();
        for (const event of page.events) {
          if (TERMINAL_EVENTS.has(event.type) && event.data) finished(event.data.task_id);
        }
      }
    } catch (error) {
      if (aborted(error) || signal.aborted) return;
      report(error);
      setTimeout(() => signal.aborted || followFeed(signal), 5000);
    }
  }

  async function loadUsage() {
    try {
      const data = await api("/usage?granularity=day");
      $("who").textContent = "tenant " + data.tenant_id;
      const buckets = data.buckets || [];
      const days = buckets.map((b) => ({ label: b.start.slice(0, 10), short: b.start.slice(5, 10),
        value: b.pages_stored || 0 }));
      window.ScrapeqChart.columns($("usage-chart"), days, { label: "Pages stored per day" });
      const errors = new Map();
      for (const b of buckets) {
        for (const [code, n] of Object.entries(b.errors || {})) errors.set(code, (errors.get(code) || 0) + n);
      }
      const codes = [...errors].sort((a, b) => b[1] - a[1]).map(([label, value]) => ({ label, value }));
      window.ScrapeqChart.rows($("errors-chart"), codes, { label: "Page errors by code",
        empty: "No page errors in this period." });
      const t = data.totals || {};
      $("usage-note").textContent = `${t.tasks_submitted || 0} tasks submitted, ${t.pages_stored || 0} pages ` +
        `stored, ${t.pages_failed || 0} failed, ${Math.round((t.bytes_fetched || 0) / 1024)} KiB fetched.`;
    } catch (error) {
      if (error instanceof ProblemError && error.status === 404) {
        $("usage-note").textContent = "This service does not report usage.";
      } else {
        report(error);
      }
    }
  }

  async function submitCrawl(event) {
    event.preventDefault();
    const message = $("crawl-message");
    const body = { url: $("crawl-url").value.trim(), knowledge_base_id: $("crawl-kb").value,
      limit: Number($("crawl-limit").value) };
    message.textContent = "Submitting…";
    message.className = "";
    try {
      const accepted = await api("/scrape", { method: "POST", body });
      message.textContent = `Task ${accepted.task_id} is ${accepted.status}.`;
      loadUsage();
      await refreshTasks();
    } catch (error) {
      if (aborted(error)) return;
      message.textContent = describe(error);
      message.className = "error";
    }
  }

  const pages = window.ScrapeqPages.create({ api, report, when });

  function init() {
    $("sign-in-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => signOut(""));
    $("crawl-form").addEventListener("submit", submitCrawl);
    $("refresh-tasks").addEventListener("click", refreshTasks);
    $("more-tasks").addEventListener("click", moreTasks);
    $("more-pages").addEventListener("click", () => pages.more());
    $("close-pages").addEventListener("click", () => pages.close());
    const saved = sessionStorage.getItem(KEY_SLOT);
    if (!saved) return;
    api("/tasks?limit=1", { key: saved }).then(start, (error) => {
      sessionStorage.removeItem(KEY_SLOT);
      showMessage("sign-in-error", describe(error));
    });
  }

  init();
})();
"""
