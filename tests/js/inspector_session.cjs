// One person's session of the inspector (/inspector) in headless Chromium (Debian's, driven by
// playwright-core: no browser download), as tests/integration/test_inspector.py sets it up: a wrong
// token, signing in, finding a user, a slot and its history before and after an update made through
// the API, the chats the flush read, working memory and context, a failed task, the pipeline, and
// the same user page at phone width. Prints what the page showed as one JSON object; the test
// checks it. Every wait is for something on the page, with a deadline.
// Usage: node inspector_session.cjs SESSION.json   (see the test for its keys)
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { chromium } = require("playwright-core");

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const WAIT_MS = 20000;

async function signIn(page, url, token) {
  await page.goto(`${url}/inspector`);
  await page.fill("#token", token);
  await page.click("#sign-in-form button[type=submit]");
}

async function openUser(page, userId) {
  await page.fill("#user-search", userId);
  await page.waitForFunction((id) => location.hash.includes(`search=${id}`), userId, { timeout: WAIT_MS });
  await page.locator("#user-range", { hasText: "1–1 of 1" }).waitFor({ timeout: WAIT_MS }); // the search's answer
  const link = page.locator(`#user-results a[href="#/user/${userId}"]`);
  await link.waitFor({ timeout: WAIT_MS });
  const row = await link.locator("xpath=ancestor::tr").innerText();
  await link.click();
  await page.locator("#profile").waitFor({ timeout: WAIT_MS });
  return row;
}

async function slotHistory(page, content) {
  const slot = page.locator("button.slot", { hasText: content });
  await slot.waitFor({ timeout: WAIT_MS });
  await slot.click();
  const history = page.locator("li:has(> button.slot[aria-expanded=true]) .history");
  await history.locator(".version").first().waitFor({ timeout: WAIT_MS });
  return { slot: await slot.innerText(), history, versions: await history.locator(".version").allInnerTexts() };
}

async function session(s) {
  const got = { urls: [] };
  const profileDir = fs.mkdtempSync(path.join(os.tmpdir(), "inspector-chromium-"));
  const browser = await chromium.launchPersistentContext(profileDir, {
    executablePath: s.chromium,
    args: ARGS,
    viewport: { width: 1280, height: 800 },
  });
  const page = browser.pages()[0] || (await browser.newPage());
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  page.on("console", (m) => m.type() === "error" && pageErrors.push(m.text()));
  try {
    page.on("framenavigated", (frame) => frame === page.mainFrame() && got.urls.push(frame.url()));
    const apiCalls = [];
    page.on("request", (r) => r.url().includes("/api/") && apiCalls.push({ url: r.url(), auth: r.headers().authorization || "" }));

    // A wrong token is refused, with a message, and not kept.
    await signIn(page, s.url, s.wrong_token);
    const refusal = page.locator("#sign-in-error");
    await refusal.waitFor({ state: "visible", timeout: WAIT_MS });
    got.refused = await refusal.innerText();
    got.keptAfterRefusal = await page.evaluate(() => sessionStorage.length);

    // Sign in, find the user, see the slot the sync flush produced.
    await page.fill("#token", s.token);
    await page.click("#sign-in-form button[type=submit]");
    await page.locator("#user-results table").waitFor({ timeout: WAIT_MS });
    got.usersRow = await openUser(page, s.user_id);
    const before = await slotHistory(page, s.slot_content);
    got.slotBefore = before.slot;
    got.historyBefore = before.versions;
    got.timeSliders = await page.locator("#as-of").count();
    got.working = await page.locator("#working-memory").innerText();
    got.events = await page.locator("#events").innerText();

    // Update the slot through the API, as an app would; the page shows both versions.
    const update = await fetch(`${s.url}/api/v1/users/profile/${s.user_id}/${s.slot_id}`, {
      method: "PUT",
      headers: { Authorization: `Bearer ${s.token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ content: s.updated_content, attributes: s.slot_attributes }),
    });
    got.updateErrno = (await update.json()).errno;
    await page.reload();
    const after = await slotHistory(page, s.updated_content);
    got.slotAfter = after.slot;
    got.contextTokens = await page.locator("#context-tokens").innerText();
    got.context = await page.locator("pre.context").textContent();
    got.historyAfter = after.versions;
    const flush = after.history.locator("details.flush").first();
    await flush.locator("summary").click();
    await flush.locator(".messages li").first().waitFor({ timeout: WAIT_MS });
    got.flushChats = await flush.locator(".messages").innerText();
    got.tokenStored = await page.evaluate(() => Object.values({ ...sessionStorage }));
    got.screenshot = path.join(s.artifacts, "inspector-user.png");
    await page.screenshot({ path: got.screenshot, fullPage: true });

    // A user whose extraction failed: the task's error.
    await page.goto(`${s.url}/inspector/#/user/${s.failed_user_id}`);
    const failed = page.locator("tr.task-failed").first();
    await failed.waitFor({ timeout: WAIT_MS });
    got.failedTask = await failed.innerText();

    // The pipeline, refreshed live.
    await page.goto(`${s.url}/inspector/#/pipeline`);
    await page.locator("#health").waitFor({ timeout: WAIT_MS });
    const firstRefresh = await page.locator("#refreshed").innerText();
    got.pipeline = await page.locator("#pipeline").innerText();
    await page.waitForFunction((before) => document.querySelector("#refreshed")?.innerText !== before, firstRefresh, {
      timeout: WAIT_MS,
    });
    got.pipelineRefreshed = true;

    // Another project's token: none of these users, and no pipeline (it spans every project).
    await page.click("#sign-out");
    got.keptAfterSignOut = await page.evaluate(() => sessionStorage.length);
    await page.fill("#token", s.project_token);
    await page.click("#sign-in-form button[type=submit]");
    await page.locator("#nav").waitFor({ timeout: WAIT_MS });
    await page.goto(`${s.url}/inspector/#/users`);
    await page.locator("#user-range").waitFor({ timeout: WAIT_MS });
    got.projectUsers = await page.locator("#user-range").innerText();
    await page.goto(`${s.url}/inspector/#/user/${s.user_id}`);
    const missing = page.locator("#view .problem");
    await missing.waitFor({ timeout: WAIT_MS });
    got.projectUser = await missing.innerText();
    await page.goto(`${s.url}/inspector/#/pipeline`);
    const refusedPipeline = page.locator("#pipeline .problem");
    await refusedPipeline.waitFor({ timeout: WAIT_MS });
    got.projectPipeline = await refusedPipeline.innerText();
    await page.click("#sign-out");
    await page.fill("#token", s.token);
    await page.click("#sign-in-form button[type=submit]");
    await page.locator("#nav").waitFor({ timeout: WAIT_MS });

    // Phone width: the user page fits the screen.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${s.url}/inspector/#/user/${s.user_id}`);
    await page.locator("button.slot").first().waitFor({ timeout: WAIT_MS });
    got.phoneOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    got.phoneScreenshot = path.join(s.artifacts, "inspector-user-phone.png");
    await page.screenshot({ path: got.phoneScreenshot, fullPage: true });

    got.screenshotBytes = [got.screenshot, got.phoneScreenshot].map((shot) => fs.statSync(shot).size);
    got.apiCalls = apiCalls.length;
    got.unauthenticatedApiCalls = apiCalls.filter((c) => !c.auth.startsWith("Bearer ") && !c.url.endsWith("/openapi.json")).map((c) => c.url);
    got.pageErrors = pageErrors;
  } catch (error) {
    // What the page showed and said when a step failed, for the one reading the test's failure.
    await page.screenshot({ path: path.join(s.artifacts, "inspector-failure.png"), fullPage: true }).catch(() => {});
    error.message += `\npage errors: ${JSON.stringify(pageErrors)}\nscreenshot: ${path.join(s.artifacts, "inspector-failure.png")}`;
    throw error;
  } finally {
    await browser.close();
    fs.rmSync(profileDir, { recursive: true, force: true });
  }
  return got;
}

session(JSON.parse(fs.readFileSync(process.argv[2], "utf8"))).then(
  (got) => process.stdout.write(JSON.stringify(got)),
  (error) => {
    process.stderr.write(`${error.stack || error}\n`);
    process.exit(1);
  },
);
