//! Black-box tests: the real relay over TCP, Discord and Telegram played by wiremock.

mod cli;
mod delivery;
mod helpers;
mod intake;
