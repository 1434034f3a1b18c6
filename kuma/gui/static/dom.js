// DOM helpers and the JSON reader shared by the views: text only, never HTML built from data.

export const API = "/gui/api";
export const PAGE_SIZE = 50;

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const enc = encodeURIComponent;
export const meshHref = (mesh) => `#/meshes/${enc(mesh)}`;
export const dpHref = (mesh, name) => `#/meshes/${enc(mesh)}/dataplanes/${enc(name)}`;

export function badge(status, label) {
  const cls = { online: "online", offline: "offline", "partially degraded": "degraded" }[status] || "neutral";
  const text = label || (status ? status[0].toUpperCase() + status.slice(1) : "Unknown");
  return h("span", { class: `badge ${cls}`, "data-status": status }, text);
}

export function ago(iso) {
  if (!iso) return "never";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.round(seconds)}s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)}h ago`;
  return `${Math.round(seconds / 86400)}d ago`;
}

export function time(iso) {
  return iso ? h("time", { datetime: iso, title: iso }, ago(iso)) : "never";
}

export function ms(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  return seconds < 1 ? `${(seconds * 1000).toFixed(1)} ms` : `${seconds.toFixed(2)} s`;
}

export function table(caption, columns, rows, empty) {
  const head = h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)));
  const body = rows.length
    ? rows.map((r) => h("tr", r.attrs || {}, r.cells.map((cell, i) => h("td", { class: columns[i].num ? "num" : null }, cell))))
    : [h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty || "Nothing here."))];
  return h("div", { class: "panel" }, h("table", {}, h("caption", { class: "sr-only" }, caption), h("thead", {}, head), h("tbody", {}, body)));
}

export function card(number, label, attrs) {
  return h("div", { class: "card", ...(attrs || {}) }, h("div", { class: "n" }, number), h("div", { class: "l" }, label));
}

export async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}


export function pager(page, go, what) {
  const prev = page.offset > 0;
  const next = page.offset + page.items.length < page.total;
  return h("nav", { class: "pager", "aria-label": `Pages of ${what}` },
    h("button", { type: "button", disabled: !prev, onclick: () => go(Math.max(0, page.offset - page.size)), "data-page": "prev" }, "← Previous"),
    h("span", { class: "muted" }, `Page ${Math.floor(page.offset / page.size) + 1} of ${Math.max(1, Math.ceil(page.total / page.size))}`),
    h("button", { type: "button", disabled: !next, onclick: () => go(page.offset + page.size), "data-page": "next" }, "Next →"));
}

