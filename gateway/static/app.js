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
  const like = document.createElement("button");
  like.textContent = "♥";
  like.title = "watched to the end (a like: event type complete)";
  like.className = "like";
  like.onclick = () => likeItem(item.id, item.title || item.id);
  d.appendChild(like);
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
// A like reaches Gorse through the events stream (about a second); Gorse then answers with a
// list shaped by it at once: poll the personal row until it shows that answer, and say when.
async function likeItem(item, title) {
  const user = $("user").value, u = encodeURIComponent(user);
  const ids = () => [...$("personal").querySelectorAll(".card")].map((c) => c.dataset.item).join();
  const before = ids();
  try {
    await api("/v1/events", { method: "POST", body: JSON.stringify({ events: [{ user, item, type: "complete" }] }) });
    const sent = performance.now();
    for (let i = 0; i < 40; i++) {
      await fill("personal", `/v1/users/${u}/recommendations?n=8`);
      const now = ids();
      if (now !== before && !now.startsWith(before.split(",").filter((x) => x !== item).join())) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const s = ((performance.now() - sent) / 1000).toFixed(1);
    await load(`liked ${title}: row reshaped ${s} s after the event (${$("personal").dataset.source})`);
  } catch (e) { $("status").textContent = "error: " + e.message; }
}
$("load").onclick = () => load();
if ($("key").value) load();
