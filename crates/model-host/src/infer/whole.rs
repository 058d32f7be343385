//! A request split into several jobs, answered as one: every part's vectors
//! in input order, or the first error.

use std::sync::{Arc, Mutex};

use vembed_protocol::Embeddings;

use super::error::InferError;
use super::work::Reply;
use crate::queue::{JobError, Respond};

/// The parts of one request, until the last is in.
pub(super) struct Whole {
    state: Mutex<State>,
}

struct State {
    parts: Vec<Option<Embeddings>>,
    left: usize,
    /// Taken by the answer: later parts find it gone and are dropped.
    reply: Option<Box<dyn Reply>>,
}

impl Whole {
    /// A request of `parts` jobs, answered through `reply`.
    pub(super) fn new(parts: usize, reply: Box<dyn Reply>) -> Arc<Whole> {
        let state = State { parts: vec![None; parts], left: parts, reply: Some(reply) };
        Arc::new(Whole { state: Mutex::new(state) })
    }

    /// Part `index`'s responder, for its job.
    pub(super) fn part(self: &Arc<Self>, index: usize) -> Box<dyn Respond> {
        Box::new(Part { whole: self.clone(), index })
    }

    /// Answers the request with `e` (unless it is answered already).
    pub(super) fn fail(&self, e: InferError) {
        let reply = self.lock().reply.take();
        if let Some(r) = reply {
            r.reply(Err(e));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn done(&self, index: usize, result: Result<Embeddings, JobError>) {
        let mut s = self.lock();
        if s.reply.is_none() {
            return;
        }
        let part = match result {
            Ok(e) => e,
            Err(e) => {
                let reply = s.reply.take().expect("checked above");
                drop(s);
                return reply.reply(Err(InferError::Job(e)));
            }
        };
        s.parts[index] = Some(part);
        s.left -= 1;
        if s.left > 0 {
            return;
        }
        let reply = s.reply.take().expect("checked above");
        let parts: Vec<Embeddings> = s.parts.drain(..).flatten().collect();
        drop(s);
        reply.reply(Ok(join(parts)));
    }
}

/// The parts' vectors as one answer, in order.
fn join(parts: Vec<Embeddings>) -> Embeddings {
    let mut parts = parts.into_iter();
    let mut all = parts.next().expect("a request has at least one part");
    for p in parts {
        all.tokens.extend_from_slice(&p.tokens);
        all.data.extend_from_slice(&p.data);
        all.host_us = all.host_us.max(p.host_us);
    }
    all
}

/// One job's share of a [`Whole`].
struct Part {
    whole: Arc<Whole>,
    index: usize,
}

impl Respond for Part {
    fn respond(self: Box<Self>, result: Result<Embeddings, JobError>) {
        self.whole.done(self.index, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    struct To(mpsc::Sender<Result<Embeddings, InferError>>);
    impl Reply for To {
        fn reply(self: Box<Self>, r: Result<Embeddings, InferError>) {
            self.0.send(r).unwrap();
        }
    }

    fn part(tokens: &[u32], data: &[f32], host_us: u64) -> Embeddings {
        Embeddings {
            model: "m".into(),
            dim: 2,
            tokens: tokens.to_vec(),
            data: data.to_vec(),
            host_us,
        }
    }

    #[test]
    fn parts_answered_out_of_order_come_back_in_input_order_once() {
        let (tx, rx) = mpsc::channel();
        let whole = Whole::new(3, Box::new(To(tx)));
        let (a, b, c) = (whole.part(0), whole.part(1), whole.part(2));
        c.respond(Ok(part(&[5], &[5.0, 5.5], 30)));
        assert!(rx.try_recv().is_err(), "two parts are still out");
        a.respond(Ok(part(&[1, 2], &[1.0, 1.5, 2.0, 2.5], 10)));
        b.respond(Ok(part(&[3], &[3.0, 3.5], 20)));
        let e = rx.try_recv().unwrap().unwrap();
        assert_eq!(e.tokens, vec![1, 2, 3, 5]);
        assert_eq!(e.data, vec![1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 5.0, 5.5]);
        assert_eq!(e.host_us, 30);
        assert!(rx.try_recv().is_err(), "answered once");
    }

    #[test]
    fn the_first_failure_answers_and_later_parts_are_dropped() {
        let (tx, rx) = mpsc::channel();
        let whole = Whole::new(2, Box::new(To(tx)));
        let (a, b) = (whole.part(0), whole.part(1));
        b.respond(Err(JobError::NonFinite));
        assert!(matches!(rx.try_recv().unwrap(), Err(InferError::Job(JobError::NonFinite))));
        a.respond(Ok(part(&[1], &[1.0, 0.0], 1)));
        whole.fail(InferError::ShuttingDown);
        assert!(rx.try_recv().is_err(), "answered once");
    }
}
