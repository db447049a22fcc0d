// One small HTTP server playing both Discord and Telegram for the relay under test, recording
// every request so the tests can check what the relay actually sent.

import http from 'node:http';

export const DISCORD_TOKEN = 'discord-browser-token';
export const TELEGRAM_TOKEN = '123456:telegram-browser-token';
export const DM_CHANNEL = '100000000000000001';
export const TELEGRAM_CHAT = 4242;

// How long an empty getUpdates answer is held: a short long-poll, so the relay's poller neither
// spins nor keeps the stand-in busy at shutdown.
const IDLE_POLL_MS = 300;

export async function startStandins() {
  const received = [];
  // Telegram updates handed to the relay's poller on its next getUpdates.
  const pendingUpdates = [];
  let nextUpdateId = 1;

  const server = http.createServer((request, response) => {
    const chunks = [];
    request.on('data', (chunk) => chunks.push(chunk));
    request.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body = null;
      try {
        body = text ? JSON.parse(text) : null;
      } catch {
        body = text;
      }
      const path = new URL(request.url, 'http://standin').pathname;
      received.push({ method: request.method, path, body, headers: request.headers, at: Date.now() });
      answer(request.method, path, response);
    });
  });

  function send(response, status, body) {
    response.writeHead(status, { 'content-type': 'application/json' });
    response.end(JSON.stringify(body));
  }

  function answer(method, path, response) {
    if (method === 'POST' && path === '/api/v10/users/@me/channels') {
      return send(response, 200, { id: DM_CHANNEL, type: 1 });
    }
    if (method === 'POST' && /^\/api\/v10\/channels\/[0-9]+\/messages$/.test(path)) {
      return send(response, 200, { id: '1', channel_id: DM_CHANNEL });
    }
    const telegram = /^\/bot([^/]+)\/([A-Za-z]+)$/.exec(path);
    if (method === 'POST' && telegram) {
      const [, , apiMethod] = telegram;
      if (apiMethod === 'getUpdates') {
        if (pendingUpdates.length > 0) {
          return send(response, 200, { ok: true, result: pendingUpdates.splice(0) });
        }
        const timer = setTimeout(() => send(response, 200, { ok: true, result: [] }), IDLE_POLL_MS);
        response.on('close', () => clearTimeout(timer));
        return undefined;
      }
      if (apiMethod === 'sendMessage') {
        return send(response, 200, { ok: true, result: { message_id: 7 } });
      }
      // getMe, setWebhook, deleteWebhook and the like: a plain success.
      return send(response, 200, { ok: true, result: true });
    }
    return send(response, 404, { message: 'not a stand-in route' });
  }

  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${server.address().port}`;

  return {
    discordBase: `${base}/api/v10`,
    telegramBase: base,
    received,
    /** Requests whose path matches `pattern` (a RegExp or an exact string), in arrival order. */
    requestsTo(pattern) {
      return received.filter((r) => (typeof pattern === 'string' ? r.path === pattern : pattern.test(r.path)));
    },
    discordMessages() {
      return this.requestsTo(/^\/api\/v10\/channels\/[0-9]+\/messages$/);
    },
    telegramMessages() {
      return this.requestsTo(/^\/bot[^/]+\/sendMessage$/);
    },
    /** Makes the bot "receive" `/start <token>` from a private chat, as Telegram would. */
    queueTelegramStart(token, username) {
      pendingUpdates.push({
        update_id: nextUpdateId++,
        message: {
          message_id: nextUpdateId,
          date: Math.floor(Date.now() / 1000),
          text: `/start ${token}`,
          chat: { id: TELEGRAM_CHAT, type: 'private' },
          from: { id: TELEGRAM_CHAT, is_bot: false, first_name: 'Test', username },
        },
      });
    },
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
