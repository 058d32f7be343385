//! Length-prefixed frames over any `Read`/`Write`.

use std::io::{self, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::CONFIG;

/// Framing and codec failures.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection at a frame boundary.
    #[error("connection closed")]
    Closed,
    /// Reading or writing failed.
    #[error("i/o error: {0}")]
    Io(io::Error),
    /// The announced payload is longer than the reader accepts.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced payload length.
        len: u32,
        /// The reader's limit.
        max: u32,
    },
    /// The payload is not a valid encoding of the expected type.
    #[error("malformed frame: {0}")]
    Decode(String),
    /// The value could not be encoded.
    #[error("cannot encode frame: {0}")]
    Encode(String),
}

// By hand rather than `#[from]`, which would also make the io::Error this
// error's `source()`: its message is already in ours, and error chains
// (`{:#}`) would print it twice.
impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// Appends one frame (length prefix and payload) holding `value` to `out`.
pub fn encode_frame<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    bincode::serde::encode_into_std_write(value, out, CONFIG)
        .map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = out.len() - start - 4;
    let len = u32::try_from(len)
        .ok()
        .filter(|&l| l <= crate::ABSOLUTE_MAX_FRAME_BYTES)
        .ok_or(FrameError::TooLarge { len: u32::MAX, max: crate::ABSOLUTE_MAX_FRAME_BYTES })?;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Writes one frame holding `value` with a single `write_all`.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, value: &T) -> Result<(), FrameError> {
    let mut buf = Vec::with_capacity(256);
    encode_frame(value, &mut buf)?;
    w.write_all(&buf)?;
    Ok(())
}

/// Reads one frame's payload into `buf` (replacing its contents).
///
/// A payload longer than `max` is not read: the error carries its length so
/// the caller can [`skip`] it and keep the connection in sync.
pub fn read_frame<R: Read>(r: &mut R, max: u32, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_le_bytes(header);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    read_payload(r, len, buf)
}

/// Reads a payload of `len` bytes whose length prefix was already read.
pub fn read_payload<R: Read>(r: &mut R, len: u32, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    buf.clear();
    buf.reserve(len as usize);
    let read = r.take(u64::from(len)).read_to_end(buf)?;
    if read != len as usize {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    Ok(())
}

/// Reads and discards `len` bytes: the payload of a frame that was too large.
pub fn skip<R: Read>(r: &mut R, len: u32) -> Result<(), FrameError> {
    let copied = io::copy(&mut r.take(u64::from(len)), &mut io::sink())?;
    if copied != u64::from(len) {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    Ok(())
}

/// Decodes a payload; the whole payload must be consumed.
///
/// Lengths inside the payload are checked against [`crate::ABSOLUTE_MAX_FRAME_BYTES`]
/// before anything is allocated: without a limit bincode would allocate
/// whatever a string or vector length claims, and a few random bytes could
/// claim exabytes.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    const LIMIT: usize = crate::ABSOLUTE_MAX_FRAME_BYTES as usize;
    let config = CONFIG.with_limit::<LIMIT>();
    let (value, used) = bincode::serde::decode_from_slice(payload, config)
        .map_err(|e| FrameError::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(FrameError::Decode(format!(
            "{} trailing bytes after the message",
            payload.len() - used
        )));
    }
    Ok(value)
}

/// Reads the protocol version out of a `Hello` request payload without
/// decoding the rest, so any version of the handshake can be recognised.
///
/// Returns `None` when the payload is not a `Hello` frame.
pub fn peek_hello_version(payload: &[u8]) -> Option<u32> {
    // u64 request id, u32 variant tag (0 = Hello), u32 version.
    let tag = u32::from_le_bytes(payload.get(8..12)?.try_into().ok()?);
    if tag != 0 {
        return None;
    }
    Some(u32::from_le_bytes(payload.get(12..16)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;

    fn roundtrip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
        let mut wire = Vec::new();
        write_frame(&mut wire, v).unwrap();
        let mut buf = Vec::new();
        read_frame(&mut &wire[..], ABSOLUTE_MAX_FRAME_BYTES, &mut buf).unwrap();
        assert_eq!(&decode::<T>(&buf).unwrap(), v);
    }

    #[test]
    fn frames_roundtrip() {
        roundtrip(&RequestFrame {
            id: 7,
            request: Request::Embed(EmbedRequest {
                model: ModelRef::Role(Role::Code),
                texts: vec!["a".into(), String::new(), "日本".into()],
            }),
        });
        roundtrip(&ResponseFrame {
            id: u64::MAX,
            response: Response::Embeddings(Embeddings {
                model: "m".into(),
                dim: 2,
                tokens: vec![3, 4],
                data: vec![0.5, -1.0, 2.0, 3.0],
                host_us: 17,
            }),
        });
        roundtrip(&ResponseFrame {
            id: 1,
            response: Response::Error(ErrorReply {
                code: ErrorCode::Overloaded,
                message: "busy".into(),
            }),
        });
    }

    /// The byte layout documented in PROTOCOL.md, pinned.
    #[test]
    fn hello_layout_is_stable() {
        let mut wire = Vec::new();
        let hello = RequestFrame {
            id: 1,
            request: Request::Hello(Hello { version: 1, client: "py".into() }),
        };
        write_frame(&mut wire, &hello).unwrap();
        let expected: Vec<u8> = [
            &26u32.to_le_bytes()[..], // payload length
            &1u64.to_le_bytes(),      // id
            &0u32.to_le_bytes(),      // Request::Hello
            &1u32.to_le_bytes(),      // version
            &2u64.to_le_bytes(),      // string length
            b"py",
        ]
        .concat();
        assert_eq!(wire, expected);
        assert_eq!(peek_hello_version(&wire[4..]), Some(1));
    }

    #[test]
    fn error_reply_layout_is_stable() {
        let mut wire = Vec::new();
        let reply = ResponseFrame {
            id: 9,
            response: Response::Error(ErrorReply {
                code: ErrorCode::VersionMismatch,
                message: "x".into(),
            }),
        };
        write_frame(&mut wire, &reply).unwrap();
        let expected: Vec<u8> = [
            &25u32.to_le_bytes()[..],
            &9u64.to_le_bytes(),
            &0u32.to_le_bytes(), // Response::Error
            &0u32.to_le_bytes(), // ErrorCode::VersionMismatch
            &1u64.to_le_bytes(),
            b"x",
        ]
        .concat();
        assert_eq!(wire, expected);
    }

    #[test]
    fn limits_and_garbage() {
        let mut wire = Vec::new();
        write_frame(&mut wire, &RequestFrame { id: 1, request: Request::Ping }).unwrap();
        let mut buf = Vec::new();
        match read_frame(&mut &wire[..], 4, &mut buf) {
            Err(FrameError::TooLarge { len: 12, max: 4 }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(read_frame(&mut &[][..], 100, &mut buf), Err(FrameError::Closed)));
        assert!(matches!(read_frame(&mut &[1, 0][..], 100, &mut buf), Err(FrameError::Io(_))));
        // A string claiming 2^60 bytes must fail cleanly, not allocate.
        let mut bad_hello = 1u64.to_le_bytes().to_vec();
        bad_hello.extend_from_slice(&0u32.to_le_bytes());
        bad_hello.extend_from_slice(&1u32.to_le_bytes());
        bad_hello.extend_from_slice(&(1u64 << 60).to_le_bytes());
        bad_hello.extend_from_slice(b"abc");
        assert!(matches!(decode::<RequestFrame>(&bad_hello), Err(FrameError::Decode(_))));
        // A vector claiming 2^60 elements must fail cleanly, not allocate.
        let mut bad = 1u64.to_le_bytes().to_vec();
        bad.extend_from_slice(&1u32.to_le_bytes());
        bad.extend_from_slice(&0u32.to_le_bytes());
        bad.extend_from_slice(&0u32.to_le_bytes());
        bad.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(matches!(decode::<RequestFrame>(&bad), Err(FrameError::Decode(_))));
        assert!(matches!(decode::<RequestFrame>(&[0xff; 40]), Err(FrameError::Decode(_))));
        // Trailing bytes are an error.
        let mut ping = wire[4..].to_vec();
        ping.push(0);
        assert!(matches!(decode::<RequestFrame>(&ping), Err(FrameError::Decode(_))));
    }
}
