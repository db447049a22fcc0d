// The relay under test: the debug `pingpilot` binary serving on a free 127.0.0.1 port, SQLite in
// a temporary directory, providers pointed at the stand-ins.

import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createInterface } from 'node:readline';

import { DISCORD_TOKEN, TELEGRAM_TOKEN } from './standins.js';

const run = promisify(execFile);
const repository = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BINARY = process.env.PINGPILOT_BIN || join(repository, 'target', 'debug', 'pingpilot');
export const TELEGRAM_BOT = 'PingPilotBrowserBot';
const START_TIMEOUT_MS = 20_000;

function configText(databaseUrl, standins) {
  // Quick retries and polling, so deliveries settle within a page's refresh.
  return `
[database]
url = "${databaseUrl}"

[delivery]
backoff_initial = "50ms"
backoff_max = "200ms"
poll_interval = "200ms"
waiting_recheck = "500ms"

[providers.discord]
bot_token = "${DISCORD_TOKEN}"
api_base = "${standins.discordBase}"

[providers.telegram]
bot_token = "${TELEGRAM_TOKEN}"
api_base = "${standins.telegramBase}"
bot_username = "${TELEGRAM_BOT}"
poll_timeout_secs = 0
`;
}

/** Starts `pingpilot serve`; resolves once it answers /readyz. */
export async function startRelay(standins) {
  const dir = mkdtempSync(join(tmpdir(), 'pingpilot-browser-'));
  const configPath = join(dir, 'pingpilot.toml');
  writeFileSync(configPath, configText(`sqlite://${join(dir, 'pingpilot.db')}`, standins));

  const child = spawn(BINARY, ['serve', '--config', configPath], {
    env: { ...process.env, PINGPILOT_SERVER__BIND: '127.0.0.1:0', PINGPILOT_LOG: 'info', NO_COLOR: '1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  // Should this process end without stop() (a crash), the relay goes with it.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const log = [];
  const address = await new Promise((resolveAddress, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay did not start:\n${log.join('\n')}`)), START_TIMEOUT_MS);
    child.on('exit', (code) => reject(new Error(`relay exited with ${code}:\n${log.join('\n')}`)));
    // Keep reading the log to the end so the relay never blocks on a full pipe.
    createInterface({ input: child.stderr }).on('line', (line) => {
      const plain = line.replace(/\x1b\[[0-9;]*m/g, '');
      log.push(plain);
      const found = /address=(\S+)/.exec(plain);
      if (found) {
        clearTimeout(timer);
        resolveAddress(found[1]);
      }
    });
  });
  const base = `http://${address}`;
  await waitReady(base);

  return {
    base,
    dir,
    configPath,
    log,
    /** Runs the CLI with this relay's configuration; returns its stdout parsed as JSON. */
    async cli(args) {
      const { stdout } = await run(BINARY, [...args, '--config', configPath], { timeout: 20_000 });
      return JSON.parse(stdout);
    },
    /** Calls the JSON API; returns { status, body }. */
    async api(method, path, key, body) {
      const headers = { 'content-type': 'application/json' };
      if (key) headers.authorization = `Bearer ${key}`;
      const response = await fetch(`${base}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : null };
    },
    async stop() {
      process.removeListener('exit', killOnExit);
      if (child.exitCode === null) {
        const exited = new Promise((done) => child.once('exit', done));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitReady(base) {
  for (let attempt = 0; attempt < 200; attempt++) {
    try {
      const response = await fetch(`${base}/readyz`);
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((done) => setTimeout(done, 50));
  }
  throw new Error(`relay at ${base} never became ready`);
}
