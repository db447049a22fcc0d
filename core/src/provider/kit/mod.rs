//! What providers share, so a provider crate stays short and every channel behaves alike.

pub mod outcome;
pub mod pacer;
pub mod secret;
pub mod text;
