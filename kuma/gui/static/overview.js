// The overview and the propagation view.
import { API, PAGE_SIZE, badge, card, dpHref, enc, getJSON, h, meshHref, ms, pager, table, time } from "./dom.js";

export function overviewView() {
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
          Object.values(m.policies || {}).reduce((a, b) => a + b, 0),
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
        table("Meshes", [{ label: "Mesh" }, { label: "Dataplanes", num: true }, { label: "Online" }, { label: "Offline" }, { label: "Services", num: true }, { label: "Policies", num: true }, { label: "mTLS" }], rows, "No mesh yet."),
        h("h2", {}, "Zones"),
        h("p", { id: "zones" }, `${data.zones.ingresses} zone ingresses, ${data.zones.egresses} zone egresses stored`,
          h("span", { class: "muted" }, " (multi-zone traffic is not built yet)")));
      footer(data.controlPlane);
    },
    affected: (notices) => notices.some((n) => ["resource", "proxy", "problems"].includes(n.kind)),
  };
}

function footer(cp) {
  document.getElementById("foot").textContent = `kuma-py ${cp.version} · instance ${cp.instanceId} · store ${cp.store}`;
}

export function propagationView() {
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
