"use strict";
// peerkit view prelude: what every page shares.
const SVG = "http://www.w3.org/2000/svg";
// An element ("svg:NAME" for SVG) with attributes and, as text only, its content.
function el(tag, attrs, text) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
// Keeps the page live: state.json into draw(state) now, when the event stream
// opens, every `every` ms and
// after each event (unless onEvent(event) returns false); #live says whether
// the event stream is open. Returns the refresh function.
function live(draw, every, onEvent) {
  let pending = false;
  async function refresh() {
    if (pending) return;
    pending = true;
    try {
      const r = await fetch("state.json", { cache: "no-store" });
      draw(await r.json());
    } catch (e) { /* the next event or tick tries again */ }
    pending = false;
  }
  const badge = document.getElementById("live");
  const source = new EventSource("events");
  source.onopen = () => { badge.className = "on"; badge.textContent = "live"; refresh(); };
  source.onerror = () => { badge.className = "off"; badge.textContent = "reconnecting"; };
  source.onmessage = (m) => {
    const ev = JSON.parse(m.data);
    if (!onEvent || onEvent(ev) !== false) refresh();
  };
  refresh();
  setInterval(refresh, every);
  return refresh;
}
// A rate and a size, in B, KiB or MiB.
function rate(b) {
  if (b >= 1048576) return (b / 1048576).toFixed(1) + " MiB/s";
  if (b >= 1024) return (b / 1024).toFixed(0) + " KiB/s";
  return b + " B/s";
}
function size(b) {
  if (b >= 1048576) return (b / 1048576).toFixed(1) + " MiB";
  if (b >= 1024) return (b / 1024).toFixed(0) + " KiB";
  return b + " B";
}
// The page's own.
