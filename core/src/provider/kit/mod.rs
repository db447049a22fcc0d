//! What providers share, so a provider crate stays short and every channel behaves alike.

pub mod http;
pub mod outcome;
pub mod pacer;
pub mod secret;
pub mod target;
#[cfg(feature = "samples")]
pub mod testing;
pub mod text;
