//! The indexer's pipeline in process, on the real model and a real LMDB
//! index in a temp dir: walk, chunk, embed through the door, commit; then
//! an edit re-embeds only what changed, and searches read what was written.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use vembed_protocol::{IndexRequest, IndexSummary, RankedSearchRequest, Response, SearchMode};

use super::Indexer;
use crate::test_support::door;

fn run(indexer: &Arc<Indexer>, repo: &std::path::Path, dir: &std::path::Path) -> IndexSummary {
    let (tx, rx) = mpsc::channel();
    let req = IndexRequest {
        repo: repo.display().to_string(),
        index_dir: Some(dir.display().to_string()),
        rebuild: false,
    };
    let tx = std::sync::Mutex::new(tx);
    indexer.index(
        req,
        None,
        Box::new(move |r: &Response| {
            let _ = tx.lock().unwrap().send(r.clone());
        }),
    );
    loop {
        match rx.recv_timeout(Duration::from_secs(300)).expect("the job answers") {
            Response::IndexProgress(_) => {}
            Response::IndexDone(s) => return s,
            other => panic!("indexing failed: {other:?}"),
        }
    }
}

#[test]
fn a_job_embeds_what_changed_commits_it_and_searches_read_it() {
    let d = door(1 << 16);
    let indexer = Indexer::new(Arc::new(d.infer));
    let tmp = tempfile::tempdir().unwrap();
    let (repo, dir) = (tmp.path().join("repo"), tmp.path().join("index"));
    std::fs::create_dir_all(&repo).unwrap();
    for i in 0..12 {
        let body = format!(
            "def handler_{i}(request):\n    \"\"\"Handle request kind {i}.\"\"\"\n    return {i}\n"
        );
        std::fs::write(repo.join(format!("m{i}.py")), body).unwrap();
    }
    std::fs::write(repo.join("retry.py"), "def retry_with_backoff(call, tries):\n    \"\"\"Call again, waiting twice as long each time.\"\"\"\n    return call()\n").unwrap();
    let first = run(&indexer, &repo, &dir);
    assert_eq!((first.files_seen, first.indexed), (13, 13), "{first:?}");
    assert!(first.chunks_added >= 13 && first.tokens > 0, "{first:?}");

    // One file edited: only it is embedded again.
    std::fs::write(repo.join("m3.py"), "def handler_3(request):\n    return 'changed'\n").unwrap();
    let second = run(&indexer, &repo, &dir);
    assert_eq!((second.indexed, second.unchanged), (1, 12), "{second:?}");

    let search = |mode| {
        indexer
            .search_ranked(
                &RankedSearchRequest {
                    repo: repo.display().to_string(),
                    index_dir: Some(dir.display().to_string()),
                    query: "retry a call with exponential backoff".into(),
                    k: 3,
                    mode,
                },
                None,
            )
            .unwrap()
    };
    for mode in [SearchMode::Semantic, SearchMode::Hybrid] {
        let hits = search(mode);
        assert_eq!(hits[0].hit.path, "retry.py", "{mode:?}: {hits:?}");
    }
}
