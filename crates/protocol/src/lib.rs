//! Wire types and framing shared by the vembed host and its clients.
//!
//! A frame is a `u32` little-endian payload length followed by the payload:
//! one [`RequestFrame`] (client to host) or [`ResponseFrame`] (host to
//! client), encoded with bincode 2 in the one configuration [`CONFIG`]
//! (fixed-width little-endian integers). `PROTOCOL.md` at the repository root
//! spells out the byte layout for programs in other languages.
//!
//! The first frame on a connection is always [`Request::Hello`]; its first 16
//! payload bytes (request id, variant tag, version) never change between
//! protocol versions, so a version mismatch is reported as such and never as
//! a decode failure.
//!
//! ```
//! use vembed_protocol::{Request, RequestFrame, Hello, PROTOCOL_VERSION, framing};
//!
//! let frame = RequestFrame {
//!     id: 0,
//!     request: Request::Hello(Hello { version: PROTOCOL_VERSION, client: "doc".into() }),
//! };
//! let mut wire = Vec::new();
//! framing::write_frame(&mut wire, &frame)?;
//! let mut buf = Vec::new();
//! let mut reader = &wire[..];
//! framing::read_frame(&mut reader, 1 << 20, &mut buf)?;
//! let back: RequestFrame = framing::decode(&buf)?;
//! assert_eq!(back, frame);
//! assert_eq!(framing::peek_hello_version(&buf), Some(PROTOCOL_VERSION));
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod frame_reader;
pub mod framing;
#[cfg(feature = "index")]
mod from_index;
mod status;
mod types;

pub use frame_reader::{FrameReader, Poll};
pub use framing::FrameError;
pub use status::*;
pub use types::*;

/// The protocol version this build speaks. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// The bincode configuration of every payload: little-endian, fixed-width
/// integers (so `u32` is 4 bytes, `u64` 8, lengths are `u64`, enum tags `u32`).
pub const CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::NoLimit,
> = bincode::config::standard().with_little_endian().with_fixed_int_encoding();

/// The largest frame either side will ever read. A host advertises its own,
/// possibly smaller, limit in [`Limits::max_frame_bytes`].
pub const ABSOLUTE_MAX_FRAME_BYTES: u32 = 256 << 20;

/// Bytes of replies a connection may leave unread (counting the expected
/// replies of requests not answered yet) before the host stops reading its
/// next request; one request is always read, whatever its reply weighs. A
/// client that pipelines keeps within this much, or its own writes may block.
pub const UNREAD_REPLY_ROOM_BYTES: usize = 2 << 20;

/// What a host reserves for the reply to an `Embed` of `texts` texts with a
/// model of `dim` dimensions: the vectors, the token counts and the frame.
pub const fn embeddings_reply_bytes(texts: usize, dim: usize) -> usize {
    texts * (dim * 4 + 4) + 64
}

/// The largest frame a host reads before the handshake. A `Hello` is a few
/// dozen bytes; anything longer before it is refused and the connection closed,
/// so a connection that has not said who it is holds no real memory.
pub const HELLO_MAX_FRAME_BYTES: u32 = 64 << 10;
