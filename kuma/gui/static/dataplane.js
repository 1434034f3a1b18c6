// One Dataplane: YAML, inbounds and outbounds, insights, NACKs, certificates, served config.
import { API, PAGE_SIZE, badge, card, dpHref, enc, getJSON, h, meshHref, ms, pager, table, time } from "./dom.js";

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

function policies(rules) {
  if (rules.error) return h("p", { class: "muted" }, `Unknown: ${rules.error}`);
  const rows = [];
  const origins = (rule) => rule.origin.map((o) => o.name).join(", ");
  const subset = (rule) => rule.matchers.length ? rule.matchers.map((m) => `${m.not ? "not " : ""}${m.key}=${m.value}`).join(", ") : "everything";
  for (const kind of rules.rules || []) {
    for (const rule of kind.toRules) {
      rows.push({ attrs: { class: "policy-rule", "data-kind": kind.type }, cells: [kind.type, `to ${subset(rule)}`, origins(rule), h("code", {}, JSON.stringify(rule.conf))] });
    }
    for (const entry of kind.fromRules) {
      for (const rule of entry.rules) {
        rows.push({ attrs: { class: "policy-rule", "data-kind": kind.type }, cells: [kind.type, `from ${subset(rule)} (inbound ${entry.inbound.port})`, origins(rule), h("code", {}, JSON.stringify(rule.conf))] });
      }
    }
  }
  return table("Policies that apply", [{ label: "Kind" }, { label: "Applies" }, { label: "From policies" }, { label: "Merged configuration" }], rows,
    "No policy selects this proxy.");
}

export function dataplaneView(mesh, name) {
  const open = new Set();

  function stats(s) {
    const n = (x, key) => Number((x || {})[key] || 0);
    const total = s.total || {};
    const rejected = n(total, "responsesRejected");
    const perType = ["cds", "eds", "lds", "rds"].filter((t) => n(s[t], "responsesSent")).map((t) =>
      `${t} ${n(s[t], "responsesSent")}/${n(s[t], "responsesAcknowledged")}/${n(s[t], "responsesRejected")}`);
    return h("span", {},
      `${n(total, "responsesSent")} sent, ${n(total, "responsesAcknowledged")} ACKed, `,
      rejected ? h("strong", {}, `${rejected} NACKed`) : "0 NACKed",
      perType.length ? h("div", { class: "muted", title: "per type: sent/ACKed/NACKed" }, perType.join(" · ")) : null);
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
      const [dp, config, rules] = await Promise.all([
        getJSON(`${API}/meshes/${enc(mesh)}/dataplanes/${enc(name)}`),
        getJSON(`/meshes/${enc(mesh)}/dataplanes/${enc(name)}/_config`).catch((e) => ({ error: e.message })),
        getJSON(`/meshes/${enc(mesh)}/dataplanes/${enc(name)}/_rules`).catch((e) => ({ error: e.message })),
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
        h("h2", {}, "Policies that apply"),
        policies(rules),
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
