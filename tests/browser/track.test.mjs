// /track/{order_id}: the customer's live map, driven by a scripted rider.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import {
  BASE, WAIT_MS, Rider, account, adminToken, launch, offset, ok, pharmacyWithStock,
  screenshot, watchedPage,
} from "./lib.mjs";

// Central Bengaluru; the ops test works ~15 km away so the matcher keeps them apart.
const PHARMACY = { lat: 12.9716, lng: 77.5946 };
const DROPOFF = offset(PHARMACY, 450); // 450 m north
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** Waits until the rider marker is drawn exactly at `at` (the glide has finished). */
async function riderDrawnAt(page, at) {
  await page.waitForFunction(
    ([lat, lng]) => {
      const el = document.getElementById("rider-marker");
      return el && el.dataset.lat === lat && el.dataset.lng === lng;
    },
    [at.lat.toFixed(6), at.lng.toFixed(6)],
    { timeout: WAIT_MS },
  );
}

describe("pages and assets", () => {
  test("pages are HTML with a strict CSP, assets are typed, unknown assets are problem+json 404", async () => {
    for (const path of ["/", "/ops", `/track/${randomUUID()}`]) {
      const res = await fetch(BASE + path);
      assert.equal(res.status, 200, path);
      assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8", path);
      const csp = res.headers.get("content-security-policy") ?? "";
      assert.match(csp, /script-src 'self'(;|$)/, path);
      assert.match(csp, /connect-src 'self' ws: wss:/, path);
      assert.equal(res.headers.get("x-content-type-options"), "nosniff", path);
      assert.doesNotMatch(await res.text(), /<script>/, `${path}: no inline script`);
    }
    const types = {
      "/assets/track.js": /^text\/javascript/,
      "/assets/app.css": /^text\/css/,
      "/assets/vendor/leaflet/leaflet.js": /^text\/javascript/,
      "/assets/vendor/leaflet/leaflet.css": /^text\/css/,
      "/assets/vendor/leaflet/images/layers.png": /^image\/png$/,
      "/assets/vendor/leaflet/LICENSE": /^text\/plain/,
    };
    for (const [path, type] of Object.entries(types)) {
      const res = await fetch(BASE + path);
      assert.equal(res.status, 200, path);
      assert.match(res.headers.get("content-type"), type, path);
    }
    const missing = await fetch(`${BASE}/assets/nope.js`);
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.get("content-type"), "application/problem+json");
    assert.equal((await missing.json()).code, "not_found");
  });
});

describe("/track/{order_id}", () => {
  test("says in words when the order is unknown or the link has expired", async () => {
    const customer = await account("customer");
    const { page, context, problems } = await watchedPage(browser, PHONE);
    try {
      await page.goto(`${BASE}/track/${randomUUID()}#token=${customer.token}`);
      await page.locator("#message").waitFor({ state: "visible", timeout: WAIT_MS });
      assert.match(await page.locator("#message").textContent(), /order not found/i);

      await page.goto(`${BASE}/track/${randomUUID()}#token=not-a-valid-token`);
      await page.waitForFunction(
        () => /expired/i.test(document.getElementById("message").textContent),
        null,
        { timeout: WAIT_MS },
      );
      assert.match(await page.locator("#message").textContent(), /sign in again/i);
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  test("follows the rider from assignment to delivery", async () => {
    const admin = await adminToken();
    const { medicine, pharmacy } = await pharmacyWithStock(admin, PHARMACY);
    const customer = await account("customer");
    const riderAccount = await account("rider");

    // The rider comes online next to the pharmacy.
    const rider = await Rider.connect(riderAccount.token);
    rider.send({ type: "availability", available: true });
    let at = offset(PHARMACY, -30);
    rider.locate(at);

    const order = await ok(201, "/api/v1/orders", {
      method: "POST",
      token: customer.token,
      body: {
        items: [{ medicine_id: medicine.id, qty: 1 }],
        delivery: { lat: DROPOFF.lat, lng: DROPOFF.lng, address: "42 Browser Lane" },
        pharmacy_id: pharmacy.id,
      },
    });
    assert.match(order.delivery_code, /^\d{4}$/);

    const offer = await rider.next((f) => f.type === "offer" && f.order_id === order.id);
    rider.send({ type: "offer_response", offer_id: offer.offer_id, accept: true });
    await rider.next((f) => f.type === "assigned" && f.order_id === order.id);

    const { page, context, problems } = await watchedPage(browser, PHONE);
    try {
      await page.goto(`${BASE}/track/${order.id}#token=${customer.token}`);

      // Assigned, with an ETA and the rider where the snapshot says.
      await page.locator('#status-timeline li[data-status="assigned"].done').waitFor({ timeout: WAIT_MS });
      await page.waitForFunction(() => /^\d+ min$/.test(document.getElementById("eta").textContent), null, {
        timeout: WAIT_MS,
      });
      await riderDrawnAt(page, at);
      await page.locator("#pharmacy-marker").waitFor({ timeout: WAIT_MS });
      await page.locator("#dropoff-marker").waitFor({ timeout: WAIT_MS });
      await page.waitForFunction(() => /Delivery code|delivery code/.test(document.getElementById("code").textContent));
      const start = await page.locator("#rider-marker").evaluate((el) => ({ ...el.dataset }));

      // The rider walks to the pharmacy: 20 m a second; each fix reaches the page.
      for (let i = 0; i < 3; i += 1) {
        at = offset(at, 10, 0);
        rider.locate(at, { heading: 0, speed: 10 });
        await page.waitForFunction(
          (lat) => document.getElementById("rider-marker")?.dataset.targetLat === lat,
          at.lat.toFixed(6),
          { timeout: WAIT_MS },
        );
      }
      await riderDrawnAt(page, at);
      const moved = await page.locator("#rider-marker").evaluate((el) => ({ ...el.dataset }));
      assert.notEqual(moved.lat, start.lat, "the marker moved");
      assert.equal(moved.heading, "0", "the marker points where the rider heads");
      await page.waitForFunction(() => Number(document.getElementById("map").dataset.pathPoints) >= 4, null, {
        timeout: WAIT_MS,
      });

      // Picked up; then towards the door until within 300 m: "arriving".
      rider.send({ type: "order_status", order_id: order.id, status: "picked_up" });
      await page.locator('#status-timeline li[data-status="picked_up"].done').waitFor({ timeout: WAIT_MS });
      for (let i = 0; i < 6 && !(await page.locator("#arriving").isVisible()); i += 1) {
        at = offset(at, 40, 0); // 40 m a second
        rider.locate(at, { heading: 0, speed: 40 });
        await page.waitForFunction(
          (lat) => document.getElementById("rider-marker")?.dataset.targetLat === lat,
          at.lat.toFixed(6),
          { timeout: WAIT_MS },
        );
      }
      await page.locator("#arriving").waitFor({ state: "visible", timeout: WAIT_MS });
      assert.equal(await page.locator("#arriving").textContent(), "Your rider is arriving");
      await riderDrawnAt(page, at);
      await screenshot(page, "track-arriving");

      // Delivered with the customer's code: the timeline ends, the socket closes for good.
      rider.send({ type: "order_status", order_id: order.id, status: "delivered", code: order.delivery_code });
      await page.locator('#status-timeline li[data-status="delivered"].done').waitFor({ timeout: WAIT_MS });
      await page.waitForFunction(() => document.getElementById("conn").dataset.state === "done", null, {
        timeout: WAIT_MS,
      });
      assert.equal(await page.locator("#eta").textContent(), "Delivered");
      assert.equal(await page.locator("#arriving").isVisible(), false);
      await screenshot(page, "track-delivered");

      assert.deepEqual(rider.errors(), [], "the rider's frames were all accepted");
      assert.deepEqual(problems, [], "no script errors, no CSP violations");
      const final = await ok(200, `/api/v1/orders/${order.id}`, { token: customer.token });
      assert.equal(final.status, "delivered");
    } finally {
      rider.close();
      await context.close();
    }
  });

  test("reconnects after the socket drops", async () => {
    // A dispatching order (no rider) is enough: the page must come back to "Live".
    const admin = await adminToken();
    const farAway = { lat: 12.80, lng: 77.40 };
    const { medicine, pharmacy } = await pharmacyWithStock(admin, farAway);
    const customer = await account("customer");
    const order = await ok(201, "/api/v1/orders", {
      method: "POST",
      token: customer.token,
      body: {
        items: [{ medicine_id: medicine.id, qty: 1 }],
        delivery: { ...offset(farAway, 500), address: "7 Quiet Road" },
        pharmacy_id: pharmacy.id,
      },
    });
    const { page, context, problems } = await watchedPage(browser, { viewport: { width: 1280, height: 800 } });
    try {
      // Count the sockets the page opens, and let the test close them.
      await page.addInitScript(() => {
        const Native = window.WebSocket;
        window.__sockets = [];
        window.WebSocket = class extends Native {
          constructor(...args) {
            super(...args);
            window.__sockets.push(this);
          }
        };
      });
      await page.goto(`${BASE}/track/${order.id}#token=${customer.token}`);
      await page.waitForFunction(() => document.getElementById("conn").dataset.state === "live", null, {
        timeout: WAIT_MS,
      });
      await page.evaluate(() => window.__sockets[0].close());
      await page.waitForFunction(() => document.getElementById("conn").dataset.state === "waiting", null, {
        timeout: WAIT_MS,
      });
      await page.waitForFunction(
        () => window.__sockets.length === 2 && document.getElementById("conn").dataset.state === "live",
        null,
        { timeout: WAIT_MS },
      );
      assert.ok(await page.locator('#status-timeline li[data-status="dispatching"].done').isVisible());
      assert.deepEqual(problems, []);
      await ok(200, `/api/v1/orders/${order.id}/cancel`, { method: "POST", token: customer.token });
      await page.locator('#status-timeline li[data-status="cancelled"].done').waitFor({ timeout: WAIT_MS });
      assert.equal(await page.locator('#status-timeline li[data-status="delivered"]').isVisible(), false);
      await page.waitForFunction(() => document.getElementById("conn").dataset.state === "done", null, {
        timeout: WAIT_MS,
      });
      await screenshot(page, "track-cancelled-desktop");
    } finally {
      await context.close();
    }
  });

  test("shows what customers and admins typed as text, never as markup", async () => {
    const admin = await adminToken();
    const where = offset(PHARMACY, 0, 2_500); // away from the other tests' riders
    const { medicine, pharmacy } = await pharmacyWithStock(admin, where);
    const customer = await account("customer");
    const address = '<img src=x id="injected-img" onerror="window.__pwned=1"><b id="injected">Flat 1</b>';
    const order = await ok(201, "/api/v1/orders", {
      method: "POST",
      token: customer.token,
      body: {
        items: [{ medicine_id: medicine.id, qty: 1 }],
        delivery: { ...offset(where, 300), address },
        pharmacy_id: pharmacy.id,
      },
    });
    const { page, context, problems } = await watchedPage(browser);
    try {
      // The admin's view of the customer's order.
      await page.goto(`${BASE}/track/${order.id}#token=${admin}`);
      await page.locator("#dropoff-marker").waitFor({ timeout: WAIT_MS });
      await page.locator("#dropoff-marker").hover();
      const tooltip = page.locator(".leaflet-tooltip", { hasText: "Flat 1" });
      await tooltip.waitFor({ timeout: WAIT_MS });
      assert.equal(await tooltip.textContent(), address);
      assert.equal(await page.locator("#injected, #injected-img").count(), 0);
      assert.equal(await page.evaluate(() => window.__pwned), undefined);
      assert.deepEqual(problems, []);
      await screenshot(page, "track-address-as-text");
    } finally {
      await context.close();
      await ok(200, `/api/v1/orders/${order.id}/cancel`, { method: "POST", token: customer.token });
    }
  });
});
