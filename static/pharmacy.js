// The pharmacy staff's console: /pharmacy. The review queue of the staff's own pharmacy
// (the prescription shown in the page; approve, or reject with a reason), its open orders
// by status and its stock editor. The server scopes every list to the staff's pharmacy;
// the page only ever asks for its own.
"use strict";

(() => {
  const { $, h, fill, money, words, shortId, when, say, problemText, call, start, poll, tabs, medicineName, showPrescription, stockEditor } = Console;

  const OPEN = ["confirmed", "awaiting_prescription", "awaiting_payment", "dispatching", "assigned", "picked_up"];
  let pharmacy = null;
  let reviewPoll = null;
  let openPoll = null;
  let stockPoll = null;
  let reviewing = "";


  // ---------------------------------------------------------------- reviews

  function drawQueue(page) {
    const list = $("review-list");
    $("review-count").textContent = page.total;
    $("reviews-empty").hidden = page.items.length > 0;
    // Oldest first: the customer who has waited longest is served first.
    const queue = [...page.items].sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)));
    list.replaceChildren(
      ...queue.map((o) => {
        const button = h("button", { type: "button", class: o.id === reviewing ? "selected" : "", dataset: { order: o.id } },
          h("strong", {}, `Order ${shortId(o.id)}`), h("span", { class: "small" }, ` · ${o.items.length} item(s) · ${when(o.created_at)}`));
        button.addEventListener("click", () => openReview(o));
        return h("li", {}, button);
      }),
    );
    if (reviewing && !page.items.some((o) => o.id === reviewing)) {
      reviewing = "";
      $("review").hidden = true;
    }
  }

  async function openReview(o) {
    reviewing = o.id;
    for (const b of $("review-list").querySelectorAll("button")) b.classList.toggle("selected", b.dataset.order === o.id);
    const names = await Promise.all(o.items.map((i) => medicineName(i.medicine_id)));
    const file = h("div", { class: "rx" });
    const reason = h("textarea", { id: "reject-reason", rows: "2", maxlength: "500", placeholder: "Why, in words the customer will read", "aria-label": "Reason for rejecting" });
    const approve = h("button", { type: "button", id: "approve", class: "good" }, "Approve");
    const reject = h("button", { type: "submit", id: "reject", class: "danger" }, "Reject");
    const rejectForm = h("form", { class: "reject" }, h("label", {}, "Reason ", reason), reject);
    const box = $("review");
    box.hidden = false;
    box.dataset.order = o.id;
    fill(
      box,
      h("h3", {}, `Order ${shortId(o.id)}`),
      h("ul", { class: "items" }, o.items.map((item, i) => h("li", {}, `${item.qty} × `, h("span", { class: "name" }, names[i])))),
      h("p", { class: "small" }, `Deliver to ${o.delivery.address} · total ${money(o.total_cents)}`),
      file,
      h("div", { class: "row actions" }, approve),
      rejectForm,
    );
    approve.addEventListener("click", () => decide(o, true, "", approve));
    rejectForm.addEventListener("submit", (e) => {
      e.preventDefault();
      if (!reason.value.trim()) {
        reason.focus();
        return say("Say why the prescription is rejected: the customer reads it.");
      }
      decide(o, false, reason.value.trim(), reject);
    });
    if (o.prescription_id) await showPrescription(file, o.prescription_id);
    else file.replaceChildren(h("p", { class: "bad" }, "This order carries no prescription."));
  }

  async function decide(o, approve, reason, button) {
    button.disabled = true;
    const body = approve ? { approve: true } : { approve: false, reason };
    const res = await call(`/api/v1/orders/${o.id}/prescription`, { method: "POST", body });
    button.disabled = false;
    if (res.status !== 200) return say(problemText(res, approve ? "approve the prescription" : "reject the prescription"));
    say(approve ? `Approved: order ${shortId(o.id)} goes to a rider.` : `Rejected: order ${shortId(o.id)} is cancelled and the customer told why.`, "good");
    reviewing = "";
    $("review").hidden = true;
    reviewPoll?.now();
    openPoll?.now();
  }

  // ---------------------------------------------------------------- open orders

  function drawOpen(page) {
    $("open-empty").hidden = page.items.length > 0;
    const groups = OPEN.map((status) => [status, page.items.filter((o) => o.status === status)]).filter(([, list]) => list.length);
    $("open-groups").replaceChildren(
      ...groups.map(([status, list]) =>
        h("section", { class: "card group", dataset: { status } },
          h("h3", {}, `${words(status)} (${list.length})`),
          h("table", { class: "grid" },
            h("thead", {}, h("tr", {}, h("th", {}, "Order"), h("th", {}, "Rider"), h("th", { class: "num" }, "Total"), h("th", {}, "Placed"))),
            h("tbody", {}, list.map((o) => h("tr", { dataset: { order: o.id } },
              h("td", { class: "mono" }, shortId(o.id)), h("td", {}, o.rider ? o.rider.name : ""), h("td", { class: "num" }, money(o.total_cents)), h("td", {}, when(o.created_at)))))))),
    );
  }

  // ---------------------------------------------------------------- start

  function showTab(name) {
    stockPoll?.stop();
    stockPoll = null;
    // An account not linked to a pharmacy has nothing to edit (the page said so).
    if (name === "stock" && pharmacy) stockPoll = stockEditor($("stock-box"), pharmacy.id);
  }

  const show = tabs(showTab);
  start("pharmacy", async (user) => {
    if (!user.pharmacy_id) {
      say("This account is not linked to a pharmacy yet: ask an admin to link it.");
      return;
    }
    const res = await call(`/api/v1/pharmacies/${user.pharmacy_id}`);
    if (res.status !== 200) return say(problemText(res, "load your pharmacy"));
    pharmacy = res.body;
    $("pharmacy-name").textContent = pharmacy.name;
    reviewPoll?.stop();
    openPoll?.stop();
    // Both lists stay live whatever the tab: the queue's count shows on its tab.
    reviewPoll = poll("/api/v1/orders?status=awaiting_prescription&per_page=100", drawQueue);
    openPoll = poll(`/api/v1/orders?status=${OPEN.join(",")}&per_page=100`, drawOpen);
    show("reviews");
  });
})();
