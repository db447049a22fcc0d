//! Black-box tests: the real relay over TCP, Discord and Telegram played by wiremock.

mod account_api;
mod categories_api;
mod channels;
mod cli;
mod dashboard;
mod delivery;
mod engine;
mod events_api;
mod faults;
mod helpers;
mod intake;
mod openapi;
mod operations;
mod otel;
mod schema;
mod server;
mod telegram_link;
