// Benchmark of the report pages in Debian's headless chromium (never a downloaded browser),
// opened from file://: for a study browser (index.html) the page size, time to first draw,
// sort, filter, trials-table scroll frames and heatmap redraws; for a run page the page size,
// time to first draw and the frames of wheel zoom and drag pan. Events are dispatched inside
// the page, one per animation frame; a frame's time is the interval between two
// requestAnimationFrame callbacks (16.7 ms at 60 Hz when the page keeps up), and the
// handler's time is how long the viewer's event handler ran (synchronous dispatch).
// Not a test: it asserts nothing about timings (scripts/bench-viewer.sh runs it).
//
// Usage: node bench-viewer.mjs STUDY_INDEX_HTML RUN_PAGE_HTML OUT_JSON

import { launch, watch } from "./browser.mjs";
import { statSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [studyPage, runPage, outJson] = process.argv.slice(2).map((p) => resolve(p));
if (!studyPage || !runPage || !outJson) {
  console.error("usage: node bench-viewer.mjs STUDY_INDEX_HTML RUN_PAGE_HTML OUT_JSON");
  process.exit(2);
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
};
const summary = (xs) => ({ n: xs.length, p50: +pct(xs, 50).toFixed(2), p95: +pct(xs, 95).toFixed(2), max: +Math.max(...xs).toFixed(2) });
const mb = (path) => +(statSync(path).size / 1e6).toFixed(2);

const context = await launch();
const errors = [];
const result = { browser: context.browser()?.version() ?? "chromium" };

async function open(path) {
  const page = await context.newPage();
  watch(page, errors);
  const t0 = Date.now();
  await page.goto(pathToFileURL(path).href, { timeout: 600000 });
  await page.waitForSelector("body[data-ready]", { timeout: 600000 });
  // data-ready: the viewer returned (DOM built, canvases drawn); then the first frame painted.
  const ready = Number(await page.getAttribute("body", "data-ready"));
  const painted = await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => setTimeout(() => r(performance.now()), 0))));
  return { page, ready_ms: +ready.toFixed(0), first_draw_ms: +painted.toFixed(0), wall_ms: Date.now() - t0 };
}

// In-page helpers: `frames(n, step)` calls step(k) once per animation frame and returns the
// frame intervals and the time each step took; `timed(f)` runs f and waits for the next frame.
const HELPERS = `
window.__frames = (n, step) => new Promise((resolve) => {
  const intervals = [], handler = [];
  let k = 0, last = null;
  const tick = (t) => {
    if (last !== null) intervals.push(t - last);
    last = t;
    if (k === n) { resolve({ intervals, handler }); return; }
    const t0 = performance.now();
    step(k++);
    handler.push(performance.now() - t0);
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
});
window.__timed = (f) => {
  const t0 = performance.now();
  f();
  const sync = performance.now() - t0;
  return new Promise((r) => requestAnimationFrame(() => setTimeout(() => r({ sync, frame: performance.now() - t0 }), 0)));
};
`;

try {
  // ---- The study browser.
  const s = await open(studyPage);
  const page = s.page;
  await page.evaluate(HELPERS);
  const study = { page_mb: mb(studyPage), ready_ms: s.ready_ms, first_draw_ms: s.first_draw_ms };
  study.status = await page.textContent("#status");
  // Sorting: each click sorts the shown rows by that column (desc, then asc).
  study.sort_ms = {};
  for (const name of ["value", "value", "sharpe", "leverage"]) {
    const r = await page.evaluate((name) => {
      const head = [...document.querySelectorAll("#trials .vhead .vcell")].find((h) => h.textContent.replace(/ [\u25b2\u25bc]$/, "") === name);
      if (!head) return null;
      return window.__timed(() => head.click());
    }, name);
    if (r) study.sort_ms[`${name}${study.sort_ms[name] ? " (again)" : ""}`] = +r.frame.toFixed(1);
  }
  study.first_row_after_sort = await page.textContent("#trials .vrow:first-child .vcell:first-child");
  // Filtering.
  study.filter_ms = {};
  for (const text of ["leverage<=5", "leverage<=5 value>0", ""]) {
    const r = await page.evaluate((text) => {
      const input = document.getElementById("filter");
      return window.__timed(() => { input.value = text; input.dispatchEvent(new Event("input")); });
    }, text);
    study.filter_ms[text || "(cleared)"] = +r.frame.toFixed(1);
    if (text === "leverage<=5 value>0") study.filtered_status = await page.textContent("#status");
  }
  // Scrolling the trials table: 180 frames, 37 rows per frame, then 60 frames of big jumps.
  const scroll = await page.evaluate(async () => {
    const vp = document.getElementById("trials");
    const small = await window.__frames(180, (k) => { vp.scrollTop = (k + 1) * 37 * 22; vp.dispatchEvent(new Event("scroll")); });
    const max = vp.scrollHeight - vp.clientHeight;
    const jumps = await window.__frames(60, (k) => { vp.scrollTop = ((k * 7919) % 60) / 59 * max; vp.dispatchEvent(new Event("scroll")); });
    vp.scrollTop = max; vp.dispatchEvent(new Event("scroll"));
    const last = document.querySelector("#trials .vrow:last-child .vcell").textContent;
    return { small, jumps, last };
  });
  study.scroll = {
    frame_ms: summary(scroll.small.intervals.concat(scroll.jumps.intervals)),
    handler_ms: summary(scroll.small.handler.concat(scroll.jumps.handler)),
    last_row_at_bottom: scroll.last,
  };
  // Heatmap: change metric, axes and aggregate (each change redraws the heatmap and the two
  // scatters over every shown trial).
  const redraw = await page.evaluate(async () => {
    const sel = [...document.querySelectorAll(".controls select")];
    const out = [];
    for (let k = 0; k < 12; k++) {
      const s = sel[k % 4];
      s.selectedIndex = (s.selectedIndex + 1) % s.options.length;
      out.push((await window.__timed(() => s.dispatchEvent(new Event("change")))).frame);
    }
    return out;
  });
  study.heatmap_redraw_ms = summary(redraw);
  await page.screenshot({ path: join(resolve(outJson, ".."), "bench-study.png") });
  result.study = study;
  await page.close();

  // ---- The run page.
  const r = await open(runPage);
  const rp = r.page;
  await rp.evaluate(HELPERS);
  const run = { page_mb: mb(runPage), ready_ms: r.ready_ms, first_draw_ms: r.first_draw_ms };
  run.bars = await rp.evaluate(() => document.querySelectorAll(".summary")[1].textContent.match(/x (\d+) bars/)?.[1]);
  const nav = await rp.evaluate(async () => {
    const c = document.getElementById("price");
    const box = c.getBoundingClientRect();
    const at = (x) => ({ clientX: box.left + x, clientY: box.top + box.height / 2, bubbles: true, cancelable: true });
    const wheel = (dy, x) => c.dispatchEvent(new WheelEvent("wheel", { ...at(x), deltaY: dy }));
    // Zoom in 12 wheel steps (x0.8 each: all bars to 7%), then out again.
    const zoomIn = await window.__frames(12, () => wheel(-100, 600));
    const zoomOut = await window.__frames(14, () => wheel(100, 600));
    // Pan at two zoom levels: 3 steps in (51% of the bars visible) and 10 steps in (11%).
    const pan = async () => {
      c.dispatchEvent(new MouseEvent("mousedown", at(900)));
      const f = await window.__frames(120, (k) => c.dispatchEvent(new MouseEvent("mousemove", at(900 - 6 * ((k % 60) < 30 ? (k % 30) + 1 : 30 - (k % 30))))));
      c.dispatchEvent(new MouseEvent("mouseup", at(900)));
      return f;
    };
    for (let k = 0; k < 3; k++) wheel(-100, 600);
    const panWide = await pan();
    for (let k = 0; k < 7; k++) wheel(-100, 600);
    const panNarrow = await pan();
    return { zoomIn, zoomOut, panWide, panNarrow };
  });
  const both = (a, b) => ({ frame_ms: summary(a.intervals.concat(b.intervals)), handler_ms: summary(a.handler.concat(b.handler)) });
  run.zoom = both(nav.zoomIn, nav.zoomOut);
  run.pan_half_of_bars = both(nav.panWide, { intervals: [], handler: [] });
  run.pan_tenth_of_bars = both(nav.panNarrow, { intervals: [], handler: [] });
  await rp.screenshot({ path: join(resolve(outJson, ".."), "bench-run.png") });
  result.run = run;
  await rp.close();
} catch (e) {
  errors.push(`exception: ${e.stack || e}`);
} finally {
  await context.close();
}
result.console_errors = errors;
writeFileSync(outJson, JSON.stringify(result, null, 2) + "\n");
console.log(JSON.stringify(result, null, 2));
process.exit(errors.length ? 1 : 0);
