//! Group coordination (KIP-848 consumer groups so far; the classic protocol joins it).

pub mod assignor;
pub mod consumer_group;
