//! The door on the real model (fetched by `vembed model fetch`; these tests
//! fail loudly without it): requests split into jobs come back whole and in
//! order, every refusal comes through the reply, and background work waits
//! for room instead of failing.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use vembed_protocol::{Embeddings, ModelRef, Role};

use super::*;

struct To(mpsc::Sender<Result<Embeddings, InferError>>);
impl Reply for To {
    fn reply(self: Box<Self>, r: Result<Embeddings, InferError>) {
        let _ = self.0.send(r);
    }
}

use crate::test_support::door;

fn ask(infer: &Infer, work: Work) -> Result<Embeddings, InferError> {
    let (tx, rx) = mpsc::channel();
    infer.embed(work, |_| Box::new(To(tx)));
    rx.recv_timeout(Duration::from_secs(120)).expect("the door answers")
}

fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("text number {i} about {}", ["retries", "parsers", "sockets"][i % 3]))
        .collect()
}

fn unified() -> Model {
    Model::Named(ModelRef::Role(Role::Unified))
}

#[test]
fn a_request_of_many_jobs_comes_back_whole_and_in_input_order() {
    let d = door(1000);
    let all = texts(10);
    let whole = ask(&d.infer, Work::new(all.clone(), unified(), 100)).unwrap();
    assert_eq!(whole.len(), 10, "three jobs of at most 4, answered as one");
    let model = d.infer.model(&ModelRef::Role(Role::Unified)).unwrap();
    let dim = model.dim();
    for (i, t) in all.iter().enumerate() {
        let alone = model.embed_ids(&[model.tokenize(t).unwrap()]).unwrap();
        let got = &whole.data[i * dim..(i + 1) * dim];
        let cos: f32 = got.iter().zip(&alone).map(|(a, b)| a * b).sum();
        assert!(cos > 0.99999, "text {i} got another text's vector: cosine {cos}");
        assert_eq!(whole.tokens[i] as usize, model.tokenize(t).unwrap().len());
    }
    assert_eq!(d.stats.errors.load(Ordering::Relaxed), 0);
}

#[test]
fn every_refusal_comes_through_the_reply_typed_and_counted() {
    let d = door(1000);
    let e = ask(&d.infer, Work::new(texts(5), unified(), 4)).unwrap_err();
    assert!(matches!(e, InferError::TooManyTexts { n: 5, limit: 4 }), "{e}");
    let mut big = texts(8);
    big[6] = "x".repeat(1001);
    let e = ask(&d.infer, Work::new(big, unified(), 100)).unwrap_err();
    assert!(matches!(e, InferError::TextTooLarge { index: 6, bytes: 1001, .. }), "{e}");
    let long = vec!["short".to_string(), "a ".repeat(400)];
    let e = ask(&d.infer, Work { truncate: false, ..Work::new(long.clone(), unified(), 100) })
        .unwrap_err();
    assert!(matches!(e, InferError::TooLong { index: 1, max: 256, .. }), "{e}");
    // Truncated, as sentence-transformers does, the same text embeds.
    assert_eq!(ask(&d.infer, Work::new(long, unified(), 100)).unwrap().tokens[1], 256);
    let nosuch = Model::Named(ModelRef::Name("nosuch/model".into()));
    let e = ask(&d.infer, Work::new(texts(1), nosuch, 100)).unwrap_err();
    let message = e.to_string();
    assert!(message.starts_with("cannot serve model \"nosuch/model\": "), "{message}");
    assert!(!message.contains("Name("), "a Rust debug form: {message}");
    d.stop.store(true, Ordering::Release);
    let e = ask(&d.infer, Work::new(texts(1), unified(), 100)).unwrap_err();
    assert!(matches!(e, InferError::ShuttingDown), "{e}");
    assert_eq!(d.stats.errors.load(Ordering::Relaxed), 5, "each refusal counted once");
}

#[test]
fn background_work_waits_for_room_where_a_client_would_be_refused() {
    // A queue of 4 texts: each job of 4 fills it, so every later job of the
    // request must wait for the one before to be answered.
    let d = door(4);
    let work = Work { class: Class::Background, ..Work::new(texts(12), unified(), 100) };
    let e = ask(&d.infer, work).unwrap();
    assert_eq!(e.len(), 12);
    assert_eq!(d.infer.queued(), 0, "every text is answered and counted out");
}
