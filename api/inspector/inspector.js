// The Memstream inspector: plain DOM code, no framework, nothing to build. Every piece of data comes
// from the v1 API with the token the person signed in with (kept in this tab's sessionStorage, never
// in a URL). Text from the API is only ever set as text (textContent), never parsed as HTML.
"use strict";

const TOKEN_KEY = "memstream.inspector.token";
const API = new URL("../api/v1/", location.href);
const METRICS = new URL("../metrics", location.href);
const PAGE_SIZE = 25;
const PIPELINE_EVERY_MS = 2000;
const USER_ORDERS = { updated_at: "last updated", created_at: "created", profile_count: "slots", event_count: "events" };
const TASK_STATUS = { completed: "✓ completed", failed: "✗ failed", running: "… running" };

// --- calling the API --------------------------------------------------------------------------------

class Refused extends Error {} // HTTP 401: the token is not taken

class Problem extends Error {
  constructor(status, errno, errmsg) {
    super(errmsg || `HTTP ${status}`);
    this.status = status;
    this.errno = errno;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function request(url, expectJson = true) {
  const response = await fetch(url, { headers: { Authorization: `Bearer ${token()}` }, cache: "no-store" });
  if (!expectJson && response.ok) return response.text();
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: told below by status
  }
  if (response.status === 401) throw new Refused(body?.errmsg || "the token was refused");
  if (!body || body.errno !== 0) throw new Problem(response.status, body?.errno, body?.errmsg);
  return body.data;
}

function api(path, params = {}) {
  const url = new URL(path, API);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, String(value));
  }
  return request(url);
}

// --- building the page ------------------------------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function when(iso) {
  if (!iso) return el("span", {}, "—");
  const at = new Date(iso);
  return el("time", { datetime: at.toISOString(), title: at.toISOString() }, at.toLocaleString());
}

function problemBox(error) {
  return el("p", { class: "problem", role: "alert" }, "⚠ ", describe(error));
}

function describe(error) {
  if (error instanceof Problem) {
    const number = error.errno ? `errno ${error.errno}` : `HTTP ${error.status}`;
    return `${error.message} (${number})`;
  }
  return error instanceof Error ? error.message : String(error);
}

function table(headers, rows, label) {
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      { "aria-label": label },
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows),
    ),
  );
}

function section(title, ...children) {
  return el("section", { class: "card", "aria-label": title }, el("h2", {}, title), ...children);
}

const view = document.getElementById("view");
let stopPipeline = null; // stops the pipeline's refresh when another view is shown

function show(...children) {
  view.replaceChildren(...children);
}

// --- signing in -------------------------------------------------------------------------------------

const signIn = document.getElementById("sign-in");
const signInError = document.getElementById("sign-in-error");
const nav = document.getElementById("nav");

function signedOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  nav.hidden = true;
  view.replaceChildren();
  signIn.hidden = false;
  signInError.hidden = !message;
  signInError.textContent = message ? `⚠ ${message}` : "";
  document.getElementById("token").focus();
}

document.getElementById("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const field = document.getElementById("token");
  sessionStorage.setItem(TOKEN_KEY, field.value.trim());
  field.value = "";
  try {
    await api("project/users", { limit: 1 });
  } catch (error) {
    if (error instanceof Refused) {
      signedOut(`This token was refused (HTTP 401: ${error.message}). Check it and try again.`);
    } else {
      signedOut(`Could not check the token: ${describe(error)}`);
    }
    return;
  }
  signIn.hidden = true;
  nav.hidden = false;
  if (!location.hash || location.hash === "#/") location.hash = "#/users";
  else route();
});

document.getElementById("sign-out").addEventListener("click", () => signedOut(""));

// --- Users ------------------------------------------------------------------------------------------

function usersState() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const order = params.get("order") in USER_ORDERS ? params.get("order") : "updated_at";
  return {
    search: params.get("search") || "",
    order,
    desc: params.get("desc") !== "0",
    page: Math.max(0, Number.parseInt(params.get("page") || "0", 10) || 0),
  };
}

function usersHash(state) {
  const params = new URLSearchParams({ search: state.search, order: state.order, desc: state.desc ? "1" : "0" });
  params.set("page", String(state.page));
  return `#/users?${params}`;
}

async function showUsers() {
  const state = usersState();
  const search = el("input", { id: "user-search", type: "search", value: state.search, placeholder: "id or data" });
  const order = el(
    "select",
    { id: "user-order" },
    Object.entries(USER_ORDERS).map(([value, label]) => el("option", { value, selected: value === state.order }, label)),
  );
  const direction = el(
    "select",
    { id: "user-direction" },
    el("option", { value: "1", selected: state.desc }, "descending"),
    el("option", { value: "0", selected: !state.desc }, "ascending"),
  );
  const go = (changes) => {
    location.hash = usersHash({ ...state, ...changes });
  };
  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => search.isConnected && go({ search: search.value, page: 0 }), 300); // not once left
  });
  order.addEventListener("change", () => go({ order: order.value, page: 0 }));
  direction.addEventListener("change", () => go({ desc: direction.value === "1", page: 0 }));
  const controls = el(
    "form",
    { class: "controls", role: "search", onsubmit: (e) => (e.preventDefault(), go({ search: search.value, page: 0 })) },
    el("label", { for: "user-search" }, "Search"),
    search,
    el("label", { for: "user-order" }, "Sort by"),
    order,
    direction,
  );
  const results = el("div", { id: "user-results" }, el("p", { class: "muted" }, "Loading users…"));
  show(section("Users", controls, results));
  if (state.search) search.focus();
  let page;
  try {
    page = await api("project/users", {
      search: state.search,
      order_by: state.order,
      order_desc: state.desc,
      limit: PAGE_SIZE,
      offset: state.page * PAGE_SIZE,
    });
  } catch (error) {
    return failed(error, results);
  }
  const first = state.page * PAGE_SIZE;
  const rows = page.users.map((u) =>
    el(
      "tr",
      {},
      el("td", {}, el("a", { href: `#/user/${u.id}`, class: "mono" }, u.id)),
      el("td", { class: "data" }, Object.keys(u.data).length ? JSON.stringify(u.data) : ""),
      el("td", { class: "num" }, u.profile_count),
      el("td", { class: "num" }, u.event_count),
      el("td", {}, when(u.created_at)),
      el("td", {}, when(u.updated_at)),
    ),
  );
  const pager = el(
    "div",
    { class: "pager" },
    el("button", { type: "button", disabled: state.page === 0, onclick: () => go({ page: state.page - 1 }) }, "‹ Previous"),
    el(
      "span",
      { id: "user-range" },
      page.count ? `${first + 1}–${first + page.users.length} of ${page.count}` : "no users match",
    ),
    el(
      "button",
      { type: "button", disabled: first + page.users.length >= page.count, onclick: () => go({ page: state.page + 1 }) },
      "Next ›",
    ),
  );
  results.replaceChildren(table(["user", "data", "slots", "events", "created", "updated"], rows, "users"), pager);
}

// --- A user -----------------------------------------------------------------------------------------

let asOfSupported = null; // whether the API reads the profile as of an instant (its OpenAPI document says)

async function profileTakesAsOf() {
  if (asOfSupported === null) {
    try {
      const document_ = await (await fetch(new URL("openapi.json", API))).json();
      const read = document_.paths?.["/api/v1/users/profile/{user_id}"]?.get;
      asOfSupported = (read?.parameters || []).some((p) => p.name === "as_of" && p.in === "query");
    } catch {
      asOfSupported = false;
    }
  }
  return asOfSupported;
}

async function showUser(userId) {
  show(el("p", { class: "muted" }, "Loading the user…"));
  const parts = await Promise.allSettled([
    api(`users/${encodeURIComponent(userId)}`),
    api(`users/profile/${encodeURIComponent(userId)}`),
    api(`users/event/${encodeURIComponent(userId)}`, { topk: 100 }),
    api(`users/event_gist/${encodeURIComponent(userId)}`, { topk: 500 }),
    api(`users/buffer/${encodeURIComponent(userId)}/chat`),
    api(`users/tasks/${encodeURIComponent(userId)}`, { limit: 50 }),
    api(`users/context/${encodeURIComponent(userId)}/tokens`),
    profileTakesAsOf(),
  ]);
  const refused = parts.find((p) => p.status === "rejected" && p.reason instanceof Refused);
  if (refused) throw refused.reason;
  const [user, profile, events, gists, working, tasks, context, asOf] = parts;
  if (user.status === "rejected") {
    show(el("p", {}, el("a", { href: "#/users" }, "‹ Users")), problemBox(user.reason));
    return;
  }
  const piece = (settled, render) => (settled.status === "fulfilled" ? render(settled.value) : problemBox(settled.reason));
  const profileBox = el("div", { id: "profile" });
  const drawProfile = (settled) => profileBox.replaceChildren(piece(settled, (d) => slotsView(userId, d.profiles)));
  drawProfile(profile);
  show(
    el("p", {}, el("a", { href: "#/users" }, "‹ Users")),
    el(
      "section",
      { class: "card", "aria-label": "user" },
      el("h1", { class: "mono" }, user.value.id),
      el("p", {}, "created ", when(user.value.created_at), " · updated ", when(user.value.updated_at)),
      Object.keys(user.value.data).length ? el("pre", { class: "data" }, JSON.stringify(user.value.data, null, 2)) : null,
    ),
    el(
      "div",
      { class: "columns" },
      el(
        "div",
        {},
        section(
          "Profile",
          asOf.value ? timeSlider(userId, user.value.created_at, drawProfile) : null,
          profileBox,
        ),
        section("Working memory", piece(working, (d) => workingView(d.blobs))),
        section("Context", piece(context, contextView)),
      ),
      el(
        "div",
        {},
        section("Events", piece(events, (d) => eventsView(d.events, gists.status === "fulfilled" ? gists.value.gists : []))),
        section("Tasks", piece(tasks, (d) => tasksView(d.tasks))),
      ),
    ),
  );
}

function timeSlider(userId, createdAt, draw) {
  const start = new Date(createdAt).getTime();
  const steps = 200;
  const label = el("output", { for: "as-of", id: "as-of-label" }, "now");
  const slider = el("input", { id: "as-of", type: "range", min: 0, max: steps, value: steps });
  slider.addEventListener("change", async () => {
    const step = Number(slider.value);
    if (step === steps) {
      label.textContent = "now";
      draw(await settle(api(`users/profile/${encodeURIComponent(userId)}`)));
      return;
    }
    const at = new Date(start + ((Date.now() - start) * step) / steps).toISOString();
    label.textContent = `as of ${at}`;
    draw(await settle(api(`users/profile/${encodeURIComponent(userId)}`, { as_of: at })));
  });
  return el("div", { class: "controls" }, el("label", { for: "as-of" }, "Profile over time"), slider, label);
}

async function settle(promise) {
  try {
    return { status: "fulfilled", value: await promise };
  } catch (reason) {
    if (reason instanceof Refused) throw reason;
    return { status: "rejected", reason };
  }
}

function slotsView(userId, slots) {
  if (!slots.length) return el("p", { class: "muted" }, "No profile slots yet.");
  const topics = new Map();
  for (const slot of slots) {
    const topic = slot.attributes.topic;
    if (!topics.has(topic)) topics.set(topic, []);
    topics.get(topic).push(slot);
  }
  const sorted = [...topics.entries()].sort(([a], [b]) => a.localeCompare(b));
  return el(
    "div",
    {},
    sorted.map(([topic, inTopic]) =>
      el(
        "section",
        { class: "topic", "aria-label": `topic ${topic}` },
        el("h3", {}, topic),
        el(
          "ul",
          { class: "slots" },
          inTopic
            .sort((a, b) => a.attributes.sub_topic.localeCompare(b.attributes.sub_topic))
            .map((slot) => slotItem(userId, slot)),
        ),
      ),
    ),
  );
}

function slotItem(userId, slot) {
  const history = el("div", { class: "history", hidden: true });
  const button = el(
    "button",
    { type: "button", class: "slot", "aria-expanded": "false", "data-slot": slot.id },
    el("span", { class: "sub-topic" }, slot.attributes.sub_topic),
    el("span", { class: "content" }, slot.content),
    el("span", { class: "muted small" }, "updated ", when(slot.updated_at)),
  );
  button.addEventListener("click", async () => {
    const open = button.getAttribute("aria-expanded") === "true";
    button.setAttribute("aria-expanded", String(!open));
    history.hidden = open;
    if (open) return;
    history.replaceChildren(el("p", { class: "muted" }, "Loading the history…"));
    try {
      const data = await api(`users/profile/${encodeURIComponent(userId)}/${slot.id}/history`);
      history.replaceChildren(historyView(userId, data.history));
    } catch (error) {
      if (error instanceof Refused) return failed(error);
      history.replaceChildren(problemBox(error));
    }
  });
  return el("li", {}, button, history);
}

function historyView(userId, changes) {
  return el(
    "ol",
    { class: "versions", "aria-label": "slot history, oldest first" },
    changes.map((change, index) => {
      const source =
        change.source === "flush"
          ? el("span", {}, "from flush ", el("code", {}, change.source_id))
          : el("span", {}, "manual edit ", el("code", {}, change.source_id));
      const item = el(
        "li",
        { class: "version", "data-op": change.op },
        el(
          "p",
          {},
          el("strong", {}, `v${index + 1} · ${change.op}`),
          " · ",
          when(change.at),
          " · ",
          source,
        ),
        el("p", { class: "content" }, change.op === "delete" ? "(deleted)" : `${change.topic}::${change.sub_topic} = ${change.content}`),
      );
      if (change.source === "flush") item.append(flushChats(userId, change.source_id));
      return item;
    }),
  );
}

function flushChats(userId, flushId) {
  const box = el("details", { class: "flush" }, el("summary", {}, "the chat lines this flush read"));
  let loaded = false;
  box.addEventListener("toggle", async () => {
    if (!box.open || loaded) return;
    loaded = true;
    try {
      const data = await api(`users/flush/${encodeURIComponent(userId)}/${encodeURIComponent(flushId)}`);
      box.append(
        data.blobs.length ? messagesView(data.blobs) : el("p", { class: "muted" }, "No chats kept for this flush."),
      );
    } catch (error) {
      if (error instanceof Refused) return failed(error);
      box.append(problemBox(error));
    }
  });
  return box;
}

function messagesView(blobs) {
  return el(
    "ul",
    { class: "messages" },
    blobs.flatMap((blob) =>
      blob.messages.map((m) =>
        el(
          "li",
          {},
          el("span", { class: `role role-${m.role}` }, m.alias || m.role),
          " ",
          when(m.created_at || blob.created_at),
          el("p", {}, m.content),
        ),
      ),
    ),
  );
}

function workingView(blobs) {
  return el(
    "div",
    { id: "working-memory" },
    el("p", { class: "badge" }, "◌ not yet extracted: these chats wait in the buffer or are being extracted"),
    blobs.length ? messagesView(blobs) : el("p", { class: "muted" }, "No chats waiting."),
  );
}

function eventsView(events, gists) {
  if (!events.length) return el("p", { class: "muted" }, "No events yet.");
  const byEvent = new Map();
  for (const gist of gists) {
    if (!byEvent.has(gist.event_id)) byEvent.set(gist.event_id, []);
    byEvent.get(gist.event_id).push(gist.gist_data.content);
  }
  return el(
    "ol",
    { class: "timeline", id: "events", "aria-label": "events, newest first" },
    events.map((event) => {
      const data = event.event_data;
      const tags = data.event_tags || [];
      const deltas = data.profile_delta || [];
      const eventGists = byEvent.get(event.id) || [];
      return el(
        "li",
        { class: "event" },
        el("p", {}, when(event.created_at)),
        el("p", { class: "tip" }, data.event_tip || "(no summary)"),
        tags.length
          ? el("p", { class: "tags" }, "tags: ", tags.map((t) => el("span", { class: "tag" }, `${t.tag}: ${t.value}`)))
          : null,
        eventGists.length ? el("ul", { class: "gists", "aria-label": "gists" }, eventGists.map((g) => el("li", {}, g))) : null,
        deltas.length
          ? el(
              "ul",
              { class: "deltas", "aria-label": "profile changes" },
              deltas.map((d) => el("li", {}, `${d.attributes.topic}::${d.attributes.sub_topic} — ${d.content}`)),
            )
          : null,
      );
    }),
  );
}

function tasksView(tasks) {
  if (!tasks.length) return el("p", { class: "muted" }, "No tasks.");
  const rows = tasks.map((t) =>
    el(
      "tr",
      { class: `task task-${t.status}` },
      el("td", {}, el("span", { class: `status status-${t.status}` }, TASK_STATUS[t.status] || t.status)),
      el("td", { class: "mono small" }, t.task_id),
      el("td", {}, when(t.created_at)),
      el("td", { class: "error" }, t.error || ""),
    ),
  );
  return table(["status", "task", "started", "error"], rows, "tasks");
}

function contextView(data) {
  const over = data.tokens > data.max_token_size;
  return el(
    "div",
    { id: "context" },
    el(
      "p",
      { id: "context-tokens" },
      `${data.tokens} / ${data.max_token_size} tokens (cl100k)`,
      el("meter", { min: 0, max: data.max_token_size, value: data.tokens, "aria-label": "tokens used of the budget" }),
      over ? " ⚠ over the budget" : "",
    ),
    el("p", { class: "muted small" }, "Exactly what GET /users/context answers with the default budget:"),
    el("pre", { class: "context" }, data.context),
  );
}

// --- Pipeline ---------------------------------------------------------------------------------------

function gauge(text, name) {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? null : Number(line.slice(name.length + 1));
}

async function pipelineNow() {
  const [status, metrics] = await Promise.all([api("status"), request(METRICS, false).catch((e) => e)]);
  const groups = Object.entries(status.groups).map(([group, rows]) => {
    const total = rows.reduce((sum, r) => sum + r.lag, 0);
    const lines = rows.map((r) =>
      el(
        "tr",
        {},
        el("td", {}, r.topic),
        el("td", { class: "num" }, r.partition),
        el("td", { class: "num" }, r.committed ?? "—"),
        el("td", { class: "num" }, r.end),
        el("td", { class: "num" }, r.lag === 0 ? "0 ✓" : `${r.lag} ⧗`),
      ),
    );
    return el(
      "section",
      { class: "group", "aria-label": `consumer group ${group}` },
      el("h3", {}, `${group}: ${total === 0 ? "✓ caught up" : `⧗ ${total} records behind`}`),
      table(["topic", "partition", "committed", "end", "lag"], lines, `lag of ${group}`),
    );
  });
  const dead = status.dead_letters.map((d) =>
    el("tr", {}, el("td", {}, d.reason), el("td", {}, d.kind), el("td", { class: "num" }, d.count), el("td", {}, when(d.last_at))),
  );
  let slots;
  if (metrics instanceof Error) {
    slots = problemBox(metrics);
  } else {
    const total = gauge(metrics, "memstream_extraction_slots");
    const used = gauge(metrics, "memstream_extraction_slots_in_use");
    slots =
      total === null
        ? el("p", { class: "muted" }, "This process runs no worker: read the worker's own metrics port.")
        : el(
            "p",
            { id: "concurrency" },
            `${used} of ${total} extraction slots in use `,
            el("meter", { min: 0, max: total, value: used, "aria-label": "extraction slots in use" }),
          );
  }
  return [
    el(
      "p",
      { class: status.healthy ? "healthy" : "problem", id: "health" },
      status.healthy ? "✓ healthy" : `⚠ not healthy: ${status.problems.join("; ")}`,
    ),
    section("Consumer lag per stage", groups.length ? groups : el("p", { class: "muted" }, "No consumer groups yet.")),
    section(
      "Dead letters by reason",
      dead.length ? table(["reason", "kind", "count", "last"], dead, "dead letters") : el("p", { class: "muted" }, "None ✓"),
    ),
    section("Extraction concurrency", slots),
    el("p", { class: "muted small", id: "refreshed" }, `refreshed ${new Date().toLocaleTimeString()} (every ${PIPELINE_EVERY_MS / 1000} s)`),
  ];
}

function showPipeline() {
  const box = el("div", { id: "pipeline" }, el("p", { class: "muted" }, "Loading the pipeline…"));
  show(el("h1", {}, "Pipeline"), box);
  let timer = null;
  let stopped = false;
  const tick = async () => {
    try {
      box.replaceChildren(...(await pipelineNow()));
    } catch (error) {
      if (error instanceof Refused) return failed(error);
      const why =
        error instanceof Problem && error.status === 403
          ? "The pipeline spans every project, so it needs the root token; this token acts for one project."
          : describe(error);
      box.replaceChildren(el("p", { class: "problem", role: "alert" }, `⚠ ${why}`));
      if (error instanceof Problem && error.status === 403) return;
    }
    if (!stopped) timer = setTimeout(tick, PIPELINE_EVERY_MS);
  };
  tick();
  stopPipeline = () => {
    stopped = true;
    clearTimeout(timer);
  };
}

// --- routing ----------------------------------------------------------------------------------------

function failed(error, where) {
  if (error instanceof Refused) {
    signedOut(`The API refused the token (HTTP 401: ${error.message}). Sign in again.`);
    return;
  }
  (where || view).replaceChildren(problemBox(error));
}

async function route() {
  if (stopPipeline) stopPipeline();
  stopPipeline = null;
  if (!token()) return signedOut("");
  const [name, arg] = location.hash.replace(/^#\/?/, "").split("?")[0].split("/");
  for (const link of nav.querySelectorAll("a")) {
    link.toggleAttribute("aria-current", link.dataset.view === (name === "user" ? "users" : name || "users"));
  }
  try {
    if (name === "user" && arg) await showUser(decodeURIComponent(arg));
    else if (name === "pipeline") showPipeline();
    else await showUsers();
  } catch (error) {
    failed(error);
  }
}

window.addEventListener("hashchange", route);
if (token()) {
  signIn.hidden = true;
  nav.hidden = false;
}
route();
