//! A request body with a deadline: a client that starts a request and then trickles its body
//! (or stops) gets a read error after `server.body_timeout` instead of holding the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The error a body read gives once the deadline has passed; [`is_body_timeout`] tells it apart.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within server.body_timeout")]
pub struct BodyTimedOut;

/// Whether a body read failed because the body did not arrive in time.
pub fn is_body_timeout(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|inner| inner.is::<BodyTimedOut>())
}

pub(super) struct TimedBody<B> {
    inner: B,
    deadline: Instant,
    /// Made only when the body is not all there at once: most bodies arrive with their headers.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> TimedBody<B> {
    pub(super) fn new(inner: B, deadline: Instant) -> Self {
        Self {
            inner,
            deadline,
            timer: None,
        }
    }
}

impl<B> Body for TimedBody<B>
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
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        BodyTimedOut,
                    )))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => ready,
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
        let mut body = TimedBody::new(Trickle(rx), deadline);
        tx.send(Bytes::from_static(b"{\"cat")).await.unwrap();
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"{\"cat"));
        let err = body.frame().await.expect("an error").unwrap_err();
        assert!(is_body_timeout(&err), "{err}");
        assert!(Instant::now() >= deadline);
        drop(tx);
    }

    #[tokio::test]
    async fn a_body_that_arrives_in_time_is_read_whole() {
        let (tx, rx) = mpsc::channel(2);
        let body = TimedBody::new(Trickle(rx), Instant::now() + Duration::from_secs(30));
        tx.send(Bytes::from_static(b"{}")).await.unwrap();
        drop(tx);
        let bytes = body.collect().await.expect("whole body").to_bytes();
        assert_eq!(bytes, Bytes::from_static(b"{}"));
    }
}
