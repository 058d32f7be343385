//! Where a connection's replies go.
//!
//! Whoever produces a reply (the connection's reader thread, or the batcher)
//! writes it straight into the socket when nothing is queued before it and
//! the kernel takes it whole without blocking. Otherwise the bytes wait for
//! the connection's writer thread, so a client that does not read can never
//! stall the batcher or other clients. Replies keep their order either way.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender};
use nix::sys::socket::{MsgFlags, send};
use vembed_protocol::ResponseFrame;
use vembed_protocol::framing;

struct State {
    stream: UnixStream,
    /// Bytes are queued for the writer thread: direct writes must wait.
    backlog: bool,
    /// The client is gone: drop replies.
    broken: bool,
}

/// The sending side, shared by the reader thread and queued jobs.
pub struct Outbox {
    state: Arc<Mutex<State>>,
    tx: Sender<Vec<u8>>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Outbox {
    /// An outbox for `stream` and the writer thread's loop, which returns once
    /// every clone of the outbox is dropped and the backlog is written.
    pub fn new(
        stream: UnixStream,
    ) -> std::io::Result<(Arc<Outbox>, impl FnOnce() + Send + 'static)> {
        let writer_stream = stream.try_clone()?;
        let state = Arc::new(Mutex::new(State { stream, backlog: false, broken: false }));
        let (tx, rx) = crossbeam_channel::unbounded();
        let writer_state = state.clone();
        let run = move || write_loop(writer_stream, writer_state, rx);
        Ok((Arc::new(Outbox { state, tx }), run))
    }

    /// Sends one reply.
    pub fn send(&self, frame: &ResponseFrame) {
        let mut bytes = Vec::with_capacity(64);
        if let Err(e) = framing::encode_frame(frame, &mut bytes) {
            tracing::error!("cannot encode a reply: {e}");
            return;
        }
        let mut st = lock(&self.state);
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
        // Queued under the lock, so the writer sees replies in order.
        let _ = self.tx.send(bytes);
    }
}

fn write_loop(mut stream: UnixStream, state: Arc<Mutex<State>>, rx: Receiver<Vec<u8>>) {
    while let Ok(bytes) = rx.recv() {
        if lock(&state).broken {
            continue;
        }
        if let Err(e) = stream.write_all(&bytes) {
            tracing::debug!("client went away: {e}");
            lock(&state).broken = true;
            continue;
        }
        let mut st = lock(&state);
        if rx.is_empty() {
            st.backlog = false;
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
}
