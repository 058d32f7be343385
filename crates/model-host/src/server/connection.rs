//! One connection: the handshake within its deadline, then frames until the
//! client leaves. Every way a connection could hold the host's memory is
//! bounded here: a frame's buffer grows only as its bytes arrive (never to
//! the length a header claims) and counts against the host-wide in-flight
//! budget; before `Hello` only a small frame is read, within
//! [`HostConfig::hello_timeout`](super::HostConfig); and while a client
//! leaves its replies unread the next request is not read at all.

use std::io::BufReader;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::sys::socket::{MsgFlags, send};
use vembed_protocol::{
    ABSOLUTE_MAX_FRAME_BYTES, ErrorCode, FrameError, FrameReader, HELLO_MAX_FRAME_BYTES,
    PROTOCOL_VERSION, Poll, RequestFrame, ResponseFrame, framing,
};

use super::Shared;
use super::dispatch;
use crate::outbox::{Outbox, Room, error};

/// How often a waiting connection looks at the shutdown flag and its deadlines.
const TICK: Duration = Duration::from_millis(200);

/// Writes a typed refusal without blocking and shuts the write side, so the
/// client reads the reason (its Hello still goes through: the read side stays
/// open until the connection is dropped).
pub(super) fn refuse(stream: &UnixStream, code: ErrorCode, message: &str) {
    let mut bytes = Vec::new();
    if framing::encode_frame(&error(0, code, message), &mut bytes).is_ok() {
        let _ = send(stream.as_raw_fd(), &bytes, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL);
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// What waiting for one frame produced.
enum Incoming {
    Frame,
    TooLarge(u32),
    Closed,
    Stopped,
    TimedOut,
    Failed(String),
}

/// The request id of a payload, if it has one.
fn peek_id(payload: &[u8]) -> u64 {
    payload.get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes)
}

struct Conn<'a> {
    shared: &'a Shared,
    stream: BufReader<UnixStream>,
    reader: FrameReader,
    /// Bytes of the in-flight budget this connection holds.
    held: usize,
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        self.shared.inflight.release(self.held);
        self.shared.clients.fetch_sub(1, Ordering::AcqRel);
        self.shared.closed.fetch_add(1, Ordering::AcqRel);
        self.shared.touch();
    }
}

impl Conn<'_> {
    /// Brings the budget held in line with what the buffer really holds.
    fn settle(&mut self) {
        let cap = self.reader.capacity();
        if cap < self.held {
            self.shared.inflight.release(self.held - cap);
        } else if cap > self.held {
            // Allocator rounding: count it, without refusing.
            self.shared.inflight.used.fetch_add(cap - self.held, Ordering::AcqRel);
        }
        self.held = cap;
    }

    fn overdue(&self, deadline: Option<Instant>) -> bool {
        let frame =
            self.reader.started().is_some_and(|t| t.elapsed() > self.shared.config.frame_timeout);
        frame || deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Waits for the next frame. Between frames it waits as long as the
    /// client likes (unless `deadline`, the Hello deadline, passes); once a
    /// frame has started it must arrive within the frame timeout.
    fn next_frame(&mut self, max: u32, deadline: Option<Instant>) -> Incoming {
        loop {
            let grow = self.reader.next_growth();
            if grow > 0 {
                if !self.shared.inflight.try_acquire(grow) {
                    if self.overdue(deadline) {
                        return Incoming::TimedOut;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                self.held += grow;
            }
            let polled = self.reader.poll(&mut self.stream, max);
            self.settle();
            match polled {
                Ok(Poll::Frame) => return Incoming::Frame,
                Ok(Poll::Pending) => {
                    if self.reader.started().is_none()
                        && deadline.is_none()
                        && self.shared.stop.load(Ordering::Acquire)
                    {
                        return Incoming::Stopped;
                    }
                    if self.overdue(deadline) {
                        return Incoming::TimedOut;
                    }
                }
                Err(FrameError::Closed) => return Incoming::Closed,
                Err(FrameError::TooLarge { len, .. }) => return Incoming::TooLarge(len),
                Err(e) => return Incoming::Failed(e.to_string()),
            }
        }
    }

    /// Writes a reply straight to the socket (before the outbox exists).
    fn reply_direct(&self, frame: &ResponseFrame) {
        let _ = framing::write_frame(&mut self.stream.get_ref(), frame);
    }
}

/// Serves one admitted connection until the client leaves, the host stops,
/// or a deadline passes.
pub(super) fn run(stream: UnixStream, shared: Arc<Shared>) {
    let accepted = Instant::now();
    let setup = stream
        .set_read_timeout(Some(TICK))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(1))))
        .and_then(|()| stream.try_clone());
    let mut conn = Conn {
        shared: &shared,
        stream: BufReader::with_capacity(16 << 10, stream),
        reader: FrameReader::new(),
        held: 0,
    };
    let out_stream = match setup {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot set up a connection: {e}");
            return;
        }
    };

    // The handshake: a small frame, within the Hello deadline.
    let hello_deadline = accepted + shared.config.hello_timeout;
    match conn.next_frame(HELLO_MAX_FRAME_BYTES, Some(hello_deadline)) {
        Incoming::Frame => {}
        Incoming::TooLarge(len) => {
            conn.reply_direct(&error(
                0,
                ErrorCode::FrameTooLarge,
                format!(
                    "frame of {len} bytes exceeds the limit of {HELLO_MAX_FRAME_BYTES} bytes before the handshake (send Hello first)"
                ),
            ));
            return;
        }
        Incoming::TimedOut => {
            let secs = shared.config.hello_timeout.as_secs_f32();
            conn.reply_direct(&error(
                0,
                ErrorCode::HandshakeRequired,
                format!("no Hello within {secs} s of connecting; closing"),
            ));
            return;
        }
        Incoming::Closed | Incoming::Stopped | Incoming::Failed(_) => return,
    }
    let payload = conn.reader.payload();
    match framing::peek_hello_version(payload) {
        Some(PROTOCOL_VERSION) => {}
        Some(v) => {
            return conn.reply_direct(&error(
                peek_id(payload),
                ErrorCode::VersionMismatch,
                format!(
                    "client speaks protocol {v}, this host speaks {PROTOCOL_VERSION}; use a matching vembed"
                ),
            ));
        }
        None => {
            return conn.reply_direct(&error(
                peek_id(payload),
                ErrorCode::HandshakeRequired,
                "the first frame must be Hello",
            ));
        }
    }
    let hello: RequestFrame = match framing::decode(payload) {
        Ok(f) => f,
        Err(e) => {
            return conn.reply_direct(&error(
                peek_id(payload),
                ErrorCode::Malformed,
                e.to_string(),
            ));
        }
    };

    let (outbox, write_loop) = match Outbox::new(out_stream, shared.config.write_timeout) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!("cannot clone the connection: {e}");
            return;
        }
    };
    let Ok(writer) = std::thread::Builder::new()
        .name("vembed-writer".into())
        .stack_size(256 << 10)
        .spawn(write_loop)
    else {
        return;
    };
    let peer_pid = nix::sys::socket::getsockopt(
        conn.stream.get_ref(),
        nix::sys::socket::sockopt::PeerCredentials,
    )
    .ok()
    .and_then(|c| u32::try_from(c.pid()).ok());
    let ctx = dispatch::Ctx { shared: &shared, outbox: &outbox, peer_pid };
    dispatch::handle(&ctx, hello);
    'conn: loop {
        // Backpressure: no new request while the client leaves replies unread.
        loop {
            match outbox.wait_for_room(TICK) {
                Room::Free => break,
                Room::Broken => break 'conn,
                Room::Full if shared.stop.load(Ordering::Acquire) => break 'conn,
                Room::Full => {}
            }
        }
        match conn.next_frame(shared.config.limits.max_frame_bytes, None) {
            Incoming::Frame => {}
            Incoming::TooLarge(len) => {
                let limit = shared.config.limits.max_frame_bytes;
                outbox.send(&error(
                    0,
                    ErrorCode::FrameTooLarge,
                    format!("frame of {len} bytes exceeds the limit of {limit} bytes"),
                ));
                shared.stats.record_error();
                // Beyond any sane size the stream is not worth resynchronising.
                if len > ABSOLUTE_MAX_FRAME_BYTES {
                    break;
                }
                conn.reader.discard(len);
                continue;
            }
            Incoming::Closed | Incoming::Stopped => break,
            Incoming::TimedOut => {
                tracing::info!("dropping a client that stalled mid-frame");
                break;
            }
            Incoming::Failed(e) => {
                tracing::debug!("connection read failed: {e}");
                break;
            }
        }
        let payload = conn.reader.payload();
        let frame: RequestFrame = match framing::decode(payload) {
            Ok(f) => f,
            Err(e) => {
                shared.stats.record_error();
                outbox.send(&error(peek_id(payload), ErrorCode::Malformed, e.to_string()));
                continue;
            }
        };
        dispatch::handle(&ctx, frame);
    }
    // Jobs in the queue hold their own outbox: the writer ends after the last answer.
    drop(outbox);
    let _ = writer.join();
}
