//! The provider against a small SMTP stand-in on 127.0.0.1, spoken to over TCP by `lettre` as
//! it would speak to a real server. (openapi/check.sh also sends through aiosmtpd.)

use std::sync::{Arc, Mutex};

use pingpilot_core::provider::kit::testing::{TestChannel, build, registration, sale};
use pingpilot_core::provider::{DeliveryOutcome, Provider};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::*;

/// One message the stand-in took.
#[derive(Debug, Clone)]
struct Received {
    from: String,
    to: Vec<String>,
    data: String,
}

/// Answers every command; a recipient `rNNN@…` is answered with SMTP code NNN.
struct SmtpStandIn {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl SmtpStandIn {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, store.clone()));
            }
        });
        Self { port, received }
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

async fn session(stream: tokio::net::TcpStream, store: Arc<Mutex<Vec<Received>>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut reply = async |text: &str| write.write_all(text.as_bytes()).await.is_ok();
    if !reply("220 standin ESMTP\r\n").await {
        return;
    }
    let (mut from, mut to) = (String::new(), Vec::new());
    while let Ok(Some(line)) = lines.next_line().await {
        let upper = line.to_ascii_uppercase();
        let answer = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            "250-standin\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n".to_string()
        } else if upper.starts_with("MAIL FROM:") {
            from = line[10..].trim().to_string();
            "250 2.1.0 Ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let address = line[8..].trim().trim_matches(['<', '>']).to_string();
            match address.strip_prefix('r').and_then(|rest| rest.get(..3)) {
                Some(code) if code.bytes().all(|b| b.is_ascii_digit()) => {
                    format!("{code} 5.1.1 <{address}>: refused by the stand-in\r\n")
                }
                _ => {
                    to.push(address);
                    "250 2.1.5 Ok\r\n".into()
                }
            }
        } else if upper == "DATA" {
            if !reply("354 End data with <CR><LF>.<CR><LF>\r\n").await {
                return;
            }
            let mut data = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if line == "." {
                    break;
                }
                data.push_str(&line);
                data.push('\n');
            }
            store.lock().expect("lock").push(Received {
                from: std::mem::take(&mut from),
                to: std::mem::take(&mut to),
                data,
            });
            "250 2.0.0 Ok: queued\r\n".into()
        } else if upper == "QUIT" {
            let _ = reply("221 2.0.0 Bye\r\n").await;
            return;
        } else {
            // RSET, NOOP
            "250 2.0.0 Ok\r\n".into()
        };
        if !reply(&answer).await {
            return;
        }
    }
}

fn provider(smtp: &SmtpStandIn) -> Arc<dyn Provider> {
    build(
        ID,
        &format!(
            "smtp_url = \"{}\"\nfrom = \"PingPilot <alerts@example.test>\"",
            smtp.url()
        ),
    )
    .expect("builds")
}

fn to(address: &str) -> TestChannel {
    TestChannel::with_fields(&[(NOTIFICATION_EMAIL, address)])
}

#[test]
fn registers_off_for_older_accounts() {
    let reg = registration(ID);
    assert_eq!((reg.order, reg.on_for_older_accounts), (50, false));
    assert_eq!(reg.account_fields[0].name, "notificationEmail");
}

#[tokio::test]
async fn sends_a_multipart_message_through_smtp() {
    let smtp = SmtpStandIn::start().await;
    let outcome = to("ann@example.com")
        .deliver(&*provider(&smtp), &sale())
        .await;
    assert_eq!(outcome, DeliveryOutcome::Delivered { http_status: None });
    let received = smtp.received();
    assert_eq!(received.len(), 1);
    let mail = &received[0];
    assert_eq!(mail.from, "<alerts@example.test>");
    assert_eq!(mail.to, ["ann@example.com"]);
    for part in [
        "From: PingPilot <alerts@example.test>",
        "To: ann@example.com",
        "Content-Type: multipart/alternative",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Type: text/html; charset=utf-8",
    ] {
        assert!(mail.data.contains(part), "{part} in:\n{}", mail.data);
    }
    // The subject is encoded for the emoji (RFC 2047).
    assert!(mail.data.contains("Subject: =?utf-8?"), "{}", mail.data);
}

#[tokio::test]
async fn a_4xx_answer_retries_and_a_5xx_answer_fails() {
    let smtp = SmtpStandIn::start().await;
    let provider = provider(&smtp);
    match to("r452@example.com").deliver(&*provider, &sale()).await {
        DeliveryOutcome::Retry { error, .. } => assert!(error.contains("452"), "{error}"),
        other => panic!("unexpected {other:?}"),
    }
    match to("r550@example.com").deliver(&*provider, &sale()).await {
        DeliveryOutcome::Failed { error, .. } => assert!(error.contains("550"), "{error}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(smtp.received().is_empty());
}

#[tokio::test]
async fn an_unreachable_server_is_retried() {
    // Nothing listens on a port just freed.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let provider = build(
        ID,
        &format!("smtp_url = \"smtp://127.0.0.1:{port}\"\nfrom = \"a@example.test\""),
    )
    .expect("builds");
    let outcome = to("ann@example.com").deliver(&*provider, &sale()).await;
    assert!(
        matches!(outcome, DeliveryOutcome::Retry { .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn without_a_server_and_sender_deliveries_wait() {
    let provider = build(ID, "").expect("builds");
    assert!(provider.not_configured().is_some());
    let outcome = to("ann@example.com").deliver(&*provider, &sale()).await;
    assert!(
        matches!(outcome, DeliveryOutcome::Wait { .. }),
        "{outcome:?}"
    );
    for (toml, setting) in [
        (
            "smtp_url = \"smtp://h\"\nfrom = \"not a sender\"",
            "providers.email.from",
        ),
        (
            "smtp_url = \"nonsense\"\nfrom = \"a@b.c\"",
            "providers.email.smtp_url",
        ),
        (
            "smtp_url = \"smtp://h\"\nfrom = \"a@b.c\"\nusername = \"u\"",
            "providers.email.username",
        ),
    ] {
        let err = build(ID, toml).err().expect("refused");
        assert!(err.to_string().contains(setting), "{err}");
    }
    // The URL may hold a password: an error never shows it.
    let err = build(ID, "smtp_url = \"ftp://u:hunter2@h\"\nfrom = \"a@b.c\"")
        .err()
        .expect("refused");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn addresses_subjects_and_bodies() {
    assert_eq!(
        normalize_address(" ann@example.com "),
        Ok("ann@example.com".into())
    );
    assert!(normalize_address("ann").is_err());
    assert!(normalize_address("ann@").is_err());
    let mut message = sale();
    assert_eq!(subject(&message), "💰 Sale: New purchase completed");
    message.description = "line one\nline two ".repeat(40);
    let long = subject(&message);
    assert_eq!(long.chars().count(), 150);
    assert!(!long.contains('\n') && long.ends_with('…'));
    let text = plain(&sale());
    assert_eq!(
        text,
        "💰 Sale\nNew purchase completed\n\nplan: pro\namount: 99.99\nrecurring: true\n\n\
         2024-01-02T03:04:05.000Z · evt_01JJ5Q7Y2K8D4M6N3P9R0S1T2V\n"
    );
    message.description = "<script>alert('x')</script> & more".into();
    let page = html(&message);
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"));
    assert!(!page.contains("<script>"));
    assert!(page.contains("border-left:4px solid #FFAA00"));
}
