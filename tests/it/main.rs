//! Black-box tests: the real relay over TCP, Discord and Telegram played by wiremock.

mod helpers;
mod intake;
