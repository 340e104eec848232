"""The dashboard's markdown renderer (markdown.js): DOM nodes from a fixed list of tags, text only through text
nodes, links only to http(s); no string is ever parsed as HTML."""

from __future__ import annotations

MARKDOWN_JS = r""""use strict";
// window.ScrapeqMarkdown.render(markdown, baseUrl) -> DocumentFragment. Raw HTML in the markdown stays text.
(function () {
  const MAX_DEPTH = 8;
  const LIST = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
  const FENCE = /^\s{0,3}(`{3,}|~{3,})\s*([\w+-]*)\s*$/;
  const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/;
  const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
  const QUOTE = /^\s{0,3}>/;
  const TABLE_ROW = /^\s*\|.*\|\s*$/;
  const TABLE_RULE = /^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$/;
  const ESCAPABLE = /[\\`*_{}[\]()#+\-.!<>|~]/;

  function el(tag, text) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // An absolute http(s) URL, resolved against the page's own URL; anything else (javascript:, data:…) is null.
  function safeHref(href, base) {
    try {
      const url = new URL(href, base || undefined);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (error) {
      return null;
    }
  }

  function link(text, href, base, depth, rich) {
    const target = safeHref(href, base);
    const content = rich ? inline(text, base, depth) : document.createTextNode(text);
    if (!target) return content;
    const anchor = el("a");
    anchor.href = target;
    anchor.rel = "noopener noreferrer";
    anchor.referrerPolicy = "no-referrer";
    anchor.target = "_blank";
    anchor.appendChild(content);
    return anchor;
  }

  function wrap(tag, text, base, depth) {
    const node = el(tag);
    node.appendChild(inline(text, base, depth));
    return node;
  }

  // Tried in order at a position where one of "`![<*_" stands; each pattern is sticky (matches only there).
  const INLINE = [
    [/`([^`\n]+)`/y, (m) => el("code", m[1])],
    [/!\[([^\]\n]*)\]\(\s*([^)\s]*)(?:\s+"[^"\n]*")?\s*\)/y, (m, b, d) => link("image: " + (m[1] || m[2]), m[2], b, d)],
    [/\[([^\]\n]+)\]\(\s*([^)\s]*)(?:\s+"[^"\n]*")?\s*\)/y, (m, b, d) => link(m[1], m[2], b, d, true)],
    [/<(https?:\/\/[^\s<>]+)>/y, (m, b, d) => link(m[1], m[1], b, d)],
    [/\*\*(?=\S)([^\n]*?\S)\*\*/y, (m, b, d) => wrap("strong", m[1], b, d)],
    [/__(?=\S)([^\n]*?\S)__(?![A-Za-z0-9])/y, (m, b, d) => wrap("strong", m[1], b, d)],
    [/\*(?=[^\s*])([^\n*]*?[^\s*])\*/y, (m, b, d) => wrap("em", m[1], b, d)],
    [/_(?=[^\s_])([^\n_]*?[^\s_])_(?![A-Za-z0-9])/y, (m, b, d) => wrap("em", m[1], b, d)],
  ];

  function inline(text, base, depth) {
    const out = document.createDocumentFragment();
    let plain = "";
    const flush = () => {
      if (plain) out.appendChild(document.createTextNode(plain));
      plain = "";
    };
    let i = 0;
    while (i < text.length) {
      const ch = text[i];
      if (ch === "\\" && i + 1 < text.length && ESCAPABLE.test(text[i + 1])) {
        plain += text[i + 1];
        i += 2;
        continue;
      }
      if (ch === "\n") {
        const hard = plain.endsWith("  ");
        plain = hard ? plain.replace(/ +$/, "") : plain + " ";
        if (hard) {
          flush();
          out.appendChild(el("br"));
        }
        i += 1;
        continue;
      }
      let matched = false;
      const intraword = ch === "_" && /[A-Za-z0-9]/.test(text[i - 1] || "");
      if (depth < MAX_DEPTH && "`![<*_".includes(ch) && !intraword) {
        for (const [pattern, make] of INLINE) {
          pattern.lastIndex = i;
          const m = pattern.exec(text);
          if (m) {
            flush();
            out.appendChild(make(m, base, depth + 1));
            i = pattern.lastIndex;
            matched = true;
            break;
          }
        }
      }
      if (!matched) {
        plain += ch;
        i += 1;
      }
    }
    flush();
    return out;
  }

  const indentOf = (line) => line.length - line.trimStart().length;

  function startsBlock(line) {
    return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || LIST.test(line);
  }

  function cells(line) {
    let row = line.trim();
    if (row.startsWith("|")) row = row.slice(1);
    if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
    return row.split(/(?<!\\)\|/).map((cell) => cell.trim());
  }

  function table(lines, i, parent, base, depth) {
    const node = el("table");
    const head = el("thead");
    const header = el("tr");
    for (const cell of cells(lines[i])) header.appendChild(wrap("th", cell, base, depth));
    head.appendChild(header);
    const body = el("tbody");
    i += 2;
    while (i < lines.length && TABLE_ROW.test(lines[i])) {
      const row = el("tr");
      for (const cell of cells(lines[i])) row.appendChild(wrap("td", cell, base, depth));
      body.appendChild(row);
      i += 1;
    }
    node.append(head, body);
    parent.appendChild(node);
    return i;
  }

  function list(lines, i, parent, base, depth) {
    const first = LIST.exec(lines[i]);
    const indent = first[1].length;
    const ordered = /\d/.test(first[2]);
    const node = el(ordered ? "ol" : "ul");
    if (ordered && parseInt(first[2], 10) !== 1) node.start = parseInt(first[2], 10);
    while (i < lines.length) {
      const m = LIST.exec(lines[i]);
      if (!m || m[1].length !== indent || /\d/.test(m[2]) !== ordered) break;
      const inner = indent + m[2].length + 1;
      const item = [m[3]];
      i += 1;
      while (i < lines.length) {
        const next = lines[i];
        if (!next.trim()) {
          const after = lines[i + 1];
          if (after !== undefined && after.trim() && indentOf(after) > indent) {
            item.push("");
            i += 1;
            continue;
          }
          break;
        }
        const nested = LIST.exec(next);
        if ((nested && nested[1].length <= indent) || (indentOf(next) <= indent && startsBlock(next))) break;
        item.push(next.slice(Math.min(indentOf(next), inner)));
        i += 1;
      }
      const li = el("li");
      if (item.length === 1 || depth >= MAX_DEPTH) li.appendChild(inline(item.join("\n"), base, depth));
      else blocks(item, li, base, depth + 1);
      node.appendChild(li);
    }
    parent.appendChild(node);
    return i;
  }

  function blocks(lines, parent, base, depth) {
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      let m;
      if (!line.trim()) {
        i += 1;
      } else if ((m = FENCE.exec(line))) {
        const body = [];
        i += 1;
        while (i < lines.length && !lines[i].trim().startsWith(m[1])) body.push(lines[i++]);
        i += 1;
        const code = el("code", body.join("\n"));
        if (m[2]) code.dataset.lang = m[2];
        const pre = el("pre");
        pre.appendChild(code);
        parent.appendChild(pre);
      } else if ((m = HEADING.exec(line))) {
        parent.appendChild(wrap("h" + m[1].length, m[2], base, depth));
        i += 1;
      } else if (RULE.test(line)) {
        parent.appendChild(el("hr"));
        i += 1;
      } else if (QUOTE.test(line)) {
        const inner = [];
        while (i < lines.length && QUOTE.test(lines[i])) inner.push(lines[i++].replace(/^\s{0,3}>\s?/, ""));
        const quote = el("blockquote");
        if (depth < MAX_DEPTH) blocks(inner, quote, base, depth + 1);
        else quote.textContent = inner.join("\n");
        parent.appendChild(quote);
      } else if (LIST.test(line)) {
        i = list(lines, i, parent, base, depth);
      } else if (TABLE_ROW.test(line) && TABLE_RULE.test(lines[i + 1] || "")) {
        i = table(lines, i, parent, base, depth);
      } else {
        const para = [line];
        i += 1;
        while (i < lines.length && lines[i].trim() && !startsBlock(lines[i])) para.push(lines[i++]);
        parent.appendChild(wrap("p", para.join("\n"), base, depth));
      }
    }
  }

  function render(markdown, base) {
    const root = document.createDocumentFragment();
    blocks(String(markdown || "").replace(/\r\n?/g, "\n").split("\n"), root, base, 0);
    return root;
  }

  window.ScrapeqMarkdown = Object.freeze({ render, safeHref });
})();
"""
