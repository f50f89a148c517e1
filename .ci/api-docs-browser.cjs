// The API reference page in a real headless Chromium (Debian's, driven by playwright-core):
// every operation of the served document is listed, "Try it out" with a development token gets a
// 200, and the page's own Content-Security-Policy is never violated.
//
//   BASE_URL=http://127.0.0.1:8080 TOKEN=… node .ci/api-docs-browser.cjs   (run by .ci/api-docs.sh)
// CommonJS, so NODE_PATH (the tool cache) finds playwright-core.
const { chromium } = require("playwright-core");

const base = process.env.BASE_URL;
const token = process.env.TOKEN;
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
if (!base || !token) throw new Error("BASE_URL and TOKEN must be set");

const fail = (message) => {
  console.error(`api-docs-browser: ${message}`);
  process.exitCode = 1;
};

async function main() {
  const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage();
    const violations = [];
    page.on("console", (message) => {
      if (/Content[- ]Security[- ]Policy|Refused to/i.test(message.text())) violations.push(message.text());
    });
    page.on("console", (message) => process.env.DEBUG && console.log(`console: ${message.text()}`));
  page.on("pageerror", (error) => violations.push(`page error: ${error.message}`));
    const document = await (await fetch(`${base}/api/v1/openapi.json`)).json();
    const expected = Object.entries(document.paths).flatMap(([path, item]) =>
      Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`),
    );

    await page.goto(`${base}/docs/`, { waitUntil: "networkidle" });
    await page.waitForSelector(".opblock", { timeout: 30_000 });
    const listed = await page.$$eval(".opblock", (blocks) =>
      blocks.map((block) => {
        const method = block.querySelector(".opblock-summary-method")?.textContent?.trim() ?? "";
        const path = block.querySelector(".opblock-summary-path")?.getAttribute("data-path") ?? "";
        return `${method} ${path}`;
      }),
    );
    const missing = expected.filter((operation) => !listed.includes(operation));
    if (missing.length > 0) fail(`operations not listed: ${missing.join(", ")} (listed: ${listed.join(", ")})`);
    else console.log(`api-docs-browser: all ${expected.length} operations listed`);

    // Authorize with the token, then try GET /api/v1/auth/me.
    await page.click("button.authorize");
    await page.fill(".modal-ux input[type=text], .modal-ux input:not([type])", token);
    await page.click(".modal-ux .auth-btn-wrapper button.authorize");
    await page.click(".modal-ux button.btn-done");
    const me = page.locator("#operations-auth-get_auth_me");
    await me.locator(".opblock-summary").click();
    // The block re-renders while it opens: click "Try it out" until the Execute button is there.
    for (let attempt = 0; attempt < 5 && !(await me.locator("button.execute").isVisible()); attempt += 1) {
      await me.locator("button.try-out__btn").click();
      await page.waitForTimeout(500);
    }
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith("/api/v1/auth/me")),
      me.locator("button.execute").click(),
    ]);
    if (response.status() !== 200) fail(`"Try it out" on GET /api/v1/auth/me got ${response.status()}`);
    else console.log('api-docs-browser: "Try it out" on GET /api/v1/auth/me got 200');
    await me.locator(".live-responses-table tr.response .response-col_status").first().waitFor();
    const shown = (await me.locator(".live-responses-table tr.response .response-col_status").first().textContent())?.trim();
    if (shown !== "200") fail(`the page shows status ${shown} for the request`);

    if (violations.length > 0) fail(`console shows CSP violations or errors:\n  ${violations.join("\n  ")}`);
    else console.log("api-docs-browser: no CSP violation in the console");
  } catch (error) {
    if (process.env.SCREENSHOT) await browser.contexts()[0]?.pages()[0]?.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
    throw error;
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
