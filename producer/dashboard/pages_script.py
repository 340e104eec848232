"""The dashboard's pages view (pages.js): a task's pages a cursor page at a time, one rendered as markdown."""

from __future__ import annotations

PAGES_JS = r""""use strict";
// window.ScrapeqPages.create({api, report, when}) -> {open(taskId), more(), close(), current()}.
(function () {
  const MAX_RENDERED = 200000;
  const $ = (id) => document.getElementById(id);

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function create({ api, report, when }) {
    let taskId = null;
    let cursor = null;

    function showPage(page) {
      const view = $("page-view");
      const meta = el("p", undefined, "muted");
      const source = el("a", page.url);
      const href = window.ScrapeqMarkdown.safeHref(page.url);
      if (href) {
        source.href = href;
        source.rel = "noopener noreferrer";
        source.target = "_blank";
      }
      meta.append(source, ` · status ${page.status_code ?? "–"} · fetched ${when(page.fetched_at)}`);
      view.replaceChildren(el("h3", page.title || "(untitled)", "page-title"), meta);
      if (page.error) view.appendChild(el("p", `${page.error.code}: ${page.error.message}`, "error"));
      const text = page.markdown || page.text || "";
      const body = el("div", undefined, "markdown");
      body.appendChild(window.ScrapeqMarkdown.render(text.slice(0, MAX_RENDERED), page.final_url || page.url));
      view.appendChild(body);
      if (text.length > MAX_RENDERED) view.appendChild(el("p", "(cut: the page is longer)", "muted"));
    }

    function pageItem(page) {
      const item = el("li");
      const open = el("button", page.title || page.url, "page-link");
      open.type = "button";
      open.addEventListener("click", () => {
        for (const other of $("page-list").querySelectorAll("li.selected")) other.classList.remove("selected");
        item.classList.add("selected");
        showPage(page);
      });
      item.appendChild(open);
      if (page.error) item.appendChild(el("span", ` (${page.error.code})`, "error"));
      return item;
    }

    async function more() {
      const wanted = taskId;
      if (!wanted) return;
      const query = new URLSearchParams({ limit: "20" });
      if (cursor) query.set("cursor", cursor);
      try {
        const data = await api(`/tasks/${encodeURIComponent(wanted)}/pages?${query.toString()}`);
        if (wanted !== taskId) return;
        for (const page of data.pages) $("page-list").appendChild(pageItem(page));
        cursor = data.next_cursor;
        $("more-pages").hidden = !cursor;
        if (!$("page-list").children.length) $("page-view").textContent = "No pages stored yet.";
      } catch (error) {
        report(error);
      }
    }

    async function open(id) {
      taskId = id;
      cursor = null;
      $("pages-task").textContent = id;
      $("page-list").replaceChildren();
      $("page-view").replaceChildren();
      $("pages-view").hidden = false;
      await more();
    }

    function close() {
      taskId = null;
      cursor = null;
      $("pages-view").hidden = true;
      $("page-list").replaceChildren();
      $("page-view").replaceChildren();
    }

    return Object.freeze({ open, more, close, current: () => taskId });
  }

  window.ScrapeqPages = Object.freeze({ create });
})();
"""
