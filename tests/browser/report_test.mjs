// Open a musiq report from disk (file://) in headless Chromium, screenshot it, and read back
// what it shows before and after sorting and filtering.
// Usage: node report_test.mjs REPORT.html SCREENSHOT NAME_FILTER
// Prints one JSON object; exits non-zero on any page error or network request.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";

const [report, screenshot, needle] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "musiq-report-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1200, height: 900 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const problems = [];
try {
  const page = context.pages()[0] || await context.newPage();
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("request", (r) => { if (!r.url().startsWith("file:") && !r.url().startsWith("data:")) problems.push(`network: ${r.url()}`); });
  page.setDefaultTimeout(60000);
  await page.goto(pathToFileURL(report).href);
  await page.waitForFunction(() => document.body.dataset.ready === "1");
  await page.waitForFunction(() => Array.from(document.images).every((i) => i.complete));
  await page.screenshot({ path: screenshot, fullPage: false });
  const read = () => page.evaluate(() => ({
    cards: Array.from(document.querySelectorAll("#grid li")).map((li) => ({
      name: li.dataset.name,
      score: li.dataset.score === undefined ? null : Number(li.dataset.score),
      img: !!li.querySelector("img") && li.querySelector("img").naturalWidth,
      dist: li.querySelectorAll("svg.dist rect").length,
    })),
    shown: document.querySelector("#shown").textContent,
    page: document.querySelector("#page").textContent,
  }));
  const initial = await read();
  const extra = await page.evaluate(() => ({
    model: document.querySelector("#model").textContent,
    range: document.querySelector("#model").dataset.range,
    counts: document.querySelector("#hist").dataset.counts,
    stats: Object.fromEntries(Array.from(document.querySelectorAll("#stats dd")).map((d) => [d.dataset.stat, d.textContent])),
    failures: Array.from(document.querySelectorAll("#failures tbody tr")).map((tr) => Array.from(tr.cells).map((c) => c.textContent)),
  }));
  await page.selectOption("#sort", "score-asc");
  const ascending = await read();
  await page.fill("#name-filter", needle);
  const filtered = await read();
  await page.fill("#name-filter", "");
  const mid = initial.cards.filter((c) => c.score !== null).map((c) => c.score).sort((a, b) => a - b);
  const cut = mid[Math.floor(mid.length / 2)];
  await page.fill("#min-score", String(cut));
  const above = await read();
  await page.fill("#min-score", "");
  let paged = null;
  if (!(await page.locator("#next").isDisabled())) {
    await page.click("#next");
    paged = await read();
  }
  console.log(JSON.stringify({ initial, ascending, filtered, above, cut, paged, ...extra, problems }));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(problems.length ? 1 : 0);
