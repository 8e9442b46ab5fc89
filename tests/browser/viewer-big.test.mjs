// Browser test of the study browser at scale (the CI version of the 1,000,000-trial benchmark,
// scripts/bench-viewer.sh): Debian's headless chromium opens the index.html that
// `etrading report --study big` wrote for the synthetic study of make_study.py --big, and
// checks behaviour only, never timings: every trial is listed, sorting both ways puts the
// expected trial first, the scaled scrolling reaches the last row and a middle row, the filter
// counts what make_study.py counted, the heatmap's cells are the means it computed, and no
// console error or network request happens. Screenshots go to the artifacts folder.
//
// Usage: node viewer-big.test.mjs REPORT_DIR EXPECT_JSON ARTIFACT_DIR

import { launch, watch } from "./browser.mjs";
import { mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [reportDir, expectPath, artifactDir] = process.argv.slice(2).map((p) => resolve(p));
if (!reportDir || !expectPath || !artifactDir) {
  console.error("usage: node viewer-big.test.mjs REPORT_DIR EXPECT_JSON ARTIFACT_DIR");
  process.exit(2);
}
mkdirSync(artifactDir, { recursive: true });
const expect = JSON.parse(readFileSync(expectPath, "utf8"));

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures++;
}

const context = await launch();
const page = await context.newPage();
const errors = [];
const requests = [];
watch(page, errors, requests);

const firstNumber = () => page.textContent("#trials .vrow:first-child .vcell:first-child");
// Scrolls the trials table to `fraction` of its height and returns the first shown row's number.
const scrollTo = (fraction) => page.evaluate((f) => {
  const vp = document.getElementById("trials");
  vp.scrollTop = f * (vp.scrollHeight - vp.clientHeight);
  vp.dispatchEvent(new Event("scroll"));
  const shown = [...document.querySelectorAll("#trials .vrow")].filter((r) => r.style.display !== "none");
  return { first: shown[0].firstChild.textContent, last: shown[shown.length - 1].firstChild.textContent, rows: shown.length };
}, fraction);

try {
  await page.goto(pathToFileURL(join(reportDir, "index.html")).href);
  await page.waitForSelector("body[data-ready]", { timeout: 60000 });
  const n = expect.trials;
  check((await page.textContent("#status")) === `${n} of ${n} trials`, `study browser lists ${n} trials`);

  const valueHead = page.locator("#trials .vhead .vcell", { hasText: /^value/ });
  await valueHead.click();
  check((await firstNumber()) === String(expect.first_desc), `value descending: first trial ${await firstNumber()} (expected ${expect.first_desc})`);
  // Row 1000 of the descending order: the scroll maps onto rows exactly below the scaled height.
  const at1000 = await page.evaluate(() => {
    const vp = document.getElementById("trials");
    vp.scrollTop = 1000 * 22;
    vp.dispatchEvent(new Event("scroll"));
    return document.querySelector("#trials .vrow:first-child .vcell").textContent;
  });
  check(at1000 === String(expect.row_1000_desc), `scrolled to row 1000: trial ${at1000} (expected ${expect.row_1000_desc})`);
  await valueHead.click();
  await scrollTo(0);
  check((await firstNumber()) === String(expect.first_asc), `value ascending: first trial ${await firstNumber()} (expected ${expect.first_asc})`);
  const bottom = await scrollTo(1);
  check(bottom.last === String(expect.last_asc) && bottom.rows === 20, `scrolled to the bottom: last row ${bottom.last} of ${bottom.rows} shown (expected ${expect.last_asc})`);
  await page.locator("#trials").screenshot({ path: join(artifactDir, "big-trials-bottom.png") });

  await page.fill("#filter", "leverage<=5 value>0");
  check((await page.textContent("#status")) === `${expect.filtered} of ${n} trials`, `filter leverage<=5 value>0: ${await page.textContent("#status")} (expected ${expect.filtered})`);
  await page.fill("#filter", "");
  check((await page.textContent("#status")) === `${n} of ${n} trials`, "clearing the filter shows every trial again");

  // Heatmap of value (mean) by leverage x rsi_window.
  const selects = await page.$$(".controls select");
  const pick = async (k, text) => {
    const opts = await selects[k].$$eval("option", (os) => os.map((o) => o.textContent));
    await selects[k].selectOption(String(opts.indexOf(text)));
  };
  await pick(0, "leverage");
  await pick(1, "rsi_window");
  await pick(2, "value");
  await pick(3, "mean");
  const aria = await page.getAttribute("#heatmap", "aria-label");
  const cells = {};
  for (const m of aria.matchAll(/leverage=(\d+) rsi_window=(\d+): ([-\d.e]+|none);/g)) cells[`${m[1]},${m[2]}`] = Number(m[3]);
  const keys = Object.keys(expect.heatmap_mean);
  const bad = keys.filter((k) => !(Math.abs(cells[k] - expect.heatmap_mean[k]) <= 1e-5 * Math.max(1e-3, Math.abs(expect.heatmap_mean[k]))));
  check(Object.keys(cells).length === keys.length && bad.length === 0, `heatmap: ${Object.keys(cells).length} cells, the means make_study.py computed${bad.length ? ` (differ: ${bad.map((k) => `${k}: ${cells[k]} vs ${expect.heatmap_mean[k]}`).join(", ")})` : ""}`);
  await page.locator("body").screenshot({ path: join(artifactDir, "big-index.png") });

  // A trial without a page says how to write one.
  await page.click("#trials .vrow:first-child");
  check((await page.textContent("#status")).includes("has no page in this report"), "clicking a trial without a page says so");
} catch (e) {
  check(false, `exception: ${e.stack || e}`);
} finally {
  await context.close();
}
check(errors.length === 0, `no console errors${errors.length ? ": " + errors.join(" | ") : ""}`);
check(requests.length === 0, `no network requests${requests.length ? ": " + requests.join(" ") : ""}`);
process.exit(failures ? 1 : 0);
