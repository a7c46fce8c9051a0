//! # fjord-protocol: the Kafka wire protocol, sans-IO
//!
//! Bytes in, typed messages out. This crate never touches a socket, a file or an async runtime;
//! the network layer feeds it bytes and writes out what it returns.
//!
//! - [`frame`]: the 4-byte length-prefixed framing, with a hard limit on frame size.
//! - [`request`]: request header parsing and body decoding into the message types generated
//!   from Kafka's own JSON specs by the `kafka-protocol` crate.
//! - [`response`]: response header and body encoding, length prefix included.
//! - [`records`]: v2 record batches kept as bytes: header parsing, validation (CRC-32C, magic,
//!   lengths), and in-place patching of the base offset and partition leader epoch.
//! - [`control`]: control batches (transaction markers): encode and read.
//! - [`batch_builder`]: a small encoder of uncompressed batches for tests, fuzz seeds and tools.
//! - [`alloc`]: a global-allocator wrapper that keeps a hostile length field from aborting
//!   the process (see its docs for why).

pub mod alloc;
pub mod batch_builder;
pub mod compress;
pub mod control;
pub mod decompress;
pub mod filter;
pub mod frame;
pub mod records;
pub mod request;
pub mod response;
pub mod splice;

pub use kafka_protocol;
pub use kafka_protocol::error::ResponseError;
pub use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
pub use kafka_protocol::protocol::VersionRange;
