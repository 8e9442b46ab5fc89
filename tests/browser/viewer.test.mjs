// Browser test of the report pages: Debian's headless chromium opens the pages that
// `etrading report --study hand` wrote (from file://), and checks that no console error
// happens, the charts draw (pixels of screenshots, decoded here), sorting, filtering and
// clicking a trial work, and the heatmap shows the hand-computed cell values of the tiny study
// made by make_study.py. Screenshots are kept under the artifacts folder.
//
// Usage: node viewer.test.mjs REPORT_DIR ARTIFACT_DIR

import { launch, watch } from "./browser.mjs";
import { PNG } from "pngjs";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [reportDir, artifactDir] = process.argv.slice(2).map((p) => resolve(p));
if (!reportDir || !artifactDir) {
  console.error("usage: node viewer.test.mjs REPORT_DIR ARTIFACT_DIR");
  process.exit(2);
}
mkdirSync(artifactDir, { recursive: true });

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures++;
}

// The viewer's colour scale (viewer/src/heatmap.rs, color_of).
const SCALE = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function colorOf(t) {
  t = Math.min(1, Math.max(0, t));
  const x = t * (SCALE.length - 1);
  const k = Math.min(Math.floor(x), SCALE.length - 2);
  const f = x - k;
  return [0, 1, 2].map((c) => Math.round(SCALE[k][c] + (SCALE[k + 1][c] - SCALE[k][c]) * f));
}

async function shot(locator, name) {
  const buf = await locator.screenshot();
  writeFileSync(join(artifactDir, name), buf);
  return PNG.sync.read(buf);
}

function pixel(png, x, y) {
  const i = (png.width * Math.round(y) + Math.round(x)) * 4;
  return [png.data[i], png.data[i + 1], png.data[i + 2]];
}

// Share of the plot's pixel columns (x from `x0` to the width minus `right`) holding a
// coloured pixel (a series, not the grey grid or text).
function coloredColumns(png, x0 = 64, right = 8) {
  let hit = 0;
  for (let x = x0; x < png.width - right; x++) {
    for (let y = 0; y < png.height; y++) {
      const [r, g, b] = pixel(png, x, y);
      if (Math.max(r, g, b) - Math.min(r, g, b) > 40) { hit++; break; }
    }
  }
  return hit / (png.width - right - x0);
}

// Coloured pixels (scatter markers).
function colored(png) {
  let n = 0;
  for (let i = 0; i < png.data.length; i += 4) {
    const [r, g, b] = [png.data[i], png.data[i + 1], png.data[i + 2]];
    if (Math.max(r, g, b) - Math.min(r, g, b) > 40) n++;
  }
  return n;
}

// Share of pixels that are not (near) white, and of pixels near `rgb`.
function ink(png, rgb) {
  let dark = 0, near = 0;
  for (let i = 0; i < png.data.length; i += 4) {
    const [r, g, b] = [png.data[i], png.data[i + 1], png.data[i + 2]];
    if (r < 235 || g < 235 || b < 235) dark++;
    if (rgb && Math.abs(r - rgb[0]) < 40 && Math.abs(g - rgb[1]) < 40 && Math.abs(b - rgb[2]) < 40) near++;
  }
  const n = png.data.length / 4;
  return { dark: dark / n, near: near / n };
}

const context = await launch();
const page = await context.newPage();
const errors = [];
const requests = [];
watch(page, errors, requests);

try {
  // ---- The study browser.
  await page.goto(pathToFileURL(join(reportDir, "index.html")).href);
  await page.waitForSelector("#trials .vrow", { timeout: 20000 });
  check((await page.textContent("#status")) === "8 of 8 trials", "study browser lists 8 trials");

  // Heatmap of value (mean) by leverage x rsi_window.
  const options = async (sel) => page.$$eval(`${sel} option`, (os) => os.map((o) => o.textContent));
  const selects = await page.$$(".controls select");
  const pick = async (k, text) => {
    const opts = await options(`.controls label:nth-of-type(${k + 1}) select`);
    await selects[k].selectOption(String(opts.indexOf(text)));
  };
  await pick(0, "leverage");
  await pick(1, "rsi_window");
  await pick(2, "value");
  await pick(3, "mean");
  const aria = await page.getAttribute("#heatmap", "aria-label");
  const expected = { "1,14": 0.5, "2,14": 1.5, "3,14": -0.5, "1,21": 2, "2,21": 1.5, "3,21": 0.25 };
  const cells = {};
  for (const m of aria.matchAll(/leverage=(\d+) rsi_window=(\d+): ([-\d.e]+|none);/g)) cells[`${m[1]},${m[2]}`] = Number(m[3]);
  check(JSON.stringify(cells) === JSON.stringify(expected), `heatmap cells ${JSON.stringify(cells)}`);
  // The same cells in the screenshot: layout of viewer/src/app.rs draw_heatmap (plot at x 90,
  // y 10, 390 x 330 CSS px; 3 x 2 cells; rows from the top: rsi_window 21 then 14).
  const heat = await shot(page.locator("#heatmap"), "heatmap.png");
  const [lo, hi] = [-0.5, 2];
  for (const [key, v] of Object.entries(expected)) {
    const [lev, win] = key.split(",").map(Number);
    const ix = lev - 1, iy = win === 14 ? 0 : 1;
    const x = 90 + ix * 130 + 20, y = 10 + (1 - iy) * 165 + 20; // away from the centre's label
    const want = colorOf((v - lo) / (hi - lo));
    const got = pixel(heat, x, y);
    const ok = got.every((c, i) => Math.abs(c - want[i]) <= 3);
    check(ok, `heatmap pixel of leverage=${lev} rsi_window=${win} is ${got} (expected ${want} for ${v})`);
  }
  // 7 trials have a value and IS/OOS scores: 7 markers of 5 x 5 pixels each.
  for (const id of ["#leverage", "#isoos"]) {
    const png = await shot(page.locator(id), `${id.slice(1)}.png`);
    check(colored(png) >= 7 * 20, `${id} scatter draws its 7 markers (${colored(png)} coloured pixels)`);
  }

  // Sorting: value descending (trial 3 and 6 tie at 2.0: lower number first), then ascending.
  const firstNumber = () => page.textContent("#trials .vrow:first-child .vcell:first-child");
  const valueHead = page.locator("#trials .vhead .vcell", { hasText: /^value/ });
  await valueHead.click();
  check((await firstNumber()) === "3", `sorted by value, descending: first trial ${await firstNumber()}`);
  await valueHead.click();
  check((await firstNumber()) === "2", `sorted by value, ascending: first trial ${await firstNumber()}`);

  // Filtering.
  await page.fill("#filter", "leverage=2 and state=COMPLETE");
  check((await page.textContent("#status")) === "3 of 8 trials", `filter leverage=2: ${await page.textContent("#status")}`);
  await page.fill("#filter", "nosuch > 1");
  check((await page.textContent("#status")).includes("no column `nosuch`"), "a bad filter says why");
  await page.fill("#filter", "");
  await shot(page.locator("body"), "index.png");

  // Clicking trial 3 opens its page.
  await valueHead.click(); // descending again
  await Promise.all([page.waitForNavigation(), page.click("#trials .vrow:first-child")]);
  check(page.url().endsWith("/rsi_ema-trial-3.html"), `clicking trial 3 opens ${page.url()}`);

  // ---- The trial page.
  await page.waitForSelector("#trades .vrow", { timeout: 20000 });
  check((await page.textContent("h1")).includes("trial 3 of study hand"), "trial page title");
  const colors = { price: [31, 78, 156], equity: [31, 78, 156], margin: [122, 62, 157], funding: [179, 107, 0] };
  // Before any zoom: all bars.
  const before = {};
  for (const [id, rgb] of Object.entries(colors)) {
    const png = await shot(page.locator(`#${id}`), `trial-${id}.png`);
    const cover = coloredColumns(png);
    before[id] = png;
    check(cover > 0.95, `#${id} chart draws a series across the plot (${(cover * 100).toFixed(1)}% of pixel columns)`);
  }
  const monthly = await shot(page.locator("#monthly"), "trial-monthly.png");
  check(ink(monthly).dark > 0.05, "monthly returns heatmap draws");
  check((await page.$$("#windows tr")).length === 3, "window table: header and windows 0 and 1");
  check((await page.textContent("#windows")).includes("IS sharpe"), "window table names IS sharpe");
  // Zoom into the price chart with the wheel: the drawing changes.
  const box = await page.locator("#price").boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  for (let k = 0; k < 6; k++) await page.mouse.wheel(0, -200);
  await page.waitForTimeout(200);
  const zoomed = await shot(page.locator("#price"), "trial-price-zoomed.png");
  let changed = 0;
  for (let i = 0; i < zoomed.data.length; i += 4) if (zoomed.data[i] !== before.price.data[i]) changed++;
  check(changed > 500, `wheel zoom redraws the price chart (${changed} pixels changed)`);
  await shot(page.locator("body"), "trial.png");
} catch (e) {
  check(false, `exception: ${e.stack || e}`);
} finally {
  await context.close();
}
check(errors.length === 0, `no console errors${errors.length ? ": " + errors.join(" | ") : ""}`);
check(requests.length === 0, `no network requests${requests.length ? ": " + requests.join(" ") : ""}`);
console.log(`screenshots in ${artifactDir}`);
process.exit(failures ? 1 : 0);
