// PingPilot's generated TypeScript client against a live relay (run by openapi/check.sh).
//
// `pingpilot.ts` is generated from openapi/openapi.json by openapi-typescript; openapi-fetch
// turns it into a typed client. This script uses it the way a user would: set up the account,
// create a category, send an event and see it delivered by the stand-in Discord, then check the
// typed error answers. tsc compiles it in strict mode against the generated types first.
//
// Environment: PINGPILOT_URL (the relay), PINGPILOT_KEY (an API key of an account with a
// Discord ID), STANDIN_URL (the provider stand-in, which counts messages).

import createClient from "openapi-fetch";
import type { components, paths } from "./pingpilot.js";

type EventAccepted = components["schemas"]["EventAccepted"];
type Event = components["schemas"]["Event"];

function check(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Error(what);
}

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value.replace(/\/$/, "");
}

async function delivered(standin: string): Promise<number> {
  return Number(await (await fetch(`${standin}/count`)).text());
}

async function main(): Promise<void> {
  const baseUrl = `${env("PINGPILOT_URL")}/api/v1`;
  const standin = env("STANDIN_URL");
  const client = createClient<paths>({
    baseUrl,
    headers: { Authorization: `Bearer ${env("PINGPILOT_KEY")}` },
  });

  // The account: Discord only (the stand-in plays Discord).
  const account = await client.PATCH("/account", { body: { channels: { telegram: false } } });
  check(account.data !== undefined, `update_account: ${JSON.stringify(account.error)}`);
  check(account.data.discordId === "123456789012345678", `discordId ${account.data.discordId}`);
  const discord = account.data.channels.find((channel) => channel.provider === "discord");
  check(discord?.enabled === true && discord.ready, `discord channel ${JSON.stringify(discord)}`);

  // The webhook channel's signing secret, replaced; then off again (the stand-in is Discord).
  const hooked = await client.PATCH("/account", {
    body: { webhookUrl: "https://hooks.example.com/ts", channels: { webhook: true } },
  });
  check(hooked.data?.webhookUrl === "https://hooks.example.com/ts", "webhookUrl");
  const secret = hooked.data.channels.find((channel) => channel.provider === "webhook")?.signingSecret;
  check(typeof secret === "string" && secret.startsWith("whsec_"), `signingSecret ${secret}`);
  const rotated = await client.POST("/account/channels/{provider}/secret", {
    params: { path: { provider: "webhook" } },
  });
  const replaced = rotated.data?.channels.find((channel) => channel.provider === "webhook")?.signingSecret;
  check(typeof replaced === "string" && replaced !== secret, "the secret was replaced");
  await client.PATCH("/account", { body: { channels: { webhook: false } } });

  // A category.
  const name = `ts-${Math.random().toString(36).slice(2, 10)}`;
  const category = await client.POST("/categories", {
    body: { name, color: "#2ECC71", emoji: "🎉", channels: ["discord"] },
  });
  check(category.response.status === 201, `create_category: ${category.response.status}`);
  check(category.data?.name === name, `category ${JSON.stringify(category.data)}`);
  check(JSON.stringify(category.data.channels) === '["discord"]', "category channels");

  // An event, held until its delivery is final; the stand-in receives it.
  const before = await delivered(standin);
  const sent = await client.POST("/event", {
    params: { query: { wait: 10 }, header: { "Idempotency-Key": `ts-${name}` } },
    body: { category: name, description: "Build finished", fields: { build: 1234, green: true } },
  });
  check(sent.data !== undefined, `send_event: ${JSON.stringify(sent.error)}`);
  const accepted: EventAccepted = sent.data;
  check(accepted.message === "Event processed successfully", accepted.message);
  check(accepted.deliveryStatus === "DELIVERED", accepted.deliveryStatus);
  check((await delivered(standin)) === before + 1, "the stand-in received the message");

  // The same Idempotency-Key answers the first answer again and sends nothing more.
  const repeat = await client.POST("/event", {
    params: { header: { "Idempotency-Key": `ts-${name}` } },
    body: { category: name, description: "Build finished", fields: { build: 1234, green: true } },
  });
  check(repeat.data?.eventId === accepted.eventId, "idempotent repeat");

  const read = await client.GET("/events/{id}", { params: { path: { id: accepted.eventId } } });
  check(read.data !== undefined, `get_event: ${JSON.stringify(read.error)}`);
  const event: Event = read.data;
  check(event.deliveryStatus === "DELIVERED", event.deliveryStatus);
  check(event.fields.build === 1234 && event.fields.green === true, JSON.stringify(event.fields));
  check(event.deliveries.length === 1 && event.deliveries[0].provider === "discord", "deliveries");
  check(event.deliveries[0].attempts[0].httpStatus === 200, "attempt");

  const page = await client.GET("/events", {
    params: { query: { category: name, status: "DELIVERED", timeRange: "today", limit: 10 } },
  });
  check(page.data?.events.length === 1 && page.data.nextCursor === null, "list_events");
  const quota = await client.GET("/quota");
  check(quota.data !== undefined && quota.data.eventsLimit === null, "get_quota");

  // Typed error answers with their documented messages.
  const missing = await client.POST("/event", { body: { category: "no-such-category" } });
  check(missing.response.status === 404, `404: ${missing.response.status}`);
  check(
    missing.error?.message === 'You dont have a category named "no-such-category"',
    `404: ${JSON.stringify(missing.error)}`,
  );
  const invalid = await client.POST("/event", { body: { category: "no spaces" } });
  check(invalid.response.status === 422, `422: ${invalid.response.status}`);
  check(
    invalid.error !== undefined && "errors" in invalid.error && invalid.error.errors[0].path === "category",
    `422: ${JSON.stringify(invalid.error)}`,
  );
  const anonymous = createClient<paths>({ baseUrl });
  const denied = await anonymous.GET("/categories");
  check(denied.response.status === 401 && denied.error?.message === "Unauthorized", "401");
  console.log(`typescript client: category ${name}, event ${accepted.eventId} delivered`);
}

main().catch((failure: unknown) => {
  console.error(`typescript client check failed: ${failure instanceof Error ? failure.message : String(failure)}`);
  process.exit(1);
});
