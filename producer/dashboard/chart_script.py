"""The dashboard's charts (chart.js): inline SVG built element by element, labels as text nodes, colours from the
style sheet (presentation attributes only, no inline style)."""

from __future__ import annotations

CHART_JS = r""""use strict";
// window.ScrapeqChart.columns(container, items, options) and .rows(...): items are {label, short?, value}.
(function () {
  const SVG = "http://www.w3.org/2000/svg";

  function node(tag, attrs, text) {
    const made = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) made.setAttribute(name, String(value));
    if (text !== undefined) made.textContent = text;
    return made;
  }

  function frame(width, height, label) {
    const svg = node("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
    svg.appendChild(node("title", {}, label));
    return svg;
  }

  const round = (value) => Math.round(value * 10) / 10;

  // Vertical bars, one per item (e.g. pages per day), with the largest value on the axis.
  function columns(container, items, options) {
    const width = 360;
    const height = 180;
    const left = 34;
    const bottom = 22;
    const top = 16;
    const plot = height - top - bottom;
    const max = Math.max(1, ...items.map((item) => item.value));
    const slot = (width - left) / Math.max(1, items.length);
    const svg = frame(width, height, options.label);
    svg.appendChild(node("line", { class: "axis", x1: left, y1: height - bottom, x2: width, y2: height - bottom }));
    svg.appendChild(node("text", { x: left - 4, y: top + 4, "text-anchor": "end" }, String(max)));
    svg.appendChild(node("text", { x: left - 4, y: height - bottom, "text-anchor": "end" }, "0"));
    items.forEach((item, n) => {
      const barHeight = item.value > 0 ? Math.max(1, (item.value / max) * plot) : 0;
      const x = left + n * slot + slot * 0.15;
      const middle = round(x + slot * 0.35);
      const bar = node("rect", {
        class: "bar",
        x: round(x),
        y: round(height - bottom - barHeight),
        width: round(slot * 0.7),
        height: round(barHeight),
        "data-label": item.label,
        "data-value": item.value,
      });
      bar.appendChild(node("title", {}, `${item.label}: ${item.value}`));
      svg.appendChild(bar);
      svg.appendChild(node("text", { x: middle, y: height - 7, "text-anchor": "middle" }, item.short || item.label));
      if (item.value > 0) {
        const y = round(height - bottom - barHeight - 3);
        svg.appendChild(node("text", { class: "value", x: middle, y, "text-anchor": "middle" }, String(item.value)));
      }
    });
    container.replaceChildren(svg);
  }

  // Horizontal bars, one row per item (e.g. page errors by code), largest first as given.
  function rows(container, items, options) {
    if (!items.length) {
      const empty = document.createElement("p");
      empty.className = "muted";
      empty.textContent = options.empty || "Nothing to show.";
      container.replaceChildren(empty);
      return;
    }
    const width = 360;
    const row = 22;
    const left = 150;
    const right = 40;
    const height = items.length * row + 6;
    const max = Math.max(1, ...items.map((item) => item.value));
    const svg = frame(width, height, options.label);
    items.forEach((item, n) => {
      const y = 3 + n * row;
      const barWidth = item.value > 0 ? Math.max(1, (item.value / max) * (width - left - right)) : 0;
      svg.appendChild(node("text", { x: left - 6, y: y + 14, "text-anchor": "end" }, item.label));
      const bar = node("rect", {
        class: "bar error-bar",
        x: left,
        y: y + 3,
        width: round(barWidth),
        height: row - 8,
        "data-label": item.label,
        "data-value": item.value,
      });
      bar.appendChild(node("title", {}, `${item.label}: ${item.value}`));
      svg.appendChild(bar);
      svg.appendChild(node("text", { class: "value", x: round(left + barWidth + 4), y: y + 14 }, String(item.value)));
    });
    container.replaceChildren(svg);
  }

  window.ScrapeqChart = Object.freeze({ columns, rows });
})();
"""
