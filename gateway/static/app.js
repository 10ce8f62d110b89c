"use strict";
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// The key may come in the fragment (#key=...): a fragment never reaches the server, its logs or a Referer.
const fragment = new URLSearchParams(location.hash.slice(1));
if (params.get("user")) $("user").value = params.get("user");
// Kept for this tab only (sessionStorage, gone when the tab closes), never in persistent storage.
$("key").value = fragment.get("key") || sessionStorage.getItem("gorse-cdc-key") || "";
if (fragment.get("key")) history.replaceState(null, "", location.pathname + location.search);
async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { "X-API-Key": $("key").value, "Content-Type": "application/json" } });
  const body = await r.json();
  if (!r.ok) throw new Error(body.detail || r.status);
  return body;
}
function card(item) {
  const d = document.createElement("div");
  d.className = "card";
  d.dataset.item = item.id;
  d.innerHTML = "<b></b><small></small>";
  d.querySelector("b").textContent = item.title || item.id;
  d.querySelector("small").textContent = (item.genres || []).join(", ");
  const play = document.createElement("button");
  play.textContent = "▶ Play";
  play.onclick = () => playItem(item.id);
  d.appendChild(play);
  return d;
}
async function fill(id, path) {
  const row = await api(path);
  const el = $(id);
  el.replaceChildren(...row.items.map(card));
  el.dataset.source = row.source || "";
}
async function load(note = "") {
  sessionStorage.setItem("gorse-cdc-key", $("key").value);
  const u = encodeURIComponent($("user").value);
  try {
    await Promise.all([fill("personal", `/v1/users/${u}/recommendations?n=8`),
                       fill("popular", "/v1/popular?n=8"), fill("latest", "/v1/latest?n=8")]);
    $("status").textContent = (note ? note + " · " : "") + "loaded " + new Date().toLocaleTimeString();
  } catch (e) { $("status").textContent = "error: " + e.message; }
}
async function playItem(item) {
  const user = $("user").value;
  try {
    await api("/v1/events", { method: "POST", body: JSON.stringify({ events: [{ user, item, type: "play" }] }) });
    $("status").textContent = "played " + item;
    await load("played " + item);
  } catch (e) { $("status").textContent = "error: " + e.message; }
}
$("load").onclick = () => load();
if ($("key").value) load();
