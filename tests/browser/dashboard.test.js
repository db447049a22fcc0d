// The dashboard in a real browser: a user signs in with their API key, starts with the quick
// start, watches events sent through the API arrive, changes settings and manages keys.
// One relay and one browser for the whole file; the tests run in order and build on each other.

import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';

import { PHONE, DESKTOP, launchBrowser, newPage, screenshots } from './browser.js';
import { startRelay } from './relay.js';
import { startStandins } from './standins.js';

const DISCORD_ID = '123456789012345678';
const NEW_DISCORD_ID = '876543210987654321';

let standins;
let relay;
let browser;
let page;
let account;

before(async () => {
  standins = await startStandins();
  relay = await startRelay(standins);
  account = await relay.cli([
    'account', 'create', '--name', 'Ada Browser', '--discord-id', DISCORD_ID, '--telegram-username', 'ada_browser',
  ]);
  browser = await launchBrowser();
  page = await newPage(browser);
});

// Every test ends with a clean console: no error, no content security policy violation.
afterEach(() => {
  const consoleErrors = page.consoleErrors.splice(0);
  const scriptErrors = page.scriptErrors.splice(0);
  assert.deepEqual(consoleErrors, [], 'console errors (content security policy violations among them)');
  assert.deepEqual(scriptErrors, [], 'script errors');
});

after(async () => {
  await browser?.close();
  await relay?.stop();
  await standins?.close();
});

/**
 * Screenshots at both widths; the page must not scroll sideways on a phone, and axe-core must
 * find nothing serious or critical at either width.
 */
async function capture(name) {
  const { phoneOverflow, accessibility } = await screenshots(page, name);
  assert.ok(phoneOverflow <= 0, `${name} is ${phoneOverflow}px wider than a phone's screen`);
  assert.deepEqual(accessibility, [], `${name}: accessibility findings`);
}

function path() {
  return new URL(page.url()).pathname;
}

/** Resolves once `check` returns something truthy; fails with `what` after `ms`. */
async function eventually(what, check, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const result = await check();
    if (result) return result;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((done) => setTimeout(done, 100));
  }
}

/** The events the test sends through the API, with the sums the category page must show. */
const EVENTS = [
  { category: 'sale', description: 'New sale from Lisbon', fields: { amount: 12.5, plan: 'pro' } },
  { category: 'sale', description: 'Team upgrade', fields: { amount: 30, plan: 'team', seats: 5 } },
  { category: 'sale', description: 'Renewal with a coupon', fields: { amount: 7.5, plan: 'basic', coupon: 'SPRING' } },
];
const AMOUNT_SUM = '50';


test('a signed-out visitor is sent to the sign-in page, and a wrong key is refused', async () => {
  await page.goto(`${relay.base}/dashboard`);
  assert.equal(path(), '/dashboard/login');
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await capture('signin');

  await page.getByLabel('API key').fill('pk_not_a_real_key');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'not valid' }).waitFor();
  assert.equal(path(), '/dashboard/login');
});

test('signing in with the API key opens the overview, empty at first', async () => {
  // By keyboard: the key field has the focus, Enter sends the form.
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'api_key');
  await page.keyboard.type(account.apiKey);
  await page.keyboard.press('Enter');
  await page.waitForURL(`${relay.base}/dashboard`);
  // The first Tab reaches the skip link.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to content');
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Overview' }).waitFor();
  await page.getByText('Ada Browser').waitFor();
  await page.getByText('0 of 3 categories on the free plan').waitFor();
  await page.getByText('No categories yet').waitFor();
  // Telegram is on but not linked yet: the banner says so, with the page that fixes it.
  const attention = page.getByRole('region', { name: 'Needs your attention' });
  await attention.getByText(/^Telegram notifications are held: /).waitFor();
  await attention.getByRole('link', { name: 'Open Settings' }).waitFor();
  await capture('overview-attention');
});

test('the quick start creates bug, sale and question, up to the plan limit', async () => {
  await page.getByRole('button', { name: 'Create the starter categories' }).click();
  await page.getByRole('status').filter({ hasText: 'Created bug, sale, question.' }).waitFor();
  for (const name of ['bug', 'sale', 'question']) {
    await page.getByRole('heading', { level: 2, name }).waitFor();
  }
  await page.getByText('3 of 3 categories on the free plan').waitFor();
  // Full: the create form says so and cannot be sent.
  assert.equal(await page.getByRole('button', { name: 'Create category' }).isDisabled(), true);
  // All three are there: the quick start is gone.
  assert.equal(await page.getByRole('button', { name: 'Create the starter categories' }).count(), 0);
  // Every input of the create form has a label.
  await page.getByLabel('Name', { exact: true }).waitFor();
  await page.getByLabel('Or another colour, #RRGGBB').waitFor();
  await page.getByLabel('Or another emoji').waitFor();
});

test('a new category page waits for its first event and shows events sent through the API', async () => {
  await page.getByRole('link', { name: 'Open sale' }).click();
  await page.waitForURL(`${relay.base}/dashboard/categories/sale`);
  await page.getByRole('heading', { name: 'Waiting for the first event' }).waitFor();
  await page.getByText('curl -X POST').waitFor();

  for (const event of EVENTS) {
    const { status, body } = await relay.api('POST', '/api/v1/event', account.apiKey, event);
    assert.equal(status, 200, JSON.stringify(body));
  }

  // No reload: the page polls with htmx and swaps the new rows in.
  const table = page.getByRole('table');
  await table.waitFor({ timeout: 15_000 });
  for (const column of ['Time', 'amount', 'plan', 'seats', 'coupon', 'Description', 'Delivery']) {
    await table.getByRole('columnheader', { name: column, exact: true }).waitFor();
  }
  const row = (description) => table.getByRole('row').filter({ hasText: description });
  await row('New sale from Lisbon').getByRole('cell', { name: '12.5', exact: true }).waitFor();
  await row('Team upgrade').getByRole('cell', { name: 'team', exact: true }).waitFor();
  await row('Team upgrade').getByRole('cell', { name: '5', exact: true }).waitFor();
  await row('Renewal with a coupon').getByRole('cell', { name: 'SPRING', exact: true }).waitFor();
  // Discord delivers at once; Telegram waits until the chat is linked (in the settings test).
  for (const event of EVENTS) {
    await row(event.description).getByText('Discord: Delivered').waitFor({ timeout: 15_000 });
    // The Telegram chat is not linked yet: its deliveries wait for it.
    await row(event.description).getByText('Telegram: Waiting', { exact: true }).waitFor();
  }
  assert.equal(standins.discordMessages().length, EVENTS.length);
  await page.getByRole('term').filter({ hasText: /^Events$/ }).waitFor();
  const amountSum = page.getByRole('term').filter({ hasText: 'Sum of amount' }).locator('xpath=following-sibling::dd');
  assert.equal((await amountSum.textContent()).trim(), AMOUNT_SUM);
  // The chart: one bar per hour of today, drawn as tall as its count says (page CSS must not
  // override the bars' geometry).
  const chart = page.getByRole('img', { name: /^Events per hour/ });
  await chart.waitFor();
  const bars = await chart.locator('rect:not(.slot)').evaluateAll((rects) =>
    rects.map((rect) => ({ drawn: rect.getBBox().height, meant: Number(rect.getAttribute('height')) })));
  assert.equal(bars.length, 24);
  const misdrawn = bars.find((bar) => Math.abs(bar.drawn - bar.meant) > 0.5);
  assert.equal(misdrawn, undefined, `a bar meant ${misdrawn?.meant}px tall is drawn ${misdrawn?.drawn}px tall`);
  assert.equal(bars.filter((bar) => bar.meant > 0).length, 1, 'one bar: all three events came this hour');
  await page.getByText('Weeks start on Monday').waitFor();

  // The other tabs show the same events (they happened today, so this week and month too).
  await page.getByRole('navigation', { name: 'Time range' }).getByRole('link', { name: 'This month' }).click();
  await page.waitForURL(/range=month/);
  await page.getByRole('row').filter({ hasText: 'Team upgrade' }).waitFor();
  await page.getByRole('navigation', { name: 'Time range' }).getByRole('link', { name: 'Today' }).click();
  await page.waitForURL(/range=today/);
});

test('an event page lists each delivery with its attempts', async () => {
  await page.getByRole('row').filter({ hasText: 'New sale from Lisbon' }).getByRole('link').click();
  await page.waitForURL(/\/dashboard\/events\/evt_/);
  await page.getByRole('heading', { level: 1, name: 'sale event' }).waitFor();
  await page.getByText('New sale from Lisbon').waitFor();
  await page.getByRole('definition').filter({ hasText: /^12\.5$/ }).waitFor();
  await page.getByRole('definition').filter({ hasText: /^pro$/ }).waitFor();

  const discord = page.getByRole('article').filter({ has: page.getByRole('heading', { name: /^Discord/ }) });
  await discord.getByText('Delivered', { exact: true }).waitFor();
  const attempts = page.getByRole('table', { name: 'Attempts through Discord' });
  await attempts.getByRole('row').filter({ hasText: '200' }).filter({ hasText: 'Accepted' }).waitFor();
  const telegram = page.getByRole('article').filter({ has: page.getByRole('heading', { name: /^Telegram/ }) });
  await telegram.getByText('Waiting', { exact: true }).waitFor();
  await capture('event');
});

test('settings: Telegram is linked, the Discord ID changed, and a test notification goes out', async () => {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Settings' }).click();
  await page.waitForURL(`${relay.base}/dashboard/settings`);
  await page.getByText('Not connected', { exact: true }).waitFor();
  // Plain words: labels, help on where to find the value, examples rather than patterns.
  await page.getByLabel('Discord user ID').waitFor();
  await page.getByText(/turn on Developer Mode, then right-click your name/).waitFor();
  assert.equal(await page.getByText('^[0-9]{17,20}$').count(), 0);

  // The bot gets "/start <token>" from the link, as when the user presses Start in Telegram.
  const connect = page.getByRole('link', { name: 'Connect Telegram' });
  const href = await connect.getAttribute('href');
  assert.match(href, /^https:\/\/t\.me\/PingPilotBrowserBot\?start=/);
  standins.queueTelegramStart(new URL(href).searchParams.get('start'), 'ada_browser');
  await eventually('the chat to be linked', async () => {
    await page.reload();
    return (await page.getByText('Connected', { exact: true }).count()) > 0;
  });
  assert.equal(await page.getByRole('region', { name: 'Needs your attention' }).count(), 0, 'nothing left to fix');

  // The events that waited for the chat go out now.
  await eventually('every event delivered through both channels', async () => {
    const { body } = await relay.api('GET', '/api/v1/events?category=sale', account.apiKey);
    return body.events.length === EVENTS.length && body.events.every((e) => e.deliveryStatus === 'DELIVERED');
  }, 20_000);
  assert.ok(standins.telegramMessages().length >= EVENTS.length);

  // An invalid Discord ID is refused with the API's message, next to the field.
  const discordId = page.getByRole('textbox', { name: /Discord/ });
  await discordId.fill('not-an-id');
  await page.getByRole('button', { name: 'Save settings' }).click();
  await page.getByRole('alert').filter({ hasText: 'not saved' }).waitFor();
  assert.equal(await discordId.getAttribute('aria-invalid'), 'true');
  await page.getByText('This must be a Discord user ID: 17 to 20 digits.').first().waitFor();
  await capture('settings-error');

  await discordId.fill(NEW_DISCORD_ID);
  await page.getByRole('button', { name: 'Save settings' }).click();
  await page.getByRole('status').filter({ hasText: 'Your settings are saved.' }).waitFor();
  assert.equal(await discordId.inputValue(), NEW_DISCORD_ID);
  const { body: saved } = await relay.api('GET', '/api/v1/account', account.apiKey);
  assert.equal(saved.discordId, NEW_DISCORD_ID);

  // Telegram allows one message a second per chat and the relay keeps to it: right after the
  // waiting events went out the page may answer "Throttled … try again in 1 s"; so does a user.
  const results = page.getByRole('status').filter({ hasText: 'Test notification sent' });
  let before;
  let telegramBefore;
  for (let attempt = 1; ; attempt++) {
    await new Promise((done) => setTimeout(done, 1_100));
    before = standins.discordMessages().length;
    telegramBefore = standins.telegramMessages().length;
    await page.getByRole('button', { name: 'Send test notification' }).click();
    await results.getByRole('listitem').filter({ hasText: 'Discord:' }).filter({ hasText: 'Delivered (HTTP 200)' }).waitFor();
    const telegram = await results.getByRole('listitem').filter({ hasText: 'Telegram:' }).textContent();
    if (/Delivered \(HTTP 200\)/.test(telegram)) break;
    assert.match(telegram, /Throttled/);
    assert.ok(attempt < 4, `Telegram still throttled after ${attempt} tries: ${telegram}`);
  }
  assert.equal(standins.discordMessages().length, before + 1);
  assert.equal(standins.telegramMessages().length, telegramBefore + 1);
  const dms = standins.requestsTo('/api/v10/users/@me/channels');
  assert.equal(dms.at(-1).body.recipient_id, NEW_DISCORD_ID);
  await capture('settings');
});

test('the category page shows every delivery done once Telegram is linked', async () => {
  await page.goto(`${relay.base}/dashboard/categories/sale`);
  const table = page.getByRole('table');
  for (const event of EVENTS) {
    const row = table.getByRole('row').filter({ hasText: event.description });
    await row.getByText('Discord: Delivered').waitFor();
    await row.getByText('Telegram: Delivered').waitFor({ timeout: 15_000 });
  }
  await capture('category');
});

test('a category is routed to Discord alone from its page, and back to every channel', async () => {
  await page.goto(`${relay.base}/dashboard/categories/sale`);
  const form = page.getByRole('form', { name: 'Channels' });
  assert.ok(await form.getByLabel(/^Every channel you have on/).isChecked());
  await form.getByLabel('Only these channels:').check();
  await form.getByLabel('Discord', { exact: true }).check();
  await form.getByRole('button', { name: 'Save channels' }).click();
  await page.getByText("The category's channels are saved.").waitFor();
  let saved = await relay.api('GET', '/api/v1/categories/sale', account.apiKey);
  assert.deepEqual(saved.body.channels, ['discord']);
  await capture('category-channels');
  await form.getByLabel(/^Every channel you have on/).check();
  await form.getByRole('button', { name: 'Save channels' }).click();
  await page.getByText("The category's channels are saved.").waitFor();
  saved = await relay.api('GET', '/api/v1/categories/sale', account.apiKey);
  assert.equal(saved.body.channels, null);
});

test('the sums shown are chosen with boxes, and the choice stays through the range tabs', async () => {
  await page.goto(`${relay.base}/dashboard/categories/sale`);
  await page.getByRole('term').filter({ hasText: 'Sum of seats' }).waitFor();
  await page.getByText('Choose the sums (2 number fields)').click();
  await page.getByRole('checkbox', { name: 'seats' }).uncheck();
  await page.getByRole('button', { name: 'Show these sums' }).click();
  await page.waitForURL(/pick=1&sum=amount$/);
  await page.getByRole('term').filter({ hasText: 'Sum of amount' }).waitFor();
  assert.equal(await page.getByRole('term').filter({ hasText: 'Sum of seats' }).count(), 0);
  await page.getByRole('navigation', { name: 'Time range' }).getByRole('link', { name: 'This week' }).click();
  await page.waitForURL(/range=week&pick=1&sum=amount$/);
  assert.equal(await page.getByRole('term').filter({ hasText: 'Sum of seats' }).count(), 0);
  await capture('category-sums');
});

test('the overview counts the events of each category', async () => {
  await page.goto(`${relay.base}/dashboard`);
  const sale = page.getByRole('article').filter({ has: page.getByRole('heading', { name: 'sale' }) });
  await sale.getByText('3 events this month').waitFor();
  await sale.getByRole('img', { name: '3 events in the last 14 days' }).waitFor();
  await sale.getByText(/^Last (\d+ (seconds?|minutes?) ago|now)$/).waitFor();
  // The create form waits behind "Add a category" once there are categories.
  const name = page.getByLabel('Name', { exact: true });
  assert.equal(await name.isVisible(), false);
  await capture('overview');
  await page.getByText('Add a category').click();
  assert.equal(await name.isVisible(), true);
});

test('an API key is created with a name, shown once, works, renamed, and stops working when revoked', async () => {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'API keys' }).click();
  await page.waitForURL(`${relay.base}/dashboard/keys`);
  assert.equal(await page.getByRole('link', { name: /^Revoke key / }).count(), 1);
  await page.getByLabel('Name (optional)').fill('deploy bot');
  await page.getByRole('button', { name: 'Create a key' }).click();
  await page.getByRole('heading', { name: /^Your new key “deploy bot”/ }).waitFor();
  const newKey = await page.getByLabel('New API key').inputValue();
  assert.match(newKey, /^pk_/);
  assert.notEqual(newKey, account.apiKey);
  const usable = await relay.api('GET', '/api/v1/quota', newKey);
  assert.equal(usable.status, 200);

  await page.getByRole('link', { name: 'Done: back to the list' }).click();
  assert.equal(await page.getByRole('link', { name: /^Revoke key / }).count(), 2);
  // The row of the new key is named, and its shown prefix is the start of the key.
  const label = await page.getByRole('link', { name: /^Revoke key “deploy bot” / }).getAttribute('aria-label');
  const prefix = label.match(/\((pk_\w+)…\)$/)[1];
  assert.ok(newKey.startsWith(prefix), `${label} names the new key`);
  await page.getByRole('cell', { name: /^No name pk_/ }).waitFor();
  await capture('keys');

  await page.getByRole('link', { name: /^Rename key “deploy bot” / }).click();
  await page.getByRole('heading', { name: /^Rename key “deploy bot”/ }).waitFor();
  await capture('key-rename');
  await page.getByLabel('Name', { exact: true }).fill('deploy bot (old)');
  await page.getByRole('button', { name: 'Save the name' }).click();
  await page.getByRole('status').filter({ hasText: "The key's name is saved." }).waitFor();
  const listed = await relay.api('GET', '/api/v1/account/api-keys', account.apiKey);
  assert.deepEqual(listed.body.map((key) => key.name), [null, 'deploy bot (old)']);

  await page.getByRole('link', { name: /^Revoke key “deploy bot \(old\)” / }).click();
  await page.getByRole('heading', { name: /^Revoke key “deploy bot \(old\)”/ }).waitFor();
  await page.getByRole('button', { name: 'Revoke the key' }).click();
  await page.getByRole('status').filter({ hasText: 'The key is revoked' }).waitFor();
  assert.equal(await page.getByRole('link', { name: /^Revoke key / }).count(), 1);

  const refused = await relay.api('GET', '/api/v1/quota', newKey);
  assert.equal(refused.status, 401);
  assert.deepEqual(refused.body, { message: 'Invalid API key' });
  const still = await relay.api('GET', '/api/v1/quota', account.apiKey);
  assert.equal(still.status, 200);
});

test('usage shows the events and categories against the plan', async () => {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Usage' }).click();
  await page.waitForURL(`${relay.base}/dashboard/usage`);
  // Three events; the test notification does not count.
  await page.getByText(`${EVENTS.length} of 100 events used`).waitFor();
  await page.getByText('3 of 3 categories used').waitFor();
  await page.getByText('The count starts again on').waitFor();
  // This month: a bar per day, and the categories by their events.
  await page.getByRole('img', { name: /^Events per day, .* \(UTC\): 3 in total; busiest / }).waitFor();
  const perCategory = page.getByRole('region', { name: 'Events per category this month' });
  await perCategory.getByRole('row').filter({ hasText: 'sale' }).getByRole('cell', { name: '100 %' }).waitFor();
  await capture('usage');
});

test('the theme switch turns the dashboard dark, light and back to the system\'s', async () => {
  const background = () => page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor);
  const theme = () => page.evaluate(() => document.documentElement.dataset.theme ?? 'auto');
  await page.goto(`${relay.base}/dashboard`);
  await page.getByRole('button', { name: 'Colour theme: Auto. Switch to Dark' }).click();
  await page.waitForURL(`${relay.base}/dashboard`);
  assert.equal(await theme(), 'dark');
  assert.equal(await background(), 'rgb(17, 20, 24)');
  // Dark keeps AA contrast: axe-core checks each page as it checks the light ones.
  await capture('overview-dark');
  for (const [name, path] of [['category-dark', '/categories/sale'], ['settings-dark', '/settings'], ['usage-dark', '/usage']]) {
    await page.goto(`${relay.base}/dashboard${path}`);
    await capture(name);
  }
  // The switch goes back to the page it was on.
  await page.getByRole('button', { name: 'Colour theme: Dark. Switch to Light' }).click();
  await page.waitForURL(`${relay.base}/dashboard/usage`);
  assert.equal(await theme(), 'light');
  await page.emulateMedia({ colorScheme: 'dark' });
  assert.equal(await background(), 'rgb(246, 247, 249)', 'light was chosen: the system is not asked');
  await page.getByRole('button', { name: 'Colour theme: Light. Switch to Auto' }).click();
  await page.waitForURL(`${relay.base}/dashboard/usage`);
  assert.equal(await theme(), 'auto');
  assert.equal(await background(), 'rgb(17, 20, 24)', 'auto follows the system\'s dark');
  await page.emulateMedia({ colorScheme: 'light' });
  assert.equal(await background(), 'rgb(246, 247, 249)');
});

test('times read in the reader\'s time zone, exact and in UTC on hover', async () => {
  const reader = await newPage(browser, { timezoneId: 'America/New_York', locale: 'en-US' });
  try {
    await signIn(reader);
    await reader.goto(`${relay.base}/dashboard/categories/sale`);
    // The events table: how long ago, on one line; the moment in local time and UTC on hover.
    const latest = reader.getByRole('table').getByRole('row').nth(1).locator('time');
    assert.match(await latest.textContent(), /^(\d+ (seconds?|minutes?) ago|now)$/);
    assert.match(await latest.getAttribute('title'), /^[A-Z][a-z]{2} \d+, \d{4}, \d+:\d\d:\d\d [AP]M \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)$/);
    // The event page: the local time, New York's, 4 or 5 hours behind UTC.
    await latest.click();
    const received = reader.locator('time[data-time="minute"]').first();
    const local = await received.textContent();
    const utc = await received.getAttribute('title');
    assert.match(local, /^[A-Z][a-z]{2} \d+, \d{4}, \d+:\d\d [AP]M$/);
    assert.match(utc, /^\d{4}-\d\d-\d\d \d\d:\d\d UTC$/);
    const shown = new Date(`${local.replace(',', '').replace(',', '')} UTC`);
    const hours = (Date.parse(utc.replace(' UTC', 'Z').replace(' ', 'T')) - shown.getTime()) / 3_600_000;
    assert.ok(hours === 4 || hours === 5, `${local} is ${hours} hours from ${utc}`);
    assert.deepEqual(reader.consoleErrors, [], 'console errors');
    assert.deepEqual(reader.scriptErrors, [], 'script errors');
  } finally {
    await reader.context().close();
  }
});

test('a live events table keeps its sideways scroll when new events arrive', async () => {
  const send = (n) => relay.api('POST', '/api/v1/event', account.apiKey, {
    category: 'bug',
    description: `Stack trace ${n}: ${'at handler (src/server.js:42:13) '.repeat(20)}`,
    fields: { service: 'checkout', region: 'eu-west-1', build: `2026.12.${n}`, host: `web-${n}`, user: 'ada@example.com' },
  });
  await send(1);
  await page.setViewportSize(PHONE);
  await page.goto(`${relay.base}/dashboard/categories/bug`);
  const region = page.getByRole('region', { name: 'Events table' });
  const rows = region.getByRole('row');
  await eventually('the first event', async () => (await rows.count()) === 2);
  // Cut with an ellipsis, whole on hover.
  const description = rows.nth(1).locator('.cut').first();
  assert.equal(await description.evaluate((cell) => cell.scrollWidth > cell.clientWidth), true);
  assert.match(await description.getAttribute('title'), /^Stack trace 1: at handler/);
  await region.evaluate((element) => { element.scrollLeft = 150; });
  await send(2);
  await eventually('the new event swapped in', async () => (await rows.count()) === 3, 15_000);
  const left = await region.evaluate((element) => element.scrollLeft);
  assert.ok(Math.abs(left - 150) <= 1, `scrolled to ${left} after the refresh`);
  await page.setViewportSize(DESKTOP);
  await capture('category-long');
});

test('activity lists the requests, refused ones included, and the banner names the refused category', async () => {
  const refused = await relay.api('POST', '/api/v1/event', account.apiKey, { category: 'nope', description: 'x' });
  assert.equal(refused.status, 404);
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Activity' }).click();
  await page.waitForURL(`${relay.base}/dashboard/activity`);
  // Requests are written about once a second: reload until the refusal is there.
  const table = page.getByRole('region', { name: 'Activity table' });
  await eventually('the refused request', async () => {
    await page.reload();
    return (await table.getByText('Category nope').count()) === 1;
  });
  const attention = page.getByRole('region', { name: 'Needs your attention' });
  await attention.getByText(/^Events sent to “nope” are refused with 404 “You dont have a category named "nope"”, once in the last 24 hours\.$/).waitFor();
  await table.getByText('POST /api/v1/event').first().waitFor();
  await table.getByText('GET /api/v1/quota').first().waitFor();
  await capture('activity');

  // Only the refused ones, chosen in the form (which works without JavaScript: a GET).
  await page.getByLabel('Status').selectOption('refused');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.waitForURL(`${relay.base}/dashboard/activity?key=&status=refused`);
  const statuses = await table.locator('tbody .badge').allTextContents();
  assert.ok(statuses.length >= 1);
  assert.ok(statuses.every((status) => Number(status) >= 400), statuses.join(', '));
  await attention.getByRole('link', { name: 'See activity' }).click();
  await page.waitForURL(`${relay.base}/dashboard/activity?status=refused`);
});

test('the events page lists every category and filters by text, category and day', async () => {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Events', exact: true }).click();
  await page.waitForURL(`${relay.base}/dashboard/events`);
  const table = page.getByRole('region', { name: 'Events table' });
  await table.getByRole('columnheader', { name: 'Category' }).waitFor();
  await table.getByRole('link', { name: 'bug' }).first().waitFor();
  await table.getByRole('link', { name: 'sale' }).first().waitFor();
  await page.getByText(/^Events 1–\d+ of \d+, newest first$/).waitFor();

  await page.getByLabel('Search').fill('lisbon');
  await page.getByLabel('Category').selectOption('sale');
  await page.getByLabel('From').fill(new Date().toISOString().slice(0, 10));
  await page.getByRole('button', { name: 'Show' }).click();
  await page.waitForURL(/\/dashboard\/events\?category=sale&status=&channel=&q=lisbon&from=/);
  await page.getByText('Events 1–1 of 1, newest first').waitFor();
  await table.getByText('New sale from Lisbon').waitFor();
  await capture('events');

  await page.getByLabel('Search').fill('no such text');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.getByText('No events match these filters.').waitFor();
  await page.getByRole('link', { name: 'Clear' }).click();
  await page.waitForURL(`${relay.base}/dashboard/events`);
});

test('signing out ends the session', async () => {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(`${relay.base}/dashboard/login`);
  await page.goto(`${relay.base}/dashboard/usage`);
  assert.equal(path(), '/dashboard/login');
});

/** Signs `into` (a page of its own browser context) in with the account's key. */
async function signIn(into) {
  await into.goto(`${relay.base}/dashboard/login`);
  await into.getByLabel('API key').fill(account.apiKey);
  await into.getByRole('button', { name: 'Sign in' }).click();
  await into.waitForURL(`${relay.base}/dashboard`);
}

test('signing out everywhere ends this session and another browser\'s', async () => {
  await signIn(page);
  const other = await newPage(browser);
  try {
    await signIn(other);
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'API keys' }).click();
    await page.getByRole('button', { name: 'Sign out everywhere' }).click();
    await page.waitForURL(`${relay.base}/dashboard/login?done=everywhere`);
    await page.getByRole('status').filter({ hasText: 'You are signed out everywhere' }).waitFor();
    await capture('signed-out-everywhere');

    await other.goto(`${relay.base}/dashboard/keys`);
    assert.equal(new URL(other.url()).pathname, '/dashboard/login');
    assert.deepEqual(other.consoleErrors, [], 'console errors in the other browser');
    assert.deepEqual(other.scriptErrors, [], 'script errors in the other browser');
  } finally {
    await other.context().close();
  }
});
