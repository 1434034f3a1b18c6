// kuma-py GUI: a single page, plain JavaScript, no build step.
//
// Each view reads paged JSON from /gui/api and re-reads it when the server says something it
// shows has changed: /gui/events is a server-sent-events stream of change notices fed by the
// store's and the ADS streams' own events. There is no polling timer; a burst of notices is
// answered by one read (a short debounce started by the notice itself).

import { h } from "./dom.js";
import { dataplaneView } from "./dataplane.js";
import { meshView } from "./mesh.js";
import { overviewView, propagationView } from "./overview.js";

// --- routing and the live feed ------------------------------------------------------------------

let current = null;
let rendering = Promise.resolve();
let pendingRefresh = null;

function route() {
  const [path, search] = (location.hash.slice(1) || "/").split("?");
  const params = new URLSearchParams(search || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "meshes" && parts.length === 2) return meshView(parts[1], params);
  if (parts[0] === "meshes" && parts[2] === "dataplanes" && parts.length === 4) return dataplaneView(parts[1], parts[3]);
  if (parts[0] === "propagation") return propagationView();
  return overviewView();
}

function show(view, { focus } = {}) {
  current = view;
  const main = document.getElementById("main");
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === view.nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  rendering = rendering.then(() => view.render(main)).then(() => {
    main.dataset.ready = "true";
    const heading = main.querySelector("h1");
    if (heading) document.title = `${heading.firstChild.textContent} · Kuma`;
    if (focus) main.focus();
  }).catch((error) => {
    main.replaceChildren(h("h1", {}, "Could not load this page"), h("p", { class: "problems" }, error.message));
  });
}

function refresh() {
  // Notices that arrive while a read is running are answered by one more read after it.
  if (pendingRefresh) return;
  pendingRefresh = setTimeout(() => {
    pendingRefresh = null;
    const view = current;
    rendering = rendering.then(() => (view === current ? view.render(document.getElementById("main")) : null)).catch(() => {});
  }, 150);
}

let source = null;

function connect() {
  const live = document.getElementById("live");
  const say = (state, text) => { live.className = `live ${state}`; live.querySelector(".text").textContent = text; };
  source = new EventSource("/gui/events");
  source.addEventListener("changes", (event) => {
    const notices = JSON.parse(event.data);
    if (notices.some((n) => n.kind === "hello")) say("on", "Live");
    if (current && current.affected(notices)) refresh();
  });
  // EventSource reconnects by itself; the server's first message after that says "hello",
  // and every view re-reads on it.
  source.addEventListener("error", () => say("off", "Reconnecting…"));
}

// A hidden tab lets go of its stream: browsers allow few connections per host over HTTP/1.1,
// and an operator's forgotten tabs must not starve the one in front. Shown again, it
// reconnects and the "hello" makes the view read everything afresh.
document.addEventListener("visibilitychange", () => {
  if (document.hidden && source) {
    source.close();
    source = null;
    const live = document.getElementById("live");
    live.className = "live";
    live.querySelector(".text").textContent = "Paused while hidden";
  } else if (!document.hidden && !source) {
    connect();
  }
});

// history.replaceState (the mesh view keeping its filters in the address) fires no hashchange:
// only a real navigation builds a new view.
window.addEventListener("hashchange", () => show(route(), { focus: true }));
document.addEventListener("keydown", (event) => {
  // "/" jumps to the first filter box, as in many consoles; Escape leaves it.
  const target = event.target;
  const typing = target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement;
  if (event.key === "/" && !typing) {
    const box = document.getElementById("filter-name");
    if (box) { event.preventDefault(); box.focus(); }
  } else if (event.key === "Escape" && typing) {
    target.blur();
  }
});
show(route());
connect();
