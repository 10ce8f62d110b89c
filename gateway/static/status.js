"use strict";
// The status page: GET /v1/status (admin key) every 5 s; the key stays in this tab only
// (sessionStorage) and may come in the fragment (#key=...), which never reaches a server.
const $ = (id) => document.getElementById(id);
const fragment = new URLSearchParams(location.hash.slice(1));
$("key").value = fragment.get("key") || sessionStorage.getItem("gorse-cdc-key") || "";
if (fragment.get("key")) history.replaceState(null, "", location.pathname + location.search);
let timer = null;

function age(s) {
  if (s === null || s === undefined) return "-";
  if (s < 120) return s.toFixed(0) + " s";
  if (s < 7200) return (s / 60).toFixed(0) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function num(v, digits = 1) { return v === null || v === undefined ? "-" : Number(v).toFixed(digits); }
function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}
function row(cells) {
  const tr = document.createElement("tr");
  tr.append(...cells);
  return tr;
}
function shardState(r) {
  if (r.ended) return ["ended", "dim"];
  if (r.blocked) return ["BLOCKED (" + r.blocked + ")", "page"];
  if (r.stalled) return ["STALLED", "page"];
  if (!r.owner) return ["no owner", "warn"];
  return [r.handoff_to ? "ok (moving to " + r.handoff_to + ")" : "ok", "ok"];
}
function renderShards(doc) {
  const rows = [];
  for (const s of doc.streams) {
    if (s.unreadable) rows.push(row([cell(s.stream), cell("-"), cell("-"), cell("-"), cell("-"), cell("-"), cell("-"), cell("unreadable: " + s.unreadable, "page")]));
    for (const r of s.shards) {
      const [state, cls] = shardState(r);
      const tr = row([cell(s.stream), cell(r.shard), cell(r.owner || "-"), cell(r.engine || "-"),
        cell(age(r.checkpoint_age_s)), cell(r.behind_ms === null ? "-" : age(r.behind_ms / 1000)),
        cell(num(r.records_per_s)), cell(state, cls)]);
      tr.dataset.shard = r.shard;
      tr.dataset.state = cls;
      rows.push(tr);
    }
  }
  $("shards").tBodies[0].replaceChildren(...rows);
}
function facts(doc) {
  const out = [];
  const src = doc.source;
  if (src) {
    if (src.unreadable) out.push(["replication slot", "unreadable: " + src.unreadable]);
    for (const s of src.slots) out.push(["slot " + s.name, (s.active ? "active" : "INACTIVE") + "; lag " + s.lag_bytes.toLocaleString() + " bytes" + (s.lag_s === null ? "" : ", " + s.lag_s.toFixed(1) + " s") + "; holds " + (s.retained_bytes / 1048576).toFixed(1) + " MiB of WAL"]);
  }
  const d = doc.dead_letters;
  if (d) {
    const reasons = Object.entries(d.by_reason).map(([k, n]) => k + " " + n).join(", ");
    out.push(["dead letters " + d.store, d.unreadable || (d.count + " letters" + (d.count ? ", oldest " + age(d.oldest_age_s) + ", newest " + age(d.newest_age_s) : "") + (reasons ? "; " + reasons : "")), "dead-letters"]);
  }
  const rec = doc.reconcile;
  if (rec) {
    out.push(["last reconcile", rec.unreadable ? "unreadable: " + rec.unreadable : rec.key === null ? "no report yet" :
      rec.drift_total + " drifted keys (" + (rec.dry_run ? "dry run" : "repair") + ", exit " + rec.exit_code + "), " + age((rec.age_h || 0) * 3600) + " ago; " + rec.key]);
  }
  const g = doc.gateway;
  if (g) out.push(["gateway", g.reachable ? num(g.requests_per_s) + " req/s, " + num(g.errors_per_s, 2) + " 5xx/s, " + num(g.rate_limited_per_s, 2) + " 429/s (since start: " + g.requests + " requests)" : "unreachable: " + g.unreadable]);
  const gorse = doc.gorse;
  if (gorse) out.push(["Gorse " + gorse.url, gorse.reachable ? (gorse.ready ? "ready" : "NOT READY") + "; " + gorse.users + " users, " + gorse.items + " items, " + gorse.positive_feedback + " positive feedback; model fitted: " + (gorse.model_fit_at || "never") : "UNREACHABLE: " + gorse.unreadable]);
  for (const c of doc.consumers) out.push(["consumer " + c.url, (c.worker ? c.worker + " (" + c.engine + ", " + c.stream + ")" : c.engine) + ": " + (c.unreadable || (c.blocked ? "blocked: " + c.blocked : c.ready ? "ready" : "not ready"))]);
  $("facts").tBodies[0].replaceChildren(...out.map(([k, v, id]) => {
    const tr = row([cell(k, "dim"), cell(v)]);
    if (id) tr.id = id;
    return tr;
  }));
}
function renderFindings(doc) {
  const v = doc.verdict;
  const head = { page: "NEEDS A PERSON", warn: "healthy, with warnings", ok: "healthy" };
  $("verdict").textContent = head[v.severity];
  $("verdict").className = "badge " + v.severity;
  $("findings").replaceChildren(...v.findings.map((f) => {
    const li = document.createElement("li");
    const sev = document.createElement("span");
    sev.className = f.severity;
    sev.textContent = f.severity + " " + f.what;
    li.append(sev, document.createTextNode(" — " + f.where + ": " + f.why + ". Do: " + f.do));
    li.dataset.what = f.what;
    return li;
  }));
  $("findings-box").className = v.findings.length ? "" : "empty";
}
// A line chart of the hour's points on a canvas (no library: the page loads nothing else).
function chart(id, points, series) {
  const canvas = $(id);
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 28;
  ctx.clearRect(0, 0, w, h);
  ctx.font = "10px system-ui";
  const now = Date.now() / 1000, t0 = now - 3600;
  let max = 0;
  for (const s of series) for (const p of points) max = Math.max(max, p[s.key]);
  max = max > 0 ? max * 1.15 : 1;
  ctx.strokeStyle = "#263038";
  ctx.fillStyle = "#6b7680";
  for (let i = 0; i <= 2; i++) {
    const y = pad / 2 + (h - pad) * i / 2;
    ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w - 4, y); ctx.stroke();
    ctx.fillText((max * (1 - i / 2)).toPrecision(2), 2, y + 3);
  }
  ctx.fillText("-60 min", pad, h - 2);
  ctx.fillText("now", w - 24, h - 2);
  const x = (t) => pad + (w - pad - 4) * (t - t0) / 3600;
  const y = (v) => pad / 2 + (h - pad) * (1 - v / max);
  series.forEach((s, i) => {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.filter((p) => p.t >= t0).forEach((p, j) => (j ? ctx.lineTo(x(p.t), y(p[s.key])) : ctx.moveTo(x(p.t), y(p[s.key]))));
    ctx.stroke();
    ctx.fillStyle = s.color;
    ctx.fillText(s.label, pad + 4 + i * 110, 10);
  });
}
function renderCharts(doc) {
  const pts = doc.history || [];
  chart("chart-lag", pts, [{ key: "behind_s", label: "behind s", color: "#63b3ed" }]);
  chart("chart-rate", pts, [{ key: "records_per_s", label: "records/s", color: "#48bb78" }]);
  chart("chart-errors", pts, [
    { key: "dead_letters", label: "dead letters", color: "#ecc94b" },
    { key: "gateway_5xx_per_s", label: "5xx/s", color: "#fc8181" },
    { key: "blocked", label: "blocked", color: "#b794f4" },
  ]);
}
async function refresh() {
  try {
    const r = await fetch("/v1/status", { headers: { "X-API-Key": $("key").value } });
    const doc = await r.json();
    if (!r.ok) throw new Error(doc.detail || String(r.status));
    renderFindings(doc);
    renderShards(doc);
    facts(doc);
    renderCharts(doc);
    document.body.dataset.at = doc.at;
    $("note").textContent = "read " + new Date(doc.at).toLocaleTimeString() + " · refresh 5 s";
  } catch (e) { $("note").textContent = "error: " + e.message; }
}
function start() {
  sessionStorage.setItem("gorse-cdc-key", $("key").value);
  clearInterval(timer);
  refresh();
  timer = setInterval(refresh, 5000);
}
$("load").onclick = start;
if ($("key").value) start();
