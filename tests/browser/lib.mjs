// Helpers for the browser tests: the REST API, a scripted rider over /ws/rider, and a
// chromium from the system (Debian's /usr/bin/chromium) driven by playwright-core.
//
// run.sh starts the server and passes: MEDIFY_URL, MEDIFY_ADMIN_EMAIL,
// MEDIFY_ADMIN_PASSWORD, SCREENSHOT_DIR, CHROMIUM.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { createHmac, randomUUID } from "node:crypto";
import { chromium } from "playwright-core";

export const BASE = process.env.MEDIFY_URL ?? assert.fail("MEDIFY_URL is not set (use run.sh)");
export const ADMIN_EMAIL = process.env.MEDIFY_ADMIN_EMAIL;
export const ADMIN_PASSWORD = process.env.MEDIFY_ADMIN_PASSWORD;
export const SHOTS = process.env.SCREENSHOT_DIR ?? "screenshots";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** Generous upper bound for any single wait (never a fixed sleep). */
export const WAIT_MS = 20_000;

export const unique = () => randomUUID().slice(0, 8);

/** A REST call: resolves to {status, body}. */
export async function api(path, { token, method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(BASE + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = text;
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

/** A REST call that must answer `expected`; returns the body. */
export async function ok(expected, path, options) {
  const res = await api(path, options);
  assert.equal(res.status, expected, `${options?.method ?? "GET"} ${path}: ${JSON.stringify(res.body)}`);
  return res.body;
}

export async function login(email, password) {
  return ok(200, "/api/v1/auth/login", { method: "POST", body: { email, password } });
}

export async function adminToken() {
  return (await login(ADMIN_EMAIL, ADMIN_PASSWORD)).access_token;
}

/** Registers a customer or a rider and signs them in: {user, token}. */
export async function account(role) {
  const email = `${role}-${unique()}@example.test`;
  const password = "correct horse battery";
  await ok(201, "/api/v1/auth/register", {
    method: "POST",
    body: { name: `Test ${role} ${unique()}`, email, password, role },
  });
  const tokens = await login(email, password);
  return { user: tokens.user, token: tokens.access_token };
}

/** A medicine, a pharmacy at `at` and 50 of it on the shelf. */
export async function pharmacyWithStock(admin, at) {
  const id = unique();
  const medicine = await ok(201, "/api/v1/medicines", {
    method: "POST",
    token: admin,
    body: { name: `Paracetamol 500 mg ${id}`, sku: `BT-${id}`, price_cents: 250 },
  });
  const pharmacy = await ok(201, "/api/v1/pharmacies", {
    method: "POST",
    token: admin,
    body: { name: `Browser Test Pharmacy ${id}`, lat: at.lat, lng: at.lng, address: "1 Test Street" },
  });
  await ok(200, `/api/v1/pharmacies/${pharmacy.id}/stock`, {
    method: "PUT",
    token: admin,
    body: { items: [{ medicine_id: medicine.id, quantity: 50 }] },
  });
  return { medicine, pharmacy };
}

/** A point `metres` north and `east` metres east of `at`. */
export function offset(at, north, east = 0) {
  const dLat = north / 111_320;
  const dLng = east / (111_320 * Math.cos((at.lat * Math.PI) / 180));
  return { lat: at.lat + dLat, lng: at.lng + dLng };
}

/** A rider app on /ws/rider: every frame received is kept; `next` waits for one. */
export class Rider {
  static async connect(token) {
    if (typeof WebSocket === "undefined") {
      assert.fail("no global WebSocket: run node with --experimental-websocket (Node 20) or Node 22+");
    }
    const rider = new Rider();
    const url = `${BASE.replace(/^http/, "ws")}/ws/rider?access_token=${encodeURIComponent(token)}`;
    rider.ws = new WebSocket(url);
    rider.ws.addEventListener("message", (event) => {
      const frame = JSON.parse(event.data);
      rider.frames.push(frame);
      rider.waiters = rider.waiters.filter((w) => !w(frame));
    });
    await new Promise((resolve, reject) => {
      rider.ws.addEventListener("open", resolve, { once: true });
      rider.ws.addEventListener("error", () => reject(new Error("rider socket failed")), { once: true });
    });
    await rider.next((f) => f.type === "welcome");
    return rider;
  }

  constructor() {
    this.frames = [];
    this.waiters = [];
    this.ts = 0;
  }

  send(frame) {
    this.ws.send(JSON.stringify(frame));
  }

  /** The first frame (already received or to come) matching `match`. */
  next(match, timeoutMs = WAIT_MS) {
    const seen = this.frames.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`rider: no matching frame in ${timeoutMs} ms; got ${JSON.stringify(this.frames)}`));
      }, timeoutMs);
      this.waiters.push((frame) => {
        if (!match(frame)) return false;
        clearTimeout(timer);
        resolve(frame);
        return true;
      });
    });
  }

  /** A fix at `at`; each fix is stamped one second after the previous one. */
  locate(at, extra = {}) {
    this.ts = Math.max(Date.now(), this.ts + 1000);
    this.send({ type: "location", lat: at.lat, lng: at.lng, ts: this.ts, accuracy: 5, ...extra });
    return this.ts;
  }

  errors() {
    return this.frames.filter((f) => f.type === "error");
  }

  close() {
    this.ws.close(1000);
  }
}

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
}

/**
 * A page that records what should never happen: script errors and Content-Security-Policy
 * violations (so the CSP and the pages are checked together).
 */
export async function watchedPage(browser, options = {}) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error" && /Content Security Policy|Refused to/i.test(msg.text())) {
      problems.push(`CSP: ${msg.text()}`);
    }
  });
  return { context, page, problems };
}

export async function screenshot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  const path = join(SHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: false });
  console.log(`screenshot: ${path}`);
  return path;
}

/** An access token for `user` signed with the server's secret that expired an hour ago. */
export function expiredToken(user) {
  const secret = process.env.JWT_SECRET ?? assert.fail("JWT_SECRET is not set (use run.sh)");
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const unsigned = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub: user.id, role: user.role, iat: now - 7200, exp: now - 3600, jti: randomUUID() })}`;
  const signature = createHmac("sha256", secret).update(unsigned).digest("base64url");
  return `${unsigned}.${signature}`;
}

/** A 4×4 PNG (a real image a browser decodes) and a one-page PDF, as prescriptions. */
export const PNG_BYTES = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAEElEQVR4nGM4oaEBRwzEcQDRQxGBSNLB6wAAAABJRU5ErkJggg==",
  "base64",
);
export const PDF_BYTES = Buffer.from(
  "%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n" +
    "3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n",
);

/** Uploads `bytes` as a prescription of `token`'s customer; returns the prescription. */
export async function uploadPrescription(token, bytes, type, name) {
  const form = new FormData();
  form.append("file", new Blob([bytes], { type }), name);
  const res = await fetch(`${BASE}/api/v1/prescriptions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}` },
    body: form,
  });
  const body = await res.json();
  assert.equal(res.status, 201, `upload: ${JSON.stringify(body)}`);
  return body;
}

/** A page that must never log an error to the console either (the consoles' tests). */
export async function strictPage(browser, options = {}) {
  const watched = await watchedPage(browser, options);
  watched.page.on("console", (msg) => {
    if (msg.type() === "error" && !/Content Security Policy|Refused to/i.test(msg.text())) {
      // A failed request the page expected (a 401 it explains) is logged by Chromium as
      // "Failed to load resource"; anything else is a bug.
      if (!/Failed to load resource: the server responded with a status of (401|403|404|409)/.test(msg.text())) {
        watched.problems.push(`console: ${msg.text()}`);
      }
    }
  });
  return watched;
}

/** Waits until `fn` (run in the page, given `arg`) is truthy. */
export function until(page, fn, arg) {
  return page.waitForFunction(fn, arg, { timeout: WAIT_MS });
}
