//! One client connection's socket as hyper sees it: read deadlines that depend on where the
//! connection is (waiting for a request, reading its headers, being answered), a deadline on a
//! client that stops reading, and hyper's own error answers rewritten as JSON.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Requests begun and answered on one connection, counted by the service and read by the
/// socket, which tells from them whether a request is being answered.
#[derive(Default)]
pub(super) struct Progress {
    started: AtomicU64,
    answered: AtomicU64,
}

impl Progress {
    pub(super) fn start(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn answer(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

/// Where the connection is, as far as reading goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Between requests: the next one must begin by the deadline.
    Idle,
    /// A request has begun: its headers must be complete by the deadline.
    Head,
    /// A request is being answered: its body has a deadline of its own (`GuardedBody`), and a
    /// slow handler is not the client's fault.
    Serving,
}

pub(super) struct GuardedIo<T> {
    inner: T,
    progress: Arc<Progress>,
    timeouts: Timeouts,
    reading: Reading,
    answered_seen: u64,
    read_deadline: Instant,
    read_timer: Pin<Box<Sleep>>,
    /// Armed while a write waits for the client to take bytes.
    write_timer: Option<Pin<Box<Sleep>>>,
    /// A rewritten error answer still to be written, and how much of it is.
    replacement: Option<(Vec<u8>, usize)>,
}

impl<T> GuardedIo<T> {
    /// A freshly accepted connection: the first request's headers are due within the header
    /// timeout of connecting.
    pub(super) fn new(inner: T, progress: Arc<Progress>, timeouts: Timeouts) -> Self {
        let deadline = Instant::now() + timeouts.header;
        Self {
            inner,
            progress,
            timeouts,
            reading: Reading::Head,
            answered_seen: 0,
            read_deadline: deadline,
            read_timer: Box::pin(tokio::time::sleep_until(deadline)),
            write_timer: None,
            replacement: None,
        }
    }

    /// Follows the service's counts: no read deadline while a request is answered, the idle
    /// deadline from the moment an answer is ready.
    fn follow_progress(&mut self) {
        let started = self.progress.started.load(Ordering::Relaxed);
        let answered = self.progress.answered.load(Ordering::Relaxed);
        if started > answered {
            self.reading = Reading::Serving;
        } else if self.reading == Reading::Serving || answered != self.answered_seen {
            self.reading = Reading::Idle;
            self.read_deadline = Instant::now() + self.timeouts.idle;
        }
        self.answered_seen = answered;
    }

    /// `Ready` with a timeout error once the current read deadline has passed.
    fn poll_read_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.reading == Reading::Serving {
            return Poll::Pending;
        }
        if self.read_timer.deadline() != self.read_deadline {
            self.read_timer.as_mut().reset(self.read_deadline);
        }
        ready!(self.read_timer.as_mut().poll(cx));
        let what = match self.reading {
            Reading::Idle => "idle connection closed (server.idle_timeout)",
            _ => "request headers not received in time (server.header_timeout)",
        };
        Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, what))
    }

    /// `Ready` with a timeout error when the client has taken no bytes for the idle timeout.
    fn poll_write_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let idle = self.timeouts.idle;
        let timer = self
            .write_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read nothing of the answer in time (server.idle_timeout)",
        ))
    }
}

impl<T: AsyncWrite + Unpin> GuardedIo<T> {
    /// Writes what is left of a rewritten answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = self.replacement.take() {
            if written == bytes.len() {
                break;
            }
            let polled = Pin::new(&mut self.inner).poll_write(cx, &bytes[written..]);
            match self.watched(cx, polled) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.replacement = Some((bytes, written + n)),
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {
                    self.replacement = Some((bytes, written));
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// A write's outcome, watched for a client that takes nothing: a write that goes on ends
    /// the wait, one that cannot goes on waiting, and fails once it has waited too long.
    fn watched<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.write_timer = None;
            return polled;
        }
        match self.poll_write_stall(cx) {
            Poll::Ready(err) => Poll::Ready(Err(err)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.follow_progress();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.reading == Reading::Idle && buf.filled().len() > before {
                    this.reading = Reading::Head;
                    this.read_deadline = Instant::now() + this.timeouts.header;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => match this.poll_read_deadline(cx) {
                Poll::Ready(err) => Poll::Ready(Err(err)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_replacement(cx))?;
        if let Some(replacement) = json_error_answer(buf) {
            // hyper's own answer to a request it could not parse: ours goes out instead, and
            // hyper, which closes the connection after it, is told its bytes were written.
            this.replacement = Some((replacement, 0));
            let _ = this.poll_replacement(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watched(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_replacement(cx))?;
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.watched(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_replacement(cx))?;
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watched(cx, polled)
    }
}

/// Statuses hyper answers by itself, without a body, when it cannot parse a request; the
/// relay's message for each.
const HYPER_ANSWERS: [(&str, &str); 3] = [
    (
        "400",
        "Bad request: this is not a valid HTTP/1.1 request (malformed request line or \
         headers, or conflicting Content-Length and Transfer-Encoding)",
    ),
    ("414", "URI too long"),
    (
        "431",
        "Request header fields too large: at most 16 KiB of headers and 100 header fields",
    ),
];

/// When `head` is one of hyper's bodiless error answers, the same answer with a JSON body.
fn json_error_answer(head: &[u8]) -> Option<Vec<u8>> {
    let status = head.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    let (code, message) = HYPER_ANSWERS
        .iter()
        .find(|(code, _)| code.as_bytes() == status)?;
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let headers = std::str::from_utf8(&head[..end]).ok()?;
    let bodiless = headers
        .split("\r\n")
        .any(|line| line.eq_ignore_ascii_case("content-length: 0"));
    if !bodiless || end + 4 != head.len() {
        return None;
    }
    let reason = headers.split("\r\n").next()?.get(13..).unwrap_or("");
    let body = serde_json::json!({ "message": message }).to_string();
    Some(
        format!(
            "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json; charset=utf-8\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_bodiless_errors_become_json() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 22:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(json_error_answer(head).expect("rewritten")).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("content-type: application/json; charset=utf-8"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("Request header fields")
        );
    }

    #[test]
    fn the_relays_own_answers_pass_untouched() {
        // A JSON 400 of the API, a 204, a partial write and a body chunk are not hyper's.
        let api = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 38\r\n\r\n{\"message\":\"Invalid JSON request body\"}";
        assert!(json_error_answer(api).is_none());
        assert!(json_error_answer(b"HTTP/1.1 204 No Content\r\n\r\n").is_none());
        assert!(json_error_answer(b"HTTP/1.1 400 Bad Request\r\ncontent-le").is_none());
        assert!(json_error_answer(b"{\"message\":\"x\"}").is_none());
    }
}
