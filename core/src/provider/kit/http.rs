//! What every channel that speaks HTTP needs: the text of a failed request, and the pause a
//! `Retry-After` header asks for.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// A failed request's error with its causes (`error sending request: connection refused`),
/// without the URL: a webhook URL is a secret of its own, and the text is stored per attempt.
pub fn error_text(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The start of an answer's body as text, for an attempt's error: at most `max_chars`
/// characters, trimmed and cut with "…". At most 16 KiB are read, however much the other side
/// sends (a receiver that answers with gigabytes costs nothing), and an unreadable body is none.
pub async fn answer_snippet(mut response: reqwest::Response, max_chars: usize) -> String {
    const MAX_BYTES: usize = 16 * 1024;
    let mut body = Vec::new();
    while body.len() < MAX_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_BYTES);
    let text = String::from_utf8_lossy(&body);
    super::text::cut(text.trim(), max_chars)
}

/// The pause a `Retry-After` value asks for at `now`: seconds (fractions allowed, as Discord
/// sends them) or an HTTP date. `None` when it is unreadable; a date in the past is no pause.
pub fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// The pause asked for by a response's `Retry-After` header, if it has a readable one.
pub fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    retry_after(value, Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 1.5 ", now), Some(Duration::from_millis(1500)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("-3", now), None);
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("", now), None);
    }
}
