// kuma-py GUI: a single page, plain JavaScript, no build step.
//
// Each view reads paged JSON from /gui/api and re-reads it when the server says something it
// shows has changed: /gui/events is a server-sent-events stream of change notices fed by the
// store's and the ADS streams' own events. There is no polling timer; a burst of notices is
// answered by one read (a short debounce started by the notice itself).
"use strict";

const API = "/gui/api";
const PAGE_SIZE = 50;

// --- DOM helpers: text only, never HTML built from data ---------------------------------------

function h(tag, attrs, ...children) {
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

const enc = encodeURIComponent;
const meshHref = (mesh) => `#/meshes/${enc(mesh)}`;
const dpHref = (mesh, name) => `#/meshes/${enc(mesh)}/dataplanes/${enc(name)}`;

function badge(status, label) {
  const cls = { online: "online", offline: "offline", "partially degraded": "degraded" }[status] || "neutral";
  const text = label || (status ? status[0].toUpperCase() + status.slice(1) : "Unknown");
  return h("span", { class: `badge ${cls}`, "data-status": status }, text);
}

function ago(iso) {
  if (!iso) return "never";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.round(seconds)}s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)}h ago`;
  return `${Math.round(seconds / 86400)}d ago`;
}

function time(iso) {
  return iso ? h("time", { datetime: iso, title: iso }, ago(iso)) : "never";
}

function ms(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  return seconds < 1 ? `${(seconds * 1000).toFixed(1)} ms` : `${seconds.toFixed(2)} s`;
}

function table(caption, columns, rows, empty) {
  const head = h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)));
  const body = rows.length
    ? rows.map((r) => h("tr", r.attrs || {}, r.cells.map((cell, i) => h("td", { class: columns[i].num ? "num" : null }, cell))))
    : [h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty || "Nothing here."))];
  return h("div", { class: "panel" }, h("table", {}, h("caption", { class: "sr-only" }, caption), h("thead", {}, head), h("tbody", {}, body)));
}

function card(number, label, attrs) {
  return h("div", { class: "card", ...(attrs || {}) }, h("div", { class: "n" }, number), h("div", { class: "l" }, label));
}

async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

// --- views -------------------------------------------------------------------------------------
// A view: { title, render(main) -> Promise, affected(notices) -> bool }.

function overviewView() {
  return {
    nav: "overview",
    async render(main) {
      const data = await getJSON(`${API}/overview`);
      const t = data.totals;
      const problems = data.problems.length
        ? h("section", { class: "problems", "aria-labelledby": "problems-h", id: "store-problems" },
            h("h2", { id: "problems-h" }, `Store problems (${data.problems.length})`),
            h("p", {}, "These entries are not served; the resources they held keep their last valid version."),
            h("ul", {}, data.problems.map((p) => h("li", { class: "problem" }, h("code", {}, p.where), ": ", p.reason))))
        : h("p", { class: "healthy", id: "store-healthy" }, `Store healthy: the ${data.controlPlane.store} store serves everything it holds.`);
      const rows = data.meshes.map((m) => ({
        attrs: { "data-mesh": m.name },
        cells: [
          h("a", { href: meshHref(m.name) }, m.name),
          m.dataplanes.total,
          h("span", { class: "count-online" }, m.dataplanes.online ? badge("online", `${m.dataplanes.online} online`) : "0 online"),
          h("span", { class: "count-offline" }, m.dataplanes.offline ? badge("offline", `${m.dataplanes.offline} offline`) : "0 offline"),
          m.services,
          m.exists ? (m.mtls ? "enabled" : "off") : "Mesh deleted",
        ],
      }));
      main.replaceChildren(
        h("h1", {}, "Overview"),
        h("div", { class: "cards" },
          card(t.meshes, "meshes"), card(t.dataplanes, "Dataplanes"),
          card(t.online, "online", { id: "total-online" }), card(t.offline, "offline", { id: "total-offline" })),
        h("h2", {}, "Store"),
        problems,
        h("h2", {}, "Meshes"),
        table("Meshes", [{ label: "Mesh" }, { label: "Dataplanes", num: true }, { label: "Online" }, { label: "Offline" }, { label: "Services", num: true }, { label: "mTLS" }], rows, "No mesh yet."),
        h("h2", {}, "Zones"),
        h("p", { id: "zones" }, `${data.zones.ingresses} zone ingresses, ${data.zones.egresses} zone egresses stored`,
          h("span", { class: "muted" }, " (multi-zone traffic is not built yet; policies appear here once this control plane has them)")));
      footer(data.controlPlane);
    },
    affected: (notices) => notices.some((n) => ["resource", "proxy", "problems"].includes(n.kind)),
  };
}

function footer(cp) {
  document.getElementById("foot").textContent = `kuma-py ${cp.version} · instance ${cp.instanceId} · store ${cp.store}`;
}

function meshView(mesh, params) {
  const state = {
    name: params.get("name") || "", tag: params.get("tag") || "", status: params.get("status") || "",
    offset: Number(params.get("offset") || 0), svcOffset: 0, visible: new Set(),
  };
  let root = null;
  const parts = {};

  function query() {
    const q = new URLSearchParams({ offset: state.offset, size: PAGE_SIZE });
    if (state.name) q.set("name", state.name);
    for (const tag of state.tag.split(",").map((s) => s.trim()).filter(Boolean)) q.append("tag", tag);
    if (state.status) q.set("status", state.status);
    return q;
  }

  function remember() {
    // Keep the filters in the address so a reload or a shared link shows the same page.
    const q = new URLSearchParams();
    for (const key of ["name", "tag", "status"]) if (state[key]) q.set(key, state[key]);
    if (state.offset) q.set("offset", state.offset);
    const hash = `${meshHref(mesh)}${q.toString() ? "?" + q : ""}`;
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }

  function buildFilters() {
    const apply = () => { state.offset = 0; remember(); refreshDataplanes(); };
    let typing = null;
    const onType = (key) => (event) => { state[key] = event.target.value; clearTimeout(typing); typing = setTimeout(apply, 250); };
    return h("form", { class: "filters", role: "search", "aria-label": "Filter Dataplanes", onsubmit: (e) => { e.preventDefault(); apply(); } },
      h("label", {}, "Name contains", h("input", { id: "filter-name", type: "search", value: state.name, oninput: onType("name"), autocomplete: "off" })),
      h("label", {}, "Tags (key:value, comma-separated)", h("input", { id: "filter-tag", type: "search", value: state.tag, oninput: onType("tag"), placeholder: "kuma.io/service:web", autocomplete: "off" })),
      h("label", {}, "Status", h("select", { id: "filter-status", onchange: (e) => { state.status = e.target.value; apply(); } },
        ["", "online", "offline"].map((s) => h("option", { value: s, selected: s === state.status }, s ? s[0].toUpperCase() + s.slice(1) : "Any")))));
  }

  async function refreshSummary() {
    const m = await getJSON(`${API}/meshes/${enc(mesh)}`);
    parts.summary.replaceChildren(
      card(m.dataplanes.total, "Dataplanes"), card(m.dataplanes.online, "online", { id: "mesh-online" }),
      card(m.dataplanes.offline, "offline", { id: "mesh-offline" }), card(m.services, "services"),
      card(m.exists ? (m.mtls ? "on" : "off") : "deleted", "mTLS"));
  }

  async function refreshServices() {
    const page = await getJSON(`${API}/meshes/${enc(mesh)}/services?offset=${state.svcOffset}&size=${PAGE_SIZE}`);
    const rows = page.items.map((s) => ({
      attrs: { "data-service": s.name },
      cells: [s.name, badge(s.status), s.instances, s.healthy, s.online],
    }));
    parts.services.replaceChildren(
      table("Services", [{ label: "Service" }, { label: "Status" }, { label: "Instances", num: true }, { label: "Healthy", num: true }, { label: "Proxies online", num: true }], rows, "No service in this mesh."),
      pager(page, (offset) => { state.svcOffset = offset; refreshServices(); }, "services"));
  }

  async function refreshDataplanes() {
    const started = performance.now();
    const page = await getJSON(`${API}/meshes/${enc(mesh)}/dataplanes?${query()}`);
    state.visible = new Set(page.items.map((d) => d.name));
    const rows = page.items.map((d) => ({
      attrs: { "data-dataplane": d.name, "data-status": d.status },
      cells: [
        h("a", { href: dpHref(mesh, d.name) }, d.name),
        badge(d.status),
        d.services.join(", ") || (d.gateway ? `gateway (${d.gateway})` : "–"),
        Object.entries(d.tags).filter(([k]) => k !== "kuma.io/service").map(([k, v]) => h("span", { class: "tag" }, `${k}=${v.join(",")}`)),
        d.address,
        time(d.connected),
        d.responses,
        d.rejected ? h("span", { class: "badge offline" }, `${d.rejected} rejected`) : "0",
      ],
    }));
    const shown = page.total ? `${page.offset + 1}–${page.offset + page.items.length} of ${page.total}` : "0";
    parts.dataplanes.replaceChildren(
      h("p", { class: "muted", id: "dp-count" }, `Showing ${shown} Dataplanes`, page.total !== page.inMesh ? ` (${page.inMesh} in the mesh)` : ""),
      table("Dataplanes", [{ label: "Name" }, { label: "Status" }, { label: "Services" }, { label: "Tags" }, { label: "Address" }, { label: "Connected" }, { label: "Responses", num: true }, { label: "NACKs", num: true }], rows, "No Dataplane matches."),
      pager(page, (offset) => { state.offset = offset; remember(); refreshDataplanes(); }, "dataplanes"));
    parts.dataplanes.dataset.renderMs = String(Math.round(performance.now() - started));
    // benchmarks/bench_gui.py reads the first of these: navigation start -> first page shown.
    performance.mark("dataplanes-rendered");
  }

  return {
    nav: null,
    async render(main) {
      if (!root) {
        parts.summary = h("div", { class: "cards" });
        parts.services = h("div", { id: "services" });
        parts.dataplanes = h("div", { id: "dataplanes" });
        root = [
          h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Overview"), " / mesh"),
          h("h1", {}, `Mesh ${mesh}`),
          parts.summary,
          h("h2", {}, "Dataplanes"),
          buildFilters(),
          parts.dataplanes,
          h("h2", {}, "Services"),
          parts.services,
        ];
        main.replaceChildren(...root);
      }
      // The list first: it is what the page is for; the counts follow.
      await refreshDataplanes();
      await Promise.all([refreshSummary(), refreshServices()]);
    },
    affected(notices) {
      return notices.some((n) =>
        n.kind === "resync" || n.kind === "hello" ||
        ((n.kind === "resource" || n.kind === "proxy") && n.mesh === mesh) ||
        (n.kind === "insight" && n.mesh === mesh && state.visible.has(n.name)));
    },
  };
}

function pager(page, go, what) {
  const prev = page.offset > 0;
  const next = page.offset + page.items.length < page.total;
  return h("nav", { class: "pager", "aria-label": `Pages of ${what}` },
    h("button", { type: "button", disabled: !prev, onclick: () => go(Math.max(0, page.offset - page.size)), "data-page": "prev" }, "← Previous"),
    h("span", { class: "muted" }, `Page ${Math.floor(page.offset / page.size) + 1} of ${Math.max(1, Math.ceil(page.total / page.size))}`),
    h("button", { type: "button", disabled: !next, onclick: () => go(page.offset + page.size), "data-page": "next" }, "Next →"));
}

function certificates(config) {
  const rows = [];
  for (const [secret, certs] of Object.entries(config.certificates || {})) {
    for (const c of certs) {
      const left = (Date.parse(c.notAfter) - Date.now()) / 1000;
      const state = left <= 0 ? badge("offline", "Expired") : left < 86400 ? badge("partially degraded", "Expires soon") : badge("online", "Valid");
      rows.push({ attrs: { class: "certificate" }, cells: [secret, c.role, c.uris.join(", ") || c.subject, h("time", { datetime: c.notAfter, title: c.notAfter }, c.notAfter.slice(0, 19).replace("T", " ")), state] });
    }
  }
  if (config.error) return h("p", { class: "muted" }, "Unknown: the served configuration could not be read.");
  return table("Certificates", [{ label: "Secret" }, { label: "Role" }, { label: "Identity" }, { label: "Expires (UTC)" }, { label: "Status" }], rows,
    "No certificate is served to this proxy (mTLS is off for its mesh).");
}

function dataplaneView(mesh, name) {
  const open = new Set();

  function stats(s) {
    const c = (x) => Number((x || {}).responsesSent || 0);
    return h("span", {},
      `${c(s.total)} sent, ${Number((s.total || {}).responsesAcknowledged || 0)} ACKed, `,
      Number((s.total || {}).responsesRejected || 0) ? h("strong", {}, `${s.total.responsesRejected} NACKed`) : "0 NACKed");
  }

  function served(config) {
    const sections = Object.entries(config.xds).map(([typeUrl, resources]) => {
      const short = typeUrl.split(".").pop();
      const names = Object.keys(resources);
      return h("section", { class: "served-type", "data-type": short },
        h("h3", {}, `${short} (${names.length})`),
        names.map((resourceName) => {
          const key = `${typeUrl}/${resourceName}`;
          const details = h("details", { open: open.has(key), ontoggle: (e) => (e.target.open ? open.add(key) : open.delete(key)) },
            h("summary", {}, resourceName, " ", h("span", { class: "muted" }, `version ${config.versions[typeUrl][resourceName]}`)),
            h("div", {}, h("pre", {}, JSON.stringify(resources[resourceName], null, 2))));
          return details;
        }));
    });
    return sections.length ? sections : [h("p", { class: "muted" }, "Nothing is served to this proxy yet.")];
  }

  return {
    nav: null,
    async render(main) {
      const [dp, config] = await Promise.all([
        getJSON(`${API}/meshes/${enc(mesh)}/dataplanes/${enc(name)}`),
        getJSON(`/meshes/${enc(mesh)}/dataplanes/${enc(name)}/_config`).catch((e) => ({ error: e.message })),
      ]);
      const subs = (dp.insight.subscriptions || []).slice().reverse();
      const labels = Object.entries(dp.labels || {}).map(([k, v]) => h("span", { class: "tag" }, `${k}=${v}`));
      main.replaceChildren(
        h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Overview"), " / ", h("a", { href: meshHref(mesh) }, `mesh ${mesh}`), " / Dataplane"),
        h("h1", {}, `Dataplane ${name}`, h("span", { id: "dp-status" }, badge(dp.status))),
        h("p", {}, `Address ${dp.address}`, " · created ", time(dp.creationTime), " · modified ", time(dp.modificationTime), labels.length ? [" · ", labels] : ""),
        h("div", { class: "grid2" },
          h("section", {}, h("h2", {}, "Inbounds"),
            table("Inbounds", [{ label: "Port", num: true }, { label: "Service" }, { label: "Protocol" }, { label: "Service port", num: true }, { label: "Ready" }],
              dp.inbounds.map((i) => ({ cells: [i.port, i.service, i.protocol, i.servicePort, i.ready ? badge("online", "Ready") : badge("offline", "Not ready")] })),
              dp.gateway ? `A gateway (${dp.gateway.type || "DELEGATED"}).` : "No inbound.")),
          h("section", {}, h("h2", {}, "Outbounds"),
            table("Outbounds", [{ label: "Address" }, { label: "Port", num: true }, { label: "Service" }],
              dp.outbounds.map((o) => ({ cells: [o.address, o.port, o.service] })), "No outbound."))),
        h("h2", {}, "Insights"),
        table("Subscriptions", [{ label: "Status" }, { label: "Control plane" }, { label: "Connected" }, { label: "Disconnected" }, { label: "Responses" }, { label: "Last update" }, { label: "Envoy" }],
          subs.map((s) => ({
            attrs: { class: "subscription" },
            cells: [badge(s.disconnectTime ? "offline" : "online"), s.controlPlaneInstanceId, time(s.connectTime), s.disconnectTime ? time(s.disconnectTime) : "–",
              stats(s.status || {}), time((s.status || {}).lastUpdateTime), ((s.version || {}).envoy || {}).version || "–"],
          })), "This proxy has never connected."),
        h("h2", {}, "Rejected configuration (NACKs)"),
        dp.nacks.length
          ? h("ul", { id: "nacks" }, dp.nacks.map((n) => h("li", {}, h("strong", {}, n.type), " ", time(new Date(n.time * 1000).toISOString()), h("div", { class: "error-text" }, n.error))))
          : h("p", { class: "muted", id: "nacks" }, "Envoy has accepted everything this control plane sent it."),
        h("h2", {}, "Certificates"),
        certificates(config),
        h("h2", {}, "Envoy configuration served"),
        h("p", { class: "muted" }, "What this control plane serves the proxy now (private keys redacted), from ", h("code", {}, `/meshes/${mesh}/dataplanes/${name}/_config`), "."),
        h("div", { id: "served" }, config.error ? h("p", { class: "problems" }, config.error) : served(config)),
        h("h2", {}, "Dataplane YAML"),
        h("pre", { id: "dp-yaml", tabindex: "0", "aria-label": "Dataplane YAML" }, dp.yaml));
    },
    affected: (notices) => notices.some((n) =>
      n.kind === "resync" || n.kind === "hello" ||
      (["resource", "proxy", "insight"].includes(n.kind) && n.mesh === mesh && (n.name === name || n.kind === "resource"))),
  };
}

function propagationView() {
  return {
    nav: "propagation",
    async render(main) {
      const data = await getJSON(`${API}/propagation`);
      const rows = data.changes.map((c) => ({
        attrs: { "data-change": c.id },
        cells: [
          time(new Date(c.time * 1000).toISOString()),
          `${c.operation} ${c.type} ${c.mesh ? c.mesh + "/" : ""}${c.name}`,
          c.proxies,
          ms(c.median),
          ms(c.max),
          c.slowest.map((s) => h("span", { class: "tag" }, `${s.proxy} ${ms(s.seconds)}`)),
        ],
      }));
      main.replaceChildren(
        h("h1", {}, "Propagation"),
        h("p", { class: "muted" }, "How long each store change took to reach the proxies it changed: from the engine receiving the event to the first response written to each proxy (the engine's own measurement, also kuma_xds_propagation_seconds on /metrics)."),
        h("div", { class: "cards" },
          card(data.measured, "proxy updates measured"), card(ms(data.recent.p50), "median (recent)"),
          card(ms(data.recent.p99), "99th percentile"), card(ms(data.recent.max), "slowest")),
        h("h2", {}, "Recent changes"),
        table("Recent changes", [{ label: "When" }, { label: "Change" }, { label: "Proxies reached", num: true }, { label: "Median", num: true }, { label: "Slowest", num: true }, { label: "Slowest proxies" }], rows,
          "No change since this control plane started. Edit a resource and watch it arrive."));
    },
    affected: (notices) => notices.some((n) => n.kind === "propagation" || n.kind === "resync" || n.kind === "hello"),
  };
}

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

function connect() {
  const live = document.getElementById("live");
  const say = (state, text) => { live.className = `live ${state}`; live.querySelector(".text").textContent = text; };
  const source = new EventSource("/gui/events");
  source.addEventListener("changes", (event) => {
    const notices = JSON.parse(event.data);
    if (notices.some((n) => n.kind === "hello")) say("on", "Live");
    if (current && current.affected(notices)) refresh();
  });
  // EventSource reconnects by itself; the server's first message after that says "hello",
  // and every view re-reads on it.
  source.addEventListener("error", () => say("off", "Reconnecting…"));
}

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
