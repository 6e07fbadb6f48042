// The admins' live fleet map: /ops (token from #token=..., or the sign-in form).
//
// Follows /ws/ops: riders coloured by state, open orders (pickup → drop-off), the H3
// supply/demand hexagons and the counters. The socket is reopened with back-off; before
// each attempt the token is checked (and refreshed once if it expired).
"use strict";

(() => {
  const { fragment, createMap, api, socketUrl, backoff, show, setConn, text, fitPadding } = Medify;

  const STATE_COLORS = { free: "#1a9850", offered: "#f39c12", on_delivery: "#1769aa", offline: "#7f8c8d" };
  const OTHER_COLOR = "#8e44ad";
  const ORDER_COLOR = "#c0392b";

  const $ = (id) => document.getElementById(id);
  const mapEl = $("map");
  const messageEl = $("message");
  const form = $("signin");
  const live = $("live");
  const legend = $("legend");

  let token = fragment().get("token") || "";
  let refreshToken = "";
  let socket = null;
  let attempt = 0;
  let retryTimer = 0;
  let fitted = false;

  const map = createMap("map", [12.9716, 77.5946], 12);
  const cellLayer = L.geoJSON(null, { style: cellStyle, onEachFeature: cellTooltip }).addTo(map);
  const orderLayer = L.layerGroup().addTo(map);
  const riderLayer = L.layerGroup().addTo(map);
  const riders = new Map(); // id → {marker, state}
  const orders = new Map(); // id → {pickup, line, status}

  // ---------------------------------------------------------------- drawing

  const colorOf = (state) => STATE_COLORS[state] || OTHER_COLOR;

  function cellStyle(feature) {
    const p = (feature && feature.properties) || {};
    const supply = Number(p.supply) || 0;
    const demand = Number(p.demand) || 0;
    const gap = demand - supply;
    const color = gap > 0 ? "#d73027" : gap < 0 ? "#1a9850" : "#fdae61";
    const strength = Math.min(4, Math.abs(gap));
    return { color, weight: 1, opacity: 0.6, fillColor: color, fillOpacity: 0.12 + 0.08 * strength, className: "cell" };
  }

  function cellTooltip(feature, layer) {
    const p = feature.properties || {};
    layer.bindTooltip(text(`Free riders: ${p.supply ?? 0} · Orders waiting: ${p.demand ?? 0}`));
  }

  function noteState(state) {
    if (legend.querySelector(`li[data-state="${CSS.escape(state)}"]`)) return;
    const li = document.createElement("li");
    li.dataset.state = state;
    const swatch = document.createElement("span");
    swatch.className = "swatch state-other";
    li.append(swatch, state.replace(/_/g, " "));
    legend.prepend(li);
  }

  function drawRiders(list) {
    const seen = new Set();
    for (const r of list) {
      if (!r || !r.id || !Number.isFinite(r.lat) || !Number.isFinite(r.lng)) continue;
      seen.add(r.id);
      const state = String(r.state || "unknown");
      noteState(state);
      let entry = riders.get(r.id);
      if (!entry) {
        const marker = L.circleMarker([r.lat, r.lng], {
          radius: 7,
          weight: 2,
          color: "#fff",
          fillColor: colorOf(state),
          fillOpacity: 0.95,
          className: "rider-marker",
        }).addTo(riderLayer);
        entry = { marker, state: null };
        riders.set(r.id, entry);
      } else {
        entry.marker.setLatLng([r.lat, r.lng]);
      }
      if (entry.state !== state) {
        entry.state = state;
        entry.marker.setStyle({ fillColor: colorOf(state) });
        entry.marker.bindTooltip(text(`Rider ${r.id.slice(0, 8)} · ${state.replace(/_/g, " ")}`));
        const el = entry.marker.getElement();
        if (el) el.setAttribute("data-state", state);
      }
    }
    for (const [id, entry] of riders) {
      if (!seen.has(id)) {
        riderLayer.removeLayer(entry.marker);
        riders.delete(id);
      }
    }
  }

  function drawOrders(list) {
    const seen = new Set();
    for (const o of list) {
      if (!o || !o.id || !o.pickup || !o.dropoff) continue;
      seen.add(o.id);
      const from = [o.pickup.lat, o.pickup.lng];
      const to = [o.dropoff.lat, o.dropoff.lng];
      let entry = orders.get(o.id);
      if (!entry) {
        entry = {
          line: L.polyline([from, to], { color: ORDER_COLOR, weight: 2, opacity: 0.6, dashArray: "4 6", className: "order-line" }).addTo(orderLayer),
          pickup: L.circleMarker(from, { radius: 4, weight: 1, color: ORDER_COLOR, fillColor: "#fff", fillOpacity: 1, className: "order-marker" }).addTo(orderLayer),
          status: null,
        };
        orders.set(o.id, entry);
      } else {
        entry.line.setLatLngs([from, to]);
        entry.pickup.setLatLng(from);
      }
      if (entry.status !== o.status) {
        entry.status = o.status;
        entry.pickup.bindTooltip(text(`Order ${o.id.slice(0, 8)} · ${String(o.status).replace(/_/g, " ")}`));
      }
    }
    for (const [id, entry] of orders) {
      if (!seen.has(id)) {
        orderLayer.removeLayer(entry.line);
        orderLayer.removeLayer(entry.pickup);
        orders.delete(id);
      }
    }
  }

  function fitOnce() {
    if (fitted) return;
    const bounds = L.latLngBounds([]);
    for (const { marker } of riders.values()) bounds.extend(marker.getLatLng());
    for (const { line } of orders.values()) bounds.extend(line.getBounds());
    if (cellLayer.getLayers().length) bounds.extend(cellLayer.getBounds());
    if (bounds.isValid()) {
      fitted = true;
      map.fitBounds(bounds, fitPadding(15));
    }
  }

  function render(frame) {
    const counters = frame.counters || {};
    for (const [key, value] of Object.entries(counters)) {
      const el = $(`c-${key.replace(/_/g, "-")}`);
      if (el) el.textContent = String(value);
    }
    if (Array.isArray(frame.riders)) {
      show($("cells-only"), null);
      drawRiders(frame.riders);
    } else {
      $("cells-only").hidden = false;
      drawRiders([]);
    }
    drawOrders(Array.isArray(frame.orders) ? frame.orders : []);
    cellLayer.clearLayers();
    if (frame.cells && Array.isArray(frame.cells.features)) cellLayer.addData(frame.cells);
    mapEl.dataset.riders = String(riders.size);
    mapEl.dataset.orders = String(orders.size);
    mapEl.dataset.cells = String(cellLayer.getLayers().length);
    const at = frame.at ? new Date(frame.at) : new Date();
    $("updated").textContent = `Updated ${at.toLocaleTimeString()}`;
    fitOnce();
  }

  // ---------------------------------------------------------------- session

  function showSignin(message) {
    closeSocket();
    token = "";
    live.hidden = true;
    form.hidden = false;
    show(messageEl, message || null);
    setConn("idle", "Signed out");
    $("email").focus();
  }

  function closeSocket() {
    clearTimeout(retryTimer);
    if (socket) {
      const s = socket;
      socket = null;
      s.close(1000);
    }
  }

  /** Is the token still good (refreshing it once if it expired)? Shows why not. */
  async function checkToken() {
    let me;
    try {
      me = await api("/api/v1/me", { token });
    } catch {
      return "retry";
    }
    if (me.status === 401 && refreshToken) {
      const r = await api("/api/v1/auth/refresh", { method: "POST", body: { refresh_token: refreshToken } }).catch(() => null);
      if (r && r.status === 200 && r.body) {
        token = r.body.access_token;
        refreshToken = r.body.refresh_token || "";
        return checkToken();
      }
    }
    if (me.status === 401) {
      showSignin("Your session has expired — sign in again.");
      return "stop";
    }
    if (me.status === 200 && me.body && me.body.role !== "admin") {
      showSignin("This account is not an admin: sign in with an admin account.");
      return "stop";
    }
    return me.status === 200 ? "ok" : "retry";
  }

  async function follow() {
    setConn("connecting", "Connecting…");
    const verdict = await checkToken();
    if (verdict === "stop") return;
    if (verdict === "retry") return reconnectLater();
    form.hidden = true;
    live.hidden = false;
    show(messageEl, null);
    const ws = new WebSocket(socketUrl("/ws/ops", token));
    socket = ws;
    ws.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame && frame.type === "fleet") {
        attempt = 0;
        setConn("live", "Live");
        render(frame);
      }
    });
    ws.addEventListener("close", () => {
      if (socket === ws) {
        socket = null;
        reconnectLater();
      }
    });
  }

  function reconnectLater() {
    const delay = backoff(attempt);
    attempt += 1;
    setConn("waiting", `Reconnecting in ${Math.ceil(delay / 1000)} s…`);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(follow, delay);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    show(messageEl, null);
    try {
      const res = await api("/api/v1/auth/login", {
        method: "POST",
        body: { email: $("email").value.trim(), password: $("password").value },
      });
      if (res.status === 200 && res.body && res.body.access_token) {
        if (res.body.user && res.body.user.role !== "admin") {
          show(messageEl, "This account is not an admin: sign in with an admin account.");
          return;
        }
        token = res.body.access_token;
        refreshToken = res.body.refresh_token || "";
        $("password").value = "";
        attempt = 0;
        follow();
      } else if (res.status === 401) {
        show(messageEl, "Wrong email or password.");
      } else if (res.status === 429) {
        show(messageEl, `Too many attempts: ${(res.body && res.body.detail) || "try again later"}.`);
      } else {
        show(messageEl, `Could not sign in (HTTP ${res.status}).`);
      }
    } catch {
      show(messageEl, "Could not reach the server. Check the connection and try again.");
    } finally {
      button.disabled = false;
    }
  });

  $("signout").addEventListener("click", () => {
    if (refreshToken) {
      api("/api/v1/auth/logout", { method: "POST", body: { refresh_token: refreshToken } }).catch(() => {});
    }
    refreshToken = "";
    if (window.location.hash) history.replaceState(null, "", window.location.pathname);
    showSignin(null);
  });

  if (token) {
    follow();
  } else {
    showSignin(null);
  }
})();
