// /admin: an admin runs the business from the browser — catalog, pharmacy and stock, a
// pharmacist's account, dispatch held, an order seen arriving live, assigned by hand to an
// online rider, another cancelled — and wrong or expired tokens are refused in words.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  ADMIN_EMAIL, ADMIN_PASSWORD, BASE, WAIT_MS, Rider, account, adminToken, api, expiredToken, launch, login, offset, ok,
  screenshot, strictPage, unique, until,
} from "./lib.mjs";

// Mysuru: far from the other tests' riders, so only ours is free here.
const HERE = { lat: 12.2958, lng: 76.6394 };

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});


async function signIn(page, path) {
  await page.goto(`${BASE}${path}`);
  await page.locator("#signin").waitFor({ state: "visible", timeout: WAIT_MS });
  await page.fill("#email", ADMIN_EMAIL);
  await page.fill("#password", ADMIN_PASSWORD);
  await page.click('#signin button[type="submit"]');
  await page.locator("#app").waitFor({ state: "visible", timeout: WAIT_MS });
}

test("an admin sets up a pharmacy, sees orders arrive live, assigns one by hand and cancels another", async () => {
  const id = unique();
  const riderAccount = await account("rider");
  const rider = await Rider.connect(riderAccount.token);
  rider.send({ type: "availability", available: true });
  rider.locate(offset(HERE, 300));
  const customer = await account("customer");
  const admin = await adminToken();

  const { page, context, problems } = await strictPage(browser, { viewport: { width: 1280, height: 860 } });
  try {
    await signIn(page, "/admin");
    assert.equal(await page.locator('a[href="/ops"]').count(), 1, "a link to the fleet map");

    // Dispatch held, so the order waits for a person to assign it.
    await page.click('[data-tab="dispatch"]');
    await until(page, () => document.getElementById("dispatch-toggle").textContent === "Pause dispatch");
    await page.click("#dispatch-toggle");
    await until(page, () => document.getElementById("dispatch-state").dataset.paused === "true");
    assert.equal((await ok(200, "/api/v1/admin/dispatch", { token: admin })).paused, true);
    await screenshot(page, "admin-dispatch");

    // Catalog: a medicine whose name is markup shows as text.
    const name = `<img src=x onerror=alert(1)>Ibuprofen <b>400</b> ${id}`;
    await page.click('[data-tab="catalog"]');
    await page.click("#medicine-new");
    await page.fill('#medicine-form [name="name"]', name);
    await page.fill('#medicine-form [name="generic_name"]', "ibuprofen");
    await page.fill('#medicine-form [name="sku"]', `ADM-${id}`);
    await page.fill('#medicine-form [name="price"]', "3.50");
    await page.click('#medicine-form button[type="submit"]');
    const row = page.locator("#catalog-table tbody tr", { hasText: `Ibuprofen <b>400</b> ${id}` });
    await row.waitFor({ timeout: WAIT_MS });
    assert.equal(await row.locator("td.name").textContent(), name);
    assert.equal(await page.locator("#catalog-table img, #catalog-table b").count(), 0, "no markup was interpreted");
    const medicineId = await row.getAttribute("data-medicine");
    assert.equal((await ok(200, `/api/v1/medicines/${medicineId}`)).price_cents, 350);
    // Edit it.
    await row.locator("button", { hasText: "Edit" }).click();
    await page.fill('#medicine-form [name="price"]', "4.00");
    await page.click('#medicine-form button[type="submit"]');
    await until(page, () => /Saved/.test(document.getElementById("message").textContent));
    assert.equal((await ok(200, `/api/v1/medicines/${medicineId}`)).price_cents, 400);
    // Search finds it as customers would (one typo), then another one is deleted after asking.
    await page.fill("#catalog-q", `ibuprofn ${id}`);
    await page.click('#catalog-search button[type="submit"]');
    await page.locator(`#catalog-table tr[data-medicine="${medicineId}"]`).waitFor({ timeout: WAIT_MS });
    await screenshot(page, "admin-catalog");
    const doomed = await ok(201, "/api/v1/medicines", {
      method: "POST", token: admin, body: { name: `Obsolete syrup ${id}`, sku: `OBS-${id}`, price_cents: 100 },
    });
    await page.fill("#catalog-q", `Obsolete syrup ${id}`);
    await page.click('#catalog-search button[type="submit"]');
    const doomedRow = page.locator(`#catalog-table tr[data-medicine="${doomed.id}"]`);
    await doomedRow.locator("button", { hasText: "Delete" }).click();
    await doomedRow.locator("button[data-confirm]").click();
    await until(page, () => /Deleted/.test(document.getElementById("message").textContent));
    assert.equal((await api(`/api/v1/medicines/${doomed.id}`)).status, 404);

    // A pharmacy, stocked from its stock editor.
    const pharmacyName = `Console Pharmacy ${id}`;
    await page.click('[data-tab="pharmacies"]');
    await page.fill('#pharmacy-form [name="name"]', pharmacyName);
    await page.fill('#pharmacy-form [name="address"]', "4 Palace Road");
    await page.fill('#pharmacy-form [name="lat"]', String(HERE.lat));
    await page.fill('#pharmacy-form [name="lng"]', String(HERE.lng));
    await page.click('#pharmacy-form button[type="submit"]');
    await page.locator("#stock-panel").waitFor({ state: "visible", timeout: WAIT_MS });
    const pharmacyId = await page.locator("#stock-panel").getAttribute("data-pharmacy");
    await page.fill('#stock-box input[type="search"]', `Ibuprofen ${id}`);
    await until(page, (m) => !!document.querySelector(`#stock-box select option[value="${m}"]`), medicineId);
    await page.selectOption("#stock-box select", medicineId);
    await page.fill("#stock-box .add-stock input.qty", "5");
    await page.click('#stock-box .add-stock button[type="submit"]');
    await page.locator(`#stock-box tr[data-medicine="${medicineId}"]`).waitFor({ timeout: WAIT_MS });
    const stock = await ok(200, `/api/v1/pharmacies/${pharmacyId}/stock`);
    assert.deepEqual(stock.items.map((s) => [s.medicine_id, s.quantity]), [[medicineId, 5]]);
    await screenshot(page, "admin-pharmacies");

    // A pharmacist's account for it.
    const pharmacistEmail = `pharmacist-${id}@example.test`;
    await page.click('[data-tab="users"]');
    await page.fill('#user-form [name="name"]', `Pharmacist ${id}`);
    await page.fill('#user-form [name="email"]', pharmacistEmail);
    await page.fill('#user-form [name="password"]', "a long pharmacist password");
    await page.selectOption("#user-role", "pharmacy");
    await until(page, (p) => !!document.querySelector(`#user-pharmacy option[value="${p}"]`), pharmacyId);
    await page.selectOption("#user-pharmacy", pharmacyId);
    await page.click('#user-form button[type="submit"]');
    await page.locator("#users-made li", { hasText: pharmacistEmail }).waitFor({ timeout: WAIT_MS });
    const pharmacist = await login(pharmacistEmail, "a long pharmacist password");
    assert.equal(pharmacist.user.role, "pharmacy");
    assert.equal((await ok(200, "/api/v1/me", { token: pharmacist.access_token })).pharmacy_id, pharmacyId);
    await screenshot(page, "admin-users");

    // Orders: a customer's order appears without a reload.
    await page.click('[data-tab="orders"]');
    await page.locator("#orders-table").waitFor({ timeout: WAIT_MS });
    const place = (street) =>
      ok(201, "/api/v1/orders", {
        method: "POST",
        token: customer.token,
        body: {
          items: [{ medicine_id: medicineId, qty: 1 }],
          delivery: { ...offset(HERE, 900, 300), address: street },
          pharmacy_id: pharmacyId,
        },
      });
    const first = await place("7 Live Street");
    const firstRow = page.locator(`#orders-table tr[data-order="${first.id}"]`);
    await firstRow.waitFor({ timeout: WAIT_MS });
    await firstRow.click();
    await until(page, (o) => document.getElementById("order-detail").dataset.order === o && document.getElementById("order-detail").dataset.status === "dispatching", first.id);
    assert.match(await page.locator("#order-detail").textContent(), /7 Live Street/);
    assert.match(await page.locator("#order-detail .items").textContent(), /Ibuprofen <b>400<\/b>/);

    // Assigned by hand to the online rider, chosen from the free riders.
    await until(page, (r) => !!document.querySelector(`#assign-rider option[value="${r}"]`), riderAccount.user.id);
    await page.selectOption("#assign-rider", riderAccount.user.id);
    await page.click('#order-detail button:text("Assign")');
    const offer = await rider.next((f) => f.type === "offer" && f.order_id === first.id);
    rider.send({ type: "offer_response", offer_id: offer.offer_id, accept: true });
    await until(page, () => document.getElementById("order-detail").dataset.status === "assigned");
    assert.match(await page.locator("#order-rider").textContent(), new RegExp(riderAccount.user.name));
    await until(page, () => document.querySelectorAll("#order-detail .steps li").length >= 3);
    await screenshot(page, "admin-order");

    // The stock editor refuses a quantity below what the open order holds, in the server's words.
    await page.click('[data-tab="pharmacies"]');
    await page.locator(`#pharmacy-table tr[data-pharmacy="${pharmacyId}"] button`).click();
    const stockRow = page.locator(`#stock-box tr[data-medicine="${medicineId}"]`);
    await stockRow.waitFor({ timeout: WAIT_MS });
    assert.equal(await stockRow.locator("td.reserved").textContent(), "1");
    await stockRow.locator("input.qty").fill("0");
    await stockRow.locator('button[type="submit"]').click();
    await until(page, () => /reserved/i.test(document.getElementById("message").textContent));
    assert.match(await page.locator("#message").textContent(), /^Could not set the stock/);
    assert.equal((await ok(200, `/api/v1/pharmacies/${pharmacyId}/stock`)).items[0].quantity, 5);

    // Another order, opened with the keyboard and cancelled after confirming.
    await page.click('[data-tab="orders"]');
    const second = await place("9 Cancel Street");
    const secondRow = page.locator(`#orders-table tr[data-order="${second.id}"]`);
    await secondRow.waitFor({ timeout: WAIT_MS });
    await secondRow.focus();
    await page.keyboard.press("Enter");
    await until(page, (o) => document.getElementById("order-detail").dataset.order === o, second.id);
    await page.click("#cancel-order");
    await page.click("#cancel-confirm");
    await until(page, () => document.getElementById("order-detail").dataset.status === "cancelled");
    const cancelled = await ok(200, `/api/v1/orders/${second.id}`, { token: customer.token });
    assert.equal(cancelled.status, "cancelled");
    assert.equal(cancelled.cancel_reason, "admin");
    // The filter shows it among the cancelled, and not among the open.
    await page.selectOption("#order-status", "cancelled");
    await page.locator(`#orders-table tr[data-order="${first.id}"]`).waitFor({ state: "detached", timeout: WAIT_MS });
    assert.equal(await page.locator(`#orders-table tr[data-order="${second.id}"]`).getAttribute("data-status"), "cancelled");
    assert.ok(
      await page.$$eval("#orders-table tbody tr", (rows) => rows.every((r) => r.dataset.status === "cancelled")),
      "only cancelled orders under the filter",
    );
    await screenshot(page, "admin-orders");

    // Riders: the rider on the delivery, with the order.
    await page.click('[data-tab="riders"]');
    const riderRow = page.locator(`#riders-table tr[data-rider="${riderAccount.user.id}"]`);
    await riderRow.waitFor({ timeout: WAIT_MS });
    await until(
      page,
      ([r, o]) => {
        const row = document.querySelector(`#riders-table tr[data-rider="${r}"]`);
        return row && row.dataset.state === "on_delivery" && row.textContent.includes(o);
      },
      [riderAccount.user.id, first.id.slice(-8)],
    );
    await screenshot(page, "admin-riders");

    // Resumed from the console.
    await page.click('[data-tab="dispatch"]');
    await until(page, () => document.getElementById("dispatch-state").dataset.paused === "true");
    await page.click("#dispatch-toggle");
    await until(page, () => document.getElementById("dispatch-state").dataset.paused === "false");
    assert.deepEqual(problems, [], "no script errors, console errors or CSP violations");
  } finally {
    await api("/api/v1/admin/dispatch", { method: "PUT", token: admin, body: { paused: false } });
    rider.close();
    await context.close();
  }
});

test("the admin console reads on a phone without sideways scrolling", async () => {
  const { page, context, problems } = await strictPage(browser, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  try {
    await signIn(page, "/admin");
    await page.locator("#orders-table").waitFor({ timeout: WAIT_MS });
    await until(page, () => document.getElementById("live").dataset.state === "live");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
    await screenshot(page, "admin-phone");
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test("wrong-role and expired tokens are refused in words", async () => {
  const customer = await account("customer");
  const adminUser = (await login(ADMIN_EMAIL, ADMIN_PASSWORD)).user;
  const { page, context, problems } = await strictPage(browser);
  try {
    await page.goto(`${BASE}/admin#token=${customer.token}`);
    await page.locator("#signin").waitFor({ state: "visible", timeout: WAIT_MS });
    await until(page, () => /is not an admin account/.test(document.getElementById("message").textContent));
    assert.equal(await page.locator("#app").isVisible(), false);
    assert.equal(new URL(page.url()).hash, "", "the token left the address bar");

    await page.goto("about:blank"); // a new document: a fragment change alone would not reload
    await page.goto(`${BASE}/admin#token=${expiredToken(adminUser)}`);
    await until(page, () => /expired.*sign in again/i.test(document.getElementById("message").textContent));
    assert.equal(await page.locator("#signin").isVisible(), true);
    await screenshot(page, "admin-expired");

    await page.goto(`${BASE}/pharmacy#token=${(await login(ADMIN_EMAIL, ADMIN_PASSWORD)).access_token}`);
    await until(page, () => /is not a pharmacy staff account/.test(document.getElementById("message").textContent));
    assert.equal(await page.locator("#app").isVisible(), false);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
