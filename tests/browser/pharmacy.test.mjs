// /pharmacy: a pharmacist signs in, sees only their pharmacy's work, opens each uploaded
// prescription in the page, approves one and rejects one with a reason, and the customer's
// orders move accordingly. Run at a tablet's size, as pharmacists use it.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  BASE, PDF_BYTES, PNG_BYTES, WAIT_MS, account, adminToken, launch, offset, ok, screenshot, strictPage, unique,
  uploadPrescription, until,
} from "./lib.mjs";

// Hubballi: away from the other tests' pharmacies and riders.
const HERE = { lat: 15.3647, lng: 75.124 };

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});


test("a pharmacist reviews their own pharmacy's prescriptions and the orders move", async () => {
  const id = unique();
  const admin = await adminToken();
  const medicine = await ok(201, "/api/v1/medicines", {
    method: "POST", token: admin, body: { name: `Amoxicillin 500 mg ${id}`, sku: `RX-${id}`, price_cents: 900, rx_required: true },
  });
  const pharmacy = async (name, at) => {
    const p = await ok(201, "/api/v1/pharmacies", { method: "POST", token: admin, body: { name, lat: at.lat, lng: at.lng, address: `${name} Road` } });
    await ok(200, `/api/v1/pharmacies/${p.id}/stock`, { method: "PUT", token: admin, body: { items: [{ medicine_id: medicine.id, quantity: 20 }] } });
    return p;
  };
  const mine = await pharmacy(`Own Pharmacy ${id}`, HERE);
  const theirs = await pharmacy(`Other Pharmacy ${id}`, offset(HERE, 2000));
  const email = `pharmacist-${id}@example.test`;
  const password = "a long pharmacist password";
  await ok(201, "/api/v1/admin/users", {
    method: "POST", token: admin, body: { name: `Pharmacist ${id}`, email, password, role: "pharmacy", pharmacy_id: mine.id },
  });

  const customer = await account("customer");
  const order = async (at, file) => {
    const rx = await uploadPrescription(customer.token, ...file);
    return ok(201, "/api/v1/orders", {
      method: "POST",
      token: customer.token,
      body: {
        items: [{ medicine_id: medicine.id, qty: 1 }],
        delivery: { ...offset(at, 500, 200), address: "21 Review Lane" },
        pharmacy_id: at === HERE ? mine.id : theirs.id,
        prescription_id: rx.id,
      },
    });
  };
  const png = [PNG_BYTES, "image/png", "scan.png"];
  const pdf = [PDF_BYTES, "application/pdf", "scan.pdf"];
  const toApprove = await order(HERE, png);
  const toReject = await order(HERE, pdf);
  const elsewhere = await order(offset(HERE, 2000), png);
  for (const o of [toApprove, toReject, elsewhere]) assert.equal(o.status, "awaiting_prescription");

  const { page, context, problems } = await strictPage(browser, { viewport: { width: 820, height: 1180 }, isMobile: true, hasTouch: true });
  try {
    await page.goto(`${BASE}/pharmacy`);
    await page.locator("#signin").waitFor({ state: "visible", timeout: WAIT_MS });
    await page.fill("#email", email);
    await page.fill("#password", password);
    await page.click('#signin button[type="submit"]');
    await page.locator("#app").waitFor({ state: "visible", timeout: WAIT_MS });
    await until(page, (name) => document.getElementById("pharmacy-name").textContent === name, mine.name);

    // The queue: this pharmacy's two, not the other pharmacy's.
    const queued = (o) => page.locator(`#review-list button[data-order="${o.id}"]`);
    await queued(toApprove).waitFor({ timeout: WAIT_MS });
    await queued(toReject).waitFor({ timeout: WAIT_MS });
    assert.equal(await queued(elsewhere).count(), 0, "nothing of another pharmacy");
    assert.equal(await page.locator("#review-count").textContent(), "2");
    await screenshot(page, "pharmacy-queue");

    // The image inline, then approved.
    await queued(toApprove).click();
    await until(page, () => {
      const img = document.querySelector("#review img.rx-image");
      return img && img.complete && img.naturalWidth === 4;
    });
    assert.match(await page.locator("#review .items").textContent(), /Amoxicillin 500 mg/);
    await screenshot(page, "pharmacy-review-image");
    await page.click("#approve");
    await until(page, () => /Approved/.test(document.getElementById("message").textContent));
    const approved = await ok(200, `/api/v1/orders/${toApprove.id}`, { token: customer.token });
    assert.notEqual(approved.status, "awaiting_prescription");
    assert.ok(["dispatching", "assigned"].includes(approved.status), approved.status);

    // The PDF embedded, then rejected with a reason (which is required).
    await queued(toReject).click();
    await page.locator('#review object.rx-pdf[type="application/pdf"]').waitFor({ state: "attached", timeout: WAIT_MS });
    assert.match(await page.locator('#review object.rx-pdf').getAttribute("data"), /^blob:/);
    await page.click("#reject");
    await until(page, () => /Say why/.test(document.getElementById("message").textContent));
    assert.equal((await ok(200, `/api/v1/orders/${toReject.id}`, { token: customer.token })).status, "awaiting_prescription");
    await screenshot(page, "pharmacy-review-pdf");
    await page.fill("#reject-reason", "The prescriber's signature is missing.");
    await page.click("#reject");
    await until(page, () => /Rejected/.test(document.getElementById("message").textContent));
    const rejected = await ok(200, `/api/v1/orders/${toReject.id}`, { token: customer.token });
    assert.equal(rejected.status, "cancelled");
    assert.equal(rejected.cancel_reason, "prescription_rejected");
    await until(page, () => document.querySelectorAll("#review-list button").length === 0);
    assert.equal(await page.locator("#review-count").textContent(), "0");

    // Open orders by status: the approved one, and nothing of the other pharmacy.
    await page.click('[data-tab="open"]');
    await page.locator(`#open-groups tr[data-order="${toApprove.id}"]`).waitFor({ timeout: WAIT_MS });
    assert.equal(await page.locator(`#open-groups tr[data-order="${elsewhere.id}"]`).count(), 0);
    assert.equal(await page.locator(`#open-groups tr[data-order="${toReject.id}"]`).count(), 0);
    await screenshot(page, "pharmacy-open-orders");

    // The stock editor of this pharmacy: one held by the approved order.
    await page.click('[data-tab="stock"]');
    const row = page.locator(`#stock-box tr[data-medicine="${medicine.id}"]`);
    await row.waitFor({ timeout: WAIT_MS });
    assert.equal(await row.locator("td.reserved").textContent(), "1");
    await row.locator("input.qty").fill("25");
    await row.locator('button[type="submit"]').click();
    await until(page, () => /25 on the shelf/.test(document.getElementById("message").textContent));
    const stock = await ok(200, `/api/v1/pharmacies/${mine.id}/stock`);
    assert.equal(stock.items[0].quantity, 25);
    assert.equal((await ok(200, `/api/v1/pharmacies/${theirs.id}/stock`)).items[0].quantity, 20);
    await screenshot(page, "pharmacy-stock");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the tablet`);
    assert.deepEqual(problems, [], "no script errors, console errors or CSP violations");
  } finally {
    await context.close();
  }
});
