"""PingPilot's generated Python client against a live relay (run by openapi/check.sh).

The client is generated from openapi/openapi.json by openapi-python-client into
target/openapi-tools/build/python/pingpilot_client; this script uses it the way a user would:
set up the account, create a category, send an event and see it delivered by the stand-in
Discord, route a category to the webhook channel and verify the delivery it receives with the
Standard Webhooks authors' library, route one to e-mail and read the message back from an SMTP
server (aiosmtpd), then check the typed error answers.

Environment: PINGPILOT_URL (the relay, e.g. http://127.0.0.1:8080), PINGPILOT_KEY (an API key of
an account with a Discord ID), STANDIN_URL (the provider stand-in, which counts messages),
SMTP_PORT (where the relay's SMTP server is expected: this script runs it).
"""

import email
import email.policy
import os
import queue
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
from aiosmtpd.controller import Controller
from standardwebhooks.webhooks import Webhook

from pingpilot_client import AuthenticatedClient, Client
from pingpilot_client.api.account import get_account, rotate_channel_secret, update_account
from pingpilot_client.api.categories import create_category, get_category, list_categories
from pingpilot_client.api.events import get_event, get_quota, list_events, send_event
from pingpilot_client.models import (
    Account,
    AccountUpdate,
    AccountUpdateChannels,
    Category,
    ChannelId,
    DeliveryStatus,
    ErrorMessage,
    Event,
    EventAccepted,
    EventPage,
    EventRequest,
    EventRequestFieldsType0,
    NewCategory,
    Quota,
    ValidationFailure,
)


def check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


class Receiver(BaseHTTPRequestHandler):
    """A webhook receiver: hands each POST (headers and raw body) to the test and answers 204."""

    received: "queue.Queue[tuple[dict[str, str], bytes]]" = queue.Queue()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.received.put((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def check_webhook(client: AuthenticatedClient) -> None:
    """A category routed to the webhook alone: its event arrives signed, and the signature
    verifies with the secret the account shows."""
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    try:
        account = update_account.sync(
            client=client,
            body=AccountUpdate(webhook_url=url, channels=AccountUpdateChannels(webhook=True)),
        )
        assert isinstance(account, Account)
        check(account.webhook_url == url, f"webhookUrl: {account.webhook_url!r}")
        secret = next(c for c in account.channels if c.provider == "webhook").signing_secret
        check(isinstance(secret, str) and secret.startswith("whsec_"), f"secret: {secret!r}")
        assert isinstance(secret, str)
        name = f"hook-{uuid.uuid4().hex[:8]}"
        category = create_category.sync(
            client=client, body=NewCategory(name=name, color="#123456", channels=[ChannelId.WEBHOOK])
        )
        assert isinstance(category, Category)
        check(category.channels == [ChannelId.WEBHOOK], f"channels: {category.channels!r}")
        accepted = send_event.sync(
            client=client,
            body=EventRequest(category=name, description="Deployed v2"),
            wait=10,
        )
        assert isinstance(accepted, EventAccepted)
        check(accepted.delivery_status == DeliveryStatus.DELIVERED, f"{accepted!r}")
        headers, body = Receiver.received.get(timeout=10)
        payload = Webhook(secret).verify(body, headers)
        check(payload["data"]["eventId"] == accepted.event_id, f"payload: {payload!r}")
        check(payload["data"]["description"] == "Deployed v2", f"payload: {payload!r}")
        check(Receiver.received.empty(), "one delivery")

        rotated = rotate_channel_secret.sync("webhook", client=client)
        assert isinstance(rotated, Account)
        new_secret = next(c for c in rotated.channels if c.provider == "webhook").signing_secret
        check(isinstance(new_secret, str) and new_secret != secret, "the secret was replaced")
        unsigned = rotate_channel_secret.sync("discord", client=client)
        check(
            isinstance(unsigned, ErrorMessage) and unsigned.message == "Channel has no signing secret",
            f"404: {unsigned!r}",
        )
    finally:
        update_account.sync(
            client=client, body=AccountUpdate(channels=AccountUpdateChannels(webhook=False))
        )
        server.shutdown()


class Inbox:
    """aiosmtpd's handler: keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: "queue.Queue[tuple[list[str], bytes]]" = queue.Queue()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001
        self.messages.put((list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"


def check_email(client: AuthenticatedClient) -> None:
    """A category routed to e-mail alone: the message arrives at the SMTP server with the emoji
    and category in its subject, as text and HTML."""
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=int(os.environ["SMTP_PORT"]))
    smtp.start()
    try:
        account = update_account.sync(
            client=client,
            body=AccountUpdate(
                notification_email="ann@example.com", channels=AccountUpdateChannels(email=True)
            ),
        )
        assert isinstance(account, Account)
        check(account.notification_email == "ann@example.com", f"{account.notification_email!r}")
        name = f"mail-{uuid.uuid4().hex[:8]}"
        create_category.sync(
            client=client,
            body=NewCategory(name=name, color="#FF0000", emoji="🚀", channels=[ChannelId.EMAIL]),
        )
        accepted = send_event.sync(
            client=client,
            body=EventRequest(category=name, description="Deployed <v2> & more"),
            wait=10,
        )
        assert isinstance(accepted, EventAccepted)
        check(accepted.delivery_status == DeliveryStatus.DELIVERED, f"{accepted!r}")
        recipients, raw = inbox.messages.get(timeout=10)
        check(recipients == ["ann@example.com"], f"recipients: {recipients!r}")
        mail = email.message_from_bytes(raw, policy=email.policy.default)
        expected = f"🚀 {name[0].upper()}{name[1:]}: Deployed <v2> & more"
        check(mail["Subject"] == expected, f"subject: {mail['Subject']!r}")
        check(mail["From"] == "PingPilot <alerts@example.test>", f"from: {mail['From']!r}")
        text = mail.get_body(preferencelist=("plain",)).get_content()
        html = mail.get_body(preferencelist=("html",)).get_content()
        check("Deployed <v2> & more" in text and accepted.event_id in text, f"text: {text!r}")
        check("Deployed &lt;v2&gt; &amp; more" in html, f"html: {html!r}")
    finally:
        update_account.sync(client=client, body=AccountUpdate(channels=AccountUpdateChannels(email=False)))
        smtp.stop()


def main() -> None:
    base = os.environ["PINGPILOT_URL"].rstrip("/") + "/api/v1"
    key = os.environ["PINGPILOT_KEY"]
    standin = os.environ["STANDIN_URL"].rstrip("/")
    client = AuthenticatedClient(base_url=base, token=key, raise_on_unexpected_status=True)

    # The account: Discord only (the stand-in plays Discord), so intake's 403 for Telegram
    # does not apply.
    account = update_account.sync(
        client=client,
        body=AccountUpdate(channels=AccountUpdateChannels(telegram=False)),
    )
    check(isinstance(account, Account), f"update_account: {account!r}")
    assert isinstance(account, Account)
    check(account.discord_id == "123456789012345678", f"discordId: {account.discord_id!r}")
    discord = next(c for c in account.channels if c.provider == "discord")
    check(discord.enabled and discord.ready, f"discord channel: {discord!r}")
    check(isinstance(get_account.sync(client=client), Account), "get_account")

    check_webhook(client)
    check_email(client)

    # A category.
    name = f"py-{uuid.uuid4().hex[:8]}"
    category = create_category.sync(
        client=client,
        body=NewCategory(name=name, color="#ffb02e", emoji="💰", channels=[ChannelId.DISCORD]),
    )
    check(isinstance(category, Category), f"create_category: {category!r}")
    assert isinstance(category, Category)
    check(category.name == name and category.color == "#FFB02E", f"category: {category!r}")
    check(category.channels == [ChannelId.DISCORD], f"channels: {category.channels!r}")
    listed = list_categories.sync(client=client)
    check(isinstance(listed, list) and any(c.name == name for c in listed), "list_categories")

    # An event, held until its delivery is final; the stand-in receives it.
    before = int(httpx.get(f"{standin}/count").text)
    fields = EventRequestFieldsType0.from_dict({"plan": "pro", "amount": 99.99, "recurring": True})
    accepted = send_event.sync(
        client=client,
        body=EventRequest(category=name.upper(), description="New purchase completed", fields=fields),
        wait=10,
        idempotency_key=f"py-{uuid.uuid4()}",
    )
    check(isinstance(accepted, EventAccepted), f"send_event: {accepted!r}")
    assert isinstance(accepted, EventAccepted)
    check(accepted.message == "Event processed successfully", accepted.message)
    check(accepted.event_id.startswith("evt_"), accepted.event_id)
    check(accepted.delivery_status == DeliveryStatus.DELIVERED, f"{accepted.delivery_status!r}")
    after = int(httpx.get(f"{standin}/count").text)
    check(after == before + 1, f"stand-in received {after - before} messages")

    event = get_event.sync(accepted.event_id, client=client)
    check(isinstance(event, Event), f"get_event: {event!r}")
    assert isinstance(event, Event)
    check(event.category == name, event.category)
    check(event.fields.to_dict() == {"plan": "pro", "amount": 99.99, "recurring": True}, "fields")
    check(event.delivery_status == DeliveryStatus.DELIVERED, f"{event.delivery_status!r}")
    (delivery,) = event.deliveries
    check(delivery.provider == "discord", delivery.provider)
    check(delivery.status == DeliveryStatus.DELIVERED, f"{delivery.status!r}")
    check(delivery.attempts[0].http_status == 200, f"{delivery.attempts!r}")
    check(delivery.delivered_at is not None, "deliveredAt")

    page = list_events.sync(client=client, category=name.upper(), status=DeliveryStatus.DELIVERED)
    check(isinstance(page, EventPage), f"list_events: {page!r}")
    assert isinstance(page, EventPage)
    check([e.id for e in page.events] == [accepted.event_id], f"{page!r}")
    check(page.next_cursor is None, "nextCursor")
    quota = get_quota.sync(client=client)
    check(isinstance(quota, Quota) and quota.events_limit is None, f"get_quota: {quota!r}")

    # Typed error answers with their documented messages.
    missing = send_event.sync(client=client, body=EventRequest(category="no-such-category"))
    check(
        isinstance(missing, ErrorMessage)
        and missing.message == 'You dont have a category named "no-such-category"',
        f"404: {missing!r}",
    )
    invalid = send_event.sync(client=client, body=EventRequest(category="no spaces"))
    check(
        isinstance(invalid, ValidationFailure) and invalid.errors[0].path == "category",
        f"422: {invalid!r}",
    )
    anonymous = send_event.sync_detailed(
        client=Client(base_url=base), body=EventRequest(category=name)
    )
    check(anonymous.status_code == 401, f"401: {anonymous.status_code}")
    check(
        isinstance(anonymous.parsed, ErrorMessage) and anonymous.parsed.message == "Unauthorized",
        f"401: {anonymous.parsed!r}",
    )
    wrong_key = AuthenticatedClient(base_url=base, token="pk_unknown")
    check(
        getattr(get_category.sync(name, client=wrong_key), "message", None) == "Invalid API key",
        "401 for an unknown key",
    )
    print(f"python client: category {name}, event {accepted.event_id} delivered")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as failure:
        print(f"python client check failed: {failure}", file=sys.stderr)
        sys.exit(1)
