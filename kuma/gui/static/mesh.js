// A mesh: its counts, its Dataplanes (filtered and paged on the server) and its services.
import { API, PAGE_SIZE, badge, card, dpHref, enc, getJSON, h, meshHref, ms, pager, table, time } from "./dom.js";

export function meshView(mesh, params) {
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

  async function refreshPolicies() {
    const data = await getJSON(`${API}/meshes/${enc(mesh)}/policies`);
    const rows = data.kinds.map((k) => ({
      attrs: { "data-policy-kind": k.kind },
      cells: [k.kind, k.total, [k.names.join(", "), k.total > k.names.length ? ` and ${k.total - k.names.length} more` : ""]],
    }));
    parts.policies.replaceChildren(
      table("Policies", [{ label: "Kind" }, { label: "Count", num: true }, { label: "Names" }], rows, "No policy in this mesh: Kuma's defaults apply."));
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
        parts.policies = h("div", { id: "policies" });
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
          h("h2", {}, "Policies"),
          parts.policies,
        ];
        main.replaceChildren(...root);
      }
      // The list first: it is what the page is for; the counts follow.
      await refreshDataplanes();
      await Promise.all([refreshSummary(), refreshServices(), refreshPolicies()]);
    },
    affected(notices) {
      return notices.some((n) =>
        n.kind === "resync" || n.kind === "hello" ||
        ((n.kind === "resource" || n.kind === "proxy") && n.mesh === mesh) ||
        (n.kind === "insight" && n.mesh === mesh && state.visible.has(n.name)));
    },
  };
}
