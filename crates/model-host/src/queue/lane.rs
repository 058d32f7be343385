//! The lanes of remote models. A remote model's job never enters the
//! batcher, which runs local forward passes: it is cut into calls of the
//! model's `max_texts_per_call` texts, and the model's `concurrency` lane
//! threads send them, each a blocking HTTP call, so a slow or dead service
//! holds up only its own model. Calls of small jobs (one call's worth, such
//! as a query) go ahead of the calls of bulk jobs (indexing). A job is
//! answered once its last call is back, through the same cache and
//! counters as a local job; the first call that fails fails the job with
//! its `Upstream` error, and its other calls are dropped unsent.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};

use super::answer;
use super::backlog::Backlog;
use super::job::{CachedJob, Input, Job, JobError, Respond, panic_message};
use crate::backend::BackendError;
use crate::cache::EmbedCache;
use crate::model::Embedder;
use crate::stats::Stats;

/// Every remote model's lane, made on its first job.
pub(super) struct Lanes {
    common: Arc<Common>,
    lanes: Mutex<HashMap<String, Lane>>,
}

/// What every lane thread shares.
struct Common {
    stats: Arc<Stats>,
    cache: Arc<EmbedCache>,
    backlog: Arc<Backlog>,
}

/// One remote model's two queues of calls.
struct Lane {
    quick: Sender<Call>,
    bulk: Sender<Call>,
    texts_per_call: usize,
}

/// Texts `start..end` of a job.
struct Call {
    job: Arc<Running>,
    start: usize,
    end: usize,
}

/// A job whose calls are out.
struct Running {
    embedder: Arc<Embedder>,
    texts: Vec<String>,
    state: Mutex<State>,
}

struct State {
    out: Vec<f32>,
    /// Calls not back yet.
    left: usize,
    /// Taken by whoever answers the job: the last call, or the first to fail.
    answer: Option<Answer>,
}

struct Answer {
    reply: Box<dyn Respond>,
    tokens: Vec<u32>,
    cached: Option<CachedJob>,
    received: std::time::Instant,
}

impl Lanes {
    pub(super) fn new(stats: Arc<Stats>, cache: Arc<EmbedCache>, backlog: Arc<Backlog>) -> Lanes {
        Lanes {
            common: Arc::new(Common { stats, cache, backlog }),
            lanes: Mutex::new(HashMap::new()),
        }
    }

    /// Sends a remote model's job out in calls (counted in `queued` already).
    pub(super) fn submit(&self, job: Job) {
        let Job { model: embedder, input, reply, received, cached } = job;
        let Input::Texts { texts, tokens } = input else {
            unreachable!("only texts go to a lane");
        };
        let n = texts.len();
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        let lane = lanes.entry(embedder.name.clone()).or_insert_with(|| self.open(&embedder));
        let per = lane.texts_per_call.max(1);
        let calls = n.div_ceil(per);
        let answer = Answer { reply, tokens, cached, received };
        let running = Arc::new(Running {
            embedder: embedder.clone(),
            texts,
            state: Mutex::new(State {
                out: vec![0f32; n * embedder.dim()],
                left: calls,
                answer: Some(answer),
            }),
        });
        if calls == 0 {
            finish(&self.common, &running);
            return;
        }
        let queue = if calls == 1 { &lane.quick } else { &lane.bulk };
        for c in 0..calls {
            let call = Call { job: running.clone(), start: c * per, end: ((c + 1) * per).min(n) };
            // The lane's threads live as long as the process: a send cannot fail.
            let _ = queue.send(call);
        }
    }

    /// Starts a model's lane threads.
    fn open(&self, embedder: &Embedder) -> Lane {
        let feed = embedder.feed().expect("a remote model says how to feed it");
        let (quick, quick_rx) = crossbeam_channel::unbounded();
        let (bulk, bulk_rx) = crossbeam_channel::unbounded();
        for i in 0..feed.concurrency.max(1) {
            let (quick_rx, bulk_rx, common) =
                (quick_rx.clone(), bulk_rx.clone(), self.common.clone());
            std::thread::Builder::new()
                .name(format!("vembed-remote-{i}"))
                .spawn(move || work(&common, &quick_rx, &bulk_rx))
                .expect("spawning a lane thread");
        }
        Lane { quick, bulk, texts_per_call: feed.texts_per_call }
    }
}

/// A lane thread: takes calls, quick ones first, and sends them.
fn work(common: &Common, quick: &Receiver<Call>, bulk: &Receiver<Call>) {
    loop {
        let call = match quick.try_recv() {
            Ok(c) => Ok(c),
            Err(_) => crossbeam_channel::select_biased! {
                recv(quick) -> c => c,
                recv(bulk) -> c => c,
            },
        };
        let Ok(call) = call else { return };
        run(common, call);
    }
}

fn run(common: &Common, call: Call) {
    let job = &call.job;
    let failed = job.state.lock().unwrap_or_else(|p| p.into_inner()).answer.is_none();
    // The job failed on another call: this one is not sent.
    let result = if failed {
        None
    } else {
        let texts: Vec<&str> = job.texts[call.start..call.end].iter().map(String::as_str).collect();
        let r = catch_unwind(AssertUnwindSafe(|| job.embedder.embed_texts(&texts)))
            .unwrap_or_else(|p| Err(BackendError::Panicked(panic_message(&*p))));
        common.stats.record_batch(texts.len());
        Some(r)
    };
    let dim = job.embedder.dim();
    let mut state = job.state.lock().unwrap_or_else(|p| p.into_inner());
    state.left -= 1;
    match result {
        Some(Ok(v)) if v.len() == (call.end - call.start) * dim => {
            state.out[call.start * dim..call.end * dim].copy_from_slice(&v);
        }
        Some(r) => {
            let why = match r {
                Err(e) => JobError::Backend(e),
                Ok(v) => JobError::Backend(BackendError::Upstream {
                    status: None,
                    message: format!("{} floats for {} texts", v.len(), call.end - call.start),
                }),
            };
            if let Some(a) = state.answer.take() {
                drop(state);
                common.backlog.sub(job.texts.len());
                common.stats.record_error();
                a.reply.respond(Err(why));
                return;
            }
        }
        None => {}
    }
    let last = state.left == 0 && state.answer.is_some();
    drop(state);
    if last {
        finish(common, job);
    }
}

/// Answers a job whose calls all came back with vectors.
fn finish(common: &Common, job: &Running) {
    let mut state = job.state.lock().unwrap_or_else(|p| p.into_inner());
    let Some(a) = state.answer.take() else { return };
    let out = std::mem::take(&mut state.out);
    drop(state);
    common.backlog.sub(job.texts.len());
    let Answer { reply, tokens, cached, received } = a;
    let result = catch_unwind(AssertUnwindSafe(|| {
        answer::embeddings(
            &common.cache,
            &common.stats,
            &job.embedder,
            tokens,
            out,
            cached,
            received,
        )
    }))
    .map_err(|p| {
        common.stats.record_error();
        JobError::Panicked(format!("answering the request: {}", panic_message(&*p)))
    });
    reply.respond(result);
}
