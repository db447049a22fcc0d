//! A request body with limits: a deadline, so a client that starts a request and then trickles
//! its body (or stops) gets a read error after `server.body_timeout` instead of holding the
//! connection; and a size, so that no handler (the API's or the dashboard's forms) ever reads
//! more than [`MAX_BODY_BYTES`] into memory. The error comes from the read, so each handler
//! still answers in its own order (the API's 401 before its 413).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The most any request body may carry.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why a body read failed: [`body_failure`] tells these apart from other I/O errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyFailure {
    #[error("request body not received within server.body_timeout")]
    TimedOut,
    #[error("request body larger than 64 KiB")]
    TooLarge,
}

/// The limit a failed body read ran into, if that is why it failed.
pub fn body_failure(err: &io::Error) -> Option<BodyFailure> {
    err.get_ref()?.downcast_ref::<BodyFailure>().copied()
}

pub(super) struct GuardedBody<B> {
    inner: B,
    deadline: Instant,
    /// Made only when the body is not all there at once: most bodies arrive with their headers.
    timer: Option<Pin<Box<Sleep>>>,
    /// Bytes that may still come.
    room: usize,
}

impl<B> GuardedBody<B> {
    pub(super) fn new(inner: B, deadline: Instant) -> Self {
        Self {
            inner,
            deadline,
            timer: None,
            room: MAX_BODY_BYTES,
        }
    }

    fn fail(failure: BodyFailure) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let kind = match failure {
            BodyFailure::TimedOut => io::ErrorKind::TimedOut,
            BodyFailure::TooLarge => io::ErrorKind::InvalidData,
        };
        Poll::Ready(Some(Err(io::Error::new(kind, failure))))
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes, Error = io::Error> + Unpin,
{
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let size = frame.data_ref().map_or(0, Bytes::len);
                if size > this.room {
                    return Self::fail(BodyFailure::TooLarge);
                }
                this.room -= size;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Self::fail(BodyFailure::TimedOut),
                    Poll::Pending => Poll::Pending,
                }
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    use super::*;

    /// A body whose frames a test sends one by one.
    struct Trickle(mpsc::Receiver<Bytes>);

    impl Body for Trickle {
        type Data = Bytes;
        type Error = io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
        }
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_fails_at_its_deadline() {
        let (tx, rx) = mpsc::channel(1);
        let deadline = Instant::now() + Duration::from_millis(300);
        let mut body = GuardedBody::new(Trickle(rx), deadline);
        tx.send(Bytes::from_static(b"{\"cat")).await.unwrap();
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"{\"cat"));
        let err = body.frame().await.expect("an error").unwrap_err();
        assert_eq!(body_failure(&err), Some(BodyFailure::TimedOut), "{err}");
        assert!(Instant::now() >= deadline);
        drop(tx);
    }

    #[tokio::test]
    async fn a_body_past_the_size_limit_fails_where_it_crosses_it() {
        let (tx, rx) = mpsc::channel(3);
        let mut body = GuardedBody::new(Trickle(rx), Instant::now() + Duration::from_secs(30));
        tx.send(Bytes::from(vec![b'a'; MAX_BODY_BYTES - 1]))
            .await
            .unwrap();
        tx.send(Bytes::from_static(b"b")).await.unwrap();
        tx.send(Bytes::from_static(b"c")).await.unwrap();
        assert!(body.frame().await.expect("frame").is_ok());
        assert!(body.frame().await.expect("the last byte that fits").is_ok());
        let err = body.frame().await.expect("an error").unwrap_err();
        assert_eq!(body_failure(&err), Some(BodyFailure::TooLarge), "{err}");
    }

    #[tokio::test]
    async fn a_body_that_arrives_in_time_is_read_whole() {
        let (tx, rx) = mpsc::channel(2);
        let body = GuardedBody::new(Trickle(rx), Instant::now() + Duration::from_secs(30));
        tx.send(Bytes::from_static(b"{}")).await.unwrap();
        drop(tx);
        let bytes = body.collect().await.expect("whole body").to_bytes();
        assert_eq!(bytes, Bytes::from_static(b"{}"));
    }
}
