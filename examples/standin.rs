//! A provider stand-in for benchmarks: answers Discord's and Telegram's send calls at once and
//! counts the messages. `GET /count` tells how many arrived.
//!
//! cargo run --release --example standin -- 127.0.0.1:9900

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use poem::web::{Data, Json};
use poem::{EndpointExt, Route, Server, get, handler, listener::TcpListener, post};
use serde_json::{Value, json};

#[handler]
fn dm_channel() -> Json<Value> {
    Json(json!({"id": "100000000000000001", "type": 1}))
}

#[handler]
fn message(count: Data<&Arc<AtomicU64>>) -> Json<Value> {
    count.fetch_add(1, Ordering::Relaxed);
    Json(json!({"id": "1"}))
}

#[handler]
fn telegram(count: Data<&Arc<AtomicU64>>) -> Json<Value> {
    count.fetch_add(1, Ordering::Relaxed);
    Json(json!({"ok": true, "result": {"message_id": 1}}))
}

#[handler]
fn read_count(count: Data<&Arc<AtomicU64>>) -> String {
    count.load(Ordering::Relaxed).to_string()
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9900".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let counter = Arc::new(AtomicU64::new(0));
    let app = Route::new()
        .at("/users/@me/channels", post(dm_channel))
        .at("/channels/:id/messages", post(message))
        .at("/:bot/sendMessage", post(telegram))
        .at("/count", get(read_count))
        .data(counter);
    Server::new(TcpListener::bind(address)).run(app).await
}
