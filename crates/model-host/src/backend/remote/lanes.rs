//! A remote model's lanes. Its jobs never enter the batcher, which runs
//! local forward passes: each is cut into calls of the model's
//! `max_texts_per_call` texts, and the model's `concurrency` lane threads
//! send them, each a blocking HTTP call, so a slow or dead service holds up
//! only its own model. Calls of small jobs (one call's worth, such as a
//! query) go ahead of the calls of bulk jobs (indexing). A job is answered
//! once its last call is back; the first call that fails fails the job
//! with its `Upstream` error, and its other calls are dropped unsent. The
//! threads end when the model is dropped.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};

use super::service::Service;
use crate::backend::{BackendError, Sink};

/// One remote model's two queues of calls.
pub(super) struct Lanes {
    quick: Sender<Call>,
    bulk: Sender<Call>,
    texts_per_call: usize,
    dim: usize,
}

/// Texts `start..end` of a job.
struct Call {
    job: Arc<Running>,
    start: usize,
    end: usize,
}

/// A job whose calls are out.
struct Running {
    texts: Vec<String>,
    state: Mutex<State>,
}

struct State {
    out: Vec<f32>,
    /// Calls not back yet.
    left: usize,
    /// Taken by whoever answers the job: the last call, or the first to fail.
    sink: Option<Box<dyn Sink>>,
}

impl Lanes {
    /// Starts the lane threads of `service`, named after `model`.
    pub(super) fn start(model: &str, service: Arc<Service>) -> Lanes {
        let feed = service.feed();
        let (quick, quick_rx) = crossbeam_channel::unbounded();
        let (bulk, bulk_rx) = crossbeam_channel::unbounded();
        for i in 0..feed.concurrency.max(1) {
            let (quick_rx, bulk_rx, service) = (quick_rx.clone(), bulk_rx.clone(), service.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("vembed-remote-{i}"))
                .spawn(move || work(&service, &quick_rx, &bulk_rx));
            if let Err(e) = spawned {
                // Fewer lanes are slower, not wrong; none is caught below.
                tracing::warn!("remote model {model}: cannot start lane thread {i}: {e}");
            }
        }
        Lanes { quick, bulk, texts_per_call: feed.texts_per_call.max(1), dim: service.dim() }
    }

    /// Sends a job out in calls; `sink` hears of each call, then the answer.
    pub(super) fn run(&self, texts: Vec<String>, sink: Box<dyn Sink>) {
        let n = texts.len();
        let per = self.texts_per_call;
        let calls = n.div_ceil(per);
        if calls == 0 {
            sink.done(Ok(Vec::new()));
            return;
        }
        let running = Arc::new(Running {
            texts,
            state: Mutex::new(State {
                out: vec![0f32; n * self.dim],
                left: calls,
                sink: Some(sink),
            }),
        });
        let queue = if calls == 1 { &self.quick } else { &self.bulk };
        for c in 0..calls {
            let call = Call { job: running.clone(), start: c * per, end: ((c + 1) * per).min(n) };
            if let Err(crossbeam_channel::SendError(call)) = queue.send(call) {
                // No lane thread is left to send it.
                let why = BackendError::Upstream {
                    status: None,
                    message: "the model's lane threads are gone".into(),
                };
                answer(&call.job, Err(why));
                return;
            }
        }
    }
}

/// A lane thread: takes calls, quick ones first, and sends them, until the
/// model is dropped.
fn work(service: &Service, quick: &Receiver<Call>, bulk: &Receiver<Call>) {
    loop {
        let call = match quick.try_recv() {
            Ok(c) => Ok(c),
            Err(_) => crossbeam_channel::select_biased! {
                recv(quick) -> c => c,
                recv(bulk) -> c => c,
            },
        };
        let Ok(call) = call else { return };
        send(service, call);
    }
}

/// Sends one call, unless its job has failed already, and answers the job
/// when this was its last call or it failed.
fn send(service: &Service, call: Call) {
    let job = &call.job;
    let failed = job.state.lock().unwrap_or_else(|p| p.into_inner()).sink.is_none();
    if failed {
        return;
    }
    let texts: Vec<&str> = job.texts[call.start..call.end].iter().map(String::as_str).collect();
    let result = catch_unwind(AssertUnwindSafe(|| service.call(&texts)))
        .unwrap_or_else(|p| Err(BackendError::Panicked(crate::panics::message(&*p))));
    let dim = service.dim();
    let mut state = job.state.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(sink) = &state.sink {
        sink.called(texts.len());
    }
    state.left -= 1;
    let failure = match result {
        Ok((v, _)) if v.len() == texts.len() * dim => {
            state.out[call.start * dim..call.end * dim].copy_from_slice(&v);
            None
        }
        Ok((v, _)) => Some(BackendError::Upstream {
            status: None,
            message: format!("{} floats for {} texts", v.len(), texts.len()),
        }),
        Err(e) => Some(e),
    };
    let done = failure.is_some() || state.left == 0;
    drop(state);
    if done {
        answer(job, failure.map_or_else(|| Ok(()), Err));
    }
}

/// Answers a job once: with its vectors, or with why it failed.
fn answer(job: &Running, result: Result<(), BackendError>) {
    let mut state = job.state.lock().unwrap_or_else(|p| p.into_inner());
    let Some(sink) = state.sink.take() else { return };
    let out = std::mem::take(&mut state.out);
    drop(state);
    sink.done(result.map(|()| out));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::remote::service::tests::{scripted, tei};
    use crossbeam_channel::Sender;
    use vembed_models::RemoteModel;

    /// Hears a job's calls and its answer.
    struct Heard {
        calls: Sender<usize>,
        done: Sender<Result<Vec<f32>, BackendError>>,
    }

    impl Sink for Heard {
        fn called(&self, texts: usize) {
            self.calls.send(texts).unwrap();
        }
        fn done(self: Box<Self>, result: Result<Vec<f32>, BackendError>) {
            self.done.send(result).unwrap();
        }
    }

    fn lanes(answers: Vec<(u16, &'static str)>, per_call: u32) -> Lanes {
        let config = RemoteModel {
            max_texts_per_call: per_call,
            concurrency: 1,
            ..tei(scripted(answers), 0)
        };
        Lanes::start("t", Arc::new(Service::connect("t", &config).unwrap()))
    }

    fn run(lanes: &Lanes, texts: &[&str]) -> (Vec<usize>, Result<Vec<f32>, BackendError>) {
        let (calls, heard_calls) = crossbeam_channel::unbounded();
        let (done, heard_done) = crossbeam_channel::unbounded();
        lanes.run(texts.iter().map(|t| t.to_string()).collect(), Box::new(Heard { calls, done }));
        let result = heard_done.recv().unwrap();
        // Answered once: the sink is gone, so its channels close.
        assert!(heard_done.recv().is_err());
        (heard_calls.iter().collect(), result)
    }

    #[test]
    fn a_job_is_cut_into_calls_and_answered_once_in_order() {
        let l = lanes(vec![(200, "[[0.6,0.8],[1,0]]"), (200, "[[0,1]]")], 2);
        let (calls, result) = run(&l, &["a", "b", "c"]);
        assert_eq!(calls, [2, 1]);
        assert_eq!(result.unwrap(), [0.6, 0.8, 1.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn the_first_failed_call_fails_the_job_and_the_rest_are_not_sent() {
        // Only two answers: a third call would find no service and hang.
        let l = lanes(vec![(200, "[[1,0]]"), (400, r#"{"error":"no"}"#)], 1);
        let (calls, result) = run(&l, &["a", "b", "c"]);
        assert_eq!(calls, [1, 1]);
        match result.unwrap_err() {
            BackendError::Upstream { status: Some(400), message } => {
                assert!(message.contains("no"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_empty_job_is_answered_at_once() {
        let l = lanes(vec![], 4);
        let (calls, result) = run(&l, &[]);
        assert!(calls.is_empty());
        assert!(result.unwrap().is_empty());
    }
}
