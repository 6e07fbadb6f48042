// What the admin and pharmacy consoles share: the session (token from #token= or the
// sign-in form, one refresh on expiry), API calls with problems said in words, polling
// with ETags, a DOM builder that only ever inserts text, and the stock editor.
"use strict";

window.Console = (() => {
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ DOM

  /**
   * `h("td", {class: "x"}, "text", child)`: an element whose children are nodes or
   * strings; strings become text nodes, never markup.
   */
  function h(tag, attrs = {}, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "dataset") Object.assign(el.dataset, value);
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "value") el.value = value;
      else if (key === "checked") el.checked = Boolean(value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    el.append(...nodes(children));
    return el;
  }

  /** Children as nodes: arrays flattened, nothing for null, text for anything else. */
  function nodes(children) {
    return children
      .flat(Infinity)
      .filter((c) => c !== null && c !== undefined && c !== false)
      .map((c) => (c instanceof Node ? c : document.createTextNode(String(c))));
  }

  /** Replaces `el`'s children (same rules as `h`). */
  function fill(el, ...children) {
    el.replaceChildren(...nodes(children));
    return el;
  }

  const money = (cents) => `${(Number(cents) / 100).toFixed(2)}`;
  const words = (name) => String(name ?? "").replace(/_/g, " ");
  // The last characters: ids are UUIDv7, whose first ones are a timestamp shared by
  // everything made in the same minute.
  const shortId = (id) => String(id ?? "").slice(-8);
  const when = (iso) => {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? "" : d.toLocaleString();
  };

  /** "12 s ago", "3 min ago" for an epoch-milliseconds time. */
  function age(ms) {
    if (!Number.isFinite(ms)) return "never";
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    return `${Math.round(s / 3600)} h ago`;
  }

  // ------------------------------------------------------------------ messages

  let toastTimer = 0;
  /** A line at the top of the page; problems stay until the next action, news fades. */
  function say(text, kind = "bad") {
    const el = $("message");
    el.textContent = text;
    el.dataset.kind = kind;
    el.hidden = !text;
    clearTimeout(toastTimer);
    if (kind === "good") toastTimer = setTimeout(() => (el.hidden = true), 6000);
  }

  /** A problem answer in words: the server's own `detail`, with field errors. */
  function problemText(res, doing) {
    const body = res.body || {};
    const detail = typeof body.detail === "string" ? body.detail : "";
    const fields = Array.isArray(body.errors)
      ? body.errors.map((e) => `${e.field}: ${e.message}`).join("; ")
      : "";
    const what = doing ? `Could not ${doing}: ` : "";
    switch (res.status) {
      case 0:
        return `${what}the server cannot be reached. Check the connection and try again.`;
      case 401:
        return "Your session has expired. Sign in again.";
      case 403:
        return `${what}your account is not allowed to do this.`;
      case 404:
        return `${what}it was not found (it may have been deleted).`;
      case 409:
        return `${what}${detail || "it changed in the meantime."}`;
      case 413:
        return `${what}that is too large.`;
      case 429:
        return `${what}too many requests; wait a moment and try again.`;
      default:
        if (res.status >= 500) return `${what}the server failed (${res.status}). Try again shortly.`;
        return `${what}${[detail, fields].filter(Boolean).join(" — ") || `the server answered ${res.status}.`}`;
    }
  }

  // ------------------------------------------------------------------ session

  const session = { token: "", refresh: "", user: null, role: "", onReady: null };

  async function raw(path, { method = "GET", body, headers = {}, token = session.token, blob = false } = {}) {
    const sent = { Accept: "application/json", ...headers };
    if (token) sent.Authorization = `Bearer ${token}`;
    if (body !== undefined) sent["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(path, {
        method,
        headers: sent,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
      });
    } catch {
      return { status: 0, body: null, headers: new Headers() };
    }
    let parsed = null;
    if (blob && res.ok) {
      parsed = await res.blob();
    } else if ((res.headers.get("Content-Type") || "").includes("json")) {
      try {
        parsed = await res.json();
      } catch {
        parsed = null;
      }
    }
    return { status: res.status, body: parsed, headers: res.headers };
  }

  /** Trades the refresh token for new tokens once; false when that is not possible. */
  async function refreshOnce() {
    if (!session.refresh) return false;
    const res = await raw("/api/v1/auth/refresh", { method: "POST", body: { refresh_token: session.refresh }, token: "" });
    session.refresh = "";
    if (res.status !== 200 || !res.body) return false;
    session.token = res.body.access_token;
    session.refresh = res.body.refresh_token;
    return true;
  }

  /**
   * An API call as the signed-in user. A 401 is retried once after a refresh; if it
   * stays 401 the console signs out and asks to sign in again.
   */
  async function call(path, options = {}) {
    let res = await raw(path, options);
    if (res.status === 401 && (await refreshOnce())) res = await raw(path, options);
    if (res.status === 401) signOut("Your session has expired. Sign in again.");
    return res;
  }

  function signOut(text) {
    session.token = "";
    session.refresh = "";
    session.user = null;
    polls.forEach((p) => clearTimeout(p.timer));
    polls.length = 0;
    $("app").hidden = true;
    $("signin").hidden = false;
    $("who").textContent = "Signed out";
    say(text || "", "bad");
    $("email").focus();
  }

  /** Accepts a token if it is a `role` account's; says why not otherwise. */
  async function adopt(token, refresh) {
    const res = await raw("/api/v1/me", { token });
    if (res.status === 401) return signOut("This link has expired or the session ended. Sign in again.");
    if (res.status !== 200 || !res.body) return signOut(problemText(res, "sign in"));
    if (res.body.role !== session.role) {
      return signOut(
        `${res.body.email || res.body.name} is not ${session.role === "admin" ? "an admin" : "a pharmacy staff"} account: sign in with one.`,
      );
    }
    session.token = token;
    session.refresh = refresh || "";
    session.user = res.body;
    $("signin").hidden = true;
    $("app").hidden = false;
    $("who").textContent = res.body.name;
    say("");
    await session.onReady(res.body);
  }

  /** Starts the console for `role`: the fragment's token, or the sign-in form. */
  function start(role, onReady) {
    session.role = role;
    session.onReady = onReady;
    $("signin").addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = event.target.querySelector("button");
      button.disabled = true;
      const res = await raw("/api/v1/auth/login", {
        method: "POST",
        body: { email: $("email").value.trim(), password: $("password").value },
        token: "",
      });
      button.disabled = false;
      if (res.status === 401) return say("Wrong email or password.");
      if (res.status !== 200) return say(problemText(res, "sign in"));
      $("password").value = "";
      await adopt(res.body.access_token, res.body.refresh_token);
    });
    $("signout").addEventListener("click", () => signOut("Signed out."));
    const token = new URLSearchParams(window.location.hash.replace(/^#/, "")).get("token");
    // The token has been read: keep it out of the address bar and the history.
    if (token) history.replaceState(null, "", window.location.pathname);
    if (token) adopt(token, "");
    else signOut("");
  }

  // ------------------------------------------------------------------ names

  const medicineNames = new Map(); // id → name: order lines carry only the id

  /** A medicine's name for an order line (fetched once, remembered). */
  async function medicineName(id) {
    if (medicineNames.has(id)) return medicineNames.get(id);
    const res = await call(`/api/v1/medicines/${encodeURIComponent(id)}`);
    const name = res.status === 200 ? res.body.name : `(removed medicine ${shortId(id)})`;
    medicineNames.set(id, name);
    return name;
  }

  // ------------------------------------------------------------------ polling

  const polls = [];
  const POLL_MS = 3000;

  /**
   * Calls `onChange(body)` with `path`'s answer now and whenever it changes, asking every
   * few seconds with the last ETag (an unchanged answer is an empty 304). `poll.now()`
   * asks at once (after an action); `poll.stop()` ends it.
   */
  function poll(path, onChange, everyMs = POLL_MS) {
    const p = { path, tag: "", timer: 0, stopped: false, busy: false };
    const tick = async () => {
      if (p.stopped || !session.token || p.busy) return;
      p.busy = true;
      clearTimeout(p.timer);
      const headers = p.tag ? { "If-None-Match": p.tag } : {};
      const res = await call(p.path, { headers });
      p.busy = false;
      if (p.stopped || !session.token) return;
      if (res.status === 200) {
        p.tag = res.headers.get("ETag") || "";
        onChange(res.body);
        $("live").dataset.state = "live";
      } else if (res.status !== 304) {
        $("live").dataset.state = "stale";
      }
      p.timer = setTimeout(tick, everyMs);
    };
    p.now = () => {
      p.tag = "";
      return tick();
    };
    p.stop = () => {
      p.stopped = true;
      clearTimeout(p.timer);
    };
    p.retarget = (next) => {
      p.path = next;
      return p.now();
    };
    polls.push(p);
    tick();
    return p;
  }

  // ------------------------------------------------------------------ tabs

  /** Buttons with `data-tab` show the section of that id; arrow keys move between them. */
  function tabs(onShow) {
    const buttons = [...document.querySelectorAll("[data-tab]")];
    const show = (name) => {
      for (const b of buttons) {
        const on = b.dataset.tab === name;
        b.setAttribute("aria-selected", String(on));
        b.tabIndex = on ? 0 : -1;
        $(b.dataset.tab).hidden = !on;
      }
      onShow(name);
    };
    buttons.forEach((b, i) => {
      b.addEventListener("click", () => show(b.dataset.tab));
      b.addEventListener("keydown", (e) => {
        const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
        if (!step) return;
        const next = buttons[(i + step + buttons.length) % buttons.length];
        next.focus();
        show(next.dataset.tab);
      });
    });
    return show;
  }

  // ------------------------------------------------------------------ prescriptions

  /**
   * The prescription file in `box`: fetched with the token (a plain link could not carry
   * it), shown from a blob: URL — an image inline, a PDF embedded with a link to open it.
   */
  let shownUrl = "";
  async function showPrescription(box, id) {
    box.replaceChildren(h("p", { class: "small" }, "Loading the prescription…"));
    const res = await call(`/api/v1/prescriptions/${encodeURIComponent(id)}/file`, { blob: true, headers: { Accept: "*/*" } });
    if (res.status !== 200 || !res.body) {
      box.replaceChildren(h("p", { class: "bad" }, problemText(res, "load the prescription")));
      return;
    }
    const type = res.body.type || "";
    // One file is shown at a time: the previous one's bytes are let go.
    if (shownUrl) URL.revokeObjectURL(shownUrl);
    const url = (shownUrl = URL.createObjectURL(res.body));
    if (type.startsWith("image/")) {
      box.replaceChildren(h("img", { class: "rx-image", src: url, alt: "The uploaded prescription" }));
    } else {
      box.replaceChildren(
        h("object", { class: "rx-pdf", data: url, type: "application/pdf", "aria-label": "The uploaded prescription (PDF)" },
          h("p", {}, "This browser cannot show PDFs here.")),
        h("p", {}, h("a", { href: url, download: `prescription-${shortId(id)}.pdf` }, "Download the PDF")),
      );
    }
  }

  // ------------------------------------------------------------------ stock editor

  /**
   * The stock of one pharmacy in `box`: quantity and reserved per medicine, each quantity
   * editable and saved on its own (the server refuses a quantity below what is reserved,
   * and its words are shown), plus a search to add a medicine.
   */
  function stockEditor(box, pharmacyId) {
    const table = h("table", { class: "grid stock" },
      h("thead", {}, h("tr", {}, h("th", {}, "Medicine"), h("th", { class: "num" }, "On the shelf"), h("th", { class: "num" }, "Reserved"), h("th", {}, ""))));
    const body = h("tbody");
    table.append(body);
    const status = h("p", { class: "small", role: "status" });
    const search = h("input", { type: "search", placeholder: "Medicine name", "aria-label": "Find a medicine to stock" });
    const qty = h("input", { type: "number", min: "0", step: "1", value: "10", class: "qty", "aria-label": "Quantity to put on the shelf" });
    const pick = h("select", { "aria-label": "Medicine to stock" });
    const add = h("form", { class: "row add-stock" }, search, pick, qty, h("button", { type: "submit" }, "Set stock"));
    box.replaceChildren(table, status, h("h4", {}, "Add or set a medicine"), add);

    const put = async (medicineId, quantity, label) => {
      const res = await call(`/api/v1/pharmacies/${pharmacyId}/stock`, {
        method: "PUT",
        body: { items: [{ medicine_id: medicineId, quantity }] },
      });
      if (res.status === 200) {
        say(`${label}: ${quantity} on the shelf.`, "good");
        p.now();
        return true;
      }
      say(problemText(res, `set the stock of ${label}`));
      return false;
    };

    const draw = (page) => {
      const rows = [...(page.items || [])].sort((a, b) => String(a.name).localeCompare(String(b.name)));
      body.replaceChildren(
        ...rows.map((row) => {
          const input = h("input", { type: "number", min: "0", step: "1", value: String(row.quantity), class: "qty", "aria-label": `Quantity of ${row.name}` });
          const save = h("button", { type: "submit" }, "Save");
          const form = h("form", { class: "row" }, input, save);
          form.addEventListener("submit", async (e) => {
            e.preventDefault();
            const n = Number(input.value);
            if (!Number.isInteger(n) || n < 0) return say(`The quantity of ${row.name} must be a whole number, 0 or more.`);
            save.disabled = true;
            if (!(await put(row.medicine_id, n, row.name))) input.value = String(row.quantity);
            save.disabled = false;
          });
          return h("tr", { dataset: { medicine: row.medicine_id } },
            h("td", { class: "name" }, row.name), h("td", { class: "num" }, form), h("td", { class: "num reserved" }, String(row.reserved)), h("td", {}, ""));
        }),
      );
      status.textContent = page.total > page.items.length ? `Showing ${page.items.length} of ${page.total} medicines.` : `${page.total} medicines stocked.`;
    };
    const p = poll(`/api/v1/pharmacies/${pharmacyId}/stock?per_page=100`, draw);

    let searchTimer = 0;
    search.addEventListener("input", () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(async () => {
        const q = search.value.trim();
        if (!q) return pick.replaceChildren();
        const res = await call(`/api/v1/medicines?q=${encodeURIComponent(q)}&per_page=20`);
        if (res.status !== 200) return say(problemText(res, "search the catalog"));
        pick.replaceChildren(...res.body.items.map((m) => h("option", { value: m.id }, m.name)));
      }, 250);
    });
    add.addEventListener("submit", async (e) => {
      e.preventDefault();
      const n = Number(qty.value);
      if (!pick.value) return say("Find a medicine first: type part of its name.");
      if (!Number.isInteger(n) || n < 0) return say("The quantity must be a whole number, 0 or more.");
      await put(pick.value, n, pick.selectedOptions[0]?.textContent || "the medicine");
    });
    return p;
  }

  return { $, h, fill, money, words, shortId, when, age, say, problemText, call, start, poll, tabs, medicineName, medicineNames, showPrescription, stockEditor, session };
})();
