//! An incremental, deadline-friendly frame reader.
//!
//! [`FrameReader::poll`] reads whatever the stream has and keeps its place
//! across reads that time out (`WouldBlock`/`TimedOut`), so the caller can
//! set a short read timeout and decide between reads whether to keep waiting:
//! a shutdown flag, a deadline for a frame that has started, a liveness check
//! of the peer. Memory grows only as bytes arrive (never to the length a
//! header merely claims), and [`FrameReader::next_growth`] says in advance
//! how much the next read may allocate, so a server can budget the bytes in
//! flight across all its connections.

use std::io::{self, Read};
use std::time::Instant;

use crate::FrameError;

/// Bytes by which a payload buffer grows at least (then doubling, up to the
/// announced length).
const GROW_STEP: usize = 64 << 10;
/// A buffer larger than this is freed after its frame rather than kept.
const KEEP_BYTES: usize = 1 << 20;

/// What one [`FrameReader::poll`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// A whole frame arrived: its payload is [`FrameReader::payload`] until
    /// the next poll.
    Frame,
    /// The read timed out before a frame was complete; what arrived is kept.
    Pending,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header { got: usize },
    Payload { len: usize },
    Discard { left: usize },
    Done,
}

/// Reads length-prefixed frames one piece at a time. See the module docs.
#[derive(Debug)]
pub struct FrameReader {
    header: [u8; 4],
    state: State,
    buf: Vec<u8>,
    started: Option<Instant>,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader::new()
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

impl FrameReader {
    /// A reader at a frame boundary.
    pub fn new() -> FrameReader {
        FrameReader {
            header: [0; 4],
            state: State::Header { got: 0 },
            buf: Vec::new(),
            started: None,
        }
    }

    /// When the first byte of the frame being read arrived, if one has.
    pub fn started(&self) -> Option<Instant> {
        self.started
    }

    /// The payload of the frame [`Poll::Frame`] announced.
    pub fn payload(&self) -> &[u8] {
        &self.buf
    }

    /// Bytes the payload buffer holds allocated now.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The most the next [`FrameReader::poll`] can add to
    /// [`FrameReader::capacity`].
    pub fn next_growth(&self) -> usize {
        match self.state {
            State::Payload { len } => {
                let have = self.buf.len();
                let want = (len - have).min(GROW_STEP.max(have));
                (have + want).saturating_sub(self.buf.capacity())
            }
            _ => 0,
        }
    }

    /// Discards the payload of the frame whose header [`FrameReader::poll`]
    /// refused as too large, so the stream stays in sync: later polls read
    /// and drop those bytes, then go on with the next frame.
    pub fn discard(&mut self, len: u32) {
        self.state = State::Discard { left: len as usize };
    }

    /// Reads what is available, up to the end of one frame.
    ///
    /// Errors: [`FrameError::Closed`] at a frame boundary, an `UnexpectedEof`
    /// [`FrameError::Io`] inside a frame, and [`FrameError::TooLarge`] for a
    /// header announcing more than `max` bytes (nothing of its payload is
    /// read; call [`FrameReader::discard`] to skip it, or drop the stream).
    pub fn poll<R: Read>(&mut self, r: &mut R, max: u32) -> Result<Poll, FrameError> {
        if self.state == State::Done {
            self.state = State::Header { got: 0 };
            self.started = None;
            if self.buf.capacity() > KEEP_BYTES {
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
        }
        loop {
            match self.state {
                State::Header { got } => {
                    let n = match r.read(&mut self.header[got..]) {
                        Ok(0) if got == 0 && self.started.is_none() => {
                            return Err(FrameError::Closed);
                        }
                        Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
                        Ok(n) => n,
                        Err(e) if is_timeout(&e) => return Ok(Poll::Pending),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e.into()),
                    };
                    self.started.get_or_insert_with(Instant::now);
                    if got + n < 4 {
                        self.state = State::Header { got: got + n };
                        continue;
                    }
                    let len = u32::from_le_bytes(self.header);
                    if len > max {
                        self.state = State::Header { got: 0 };
                        return Err(FrameError::TooLarge { len, max });
                    }
                    self.state = State::Payload { len: len as usize };
                }
                State::Payload { len } => {
                    let have = self.buf.len();
                    if have == len {
                        self.state = State::Done;
                        return Ok(Poll::Frame);
                    }
                    let want = (len - have).min(GROW_STEP.max(have));
                    if self.buf.capacity() < have + want {
                        self.buf.reserve_exact(have + want - self.buf.capacity());
                    }
                    self.buf.resize(have + want, 0);
                    let read = r.read(&mut self.buf[have..]);
                    let n = match read {
                        Ok(n) => n,
                        Err(e) => {
                            self.buf.truncate(have);
                            if is_timeout(&e) {
                                return Ok(Poll::Pending);
                            }
                            if e.kind() == io::ErrorKind::Interrupted {
                                continue;
                            }
                            return Err(e.into());
                        }
                    };
                    self.buf.truncate(have + n);
                    if n == 0 {
                        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
                    }
                }
                State::Discard { left } => {
                    if left == 0 {
                        self.state = State::Header { got: 0 };
                        self.started = None;
                        continue;
                    }
                    let mut scratch = [0u8; 8192];
                    let n = left.min(scratch.len());
                    match r.read(&mut scratch[..n]) {
                        Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
                        Ok(k) => self.state = State::Discard { left: left - k },
                        Err(e) if is_timeout(&e) => return Ok(Poll::Pending),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                State::Done => unreachable!("reset at the start of poll"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that hands out its bytes in pieces, with a timeout between pieces.
    struct Trickle {
        pieces: Vec<Vec<u8>>,
        timeout_next: bool,
    }

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.timeout_next {
                self.timeout_next = false;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.timeout_next = true;
            let Some(piece) = self.pieces.first_mut() else { return Ok(0) };
            let n = piece.len().min(out.len());
            out[..n].copy_from_slice(&piece[..n]);
            piece.drain(..n);
            if piece.is_empty() {
                self.pieces.remove(0);
            }
            Ok(n)
        }
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn keeps_its_place_across_timeouts() {
        let a = frame(b"hello");
        let b = frame(&vec![7u8; 200_000]);
        let mut wire: Vec<u8> = a.iter().chain(&b).copied().collect();
        let pieces: Vec<Vec<u8>> = std::iter::from_fn(|| {
            (!wire.is_empty()).then(|| wire.drain(..wire.len().min(3)).collect())
        })
        .collect();
        let mut s = Trickle { pieces, timeout_next: false };
        let mut r = FrameReader::new();
        let mut frames = Vec::new();
        loop {
            match r.poll(&mut s, 1 << 20) {
                Ok(Poll::Frame) => frames.push(r.payload().to_vec()),
                Ok(Poll::Pending) => {}
                Err(FrameError::Closed) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(frames, vec![b"hello".to_vec(), vec![7u8; 200_000]]);
    }

    #[test]
    fn grows_only_as_bytes_arrive() {
        // A header claiming 32 MiB followed by one byte allocates a step, not 32 MiB.
        let mut wire = (32u32 << 20).to_le_bytes().to_vec();
        wire.push(1);
        let mut s = Trickle { pieces: vec![wire], timeout_next: false };
        let mut r = FrameReader::new();
        assert_eq!(r.poll(&mut s, 64 << 20).unwrap(), Poll::Pending);
        assert!(r.started().is_some());
        assert!(r.capacity() <= GROW_STEP, "{}", r.capacity());
        assert!(r.next_growth() <= GROW_STEP);
    }

    #[test]
    fn too_large_can_be_discarded() {
        let mut wire = frame(&[9u8; 100]);
        wire.extend(frame(b"next"));
        let mut s = &wire[..];
        let mut r = FrameReader::new();
        match r.poll(&mut s, 10) {
            Err(FrameError::TooLarge { len: 100, max: 10 }) => {}
            other => panic!("{other:?}"),
        }
        r.discard(100);
        assert_eq!(r.poll(&mut s, 10).unwrap(), Poll::Frame);
        assert_eq!(r.payload(), b"next");
        assert!(matches!(r.poll(&mut s, 10), Err(FrameError::Closed)));
        // EOF inside a frame is not a clean close.
        let mut cut = &frame(b"abcdef")[..6];
        let mut r = FrameReader::new();
        assert!(matches!(r.poll(&mut cut, 10), Err(FrameError::Io(_))));
    }
}
