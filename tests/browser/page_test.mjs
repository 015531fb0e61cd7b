// Drive the musiq page in headless Chromium: API key, choose files, drop a file, screenshot.
// Usage: node page_test.mjs URL API_KEY SCREENSHOT CHOSEN_FILE... -- DROPPED_FILE
// Prints one JSON object with what the page shows; exits non-zero on any page error.
import { readFileSync } from "node:fs";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { chromium } from "playwright-core";

const [url, key, screenshot, ...rest] = process.argv.slice(2);
const sep = rest.indexOf("--");
const chosen = rest.slice(0, sep);
const dropped = rest[sep + 1];
const profile = mkdtempSync(join(tmpdir(), "musiq-chromium-"));

const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1200, height: 900 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const problems = [];
try {
  const page = context.pages()[0] || await context.newPage();
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error" && !/401/.test(m.text())) problems.push(`console: ${m.text()}`); });
  page.setDefaultTimeout(120000);
  await page.goto(url);

  // The server wants a key: the page asks for it.
  await page.locator("#key-box").waitFor({ state: "visible" });
  await page.fill("#api-key", key);
  await page.click("#key-save");
  await page.waitForFunction(() => document.querySelector("#range").dataset.range);

  await page.setInputFiles("#files", chosen);
  await page.waitForFunction((n) => document.querySelectorAll("#results li").length === n &&
    /scored/.test(document.querySelector("#status").textContent), chosen.length);

  const bytes = readFileSync(dropped).toString("base64");
  await page.evaluate(([b64, name]) => {
    const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([data], name, { type: "image/jpeg" }));
    const zone = document.querySelector("#drop");
    zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: dt, bubbles: true, cancelable: true }));
    zone.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, [bytes, "dropped-" + basename(dropped)]);
  await page.waitForFunction((n) => document.querySelectorAll("#results li").length === n,
    chosen.length + 1);
  await page.waitForFunction(() => Array.from(document.images).every((i) => i.complete));

  // What the page shows: range, status and the cards in order (with several models, each
  // card's score of every model).
  const read = () => page.evaluate(() => ({
    label: document.querySelector("#model-label").textContent,
    range: document.querySelector("#range").textContent,
    dataRange: document.querySelector("#range").dataset.range,
    status: document.querySelector("#status").textContent,
    results: Array.from(document.querySelectorAll("#results li")).map((li) => ({
      filename: li.dataset.filename,
      score: li.dataset.score === undefined ? null : Number(li.dataset.score),
      text: li.querySelector(".score").textContent,
      failed: li.classList.contains("failed"),
      thumbnail: (li.querySelector("img") || { naturalWidth: 0 }).naturalWidth > 0,
      models: Object.fromEntries(Array.from(li.querySelectorAll(".model-score")).map((e) =>
        [e.dataset.model, e.dataset.score === undefined ? null : Number(e.dataset.score)])),
    })),
  }));
  const shown = await read();
  await page.screenshot({ path: screenshot, fullPage: true });

  // Several models: choosing another ranks the same images by its scores; coming back
  // ranks them as before.
  const options = await page.evaluate(() => Array.from(document.querySelector("#model").options).map((o) => o.value));
  const switched = { options, disabled: await page.isDisabled("#model") };
  if (options.length > 1) {
    await page.selectOption("#model", options[1]);
    switched.other = await read();
    await page.selectOption("#model", options[0]);
    switched.back = await read();
  }
  console.log(JSON.stringify({ ...shown, switched, problems }));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(problems.length ? 1 : 0);
