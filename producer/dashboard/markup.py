"""The dashboard's HTML page and style sheet: no inline script or style anywhere (the CSP forbids both)."""

from __future__ import annotations

INDEX_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>scrapeq dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/dashboard/style.css">
<script src="/dashboard/markdown.js" defer></script>
<script src="/dashboard/chart.js" defer></script>
<script src="/dashboard/pages.js" defer></script>
<script src="/dashboard/app.js" defer></script>
</head>
<body>
<header class="top">
  <h1>scrapeq</h1>
  <span id="who" class="muted"></span>
  <button id="sign-out" type="button" hidden>Sign out</button>
</header>
<main>
  <section id="sign-in-view" class="card narrow">
    <h2>Sign in</h2>
    <!-- No name attributes: without the script, submitting sends nothing anywhere. -->
    <form id="sign-in-form" method="post" action="/dashboard" autocomplete="off">
      <label for="api-key">API key</label>
      <input id="api-key" type="password" required autocomplete="off" spellcheck="false" placeholder="sq_…">
      <button type="submit">Sign in</button>
    </form>
    <p id="sign-in-error" class="error" role="alert" hidden></p>
    <p class="muted">The key stays in this tab only (session storage) and is sent as a Bearer header.</p>
  </section>

  <section id="app-view" hidden>
    <section id="usage" class="card">
      <h2>Usage, last 7 days</h2>
      <div class="charts">
        <figure><figcaption>Pages stored per day</figcaption><div id="usage-chart" class="chart"></div></figure>
        <figure><figcaption>Page errors by code</figcaption><div id="errors-chart" class="chart"></div></figure>
      </div>
      <p id="usage-note" class="muted"></p>
    </section>

    <section id="crawl" class="card">
      <h2>New crawl</h2>
      <form id="crawl-form" method="post" action="/dashboard" autocomplete="off">
        <label for="crawl-url">URL</label>
        <input id="crawl-url" type="url" required placeholder="https://example.com/">
        <label for="crawl-kb">Knowledge base</label>
        <select id="crawl-kb" required></select>
        <label for="crawl-limit">Pages</label>
        <input id="crawl-limit" type="number" min="1" max="10000" value="10" required>
        <button type="submit">Crawl</button>
      </form>
      <p id="crawl-message" role="status"></p>
    </section>

    <section id="tasks" class="card">
      <h2>Tasks <button id="refresh-tasks" type="button" class="small">Refresh</button></h2>
      <table>
        <thead><tr><th>Created</th><th>URL</th><th>Knowledge base</th><th>Status</th><th>Progress</th><th></th></tr>
        </thead>
        <tbody id="task-rows"></tbody>
      </table>
      <p id="tasks-empty" class="muted" hidden>No tasks yet.</p>
      <button id="more-tasks" type="button" hidden>More tasks</button>
    </section>

    <section id="pages-view" class="card" hidden>
      <h2>Pages of <code id="pages-task"></code>
        <button id="close-pages" type="button" class="small">Close</button></h2>
      <div class="pages">
        <ol id="page-list"></ol>
        <article id="page-view" aria-live="polite"></article>
      </div>
      <button id="more-pages" type="button" hidden>More pages</button>
    </section>
  </section>
  <p id="app-error" class="error" role="alert" hidden></p>
</main>
</body>
</html>
"""

STYLE_CSS = """:root { --fg: #1d2330; --muted: #667085; --line: #d9dee7; --accent: #2f6fdb; --bad: #c0392b;
  --ok: #2e8b57; --bg: #f5f7fa; font-family: system-ui, sans-serif; color: var(--fg); background: var(--bg); }
body { margin: 0; }
.top { display: flex; gap: 1rem; align-items: center; padding: 0.6rem 1.2rem; background: #fff;
  border-bottom: 1px solid var(--line); }
.top h1 { font-size: 1.2rem; margin: 0; flex: 0 0 auto; }
.top #who { flex: 1 1 auto; }
main { padding: 1rem 1.2rem; display: grid; gap: 1rem; }
#app-view { display: grid; gap: 1rem; }
[hidden] { display: none !important; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 0.8rem 1rem; }
.card h2 { font-size: 1rem; margin: 0 0 0.6rem; }
.narrow { max-width: 28rem; }
.muted { color: var(--muted); font-size: 0.85rem; }
.error { color: var(--bad); font-weight: 600; }
form { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center; }
input, select, button { font: inherit; padding: 0.3rem 0.5rem; }
#crawl-url, #api-key { flex: 1 1 16rem; }
#crawl-limit { width: 6rem; }
button { cursor: pointer; border: 1px solid var(--accent); background: var(--accent); color: #fff;
  border-radius: 4px; }
button.small, td button { font-size: 0.8rem; padding: 0.1rem 0.5rem; }
table { width: 100%; border-collapse: collapse; font-size: 0.9rem; }
th, td { text-align: left; padding: 0.3rem 0.4rem; border-bottom: 1px solid var(--line); vertical-align: middle; }
td.url { max-width: 28rem; overflow-wrap: anywhere; }
progress { width: 10rem; height: 0.9rem; vertical-align: middle; }
.percent { display: inline-block; min-width: 3.5rem; text-align: right; font-variant-numeric: tabular-nums; }
.status-completed { color: var(--ok); }
.status-failed, .status-cancelled { color: var(--bad); }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(18rem, 1fr)); gap: 1rem; }
figure { margin: 0; }
figcaption { font-size: 0.85rem; color: var(--muted); margin-bottom: 0.3rem; }
.chart svg { width: 100%; max-width: 30rem; height: auto; display: block; }
.chart .bar { fill: var(--accent); }
.chart .bar.error-bar { fill: var(--bad); }
.chart .axis { stroke: var(--line); }
.chart text { font-size: 10px; fill: var(--muted); }
.chart text.value { fill: var(--fg); }
.pages { display: grid; grid-template-columns: minmax(14rem, 1fr) 3fr; gap: 1rem; }
#page-list { margin: 0; padding-left: 1.4rem; font-size: 0.9rem; }
#page-list li { margin-bottom: 0.3rem; }
#page-list button { background: none; color: var(--accent); border: none; padding: 0; text-align: left; }
#page-list li.selected button { font-weight: 700; }
#page-view { border-left: 1px solid var(--line); padding-left: 1rem; overflow-wrap: anywhere; }
#page-view pre { background: var(--bg); padding: 0.5rem; overflow-x: auto; }
#page-view blockquote { border-left: 3px solid var(--line); margin-left: 0; padding-left: 0.8rem; }
#page-view table td, #page-view table th { border: 1px solid var(--line); }
"""
