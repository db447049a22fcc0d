//! The HTTP server: accepts connections up to a limit, serves HTTP/1.1 on each with the relay's
//! timeouts, answers what hyper rejects as JSON, and stops gracefully.
//!
//! HTTP/1.1 only: nothing the relay serves needs cleartext HTTP/2 (browsers speak HTTP/2 only
//! over TLS, which a proxy in front terminates), and one request per connection at a time keeps
//! the memory a client can pin small and easy to state.

mod body;
mod client;
mod io;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use pingpilot_config::Settings;
use poem::endpoint::BoxEndpoint;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, Response};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use body::GuardedBody;
pub use body::{BodyFailure, MAX_BODY_BYTES, body_failure};
pub use client::client_address;
use io::{GuardedIo, Progress, Timeouts};

use crate::throttled::Throttled;

/// The body type poem's requests and responses carry.
type BoxBody = http_body_util::combinators::BoxBody<bytes::Bytes, std::io::Error>;

/// The endpoint a server answers with.
pub type App = Arc<BoxEndpoint<'static, Response>>;

/// Largest request head (request line and headers) read into memory; larger ones get 431.
/// Node's limit too; ours are a few hundred bytes.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Connections the default limit never goes past, whatever the open-file limit.
const MAX_DEFAULT_CONNECTIONS: usize = 4096;
/// Open files kept for everything but client connections beyond the database and deliveries:
/// standard streams, the listeners, the log, DNS, provider clients' pools.
const RESERVED_FILES: u64 = 96;

/// How many connections a server takes at once and how long it waits for clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    pub shutdown_grace: Duration,
}

impl Limits {
    /// The public server's limits: the settings, with `server.max_connections` derived from the
    /// open-file limit when unset.
    pub fn from_settings(settings: &Settings) -> Self {
        let server = &settings.server;
        Self {
            max_connections: server
                .max_connections
                .unwrap_or_else(|| default_max_connections(settings, open_file_limit())),
            header_timeout: server.header_timeout.get(),
            idle_timeout: server.idle_timeout.get(),
            body_timeout: server.body_timeout.get(),
            shutdown_grace: server.shutdown_grace.get(),
        }
    }

    /// The same timeouts with room for `connections` connections.
    pub fn with_max_connections(self, connections: usize) -> Self {
        Self {
            max_connections: connections,
            ..self
        }
    }
}

/// Client connections the open-file limit leaves room for once the database's connections
/// (three files each on SQLite: the database, its WAL and its index), outgoing deliveries and
/// the process's own files are counted; at least 16, at most 4096.
fn default_max_connections(settings: &Settings, open_files: Option<u64>) -> usize {
    let database = 3 * (u64::from(settings.database.max_connections) + 3);
    let deliveries = u64::from(settings.delivery.concurrency);
    let reserved = RESERVED_FILES + database + deliveries;
    let room = open_files.unwrap_or(1024).saturating_sub(reserved);
    usize::try_from(room)
        .unwrap_or(usize::MAX)
        .clamp(16, MAX_DEFAULT_CONNECTIONS)
}

/// The soft limit on open files, when the system has one.
#[cfg(target_os = "linux")]
fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given, which lives for the call.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    ok.then_some(limit.rlim_cur)
}

#[cfg(not(target_os = "linux"))]
fn open_file_limit() -> Option<u64> {
    None
}

/// Raises this process's soft open-file limit to its hard limit (distributions often start
/// services at 1024 soft, far below the hard limit); returns the limit now in force.
#[cfg(target_os = "linux")]
pub fn raise_open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return Some(raised.rlim_cur);
            }
            tracing::warn!(
                soft = limit.rlim_cur,
                hard = limit.rlim_max,
                error = %std::io::Error::last_os_error(),
                "could not raise the open-file limit"
            );
        }
    }
    Some(limit.rlim_cur)
}

#[cfg(not(target_os = "linux"))]
pub fn raise_open_file_limit() -> Option<u64> {
    None
}

/// Connections the system queues for a listener until they are accepted. The standard library's
/// 128 overflows under a burst of connections while the limit holds them back.
const LISTEN_BACKLOG: u32 = 1024;

/// A listener on `address`, with room in the system's queue for connections past the limit.
pub fn bind(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `app` on `listener` until `shutdown` turns true; then stops accepting, lets the
/// requests in flight finish within the grace period and returns.
pub async fn run(
    listener: TcpListener,
    app: App,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, close) = watch::channel(false);
    let mut connections = JoinSet::new();
    let full_log = Throttled::every(Duration::from_secs(10));
    let mut accept_failures = AcceptBackoff::default();
    loop {
        while connections.try_join_next().is_some() {}
        if permits.available_permits() == 0
            && let Some(repeats) = full_log.ready()
        {
            tracing::warn!(
                max_connections = limits.max_connections,
                repeats,
                "connection limit reached: new connections wait until one closes \
                 (server.max_connections)"
            );
        }
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit,
            _ = turned_true(&mut shutdown) => break,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = turned_true(&mut shutdown) => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                accept_failures.succeeded();
                let connection = Connection {
                    app: app.clone(),
                    limits,
                    local: LocalAddr(poem::Addr::SocketAddr(local)),
                    remote: RemoteAddr(poem::Addr::SocketAddr(peer)),
                };
                let close = close.clone();
                connections.spawn(async move {
                    connection.serve(stream, close).await;
                    drop(permit);
                });
            }
            Err(err) => accept_failures.failed(&err).await,
        }
    }
    drop(listener);
    let _ = closing.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
    Ok(())
}

/// Resolves once the flag is true (or its sender is gone).
async fn turned_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|on| *on).await;
}

/// What failing `accept` calls do: a connection cut before it was accepted is skipped, a lack of
/// resources (no file descriptors, no memory) waits before the next try, longer each time up to
/// a second, and either is logged once every ten seconds at most.
struct AcceptBackoff {
    delay: Duration,
    log: Throttled,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            log: Throttled::every(Duration::from_secs(10)),
        }
    }
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MOST: Duration = Duration::from_secs(1);

    fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
    }

    async fn failed(&mut self, err: &std::io::Error) {
        use std::io::ErrorKind;
        let skipped = matches!(
            err.kind(),
            ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
        );
        if skipped {
            tracing::debug!(error = %err, "a connection closed before it was accepted");
            return;
        }
        self.delay = (self.delay * 2).clamp(Self::FIRST, Self::MOST);
        if let Some(repeats) = self.log.ready() {
            tracing::error!(
                error = %err,
                repeats,
                retry_in_ms = self.delay.as_millis() as u64,
                "cannot accept connections"
            );
        }
        tokio::time::sleep(self.delay).await;
    }
}

/// One accepted connection and what it serves.
struct Connection {
    app: App,
    limits: Limits,
    local: LocalAddr,
    remote: RemoteAddr,
}

impl Connection {
    async fn serve(self, stream: TcpStream, mut close: watch::Receiver<bool>) {
        let progress = Arc::new(Progress::default());
        let timeouts = Timeouts {
            header: self.limits.header_timeout,
            idle: self.limits.idle_timeout,
        };
        let io = TokioIo::new(GuardedIo::new(stream, progress.clone(), timeouts));
        let this = Arc::new(self);
        let service = hyper::service::service_fn(move |request| {
            progress.start();
            let (this, progress) = (this.clone(), progress.clone());
            async move {
                let response = this.answer(request).await;
                progress.answer();
                Ok::<_, Infallible>(response)
            }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        // hyper's header timer runs from the end of one answer to the next request's headers:
        // set to the idle timeout, it closes idle connections, and it has hyper look at the
        // socket right after each answer, where `GuardedIo` starts the idle deadline. The
        // stricter header timeout from a request's first byte is `GuardedIo`'s.
        http.timer(TokioTimer::new())
            .header_read_timeout(timeouts.idle)
            .keep_alive(true)
            // A client that shuts its side after sending (or hangs up) still has its request
            // carried out: the key is checked before the body is read, and an EOF seen
            // meanwhile must not cancel an event that was sent whole.
            .half_close(true)
            .max_buf_size(MAX_HEAD_BYTES)
            .max_header_size(MAX_HEAD_BYTES)
            // One buffer per answer, so that an answer hyper writes on its own arrives whole
            // and can be rewritten as JSON (`io.rs`).
            .writev(false);
        let connection = http.serve_connection(io, service);
        tokio::pin!(connection);
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            _ = turned_true(&mut close) => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(err) = ended {
            // Clients that time out, go away or send garbage: routine, and a flood of them
            // must not flood the log.
            tracing::debug!(error = %err, "connection ended with an error");
        }
    }

    async fn answer(&self, request: http::Request<Incoming>) -> hyper::Response<BoxBody> {
        let deadline = Instant::now() + self.limits.body_timeout;
        let mut request = poem::Request::from((
            request,
            self.local.clone(),
            self.remote.clone(),
            http::uri::Scheme::HTTP,
        ));
        let body = BoxBody::from(request.take_body());
        let body = if body.is_end_stream() {
            body
        } else {
            BoxBody::new(GuardedBody::new(body, deadline))
        };
        request.set_body(poem::Body::from(body));
        self.app.get_response(request).await.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_connection_limit_leaves_room_for_other_files() {
        let settings = Settings::default();
        // 8 readers: 3 × 11 files; 32 deliveries; 96 others.
        assert_eq!(default_max_connections(&settings, Some(1024)), 863);
        assert_eq!(default_max_connections(&settings, Some(100)), 16);
        assert_eq!(default_max_connections(&settings, Some(1 << 20)), 4096);
        assert_eq!(default_max_connections(&settings, None), 863);
    }
}
