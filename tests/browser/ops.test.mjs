// /ops: the admins' fleet map, signed in through its form, following /ws/ops.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  ADMIN_EMAIL, ADMIN_PASSWORD, BASE, WAIT_MS, Rider, account, adminToken, launch, offset, ok,
  pharmacyWithStock, screenshot, watchedPage,
} from "./lib.mjs";

// North Bengaluru, ~15 km from the track test's pharmacy.
const HERE = { lat: 13.1, lng: 77.6 };

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("an admin signs in and sees riders, an open order and the counters", async () => {
  // A free rider online, and an order waiting 8 km away (beyond the search radius, so it
  // stays open and shows as demand).
  const riderAccount = await account("rider");
  const rider = await Rider.connect(riderAccount.token);
  rider.send({ type: "availability", available: true });
  rider.locate(HERE);

  const admin = await adminToken();
  const shop = offset(HERE, 8000);
  const { medicine, pharmacy } = await pharmacyWithStock(admin, shop);
  const customer = await account("customer");
  await ok(201, "/api/v1/orders", {
    method: "POST",
    token: customer.token,
    body: {
      items: [{ medicine_id: medicine.id, qty: 1 }],
      delivery: { ...offset(shop, 600, 400), address: "3 Demand Street" },
      pharmacy_id: pharmacy.id,
    },
  });

  const { page, context, problems } = await watchedPage(browser, { viewport: { width: 1280, height: 800 } });
  try {
    await page.goto(`${BASE}/ops`);
    await page.locator("#signin").waitFor({ state: "visible", timeout: WAIT_MS });

    // A wrong password is said in words; then the right one.
    await page.fill("#email", ADMIN_EMAIL);
    await page.fill("#password", "not the password");
    await page.click('#signin button[type="submit"]');
    await page.waitForFunction(() => /wrong email or password/i.test(document.getElementById("message").textContent), null, {
      timeout: WAIT_MS,
    });
    await page.fill("#password", ADMIN_PASSWORD);
    await page.click('#signin button[type="submit"]');

    await page.waitForFunction(() => document.getElementById("conn").dataset.state === "live", null, {
      timeout: WAIT_MS,
    });
    assert.equal(await page.locator("#signin").isVisible(), false);
    // Our rider, drawn as a free rider, and counted.
    await page.locator('path.rider-marker[data-state="free"]').first().waitFor({ timeout: WAIT_MS });
    await page.waitForFunction(() => Number(document.getElementById("c-riders-online").textContent) >= 1, null, {
      timeout: WAIT_MS,
    });
    await page.waitForFunction(() => Number(document.getElementById("c-orders-open").textContent) >= 1, null, {
      timeout: WAIT_MS,
    });
    await page.locator("path.order-marker").first().waitFor({ timeout: WAIT_MS });
    await page.waitForFunction(() => Number(document.getElementById("map").dataset.cells) >= 2, null, {
      timeout: WAIT_MS,
    });
    await screenshot(page, "ops");
    assert.deepEqual(problems, [], "no script errors, no CSP violations");
  } finally {
    rider.close();
    await context.close();
  }
});

test("a customer token in the fragment is turned away to the sign-in form", async () => {
  const customer = await account("customer");
  const { page, context, problems } = await watchedPage(browser);
  try {
    await page.goto(`${BASE}/ops#token=${customer.token}`);
    await page.locator("#signin").waitFor({ state: "visible", timeout: WAIT_MS });
    assert.match(await page.locator("#message").textContent(), /not an admin/i);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test("the landing page says what Medify is and links to the ops map and the API", async () => {
  const { page, context, problems } = await watchedPage(browser, { viewport: { width: 1024, height: 768 } });
  try {
    await page.goto(`${BASE}/`);
    assert.match(await page.locator("h1").textContent(), /Medify/);
    assert.equal(await page.locator('a[href="/ops"]').count(), 1);
    assert.equal(await page.locator('a[href="/api/v1/openapi.json"]').count(), 1);
    await screenshot(page, "landing");
    await page.click('a[href="/ops"]');
    await page.locator("#signin").waitFor({ state: "visible", timeout: WAIT_MS });
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
