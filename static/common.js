// Helpers shared by the Medify pages (no build step, no framework).
"use strict";

window.Medify = (() => {
  /** The parameters of the URL fragment (`#token=...`), which browsers never send. */
  function fragment() {
    return new URLSearchParams(window.location.hash.replace(/^#/, ""));
  }

  /** The tile URL template the server put in `<meta name="medify-tiles">`. */
  function tileUrl() {
    const meta = document.querySelector('meta[name="medify-tiles"]');
    return meta ? meta.content : "";
  }

  /**
   * A Leaflet map with the configured tiles. Without tiles (offline, blocked, no
   * template) the map is a grey background and everything drawn on it still shows.
   */
  function createMap(elementId, center, zoom) {
    const map = L.map(elementId, { zoomControl: true, attributionControl: true });
    map.setView(center, zoom);
    const url = tileUrl();
    if (url) {
      const osm = /openstreetmap\.org/.test(url);
      L.tileLayer(url, {
        maxZoom: 19,
        attribution: osm
          ? '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
          : "",
      }).addTo(map);
    }
    return map;
  }

  /** `fetch` with the bearer token; resolves to `{status, body}` (body parsed if JSON). */
  async function api(path, { token, method = "GET", body } = {}) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
    let parsed = null;
    const type = res.headers.get("Content-Type") || "";
    if (type.includes("json")) {
      try {
        parsed = await res.json();
      } catch {
        parsed = null;
      }
    }
    return { status: res.status, body: parsed };
  }

  /** `ws://` or `wss://` URL on this origin, with the token as `access_token`. */
  function socketUrl(path, token) {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${window.location.host}${path}?access_token=${encodeURIComponent(token)}`;
  }

  /** Exponential back-off with jitter: 1 s, 2 s, 4 s, … capped at 30 s. */
  function backoff(attempt) {
    const base = Math.min(30000, 1000 * 2 ** Math.min(attempt, 15));
    return Math.round(base * (0.75 + Math.random() * 0.5));
  }

  function show(el, text) {
    if (text === null || text === undefined || text === "") {
      el.hidden = true;
      el.textContent = "";
    } else {
      el.hidden = false;
      el.textContent = text;
    }
  }

  function setConn(state, text) {
    const el = document.getElementById("conn");
    if (!el) return;
    el.dataset.state = state;
    el.textContent = text;
  }

  /** A DOM element for a Leaflet divIcon (no images: works without the network). */
  function element(className, text) {
    const el = document.createElement("div");
    el.className = className;
    if (text) el.textContent = text;
    return el;
  }

  /**
   * Tooltip or popup content that is always text: Leaflet treats a string as HTML, so
   * anything a user typed (an address, a pharmacy's name) must go in as a text node.
   */
  function text(value) {
    const el = document.createElement("span");
    el.textContent = String(value);
    return el;
  }

  /**
   * fitBounds padding that keeps things out from under the panel when the panel floats
   * over the map (wide screens); on phones the panel sits below the map.
   */
  function fitPadding(maxZoom) {
    const panel = document.getElementById("panel");
    const floating = panel && getComputedStyle(panel).position === "absolute";
    const left = floating ? panel.offsetLeft + panel.offsetWidth + 24 : 40;
    return { paddingTopLeft: [left, 40], paddingBottomRight: [40, 40], maxZoom };
  }

  return { fragment, tileUrl, createMap, api, socketUrl, backoff, show, setConn, element, text, fitPadding };
})();
