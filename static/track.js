// The customer's live delivery map: /track/{order_id}#token=...
//
// Reads the order over REST first (so an expired link or an unknown order can be said in
// words), then follows /ws/orders/{id}/track: the rider glides between fixes, the path
// travelled grows, the ETA and the status timeline update. A dropped socket is reopened
// with exponential back-off (capped at 30 s) until the order is final.
"use strict";

(() => {
  const { fragment, createMap, api, socketUrl, backoff, show, setConn, element, text, fitPadding } = Medify;

  const STEPS = [
    "confirmed",
    "awaiting_prescription",
    "awaiting_payment",
    "dispatching",
    "assigned",
    "picked_up",
    "delivered",
  ];
  // Steps only some orders take: shown once the order is known to take them.
  const shownSteps = new Set();
  const FINAL = new Set(["delivered", "cancelled", "failed"]);
  const GLIDE_MS = 1000;

  const orderId = decodeURIComponent(window.location.pathname.split("/")[2] || "");
  const token = fragment().get("token") || "";

  const $ = (id) => document.getElementById(id);
  const mapEl = $("map");
  const etaEl = $("eta");
  const messageEl = $("message");
  const arrivingEl = $("arriving");
  const riderNameEl = $("rider-name");
  const codeEl = $("code");
  const timelineEl = $("status-timeline");

  let map = null;
  let riderMarker = null;
  let riderEl = null;
  let arrowEl = null;
  let pathLine = null;
  let path = []; // [{lat, lng, ts}] oldest first
  let pathReached = 0; // how many of them the marker has reached
  let shown = null; // where the rider is drawn now
  let glide = null; // {from, to, start}
  let glideFrame = 0;
  let lastTs = 0;
  let updates = 0;
  let rotation = 0; // degrees, cumulative so the arrow turns the short way
  let status = null;
  let reached = -1; // furthest index in STEPS
  let attempt = 0;
  let trailLoaded = false;
  let riderInView = false;

  const isFinal = () => FINAL.has(status);

  // ---------------------------------------------------------------- order and REST

  async function loadOrder() {
    if (!token) {
      return { error: "This link is incomplete or has expired — sign in again to follow your order." };
    }
    let res;
    try {
      res = await api(`/api/v1/orders/${encodeURIComponent(orderId)}`, { token });
    } catch {
      return { retry: true };
    }
    if (res.status === 200 && res.body) return { order: res.body };
    if (res.status === 401) return { error: "This link has expired — sign in again to follow your order." };
    if (res.status === 404) return { error: "Order not found. Check the link, or sign in to see your orders." };
    if (res.status === 429 || res.status >= 500) return { retry: true };
    return { error: `Could not load this order (HTTP ${res.status}).` };
  }

  function applyOrder(order) {
    if (order.prescription_id) shownSteps.add("awaiting_prescription");
    if (order.payment && order.payment.method === "online") shownSteps.add("awaiting_payment");
    if (!map) initMap(order);
    if (order.rider && order.rider.name) {
      show(riderNameEl, `Your rider: ${order.rider.name}`);
    }
    setStatus(order.status);
    if (order.delivery_code && !isFinal()) {
      show(codeEl, `Your delivery code is ${order.delivery_code} — tell it to your rider at the door.`);
    }
    if (order.rider && !trailLoaded) {
      trailLoaded = true;
      loadTrail();
    }
  }

  async function refreshOrder() {
    const r = await loadOrder().catch(() => ({}));
    if (r.order) applyOrder(r.order);
  }

  /** The trail sampled before this page opened, merged into the path (best effort). */
  async function loadTrail() {
    let res;
    try {
      res = await api(`/api/v1/orders/${encodeURIComponent(orderId)}/trail`, { token });
    } catch {
      return;
    }
    const coords = res.status === 200 && res.body && res.body.geometry && res.body.geometry.coordinates;
    if (!Array.isArray(coords)) return;
    const ts = (res.body.properties && res.body.properties.ts) || [];
    const sampled = coords.map(([lng, lat], i) => ({ lat, lng, ts: Number(ts[i]) || 0 }));
    const seen = new Set(path.map((p) => p.ts));
    const older = sampled.filter((p) => !seen.has(p.ts));
    path = path.concat(older).sort((a, b) => a.ts - b.ts);
    pathReached += older.length;
    drawPath();
  }

  // ---------------------------------------------------------------- map

  function pin(kind, label, title) {
    const el = element(`pin pin-${kind}`, label);
    el.id = `${kind}-marker`;
    el.title = title;
    return L.divIcon({ html: el, className: "pin-icon", iconSize: [30, 30], iconAnchor: [15, 15] });
  }

  function initMap(order) {
    const pharmacy = [order.pharmacy.lat, order.pharmacy.lng];
    const dropoff = [order.delivery.lat, order.delivery.lng];
    map = createMap("map", dropoff, 15);
    L.marker(pharmacy, { icon: pin("pharmacy", "Rx", order.pharmacy.name || "Pharmacy"), keyboard: false })
      .bindTooltip(text(order.pharmacy.name || "Pharmacy"))
      .addTo(map);
    L.marker(dropoff, { icon: pin("dropoff", "⌂", "Delivery address"), keyboard: false })
      .bindTooltip(text(order.delivery.address || "Delivery address"))
      .addTo(map);
    pathLine = L.polyline([], { className: "path", color: "#1769aa", weight: 4, opacity: 0.8 }).addTo(map);
    map.fitBounds([pharmacy, dropoff], fitPadding(16));
  }

  /** The path travelled: the fixes the marker has reached, then the marker itself. */
  function drawPath() {
    if (!pathLine) return;
    const points = path.slice(0, pathReached).map((p) => [p.lat, p.lng]);
    if (shown && glideFrame) points.push([shown.lat, shown.lng]);
    pathLine.setLatLngs(points);
    mapEl.dataset.pathPoints = String(path.length);
  }

  function ensureRider(at) {
    if (riderMarker) return;
    riderEl = element("rider");
    riderEl.id = "rider-marker";
    arrowEl = element("rider-arrow");
    riderEl.append(arrowEl, element("rider-dot"));
    riderMarker = L.marker([at.lat, at.lng], {
      icon: L.divIcon({ html: riderEl, className: "rider-icon", iconSize: [40, 40], iconAnchor: [20, 20] }),
      keyboard: false,
      zIndexOffset: 1000,
      title: "Your rider",
    }).addTo(map);
  }

  function bearing(a, b) {
    const rad = Math.PI / 180;
    const y = Math.sin((b.lng - a.lng) * rad) * Math.cos(b.lat * rad);
    const x =
      Math.cos(a.lat * rad) * Math.sin(b.lat * rad) -
      Math.sin(a.lat * rad) * Math.cos(b.lat * rad) * Math.cos((b.lng - a.lng) * rad);
    return (Math.atan2(y, x) / rad + 360) % 360;
  }

  function drawRider() {
    riderMarker.setLatLng([shown.lat, shown.lng]);
    riderEl.dataset.lat = shown.lat.toFixed(6);
    riderEl.dataset.lng = shown.lng.toFixed(6);
  }

  function step(now) {
    const t = Math.min(1, (now - glide.start) / GLIDE_MS);
    shown = {
      lat: glide.from.lat + (glide.to.lat - glide.from.lat) * t,
      lng: glide.from.lng + (glide.to.lng - glide.from.lng) * t,
    };
    glideFrame = t < 1 ? requestAnimationFrame(step) : 0;
    if (!glideFrame) pathReached = path.length;
    drawRider();
    drawPath();
  }

  /** A new fix: glide there over about a second, pointing where the rider heads. */
  function moveRider(fix) {
    if (!map || !Number.isFinite(fix.lat) || !Number.isFinite(fix.lng)) return;
    const ts = Number(fix.ts) || 0;
    if (ts && ts <= lastTs) return; // already drawn (a snapshot after a reconnect)
    lastTs = Math.max(lastTs, ts);
    const target = { lat: fix.lat, lng: fix.lng };
    ensureRider(target);
    let heading = Number.isFinite(fix.heading) ? fix.heading : null;
    if (heading === null && shown && map.distance([shown.lat, shown.lng], [target.lat, target.lng]) > 3) {
      heading = bearing(shown, target);
    }
    if (heading !== null) {
      // Turn the short way round (350° → 10° is 20°, not 340°).
      rotation += ((((heading - rotation) % 360) + 540) % 360) - 180;
      arrowEl.style.transform = `rotate(${rotation}deg)`;
      riderEl.dataset.heading = String(Math.round(heading));
      riderEl.classList.add("has-heading");
    }
    updates += 1;
    riderEl.dataset.updates = String(updates);
    riderEl.dataset.targetLat = target.lat.toFixed(6);
    riderEl.dataset.targetLng = target.lng.toFixed(6);
    path.push({ ...target, ts });
    if (glideFrame) cancelAnimationFrame(glideFrame);
    glideFrame = 0;
    if (!shown) {
      shown = target;
      pathReached = path.length;
      drawRider();
    } else {
      glide = { from: shown, to: target, start: performance.now() };
      glideFrame = requestAnimationFrame(step);
    }
    drawPath();
    if (!riderInView || !map.getBounds().contains([target.lat, target.lng])) {
      riderInView = true;
      map.fitBounds(map.getBounds().extend([target.lat, target.lng]), fitPadding(17));
    }
  }

  // ---------------------------------------------------------------- status and ETA

  function setStatus(next) {
    if (!next) return;
    status = next;
    if (next.startsWith("awaiting_")) shownSteps.add(next);
    const index = STEPS.indexOf(next);
    if (index > reached) reached = index;
    const bad = next === "cancelled" || next === "failed";
    for (const li of timelineEl.querySelectorAll("li[data-status]")) {
      const s = li.dataset.status;
      const i = STEPS.indexOf(s);
      if (i >= 0) {
        li.classList.toggle("done", i <= reached);
        li.classList.toggle("current", i === reached && !bad);
        li.hidden = (bad && i > reached) || ("optional" in li.dataset && !shownSteps.has(s));
      } else {
        li.hidden = s !== next;
        li.classList.toggle("done", s === next);
        li.classList.toggle("current", s === next);
      }
    }
    timelineEl.dataset.status = next;
    if (isFinal()) {
      show(arrivingEl, null);
      show(codeEl, null);
      etaEl.textContent = { delivered: "Delivered", cancelled: "Cancelled", failed: "Not delivered" }[next];
      $("eta-label").textContent = "Your order";
      etaEl.dataset.etaS = "";
    }
  }

  function setEta(etaS) {
    if (isFinal()) return;
    if (etaS === null || etaS === undefined || !Number.isFinite(etaS)) {
      etaEl.textContent = status === "dispatching" || status === "confirmed" ? "Finding a rider…" : "—";
      etaEl.dataset.etaS = "";
      return;
    }
    const minutes = Math.max(1, Math.round(etaS / 60));
    etaEl.textContent = `${minutes} min`;
    etaEl.dataset.etaS = String(etaS);
  }

  // ---------------------------------------------------------------- socket

  function handle(frame) {
    switch (frame.type) {
      case "snapshot":
        attempt = 0;
        setConn("live", "Live");
        if (frame.order) applyOrder(frame.order);
        if (frame.rider_location) moveRider(frame.rider_location);
        setEta(frame.eta_s);
        break;
      case "rider_location":
        moveRider(frame);
        setEta(frame.eta_s);
        break;
      case "status":
        setStatus(frame.status);
        if (frame.status === "assigned") refreshOrder();
        if (frame.status === "dispatching" || frame.status === "confirmed") setEta(null);
        break;
      case "arriving":
        if (!isFinal()) show(arrivingEl, "Your rider is arriving");
        setEta(frame.eta_s);
        break;
      default:
        break; // newer frame types: ignore
    }
  }

  function openSocket() {
    const ws = new WebSocket(socketUrl(`/ws/orders/${encodeURIComponent(orderId)}/track`, token));
    ws.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame && typeof frame === "object") handle(frame);
    });
    ws.addEventListener("close", () => {
      if (isFinal()) {
        setConn("done", "Finished");
      } else {
        reconnectLater();
      }
    });
  }

  function reconnectLater() {
    const delay = backoff(attempt);
    attempt += 1;
    setConn("waiting", `Reconnecting in ${Math.ceil(delay / 1000)} s…`);
    setTimeout(connect, delay);
  }

  async function connect() {
    setConn("connecting", "Connecting…");
    const r = await loadOrder();
    if (r.error) {
      show(messageEl, r.error);
      setConn("stopped", "Not connected");
      etaEl.textContent = "—";
      return;
    }
    if (r.retry) return reconnectLater();
    show(messageEl, null);
    applyOrder(r.order);
    if (isFinal()) {
      setConn("done", "Finished");
      return;
    }
    openSocket();
  }

  connect();
})();
