// Debian's Chromium, headless, driven by playwright-core; screenshots at desktop and phone width.

import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const repository = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SCREENSHOTS = process.env.SCREENSHOT_DIR || join(repository, 'target', 'browser', 'screenshots');
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    timeout: 30_000,
  });
}

/** A fresh browser context (its own cookies) with one page at desktop width. */
export async function newPage(browser) {
  const context = await browser.newContext({ viewport: DESKTOP });
  context.setDefaultTimeout(10_000);
  context.setDefaultNavigationTimeout(15_000);
  const page = await context.newPage();
  // A page's script error is a test failure, not a silent glitch.
  const errors = [];
  page.on('pageerror', (error) => errors.push(error));
  page.scriptErrors = errors;
  return page;
}

/**
 * Saves `<name>-desktop.png` and `<name>-phone.png` (whole page) and checks that nothing is
 * wider than a phone's screen.
 */
export async function screenshots(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.setViewportSize(DESKTOP);
  await page.screenshot({ path: join(SCREENSHOTS, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.screenshot({ path: join(SCREENSHOTS, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize(DESKTOP);
  return { phoneOverflow: overflow };
}
