// Shared pieces of the Medify k6 scripts: configuration from the environment, account
// set-up, the rider GPS session and the customer journey. The three entry scripts
// (rider_fleet.js, customer_journey.js, mixed.js) only pick which of these to run.
//
// Everything here speaks the external contract in docs/protocol.md; nothing depends on
// server internals.

import http from 'k6/http';
import ws from 'k6/ws';
import exec from 'k6/execution';
import { check, fail, sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

function envNum(name, dflt) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number, got ${raw}`);
  return n;
}

function envStr(name, dflt) {
  const raw = __ENV[name];
  return raw === undefined || raw === '' ? dflt : raw;
}

export const BASE_URL = envStr('BASE_URL', 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const WS_URL = envStr('WS_URL', BASE_URL.replace(/^http/, 'ws'));
export const API = `${BASE_URL}/api/v1`;

export const DURATION = envStr('DURATION', '30s');
export const VUS = envNum('VUS', 10);
export const RIDER_VUS = envNum('RIDER_VUS', VUS);
export const CUSTOMER_VUS = envNum('CUSTOMER_VUS', VUS);

const ADMIN_EMAIL = envStr('MEDIFY_ADMIN_EMAIL', '');
const ADMIN_PASSWORD = envStr('MEDIFY_ADMIN_PASSWORD', '');

// The city area: pharmacy, customers' delivery points and riders all lie around it
// (default: central Bengaluru, where `medify seed` puts its pharmacies too).
const CITY_LAT = envNum('CITY_LAT', 12.9716);
const CITY_LNG = envNum('CITY_LNG', 77.5946);
// Riders start and roam within this distance of the centre (the matcher looks 5 km
// around a pickup by default, so riders here can be offered the journey's orders).
const RIDER_AREA_M = envNum('RIDER_AREA_M', 3000);
// Customers' delivery points lie this far from the pharmacy at most (the server's
// SERVICE_RADIUS_M defaults to 10 000 m).
const DELIVERY_MAX_M = envNum('DELIVERY_MAX_M', 4000);
// A rider's socket stays open this long before the VU closes it and reconnects.
const RIDER_SESSION_S = envNum('RIDER_SESSION_S', 60);
// Location frame period (the server accepts at most 10 frames a second per rider).
const LOCATION_PERIOD_MS = envNum('LOCATION_PERIOD_MS', 1000);
// After a journey, cancel the order so its stock reservation is released and open
// orders do not pile up in the dispatcher (set CANCEL_ORDERS=0 to leave them open).
const CANCEL_ORDERS = envStr('CANCEL_ORDERS', '1') !== '0';
// Pause between two journeys of one customer VU, in seconds.
const THINK_S = envNum('THINK_S', 1);
// Shelf quantity per medicine at the test pharmacy.
const STOCK_QTY = envNum('STOCK_QTY', 1000000);
const WS_FIRST_FRAME_TIMEOUT_MS = envNum('WS_FIRST_FRAME_TIMEOUT_MS', 5000);

// One password for every account the test registers (>= 8 characters).
const USER_PASSWORD = envStr('USER_PASSWORD', 'k6-load-password');

// ---------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------

// Every `{"type":"error"}` frame a socket receives, tagged with its code.
export const wsErrorFrames = new Counter('ws_error_frames');
// Location frames sent by riders (also visible as ws_msgs_sent, which includes the rest).
export const locationFramesSent = new Counter('rider_location_frames');
// Offers the riders were shown (they never answer them: the offers expire).
export const offersReceived = new Counter('rider_offers_received');
// Orders the customers placed.
export const ordersPlaced = new Counter('orders_placed');
// Time from the tracking socket's open to its first (snapshot) frame.
export const trackSnapshotWait = new Trend('track_snapshot_ms', true);

// Thresholds common to every script (what each means: README.md beside this file).
export const THRESHOLDS = {
  http_req_duration: ['p(95)<200'],
  ws_error_frames: ['count==0'],
  checks: ['rate>0.99'],
};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

const JSON_HEADERS = { 'Content-Type': 'application/json' };

function bearer(token) {
  return { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` };
}

function jsonOr(res, dflt) {
  try {
    return res.json();
  } catch (_) {
    return dflt;
  }
}

function describe(res) {
  return `${res.request ? res.request.method : ''} ${res.url} -> ${res.status} ${
    res.body ? String(res.body).slice(0, 500) : res.error
  }`;
}

// Parses k6 durations like "30s", "1m30s", "2h", "500ms" into milliseconds.
export function durationMs(text) {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  const unit = { ms: 1, s: 1000, m: 60000, h: 3600000 };
  let total = 0;
  let matched = '';
  let m;
  while ((m = re.exec(text)) !== null) {
    total += Number(m[1]) * unit[m[2]];
    matched += m[0];
  }
  if (matched !== text) throw new Error(`DURATION: cannot parse ${text}`);
  return total;
}

const EARTH_M = 6371008.8;
const toRad = (d) => (d * Math.PI) / 180;
const toDeg = (r) => (r * 180) / Math.PI;

// The point `distance_m` away from (lat, lng) on bearing `bearing_deg`.
export function offset(lat, lng, distanceM, bearingDeg) {
  const dr = distanceM / EARTH_M;
  const b = toRad(bearingDeg);
  const la = toRad(lat);
  const lo = toRad(lng);
  const la2 = Math.asin(Math.sin(la) * Math.cos(dr) + Math.cos(la) * Math.sin(dr) * Math.cos(b));
  const lo2 =
    lo + Math.atan2(Math.sin(b) * Math.sin(dr) * Math.cos(la), Math.cos(dr) - Math.sin(la) * Math.sin(la2));
  return { lat: toDeg(la2), lng: toDeg(lo2) };
}

export function haversineM(a, b) {
  const dLat = toRad(b.lat - a.lat);
  const dLng = toRad(b.lng - a.lng);
  const h =
    Math.sin(dLat / 2) ** 2 + Math.cos(toRad(a.lat)) * Math.cos(toRad(b.lat)) * Math.sin(dLng / 2) ** 2;
  return 2 * EARTH_M * Math.asin(Math.sqrt(h));
}

function bearingDeg(from, to) {
  const la1 = toRad(from.lat);
  const la2 = toRad(to.lat);
  const dLng = toRad(to.lng - from.lng);
  const y = Math.sin(dLng) * Math.cos(la2);
  const x = Math.cos(la1) * Math.sin(la2) - Math.sin(la1) * Math.cos(la2) * Math.cos(dLng);
  return (toDeg(Math.atan2(y, x)) + 360) % 360;
}

const rand = (lo, hi) => lo + Math.random() * (hi - lo);
const pick = (xs) => xs[Math.floor(Math.random() * xs.length)];

// A point uniformly spread over a disc of radius `radiusM` around (lat, lng).
function randomNear(lat, lng, radiusM) {
  return offset(lat, lng, radiusM * Math.sqrt(Math.random()), rand(0, 360));
}

// When the scenario this VU runs in ends (epoch ms), so rider sockets close in time.
function scenarioEndMs() {
  return exec.scenario.startTime + durationMs(DURATION);
}

// ---------------------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------------------

function login(email, password) {
  const res = http.post(`${API}/auth/login`, JSON.stringify({ email, password }), {
    headers: JSON_HEADERS,
    tags: { name: 'POST /auth/login' },
  });
  if (res.status !== 200) fail(`login ${email}: ${describe(res)}`);
  return tokensFrom(res.json());
}

function tokensFrom(body) {
  return {
    id: body.user.id,
    access_token: body.access_token,
    refresh_token: body.refresh_token,
    // Refresh a minute early.
    renew_at: Date.now() + (body.expires_in - 60) * 1000,
  };
}

function register(name, email, role) {
  const res = http.post(
    `${API}/auth/register`,
    JSON.stringify({ name, email, password: USER_PASSWORD, role }),
    { headers: JSON_HEADERS, tags: { name: 'POST /auth/register' } },
  );
  if (res.status !== 201) {
    const hint =
      res.status === 429
        ? ' (rate limited: start the server with generous RATE_LIMIT_AUTH_PER_IP / RATE_LIMIT_AUTH_PER_ACCOUNT)'
        : '';
    fail(`register ${email}: ${describe(res)}${hint}`);
  }
}

// Registers `count` accounts of `role` and logs each in: argon2 makes these the
// expensive requests (~85 logins/s on a 2-core machine), so they run once, sequentially,
// in setup(), and never per iteration.
function accounts(runId, role, count) {
  const out = [];
  for (let i = 0; i < count; i++) {
    const email = `k6-${runId}-${role}-${i + 1}@example.com`;
    register(`K6 ${role} ${i + 1}`, email, role);
    const t = login(email, USER_PASSWORD);
    t.email = email;
    out.push(t);
  }
  return out;
}

// Keeps a VU's copy of its account's tokens fresh (access tokens live 15 minutes).
// Riders own their account and rotate the refresh token; customer accounts may be shared
// between VUs in mixed.js, so they log in again instead (a shared refresh token rotated
// by one VU would revoke the other's session).
function ensureFresh(acct, useRefresh) {
  if (Date.now() < acct.renew_at) return;
  if (useRefresh) {
    const res = http.post(`${API}/auth/refresh`, JSON.stringify({ refresh_token: acct.refresh_token }), {
      headers: JSON_HEADERS,
      tags: { name: 'POST /auth/refresh' },
    });
    if (check(res, { 'token refreshed (200)': (r) => r.status === 200 })) {
      Object.assign(acct, tokensFrom(res.json()));
      return;
    }
  }
  Object.assign(acct, login(acct.email, USER_PASSWORD));
}

// How many VUs the whole test may run: accounts are indexed by exec.vu.idInTest, which
// k6 hands out across scenarios in no fixed order, so a pool must cover every VU id.
function totalVUs() {
  const opts = exec.test.options;
  if (opts.scenarios) {
    return Object.values(opts.scenarios).reduce((n, s) => n + (s.vus || s.maxVUs || 0), 0);
  }
  return opts.vus || 1;
}

// ---------------------------------------------------------------------------------------
// setup(): the admin creates the pharmacy, its catalog and stock; riders and customers
// are registered and logged in.
// ---------------------------------------------------------------------------------------

const MEDICINES = [
  { name: 'Paracetamol 500 mg', generic_name: 'Paracetamol', brand: 'Calpol', price_cents: 3500 },
  { name: 'Ibuprofen 400 mg', generic_name: 'Ibuprofen', brand: 'Brufen', price_cents: 4200 },
  { name: 'Cetirizine 10 mg', generic_name: 'Cetirizine', brand: 'Zyrtec', price_cents: 2800 },
  { name: 'Amoxicillin 250 mg', generic_name: 'Amoxicillin', brand: 'Mox', price_cents: 9100 },
  { name: 'Omeprazole 20 mg', generic_name: 'Omeprazole', brand: 'Omez', price_cents: 6400 },
  { name: 'Metformin 500 mg', generic_name: 'Metformin', brand: 'Glycomet', price_cents: 5300 },
  { name: 'Oral Rehydration Salts', generic_name: null, brand: 'Electral', price_cents: 2100 },
  { name: 'Vitamin C 500 mg', generic_name: 'Ascorbic acid', brand: 'Limcee', price_cents: 2500 },
];

// What customers type: exact names, prefixes, brands, one typo.
const SEARCHES = [
  'paracetamol',
  'paracetmol',
  'ibuprofen',
  'brufen',
  'cetiri',
  'zyrtec',
  'amoxicilin',
  'omeprazole',
  'metformin',
  'electral',
  'vitamin c',
  'calpol',
];

function adminToken() {
  if (!ADMIN_EMAIL || !ADMIN_PASSWORD) {
    fail('MEDIFY_ADMIN_EMAIL and MEDIFY_ADMIN_PASSWORD must be passed to k6 (-e or the environment)');
  }
  return login(ADMIN_EMAIL, ADMIN_PASSWORD).access_token;
}

function setupPharmacy(runId, admin) {
  const headers = bearer(admin);
  const at = { lat: CITY_LAT, lng: CITY_LNG };
  let res = http.post(
    `${API}/pharmacies`,
    JSON.stringify({ name: `K6 Pharmacy ${runId}`, lat: at.lat, lng: at.lng, address: 'MG Road, Bengaluru' }),
    { headers, tags: { name: 'POST /pharmacies' } },
  );
  if (res.status !== 201) fail(`create pharmacy: ${describe(res)}`);
  const pharmacy = res.json();

  const medicines = [];
  for (let i = 0; i < MEDICINES.length; i++) {
    const m = MEDICINES[i];
    res = http.post(
      `${API}/medicines`,
      JSON.stringify(Object.assign({ sku: `K6-${runId}-${i + 1}`, rx_required: false }, m)),
      { headers, tags: { name: 'POST /medicines' } },
    );
    if (res.status !== 201) fail(`create medicine ${m.name}: ${describe(res)}`);
    medicines.push(res.json().id);
  }

  res = http.put(
    `${API}/pharmacies/${pharmacy.id}/stock`,
    JSON.stringify({ items: medicines.map((id) => ({ medicine_id: id, quantity: STOCK_QTY })) }),
    { headers, tags: { name: 'PUT /pharmacies/{id}/stock' } },
  );
  if (res.status !== 200) fail(`set stock: ${describe(res)}`);

  return { id: pharmacy.id, lat: pharmacy.lat, lng: pharmacy.lng, medicines };
}

function newRunId() {
  return `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}

// setup() for any mix: `riders` / `customers` say whether that part runs.
export function setupFor({ riders, customers }) {
  const runId = newRunId();
  const total = totalVUs();
  const data = { runId, riders: [], customers: [], pharmacy: null };
  if (customers) {
    data.pharmacy = setupPharmacy(runId, adminToken());
    // Customer accounts may be shared by VUs (see ensureFresh), so CUSTOMER_VUS of them.
    data.customers = accounts(runId, 'customer', Math.max(1, Math.min(CUSTOMER_VUS, total)));
  }
  if (riders) {
    // One rider per VU id: two sockets of one rider would fight over its position.
    data.riders = accounts(runId, 'rider', total);
  }
  data.server_metrics = riders ? locationOutcomes() : null;
  return data;
}

// ---------------------------------------------------------------------------------------
// Server-side view of the riders' points (GET /metrics): the server counts every point
// it receives once as accepted, rejected or rate_limited. Rejected and rate-limited points
// normally come with an `error` frame, but points shed under overload may not, so the
// teardown also compares the counters. Only meaningful when this test is the server's
// only rider traffic: CHECK_SERVER_METRICS=0 turns it off.
// ---------------------------------------------------------------------------------------

const CHECK_SERVER_METRICS = envStr('CHECK_SERVER_METRICS', '1') !== '0';

function locationOutcomes() {
  if (!CHECK_SERVER_METRICS) return null;
  const res = http.get(`${BASE_URL}/metrics`, { tags: { name: 'GET /metrics' } });
  if (res.status !== 200) return null;
  const out = { accepted: 0, rejected: 0, rate_limited: 0 };
  const re = /^medify_location_updates_total\{outcome="(\w+)"\}\s+(\S+)$/gm;
  let m;
  while ((m = re.exec(res.body)) !== null) out[m[1]] = Number(m[2]);
  return out;
}

export function teardownFor(data) {
  if (!data || !data.server_metrics) return;
  const after = locationOutcomes();
  if (!after) return;
  const delta = {};
  for (const k of Object.keys(after)) delta[k] = after[k] - (data.server_metrics[k] || 0);
  console.log(`server location outcomes during the test: ${JSON.stringify(delta)}`);
  check(delta, {
    'server accepted every location point': (d) => d.accepted > 0 && d.rejected === 0 && d.rate_limited === 0,
  });
}

// Thresholds count a metric only once it has a sample; give the error counter a zero so
// `ws_error_frames: count==0` is judged (and printed) in every run.
export function touchCounters() {
  wsErrorFrames.add(0);
}

// ---------------------------------------------------------------------------------------
// Rider: connect, go available, stream GPS once a second, reconnect every session.
// ---------------------------------------------------------------------------------------

let rider = null; // this VU's account, position and heading

function riderState(data) {
  if (rider === null) {
    const acct = data.riders[(exec.vu.idInTest - 1) % data.riders.length];
    const start = randomNear(CITY_LAT, CITY_LNG, RIDER_AREA_M);
    rider = Object.assign({}, acct, {
      lat: start.lat,
      lng: start.lng,
      heading: rand(0, 360),
      speed: rand(3, 9), // m/s: a scooter in city traffic
    });
  }
  return rider;
}

// One step of a rider's ride: mostly straight on, small turns, speed drifts, turns back
// towards the centre near the edge of the area. Never faster than ~12 m/s (the server
// rejects jumps faster than 70 m/s).
function moveRider(r, dtS) {
  const centre = { lat: CITY_LAT, lng: CITY_LNG };
  if (haversineM(centre, r) > RIDER_AREA_M) {
    r.heading = (bearingDeg(r, centre) + rand(-30, 30) + 360) % 360;
  } else {
    r.heading = (r.heading + rand(-15, 15) + 360) % 360;
  }
  r.speed = Math.min(12, Math.max(0.5, r.speed + rand(-1, 1)));
  const next = offset(r.lat, r.lng, r.speed * dtS, r.heading);
  r.lat = next.lat;
  r.lng = next.lng;
}

let errorFramesLogged = 0; // per VU: the first few are printed, all are counted

function handleErrorFrame(msg, where) {
  wsErrorFrames.add(1, { code: String(msg.code), socket: where });
  if (errorFramesLogged < 5) {
    errorFramesLogged++;
    console.warn(`${where} socket got an error frame: ${JSON.stringify(msg)}`);
  }
}

export function riderSession(data) {
  touchCounters();
  const r = riderState(data);
  const endAt = Math.min(Date.now() + RIDER_SESSION_S * 1000, scenarioEndMs());
  if (endAt - Date.now() < 1500) {
    // Too little of the scenario left for a meaningful session: idle until it ends
    // (k6 stops the VU then; never spin).
    sleep(Math.max(0.2, (endAt - Date.now()) / 1000 + 0.1));
    return;
  }
  ensureFresh(r, true);

  let welcome = null;
  let firstType = null;
  let badJson = 0;
  let lastMove = Date.now();
  const url = `${WS_URL}/ws/rider?access_token=${encodeURIComponent(r.access_token)}`;
  const res = ws.connect(url, { tags: { name: '/ws/rider' } }, (socket) => {
    const sendLocation = () => {
      const now = Date.now();
      moveRider(r, (now - lastMove) / 1000);
      lastMove = now;
      socket.send(
        JSON.stringify({
          type: 'location',
          lat: r.lat,
          lng: r.lng,
          ts: now,
          speed: Math.round(r.speed * 10) / 10,
          heading: Math.round(r.heading),
          accuracy: Math.round(rand(3, 15)),
        }),
      );
      locationFramesSent.add(1);
    };

    socket.on('open', () => {
      socket.send(JSON.stringify({ type: 'availability', available: true }));
      sendLocation();
      socket.setInterval(() => {
        if (Date.now() >= endAt) socket.close();
        else sendLocation();
      }, LOCATION_PERIOD_MS);
      socket.setTimeout(() => socket.close(), Math.max(0, endAt - Date.now()));
    });

    socket.on('message', (raw) => {
      let msg;
      try {
        msg = JSON.parse(raw);
      } catch (_) {
        badJson++;
        return;
      }
      if (firstType === null) firstType = msg.type;
      switch (msg.type) {
        case 'welcome':
          welcome = msg;
          break;
        case 'error':
          handleErrorFrame(msg, 'rider');
          break;
        case 'offer':
          // The fleet never answers offers: they expire and go to the next rider.
          offersReceived.add(1);
          break;
        default:
          break;
      }
    });

    socket.on('error', (e) => {
      if (e.error() !== 'websocket: close sent') console.warn(`rider socket error: ${e.error()}`);
    });
  });

  check(res, { 'rider ws upgraded (101)': (x) => x && x.status === 101 });
  if (res && res.status === 101) {
    check(null, {
      'rider first frame is welcome': () => firstType === 'welcome',
      'rider welcome names this rider': () => welcome !== null && welcome.rider_id === r.id,
      'rider frames are JSON': () => badJson === 0,
    });
  } else if (res) {
    console.warn(`rider ws upgrade failed: ${res.status} ${res.body}`);
  }
}

// ---------------------------------------------------------------------------------------
// Customer: search, look the pharmacy up, order, watch the order, cancel.
// ---------------------------------------------------------------------------------------

let customer = null;

export function customerJourney(data) {
  touchCounters();
  if (customer === null) {
    customer = Object.assign({}, data.customers[(exec.vu.idInTest - 1) % data.customers.length]);
  }
  ensureFresh(customer, false);
  const ph = data.pharmacy;
  const auth = { headers: bearer(customer.access_token) };

  // 1. Search the catalog.
  const q = pick(SEARCHES);
  let res = http.get(`${API}/medicines?q=${encodeURIComponent(q)}&per_page=10`, {
    tags: { name: 'GET /medicines?q=' },
  });
  check(res, {
    'search 200': (r) => r.status === 200,
    'search finds something': (r) => (jsonOr(r, {}).items || []).length > 0,
  });

  // 2. Pick 1-3 distinct medicines and find pharmacies near the door that have the first.
  const n = 1 + Math.floor(Math.random() * 3);
  const ids = ph.medicines.slice().sort(() => Math.random() - 0.5).slice(0, n);
  const door = randomNear(ph.lat, ph.lng, DELIVERY_MAX_M);
  res = http.get(
    `${API}/pharmacies?lat=${door.lat}&lng=${door.lng}&radius_m=${DELIVERY_MAX_M + 1000}&medicine_id=${ids[0]}&per_page=100`,
    { tags: { name: 'GET /pharmacies?lat=&lng=' } },
  );
  check(res, {
    'nearby pharmacies 200': (r) => r.status === 200,
    'nearby pharmacies include ours': (r) => (jsonOr(r, {}).items || []).some((p) => p.id === ph.id),
  });

  // 3. Place the order at our pharmacy.
  const body = {
    items: ids.map((id) => ({ medicine_id: id, qty: 1 + Math.floor(Math.random() * 3) })),
    delivery: { lat: door.lat, lng: door.lng, address: `${Math.floor(rand(1, 999))} K6 Street, Bengaluru` },
    pharmacy_id: ph.id,
  };
  res = http.post(`${API}/orders`, JSON.stringify(body), {
    headers: Object.assign({ 'Idempotency-Key': crypto.randomUUID() }, auth.headers),
    tags: { name: 'POST /orders' },
  });
  const order = jsonOr(res, null);
  const placed = check(res, {
    'order 201': (r) => r.status === 201,
    'order at our pharmacy': () => order !== null && order.pharmacy && order.pharmacy.id === ph.id,
    'order confirmed or dispatching': () =>
      order !== null && (order.status === 'confirmed' || order.status === 'dispatching'),
  });
  if (!placed || !order || !order.id) {
    console.warn(`order failed: ${describe(res)}`);
    sleep(THINK_S);
    return;
  }
  ordersPlaced.add(1);

  // 4. Watch it: the first frame must be the snapshot of this order.
  let first = null;
  let badJson = 0;
  let opened = 0;
  const url = `${WS_URL}/ws/orders/${order.id}/track?access_token=${encodeURIComponent(customer.access_token)}`;
  const wsRes = ws.connect(url, { tags: { name: '/ws/orders/{id}/track' } }, (socket) => {
    socket.on('open', () => {
      opened = Date.now();
      socket.setTimeout(() => socket.close(), WS_FIRST_FRAME_TIMEOUT_MS);
    });
    socket.on('message', (raw) => {
      let msg;
      try {
        msg = JSON.parse(raw);
      } catch (_) {
        badJson++;
        socket.close();
        return;
      }
      if (msg.type === 'error') handleErrorFrame(msg, 'track');
      if (first === null) {
        first = msg;
        trackSnapshotWait.add(Date.now() - opened);
        socket.close();
      }
    });
    socket.on('error', (e) => {
      if (e.error() !== 'websocket: close sent') console.warn(`track socket error: ${e.error()}`);
    });
  });
  check(wsRes, { 'track ws upgraded (101)': (x) => x && x.status === 101 });
  check(null, {
    'track first frame is snapshot': () => first !== null && first.type === 'snapshot' && badJson === 0,
    'snapshot is of this order': () => first !== null && first.order && first.order.id === order.id,
  });

  // 5. Cancel (releases the reservation; an offered rider is told).
  if (CANCEL_ORDERS) {
    res = http.post(`${API}/orders/${order.id}/cancel`, null, {
      headers: auth.headers,
      tags: { name: 'POST /orders/{id}/cancel' },
    });
    check(res, {
      'cancel 200': (r) => r.status === 200,
      'cancelled': (r) => jsonOr(r, {}).status === 'cancelled',
    });
  }

  sleep(THINK_S);
}
