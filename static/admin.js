// The admin console: /admin. Orders (filter, open one, cancel, assign by hand), the
// catalog, pharmacies and their stock, riders, new accounts and the dispatch switch. Lists
// follow the server by polling with ETags (see console.js).
"use strict";

(() => {
  const { $, h, fill, money, words, shortId, when, age, say, problemText, call, start, poll, tabs, medicineName, medicineNames, showPrescription, stockEditor } = Console;

  const OPEN = ["confirmed", "awaiting_prescription", "awaiting_payment", "dispatching", "assigned", "picked_up"];
  const views = {}; // tab → {poll} while shown

  // ---------------------------------------------------------------- orders

  const orders = { page: 1, status: "", selected: "", poll: null, detail: null };

  function ordersPath() {
    const status = orders.status ? `&status=${encodeURIComponent(orders.status)}` : "";
    return `/api/v1/orders?per_page=20&page=${orders.page}${status}`;
  }

  function drawOrders(page) {
    const body = $("orders-table").tBodies[0];
    body.replaceChildren(
      ...page.items.map((o) => {
        const row = h("tr", { tabindex: "0", class: o.id === orders.selected ? "selected" : "", dataset: { order: o.id, status: o.status } },
          h("td", { class: "mono" }, shortId(o.id)),
          h("td", {}, h("span", { class: `badge s-${o.status}` }, words(o.status))),
          h("td", {}, o.pharmacy?.name ?? ""),
          h("td", { class: "num" }, money(o.total_cents)),
          h("td", {}, when(o.created_at)));
        const open = () => openOrder(o.id);
        row.addEventListener("click", open);
        row.addEventListener("keydown", (e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), open()));
        return row;
      }),
    );
    $("orders-empty").hidden = page.items.length > 0;
    const pages = Math.max(1, Math.ceil(page.total / page.per_page));
    $("orders-page").textContent = `Page ${page.page} of ${pages} · ${page.total} orders`;
    $("orders-prev").disabled = page.page <= 1;
    $("orders-next").disabled = page.page >= pages;
  }


  function openOrder(id) {
    orders.selected = id;
    for (const tr of $("orders-table").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.order === id);
    orders.detail?.stop();
    orders.detail = poll(`/api/v1/orders/${id}`, (order) => drawOrder(order));
  }

  let renders = 0;
  async function drawOrder(o) {
    // Names and the timeline are fetched first; a render overtaken by a newer one while
    // fetching is dropped, so the panel never shows an older state over a newer one.
    const mine = ++renders;
    const names = await Promise.all(o.items.map((i) => medicineName(i.medicine_id)));
    const timeline = await call(`/api/v1/orders/${o.id}/timeline`);
    if (mine !== renders || orders.selected !== o.id) return;
    const box = $("order-detail");
    box.hidden = false;
    box.dataset.order = o.id;
    box.dataset.status = o.status;
    const steps = timeline.status === 200 ? timeline.body : [];
    const payment = o.payment ? `${words(o.payment.method === "cod" ? "cash on delivery" : "online")}, ${words(o.payment.status)}` : "";
    const actions = h("div", { class: "actions" });
    fill(
      box,
      h("header", { class: "row" }, h("h3", {}, `Order ${shortId(o.id)}`), h("span", { class: `badge s-${o.status}`, id: "order-status-badge" }, words(o.status)),
        h("span", { class: "spacer" }), h("button", { type: "button", class: "link", onclick: closeOrder }, "Close")),
      h("dl", { class: "facts" },
        h("dt", {}, "Pharmacy"), h("dd", {}, o.pharmacy.name),
        h("dt", {}, "Deliver to"), h("dd", {}, o.delivery.address),
        h("dt", {}, "Rider"), h("dd", { id: "order-rider" }, o.rider ? o.rider.name : "none yet"),
        h("dt", {}, "Payment"), h("dd", {}, payment),
        o.cancel_reason ? [h("dt", {}, "Cancelled by"), h("dd", {}, words(o.cancel_reason))] : null,
        o.delivery_code ? [h("dt", {}, "Delivery code"), h("dd", { class: "mono" }, o.delivery_code)] : null,
        h("dt", {}, "Total"), h("dd", {}, money(o.total_cents))),
      h("h4", {}, "Items"),
      h("ul", { class: "items" }, o.items.map((item, i) => h("li", {}, `${item.qty} × `, h("span", { class: "name" }, names[i]), ` at ${money(item.price_cents)}`))),
      h("h4", {}, "Timeline"),
      h("ol", { class: "steps" }, steps.map((s) => h("li", {}, h("strong", {}, words(s.status)), ` — ${when(s.at)}`, s.payment_status ? ` (payment ${words(s.payment_status)})` : ""))),
      o.prescription_id ? [h("h4", {}, "Prescription"), prescriptionBox(o.prescription_id)] : null,
      actions,
    );
    if (o.status === "dispatching") actions.append(assignForm(o));
    if (OPEN.includes(o.status) && o.status !== "picked_up") actions.append(cancelButton(o));
  }

  function prescriptionBox(id) {
    const box = h("div", { class: "rx" });
    box.append(h("button", { type: "button", onclick: () => showPrescription(box, id) }, "Show the prescription"));
    return box;
  }

  function closeOrder() {
    orders.detail?.stop();
    orders.detail = null;
    orders.selected = "";
    $("order-detail").hidden = true;
  }

  function assignForm(o) {
    const select = h("select", { id: "assign-rider", "aria-label": "Free rider to offer the order to" }, h("option", { value: "" }, "Loading free riders…"));
    const button = h("button", { type: "submit" }, "Assign");
    const form = h("form", { class: "row" }, h("label", {}, "Assign to ", select), button);
    call("/api/v1/riders?state=free&per_page=100").then((res) => {
      if (res.status !== 200) return select.replaceChildren(h("option", { value: "" }, problemText(res, "list riders")));
      const free = res.body.items;
      select.replaceChildren(
        free.length ? h("option", { value: "" }, "Choose a free rider") : h("option", { value: "" }, "No rider is online and free"),
        ...free.map((r) => h("option", { value: r.id }, `${r.name} (fix ${age(r.last_location?.ts)})`)),
      );
    });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!select.value) return say("Choose a free rider first.");
      button.disabled = true;
      const name = select.selectedOptions[0].textContent;
      const res = await call(`/api/v1/orders/${o.id}/assign`, { method: "POST", body: { rider_id: select.value } });
      button.disabled = false;
      if (res.status === 202) {
        say(`Offered order ${shortId(o.id)} to ${name}; it is theirs once they accept.`, "good");
        orders.detail?.now();
      } else {
        say(problemText(res, "assign the order"));
      }
    });
    return form;
  }

  function cancelButton(o) {
    const wrap = h("div", { class: "row confirm" });
    const ask = h("button", { type: "button", class: "danger", id: "cancel-order" }, "Cancel order");
    ask.addEventListener("click", () => {
      const yes = h("button", { type: "button", class: "danger", id: "cancel-confirm" }, "Yes, cancel it");
      const no = h("button", { type: "button" }, "Keep it");
      wrap.replaceChildren(h("span", {}, "Cancel this order? The stock is released and the customer told."), yes, no);
      no.addEventListener("click", () => wrap.replaceChildren(ask));
      yes.addEventListener("click", async () => {
        yes.disabled = true;
        const res = await call(`/api/v1/orders/${o.id}/cancel`, { method: "POST" });
        if (res.status === 200) {
          say(`Order ${shortId(o.id)} cancelled.`, "good");
          orders.poll?.now();
          orders.detail?.now();
        } else {
          say(problemText(res, "cancel the order"));
          wrap.replaceChildren(ask);
        }
      });
      yes.focus();
    });
    wrap.append(ask);
    return wrap;
  }

  function setupOrders() {
    $("order-status").addEventListener("change", (e) => {
      orders.status = e.target.value;
      orders.page = 1;
      orders.poll?.retarget(ordersPath());
    });
    $("orders-prev").addEventListener("click", () => {
      orders.page = Math.max(1, orders.page - 1);
      orders.poll?.retarget(ordersPath());
    });
    $("orders-next").addEventListener("click", () => {
      orders.page += 1;
      orders.poll?.retarget(ordersPath());
    });
  }

  // ---------------------------------------------------------------- catalog

  let editing = null; // the medicine being edited, or null for a new one

  async function searchCatalog() {
    const q = $("catalog-q").value.trim();
    const res = await call(`/api/v1/medicines?per_page=50${q ? `&q=${encodeURIComponent(q)}` : ""}`);
    if (res.status !== 200) return say(problemText(res, "search the catalog"));
    const body = $("catalog-table").tBodies[0];
    body.replaceChildren(...res.body.items.map(medicineRow));
    $("catalog-count").textContent = `${res.body.total} medicines${q ? ` match “${q}”` : ""}.`;
  }

  function medicineRow(m) {
    medicineNames.set(m.id, m.name);
    const actions = h("td", { class: "row" });
    const edit = h("button", { type: "button" }, "Edit");
    const del = h("button", { type: "button", class: "danger" }, "Delete");
    edit.addEventListener("click", () => editMedicine(m));
    del.addEventListener("click", () => {
      const yes = h("button", { type: "button", class: "danger", dataset: { confirm: "delete" } }, "Yes, delete");
      const no = h("button", { type: "button" }, "Keep");
      actions.replaceChildren(h("span", {}, "Delete?"), yes, no);
      no.addEventListener("click", () => actions.replaceChildren(edit, del));
      yes.addEventListener("click", async () => {
        const res = await call(`/api/v1/medicines/${m.id}`, { method: "DELETE" });
        if (res.status === 204) {
          say(`Deleted ${m.name}.`, "good");
          searchCatalog();
        } else {
          say(problemText(res, `delete ${m.name}`));
          actions.replaceChildren(edit, del);
        }
      });
      yes.focus();
    });
    actions.append(edit, del);
    return h("tr", { dataset: { medicine: m.id } },
      h("td", { class: "name" }, m.name), h("td", {}, m.generic_name ?? ""), h("td", {}, m.brand ?? ""),
      h("td", { class: "mono" }, m.sku), h("td", { class: "num" }, money(m.price_cents)), h("td", {}, m.rx_required ? "Rx" : ""), actions);
  }

  function editMedicine(m) {
    editing = m;
    const form = $("medicine-form");
    form.hidden = false;
    $("medicine-form-title").textContent = m ? `Edit ${m.name}` : "New medicine";
    form.elements.name.value = m?.name ?? "";
    form.elements.generic_name.value = m?.generic_name ?? "";
    form.elements.brand.value = m?.brand ?? "";
    form.elements.sku.value = m?.sku ?? "";
    form.elements.price.value = m ? money(m.price_cents) : "";
    form.elements.rx_required.checked = Boolean(m?.rx_required);
    form.elements.name.focus();
  }

  function setupCatalog() {
    $("catalog-search").addEventListener("submit", (e) => {
      e.preventDefault();
      searchCatalog();
    });
    $("medicine-new").addEventListener("click", () => editMedicine(null));
    $("medicine-cancel").addEventListener("click", () => ($("medicine-form").hidden = true));
    $("medicine-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = e.target.elements;
      const cents = Math.round(Number(f.price.value) * 100);
      if (!Number.isSafeInteger(cents) || cents < 0) return say("The price must be an amount of 0 or more.");
      const optional = (v) => (v.trim() ? v.trim() : null);
      const body = {
        name: f.name.value.trim(),
        generic_name: optional(f.generic_name.value),
        brand: optional(f.brand.value),
        sku: f.sku.value.trim(),
        price_cents: cents,
        rx_required: f.rx_required.checked,
      };
      const res = editing
        ? await call(`/api/v1/medicines/${editing.id}`, { method: "PATCH", body })
        : await call("/api/v1/medicines", { method: "POST", body });
      if (res.status === 200 || res.status === 201) {
        say(`${editing ? "Saved" : "Created"} ${res.body.name}.`, "good");
        $("medicine-form").hidden = true;
        $("catalog-q").value = res.body.name;
        searchCatalog();
      } else {
        say(problemText(res, editing ? "save the medicine" : "create the medicine"));
      }
    });
  }

  // ---------------------------------------------------------------- pharmacies

  let stockPoll = null;

  async function loadPharmacies() {
    const res = await call("/api/v1/pharmacies?per_page=100");
    if (res.status !== 200) return say(problemText(res, "list pharmacies"));
    const items = res.body.items;
    $("pharmacy-table").tBodies[0].replaceChildren(
      ...items.map((p) => {
        const open = h("button", { type: "button" }, "Stock");
        open.addEventListener("click", () => openStock(p));
        return h("tr", { dataset: { pharmacy: p.id } }, h("td", { class: "name" }, p.name), h("td", {}, p.address), h("td", {}, open));
      }),
    );
    $("user-pharmacy").replaceChildren(...items.map((p) => h("option", { value: p.id }, p.name)));
  }

  function openStock(p) {
    stockPoll?.stop();
    $("stock-panel").hidden = false;
    $("stock-panel").dataset.pharmacy = p.id;
    $("stock-title").textContent = `Stock of ${p.name}`;
    stockPoll = stockEditor($("stock-box"), p.id);
  }

  function setupPharmacies() {
    $("pharmacy-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = e.target.elements;
      const body = { name: f.name.value.trim(), address: f.address.value.trim(), lat: Number(f.lat.value), lng: Number(f.lng.value) };
      const res = await call("/api/v1/pharmacies", { method: "POST", body });
      if (res.status !== 201) return say(problemText(res, "create the pharmacy"));
      say(`Created ${res.body.name}.`, "good");
      e.target.reset();
      await loadPharmacies();
      openStock(res.body);
    });
  }

  // ---------------------------------------------------------------- riders

  function drawRiders(page) {
    $("riders-table").tBodies[0].replaceChildren(
      ...page.items.map((r) =>
        h("tr", { dataset: { rider: r.id, state: r.state } },
          h("td", { class: "name" }, r.name),
          h("td", {}, h("span", { class: `badge r-${r.state}` }, words(r.state))),
          h("td", {}, r.last_location ? age(r.last_location.ts) : "never"),
          h("td", { class: "mono" }, r.active_order_id ? shortId(r.active_order_id) : ""))),
    );
    $("riders-count").textContent = `${page.total} riders${page.total > page.items.length ? ` (first ${page.items.length} by name)` : ""}.`;
  }

  // ---------------------------------------------------------------- users

  function setupUsers() {
    const role = $("user-role");
    role.addEventListener("change", () => ($("user-pharmacy-label").hidden = role.value !== "pharmacy"));
    $("user-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = e.target.elements;
      const body = { name: f.name.value.trim(), email: f.email.value.trim(), password: f.password.value, role: role.value };
      if (role.value === "pharmacy") {
        if (!f.pharmacy_id.value) return say("Choose the pharmacy this account works for (create one first).");
        body.pharmacy_id = f.pharmacy_id.value;
      }
      const res = await call("/api/v1/admin/users", { method: "POST", body });
      if (res.status !== 201) return say(problemText(res, "create the account"));
      const user = res.body.user || res.body;
      say(`Created ${words(user.role)} account ${user.email}.`, "good");
      $("users-made").prepend(h("li", {}, `${user.name} <${user.email}> — ${words(user.role)}`));
      e.target.reset();
      $("user-pharmacy-label").hidden = true;
    });
  }

  // ---------------------------------------------------------------- dispatch

  let dispatchPaused = false;

  function drawDispatch(d) {
    dispatchPaused = d.paused;
    $("dispatch-state").textContent = d.paused ? "paused" : "running";
    $("dispatch-state").dataset.paused = String(d.paused);
    $("dispatch-toggle").textContent = d.paused ? "Resume dispatch" : "Pause dispatch";
    $("d-free").textContent = d.free_riders;
    $("d-waiting").textContent = d.waiting_orders;
    $("d-offers").textContent = d.open_offers;
  }

  function setupDispatch() {
    $("dispatch-toggle").addEventListener("click", async () => {
      const res = await call("/api/v1/admin/dispatch", { method: "PUT", body: { paused: !dispatchPaused } });
      if (res.status !== 200) return say(problemText(res, "change dispatch"));
      drawDispatch(res.body);
      say(res.body.paused ? "Dispatch paused: no automatic offers until resumed." : "Dispatch resumed.", "good");
    });
  }

  // ---------------------------------------------------------------- start

  function showTab(name) {
    for (const key of Object.keys(views)) {
      if (key !== name) {
        views[key]?.stop();
        delete views[key];
      }
    }
    if (name !== "orders") closeOrder();
    if (name === "orders" && !views.orders) views.orders = orders.poll = poll(ordersPath(), drawOrders);
    if (name === "catalog") searchCatalog();
    if (name === "pharmacies" || name === "users") loadPharmacies();
    if (name === "riders" && !views.riders) views.riders = poll("/api/v1/riders?per_page=100", drawRiders);
    if (name === "dispatch" && !views.dispatch) views.dispatch = poll("/api/v1/admin/dispatch", drawDispatch);
    if (name !== "pharmacies") {
      stockPoll?.stop();
      stockPoll = null;
      $("stock-panel").hidden = true;
    }
  }

  setupOrders();
  setupCatalog();
  setupPharmacies();
  setupUsers();
  setupDispatch();
  const show = tabs(showTab);
  start("admin", async () => {
    for (const key of Object.keys(views)) delete views[key];
    show("orders");
  });
})();
