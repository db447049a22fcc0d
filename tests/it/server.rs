//! The HTTP server under hostile clients: idle, slow and oversized connections, bodies that
//! never come, bad keys with big bodies, unparsable requests, more connections than files.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Short timeouts, so that waiting for them takes a test a second or two.
const QUICK_TIMEOUTS: &str = r#"
[server]
header_timeout = "1s"
idle_timeout = "2s"
body_timeout = "1s"
"#;

async fn connect(relay: &Relay) -> TcpStream {
    TcpStream::connect(relay.base.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Reads until the relay closes the connection (or `limit` passes); what it sent and when it
/// closed. `None` when it was still open at the limit.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&received).into_owned(),
                    Some(started.elapsed()),
                );
            }
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&received).into_owned(), None),
        }
    }
}

/// The status and JSON body of the first answer in `text`.
fn answer(text: &str) -> (u16, Value) {
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head[9..12].parse().expect("status");
    let length: usize = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_string)
        })
        .expect("content-length")
        .trim()
        .parse()
        .expect("length");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    (
        status,
        serde_json::from_str(&body[..length]).expect("JSON body"),
    )
}

#[tokio::test]
async fn a_client_that_sends_no_request_is_disconnected_after_the_header_timeout() {
    let relay = Relay::start_with(QUICK_TIMEOUTS, true).await;
    let mut silent = connect(&relay).await;
    let (sent, closed) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    let closed = closed.expect("the silent connection is closed");
    assert!(closed >= Duration::from_millis(900), "{closed:?}");
    assert!(closed < Duration::from_secs(3), "{closed:?}");
    assert_eq!(
        sent, "",
        "nothing is answered to a client that asked nothing"
    );
    relay.stop().await;
}

#[tokio::test]
async fn headers_trickled_a_byte_at_a_time_do_not_keep_a_connection() {
    let relay = Relay::start_with(QUICK_TIMEOUTS, true).await;
    let mut slow = connect(&relay).await;
    let started = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut_after = None;
    for byte in head {
        if slow.write_all(&[*byte]).await.is_err() {
            cut_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut probe = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await
        {
            cut_after = Some(started.elapsed());
            break;
        }
    }
    let cut_after = cut_after.expect("the slow client is cut off before it finishes");
    assert!(cut_after < Duration::from_secs(3), "{cut_after:?}");
    relay.stop().await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let relay = Relay::start_with(QUICK_TIMEOUTS, true).await;
    let mut stream = connect(&relay).await;
    // Requests every half second keep it open well past both timeouts...
    for _ in 0..6 {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.expect("answer");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // ...then silence: closed after the idle timeout (2 s), not the header timeout (1 s).
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(6)).await;
    let closed = closed.expect("the idle connection is closed");
    assert!(closed >= Duration::from_millis(1400), "{closed:?}");
    assert!(closed < Duration::from_secs(4), "{closed:?}");
    relay.stop().await;
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408() {
    let relay = Relay::start_with(QUICK_TIMEOUTS, true).await;
    let key = relay.ready_account().await;
    let mut stream = connect(&relay).await;
    let head = format!(
        "POST /api/v1/event HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"category\""
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let (text, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(
        closed.is_some(),
        "the connection is closed after the answer"
    );
    let (status, body) = answer(&text);
    assert_eq!(status, 408);
    assert_eq!(
        body,
        json!({"message": "Request body not received in time"})
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_bad_key_is_answered_from_the_headers_before_any_body_arrives() {
    // The body timeout is long: an answer within a second cannot come from it.
    let relay = Relay::start_with("[server]\nbody_timeout = \"30s\"\n", true).await;
    let key = relay.ready_account().await;
    for (authorization, message) in [
        ("Bearer pk_not_a_key", "Invalid API key"),
        (
            "Basic eDp5",
            "Invalid auth header format. Expected: 'Bearer [API_KEY]'",
        ),
    ] {
        let mut stream = connect(&relay).await;
        let head = format!(
            "POST /api/v1/event HTTP/1.1\r\nHost: relay\r\nAuthorization: {authorization}\r\n\
             Content-Type: application/json\r\nContent-Length: 65536\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        let (text, _) = read_until_closed(&mut stream, Duration::from_secs(1)).await;
        let (status, body) = answer(&text);
        assert_eq!(status, 401);
        assert_eq!(body, json!({ "message": message }));
    }
    // The same request with a good key waits for its body (and then answers 200).
    let mut stream = connect(&relay).await;
    let event = sale_event().to_string();
    let head = format!(
        "POST /api/v1/event HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        event.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let (early, closed) = read_until_closed(&mut stream, Duration::from_millis(500)).await;
    assert_eq!(
        (early.as_str(), closed),
        ("", None),
        "nothing before the body"
    );
    stream.write_all(event.as_bytes()).await.expect("body");
    let (text, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let (status, body) = answer(&text);
    assert_eq!(status, 200, "{body}");
    relay.stop().await;
}

#[tokio::test]
async fn requests_the_http_layer_rejects_are_answered_as_json() {
    let relay = Relay::start().await;
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: relay\r\n{}\r\n",
        (0..120)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let cases = [
        (huge_header, 431, "Request header fields too large"),
        (many_headers, 431, "Request header fields too large"),
        (
            "POST /api/v1/event HTTP/1.1\r\nHost: relay\r\nContent-Length: 5\r\n\
             Content-Length: 6\r\n\r\nhello"
                .to_string(),
            400,
            "Bad request",
        ),
        (
            "GET /he lthz HTTP/1.1\r\nHost: relay\r\n\r\n".to_string(),
            400,
            "Bad request",
        ),
    ];
    for (request, expected_status, expected_start) in cases {
        let mut stream = connect(&relay).await;
        // The relay may answer and close before it has read all of a huge request.
        let _ = stream.write_all(request.as_bytes()).await;
        let (text, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
        assert!(closed.is_some(), "closed after the error: {text:?}");
        let (status, body) = answer(&text);
        assert_eq!(status, expected_status, "{text}");
        let message = body["message"].as_str().expect("message");
        assert!(message.starts_with(expected_start), "{message}");
        assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
    }
    relay.stop().await;
}

#[tokio::test]
async fn cleartext_http2_is_not_served() {
    let relay = Relay::start().await;
    let mut stream = connect(&relay).await;
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    let (text, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "the connection is closed");
    assert_eq!(text, "", "no HTTP/2 SETTINGS frame");
    relay.stop().await;
}

#[tokio::test]
async fn connections_past_the_limit_wait_until_one_closes() {
    let relay = Relay::start_with(
        "[server]\nmax_connections = 2\nheader_timeout = \"1s\"\nidle_timeout = \"1s\"\n",
        true,
    )
    .await;
    let _first = connect(&relay).await;
    let _second = connect(&relay).await;
    // The two idle connections take both places: a third waits...
    let started = Instant::now();
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let health = fresh.get(format!("{}/healthz", relay.base)).send();
    let response = tokio::time::timeout(Duration::from_secs(5), health)
        .await
        .expect("answered once the idle ones are cut off")
        .expect("response");
    assert_eq!(response.status(), 200);
    // ...until the header timeout frees a place.
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(700), "{waited:?}");
    relay.stop().await;
}

/// Opens `count` connections to `address` that send nothing; those the relay closes are dropped
/// by the kernel, the others stay open as long as the returned streams.
async fn idle_connections(address: &str, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(address)).await {
            Ok(Ok(stream)) => streams.push(stream),
            _ => break,
        }
    }
    streams
}

/// The outside audit's attack: a relay limited to 1,024 open files, 1,100 idle connections.
/// `/healthz` answers again once the header timeout cuts them off, and the relay does not spin
/// meanwhile.
async fn survives_more_idle_connections_than_files(extra: &str) -> RelayProcess {
    let dir = tempfile::TempDir::new().expect("dir");
    let database = TestDatabase::create(dir.path()).await;
    let config = dir.path().join("pingpilot.toml");
    // Long enough for all 1,100 to be open at once before the first is cut off.
    let sections = format!("[server]\nheader_timeout = \"5s\"\n{extra}\n");
    std::fs::write(&config, config_toml(&database.url, "", &sections)).expect("config");
    let relay = RelayProcess::spawn_with(&config, Some(1024), &[]).await;
    let connections = idle_connections(relay.address(), 1100).await;
    assert_eq!(
        connections.len(),
        1100,
        "the kernel queues what is not accepted"
    );
    let cpu_before = relay.cpu_time();
    let started = Instant::now();
    let client = reqwest::Client::new();
    let health = client.get(format!("{}/healthz", relay.base)).send();
    let response = tokio::time::timeout(Duration::from_secs(60), health)
        .await
        .expect("healthz answers within a minute")
        .expect("response");
    assert_eq!(response.status(), 200);
    let took = started.elapsed();
    let cpu = relay.cpu_time() - cpu_before;
    assert!(
        cpu < took.mul_f64(0.3) + Duration::from_millis(200),
        "the relay used {cpu:?} of CPU in {took:?}"
    );
    drop(connections);
    database.remove().await;
    relay
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_idle_connections_than_open_files_only_delay_the_next_client() {
    let relay = survives_more_idle_connections_than_files("").await;
    // Under the derived limit the relay never runs out of files, so it never fails to accept.
    assert_eq!(
        relay.log_lines("cannot accept connections"),
        Vec::<String>::new()
    );
    assert_eq!(relay.log_lines("connection limit reached").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_files_backs_off_and_logs_once() {
    // A limit set above the open-file limit: `accept` itself fails with "too many open files".
    let relay = survives_more_idle_connections_than_files("max_connections = 5000").await;
    let failures = relay.log_lines("cannot accept connections");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("Too many open files"), "{failures:?}");
}

#[tokio::test]
async fn secrets_in_paths_never_reach_the_log() {
    let dir = tempfile::TempDir::new().expect("dir");
    let database = TestDatabase::create(dir.path()).await;
    let config = dir.path().join("pingpilot.toml");
    std::fs::write(&config, config_toml(&database.url, "", "")).expect("config");
    let relay = RelayProcess::spawn(&config).await;
    let token = "Zq8secretSignInLinkToken0000000000000000000";
    let client = reqwest::Client::new();
    for path in [
        format!("/dashboard/login/{token}"),
        format!("/dashboard/login/{token}/more"),
    ] {
        let response = client
            .get(format!("{}{path}", relay.base))
            .send()
            .await
            .expect("request");
        assert!(response.status().as_u16() < 500);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay.log_lines("/dashboard/login/[redacted]").len() < 2 {
        assert!(Instant::now() < deadline, "the requests are logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(relay.log_lines(token), Vec::<String>::new());
    assert_eq!(relay.log_lines("secretSignIn"), Vec::<String>::new());
    drop(relay);
    database.remove().await;
}

#[tokio::test]
async fn no_body_is_read_past_64_kib_wherever_it_goes() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    // A chunked event body (no length declared) and a dashboard form declaring 10 MB: each is
    // answered once 64 KiB have come, long before the rest would.
    let chunk = format!("10000\r\n{}\r\n", "a".repeat(0x10000));
    let cases = [
        (
            format!(
                "POST /api/v1/event HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer {key}\r\n\
                 Transfer-Encoding: chunked\r\n\r\n{chunk}{chunk}"
            ),
            413,
        ),
        (
            format!(
                "POST /dashboard/login HTTP/1.1\r\nHost: relay\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\n\
                 Content-Length: 10000000\r\n\r\napi_key={}",
                "a".repeat(100 * 1024)
            ),
            400,
        ),
    ];
    for (request, expected) in cases {
        let mut stream = connect(&relay).await;
        let _ = stream.write_all(request.as_bytes()).await;
        let (text, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
        assert!(
            closed.is_some(),
            "answered and closed without the rest: {text:?}"
        );
        let status: u16 = text[9..12].parse().expect("status");
        assert_eq!(status, expected, "{text}");
    }
    relay.stop().await;
}
