// Debian's Chromium, headless, driven by playwright-core; screenshots at desktop and phone width.

import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const repository = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SCREENSHOTS = process.env.SCREENSHOT_DIR || join(repository, 'target', 'browser', 'screenshots');
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/** axe-core, evaluated in the page (as the test harness, so the page's CSP does not apply). */
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    timeout: 30_000,
  });
}

/**
 * A fresh browser context (its own cookies) with one page at desktop width. What goes wrong in
 * the page is collected for the tests to check: script errors in `page.scriptErrors`, console
 * errors, content security policy violations among them, in `page.consoleErrors`. `options`
 * go to the context (a time zone, a locale).
 */
export async function newPage(browser, options = {}) {
  const context = await browser.newContext({ viewport: DESKTOP, ...options });
  context.setDefaultTimeout(10_000);
  context.setDefaultNavigationTimeout(15_000);
  // Every content security policy violation the page sees also goes to the console, with the
  // directive and where it happened, whatever Chromium itself logs about it.
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) => {
      console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI || 'inline'} `
        + `at ${event.sourceFile}:${event.lineNumber}`);
    });
  });
  const page = await context.newPage();
  // A page's script error is a test failure, not a silent glitch.
  const errors = [];
  page.on('pageerror', (error) => errors.push(error));
  page.scriptErrors = errors;
  const consoleErrors = [];
  page.on('console', (message) => {
    if (message.type() === 'error' && !expectedFailure(page, message)) {
      consoleErrors.push(`${page.url()}: ${message.text()} (${message.location().url})`);
    }
  });
  page.consoleErrors = consoleErrors;
  return page;
}

/**
 * Chromium logs every answer with an error status as "Failed to load resource". For the page
 * itself that is the answer a test asked for (a refused key: 401, an invalid field: 422), and
 * the test checks what it shows. Any other failed load, such as a missing script, style sheet or
 * icon, counts as an error.
 */
function expectedFailure(page, message) {
  if (!message.text().startsWith('Failed to load resource: the server responded with a status of')) {
    return false;
  }
  return message.location().url === page.url();
}

/**
 * The page's serious and critical accessibility findings by axe-core (WCAG 2.x A and AA rules),
 * each as "rule: help (target, …)"; none is the goal.
 */
export async function accessibilityFindings(page) {
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const results = await window.axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
      resultTypes: ['violations'],
    });
    return results.violations.map((v) => ({
      id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map((n) => n.target.join(' ')),
    }));
  });
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id}: ${v.help} (${v.targets.slice(0, 5).join(', ')})`);
}

/**
 * Saves `<name>-desktop.png` and `<name>-phone.png` (whole page), and says how much wider than
 * a phone's screen the page is and what axe-core finds at each width.
 */
export async function screenshots(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.setViewportSize(DESKTOP);
  await page.screenshot({ path: join(SCREENSHOTS, `${name}-desktop.png`), fullPage: true });
  const findings = (await accessibilityFindings(page)).map((f) => `desktop: ${f}`);
  await page.setViewportSize(PHONE);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.screenshot({ path: join(SCREENSHOTS, `${name}-phone.png`), fullPage: true });
  findings.push(...(await accessibilityFindings(page)).map((f) => `phone: ${f}`));
  await page.setViewportSize(DESKTOP);
  return { phoneOverflow: overflow, accessibility: findings };
}
