// The one way the browser tests and the viewer benchmark start Debian's headless chromium
// (never a downloaded browser): a new empty profile, no network services, no GPU, and the
// flags this machine's closed network needs (see scripts/ci/test-40-viewer.sh).

import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A persistent context on a new profile folder (playwright passes it as --user-data-dir). */
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), "etrading-chromium-"));
  return chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
    viewport: { width: 1280, height: 1400 },
    deviceScaleFactor: 1,
  });
}

/** Collects a page's console errors, uncaught exceptions and requests leaving file:/data:. */
export function watch(page, errors, requests) {
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  if (requests) {
    page.on("request", (r) => {
      if (!r.url().startsWith("file:") && !r.url().startsWith("data:")) requests.push(r.url());
    });
  }
}
