//! A few threads that run the socket's searches, so a slow search never
//! holds up the requests pipelined behind it on its connection: the
//! connection's reader hands the search over and reads on.

use crossbeam_channel::Sender;

type Task = Box<dyn FnOnce() + Send>;

/// A fixed set of threads taking tasks in order.
pub(super) struct Workers {
    tx: Sender<Task>,
}

impl Workers {
    /// Starts `n` threads named `name`.
    pub(super) fn start(name: &str, n: usize) -> Workers {
        let (tx, rx) = crossbeam_channel::unbounded::<Task>();
        for i in 0..n.max(1) {
            let rx = rx.clone();
            let spawned =
                std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || {
                    for task in rx {
                        // A panic in one task is its own (its reply is dropped,
                        // so the client gets the connection's answer); the
                        // thread takes the next.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task));
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a {name} thread: {e}");
            }
        }
        Workers { tx }
    }

    /// Runs `task` on the next free thread.
    pub(super) fn run(&self, task: impl FnOnce() + Send + 'static) {
        // The threads live as long as the process: a send cannot fail.
        let _ = self.tx.send(Box::new(task));
    }
}
