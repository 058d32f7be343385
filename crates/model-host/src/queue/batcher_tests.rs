//! The batcher on the real default model: jobs waiting together share a
//! forward pass, the token budget cuts batches, every job gets its own
//! vectors in its own order, and the backlog is given back.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;
use vembed_protocol::Embeddings;

use super::Batcher;
use crate::cache::EmbedCache;
use crate::model::Embedder;
use crate::queue::backlog::Backlog;
use crate::queue::job::{Input, Job, JobError};
use crate::stats::Stats;

type Answer = Receiver<Result<Embeddings, JobError>>;

/// Sends every job into the batcher's channel before waking it, so that
/// its first round sees them all; returns each job's answer.
fn run(
    model: &Arc<Embedder>,
    jobs: &[&[&str]],
    max_batch_tokens: usize,
) -> (Vec<Answer>, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let backlog = Arc::new(Backlog::new(1000));
    let (tx, rx) = crossbeam_channel::unbounded();
    let batcher = Arc::new(Batcher::new(
        stats.clone(),
        Arc::new(EmbedCache::new(None)),
        rx,
        backlog.clone(),
        max_batch_tokens,
    ));
    let mut answers = Vec::new();
    for texts in jobs {
        let ids = texts.iter().map(|t| model.tokenize(t).unwrap()).collect();
        backlog.try_add(texts.len()).unwrap();
        let (reply, answer) = crossbeam_channel::bounded(1);
        let job = Job {
            model: model.clone(),
            input: Input::Ids(ids),
            reply: Box::new(reply),
            received: Instant::now(),
            cached: None,
        };
        tx.send(job).unwrap();
        answers.push(answer);
    }
    batcher.wake();
    let waited: Vec<Answer> = answers
        .into_iter()
        .map(|a| {
            let r = a.recv().expect("every job is answered");
            let (tx, rx) = crossbeam_channel::bounded(1);
            tx.send(r).unwrap();
            rx
        })
        .collect();
    assert_eq!(backlog.texts(), 0, "every text's place in the backlog is given back");
    // Each batch is counted before its jobs are answered.
    (waited, stats)
}

/// Each text embedded alone, for comparison.
fn alone(model: &Embedder, text: &str) -> Vec<f32> {
    model.embed_ids(&[model.tokenize(text).unwrap()]).unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

fn check(model: &Embedder, texts: &[&str], answer: &Answer) {
    let e = answer.recv().unwrap().expect("vectors");
    let dim = model.dim();
    assert_eq!(e.data.len(), texts.len() * dim);
    for (i, text) in texts.iter().enumerate() {
        let c = cosine(&e.data[i * dim..(i + 1) * dim], &alone(model, text));
        assert!(c >= 0.9999, "text {i} ({text:?}) of its job: cosine {c}");
        assert_eq!(e.tokens[i] as usize, model.tokenize(text).unwrap().len());
    }
}

#[test]
fn jobs_waiting_together_share_one_forward_pass_and_each_gets_its_own_vectors() {
    let model = crate::test_support::model();
    let jobs: [&[&str]; 3] = [
        &["the first job's only text"],
        &["a second job", "with a longer second text than its first one"],
        &["third"],
    ];
    let (answers, stats) = run(&model, &jobs, 16384);
    for (texts, answer) in jobs.iter().zip(&answers) {
        check(&model, texts, answer);
    }
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.batches.load(Relaxed), 1, "one forward pass for all four texts");
    assert_eq!(stats.requests.load(Relaxed), 3);
}

#[test]
fn the_token_budget_cuts_batches_and_a_job_keeps_its_order() {
    let model = crate::test_support::model();
    let long = "a text long enough that two of them pass the budget of twenty tokens";
    let texts: [&str; 4] = ["short", long, "a middle sized text", long];
    let (answers, stats) = run(&model, &[&texts], 20);
    check(&model, &texts, &answers[0]);
    let batches = stats.batches.load(std::sync::atomic::Ordering::Relaxed);
    assert!(batches >= 3, "a 20-token budget runs the long texts apart: {batches} batches");
}

#[test]
fn a_job_with_nothing_to_embed_is_answered_without_a_forward_pass() {
    let model = crate::test_support::model();
    let (answers, stats) = run(&model, &[&[]], 16384);
    let e = answers[0].recv().unwrap().unwrap();
    assert!(e.data.is_empty() && e.tokens.is_empty());
    assert_eq!(stats.batches.load(std::sync::atomic::Ordering::Relaxed), 0);
}
