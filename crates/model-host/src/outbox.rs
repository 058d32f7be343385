//! Where a connection's replies go, and how much of them may wait.
//!
//! Whoever produces a reply (the connection's reader thread, or the batcher)
//! writes it straight into the socket when nothing is queued before it and
//! the kernel takes it whole without blocking. Otherwise the bytes wait for
//! the connection's writer thread, so a client that does not read can never
//! stall the batcher or other clients. Replies keep their order either way.
//!
//! Replies a client has not read are bounded. Each admitted request reserves
//! the size of its expected reply ([`Outbox::admit`]) until the reply is
//! handed on; the reader stops reading new requests while reserved plus
//! queued bytes exceed [`UNREAD_REPLY_ROOM_BYTES`] ([`Outbox::wait_for_room`]), so the
//! client's own writes block instead of the host's memory growing. A writer
//! that makes no progress for the write timeout gives up: the backlog is
//! dropped and the connection shut down.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use nix::sys::socket::{MsgFlags, send};
use vembed_protocol::framing;
use vembed_protocol::{
    Embeddings, ErrorCode, ErrorReply, Response, ResponseFrame, UNREAD_REPLY_ROOM_BYTES,
};

use crate::infer::{InferError, Reply};

struct State {
    stream: UnixStream,
    /// Bytes are queued for the writer thread: direct writes must wait.
    backlog: bool,
    /// The client is gone or stopped reading for too long: drop replies.
    broken: bool,
    /// Bytes waiting for the writer thread.
    queued_bytes: usize,
    /// Expected reply bytes of admitted requests not answered yet.
    reserved: usize,
}

/// What the senders and the writer thread share.
struct Inner {
    state: Mutex<State>,
    /// Signalled whenever queued or reserved bytes shrink, or the outbox breaks.
    room: Condvar,
}

/// The sending side, shared by the reader thread and queued jobs.
pub struct Outbox {
    inner: Arc<Inner>,
    tx: Sender<Vec<u8>>,
}

/// Whether the reader may read the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// Yes.
    Free,
    /// Not yet: the client has not read enough of its replies.
    Full,
    /// Never: the client is gone.
    Broken,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A reply route that holds its request's reservation until dropped.
pub struct SocketReply {
    outbox: Arc<Outbox>,
    reserved: usize,
}

impl SocketReply {
    /// Sends one reply (the reservation stays until this is dropped).
    pub fn send(&self, frame: &ResponseFrame) {
        self.outbox.send(frame);
    }
}

/// An embedding request's answer, sent on its connection as one frame:
/// where the inference door's result goes for a socket request.
pub struct EmbedReply {
    reply: SocketReply,
    id: u64,
}

impl EmbedReply {
    /// The answer to request `id`, through `reply`.
    pub fn new(reply: SocketReply, id: u64) -> EmbedReply {
        EmbedReply { reply, id }
    }
}

impl Reply for EmbedReply {
    fn reply(self: Box<Self>, result: Result<Embeddings, InferError>) {
        let response = match result {
            Ok(e) => Response::Embeddings(e),
            Err(e) => Response::Error(ErrorReply { code: e.code(), message: e.to_string() }),
        };
        self.reply.send(&ResponseFrame { id: self.id, response });
    }
}

/// An error reply to request `id`.
pub fn error(id: u64, code: ErrorCode, message: impl Into<String>) -> ResponseFrame {
    ResponseFrame { id, response: Response::Error(ErrorReply { code, message: message.into() }) }
}

impl Drop for SocketReply {
    fn drop(&mut self) {
        if self.reserved > 0 {
            let inner = &self.outbox.inner;
            lock(&inner.state).reserved -= self.reserved;
            inner.room.notify_all();
        }
    }
}

impl Outbox {
    /// An outbox for `stream` and the writer thread's loop, which returns once
    /// every clone of the outbox is dropped and the backlog is written (or
    /// dropped, once the client made no progress for `write_timeout`).
    pub fn new(
        stream: UnixStream,
        write_timeout: Duration,
    ) -> std::io::Result<(Arc<Outbox>, impl FnOnce() + Send + 'static)> {
        let writer_stream = stream.try_clone()?;
        writer_stream.set_write_timeout(Some(write_timeout))?;
        let state = Mutex::new(State {
            stream,
            backlog: false,
            broken: false,
            queued_bytes: 0,
            reserved: 0,
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let inner = Arc::new(Inner { state, room: Condvar::new() });
        let writer = inner.clone();
        // The loop ends when every sender (every Arc of the outbox) is gone
        // and what they queued is written.
        let run = move || write_loop(writer_stream, writer, rx);
        Ok((Arc::new(Outbox { inner, tx }), run))
    }

    /// Reserves `bytes` of unread reply for one admitted request.
    pub fn admit(self: &Arc<Self>, bytes: usize) -> SocketReply {
        lock(&self.inner.state).reserved += bytes;
        SocketReply { outbox: Arc::clone(self), reserved: bytes }
    }

    /// Waits up to `limit` for the client to read enough of its replies.
    pub fn wait_for_room(&self, limit: Duration) -> Room {
        let deadline = Instant::now() + limit;
        let mut st = lock(&self.inner.state);
        loop {
            if st.broken {
                return Room::Broken;
            }
            let unread = st.reserved + st.queued_bytes;
            if unread <= UNREAD_REPLY_ROOM_BYTES {
                return Room::Free;
            }
            let now = Instant::now();
            if now >= deadline {
                return Room::Full;
            }
            st = self
                .inner
                .room
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Sends one reply.
    pub fn send(&self, frame: &ResponseFrame) {
        let mut bytes = Vec::with_capacity(64);
        if let Err(e) = framing::encode_frame(frame, &mut bytes) {
            tracing::error!("cannot encode a reply: {e}");
            return;
        }
        let mut st = lock(&self.inner.state);
        if st.broken {
            return;
        }
        if !st.backlog {
            let mut sent = 0;
            while sent < bytes.len() {
                match send(
                    st.stream.as_raw_fd(),
                    &bytes[sent..],
                    MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                ) {
                    Ok(n) => sent += n,
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(nix::errno::Errno::EAGAIN) => break,
                    Err(e) => {
                        tracing::debug!("client went away: {e}");
                        st.broken = true;
                        drop(st);
                        self.inner.room.notify_all();
                        return;
                    }
                }
            }
            if sent == bytes.len() {
                return;
            }
            bytes.drain(..sent);
            st.backlog = true;
        }
        st.queued_bytes += bytes.len();
        // Queued under the lock, so the writer sees replies in order.
        let _ = self.tx.send(bytes);
    }
}

fn write_loop(mut stream: UnixStream, inner: Arc<Inner>, rx: Receiver<Vec<u8>>) {
    while let Ok(bytes) = rx.recv() {
        let broken = lock(&inner.state).broken;
        let result = if broken { Ok(()) } else { stream.write_all(&bytes) };
        let mut st = lock(&inner.state);
        st.queued_bytes -= bytes.len();
        if let Err(e) = result {
            if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
                tracing::info!("dropping a client that stopped reading its replies");
            } else {
                tracing::debug!("client went away: {e}");
            }
            st.broken = true;
            // Wake the reader: the connection is over.
            let _ = st.stream.shutdown(std::net::Shutdown::Both);
        }
        if rx.is_empty() {
            st.backlog = false;
        }
        drop(st);
        drop(bytes);
        inner.room.notify_all();
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;
    use vembed_protocol::Response;

    fn frame(id: u64, message_bytes: usize) -> ResponseFrame {
        error(id, ErrorCode::Internal, "x".repeat(message_bytes))
    }

    fn read(client: &mut UnixStream) -> ResponseFrame {
        let mut buf = Vec::new();
        framing::read_frame(client, 64 << 20, &mut buf).unwrap();
        framing::decode(&buf).unwrap()
    }

    #[test]
    fn replies_keep_their_order_when_the_client_reads_late_and_room_comes_back() {
        let (host, mut client) = UnixStream::pair().unwrap();
        let (outbox, run) = Outbox::new(host, Duration::from_secs(30)).unwrap();
        let writer = std::thread::spawn(run);
        // More than the socket buffer and the unread room: later replies
        // wait for the writer thread, in order, while the client reads
        // nothing.
        let reply = outbox.admit(0);
        for id in 0..40 {
            reply.send(&frame(id, 100 << 10));
        }
        assert_eq!(outbox.wait_for_room(Duration::from_millis(50)), Room::Full);
        for id in 0..40 {
            assert_eq!(read(&mut client).id, id, "replies in the order they were sent");
        }
        assert_eq!(outbox.wait_for_room(Duration::from_secs(30)), Room::Free);
        drop(reply);
        drop(outbox);
        writer.join().unwrap();
    }

    #[test]
    fn a_reservation_holds_room_until_its_reply_is_handed_on() {
        let (host, mut client) = UnixStream::pair().unwrap();
        let (outbox, run) = Outbox::new(host, Duration::from_secs(30)).unwrap();
        let writer = std::thread::spawn(run);
        let big = outbox.admit(UNREAD_REPLY_ROOM_BYTES + 1);
        assert_eq!(outbox.wait_for_room(Duration::from_millis(20)), Room::Full);
        big.send(&frame(7, 10));
        drop(big);
        assert_eq!(outbox.wait_for_room(Duration::from_secs(5)), Room::Free);
        let f = read(&mut client);
        assert!(matches!((f.id, f.response), (7, Response::Error(_))));
        drop(outbox);
        writer.join().unwrap();
    }

    #[test]
    fn a_client_gone_makes_the_outbox_broken_not_blocked() {
        let (host, client) = UnixStream::pair().unwrap();
        let (outbox, run) = Outbox::new(host, Duration::from_secs(30)).unwrap();
        let writer = std::thread::spawn(run);
        drop(client);
        let reply = outbox.admit(0);
        reply.send(&frame(1, 10));
        assert_eq!(outbox.wait_for_room(Duration::from_secs(5)), Room::Broken);
        drop(reply);
        drop(outbox);
        writer.join().unwrap();
    }
}
