//! A writer killed (SIGKILL, a real process) while it commits leaves an
//! index that opens, holds one whole commit, and searches the same by
//! codes as by the exact scan.

use std::io::BufRead;
use std::process::{Command, Stdio};

use super::*;
use crate::tests::{model, snippet, unit};

const CHILD: &str = "VEMBED_INDEX_CRASH_CHILD";
const DIM: u32 = 64;

/// The child: replaces files in batches forever, printing each commit.
fn write_forever(dir: &Path) -> ! {
    let w = IndexWriter::open(dir, Path::new("/repo"), &model(DIM), false).unwrap();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(11);
    for round in 0u64.. {
        let mut batch = w.batch().unwrap();
        for f in 0..40 {
            // Files come back with new vectors: removals and additions.
            let path = format!("f{}.py", (round * 17 + f) % 300);
            let vectors: Vec<Vec<f32>> = (0..60)
                .map(|_| {
                    let v: Vec<f32> =
                        (0..DIM).map(|_| rand::RngExt::random_range(&mut rng, -1.0..1.0)).collect();
                    unit(&v)
                })
                .collect();
            let snippets: Vec<(Snippet, &[f32])> = vectors
                .iter()
                .enumerate()
                .map(|(i, v)| (snippet(&path, i as u32), v.as_slice()))
                .collect();
            batch.put_file(&path, "h", &snippets).unwrap();
        }
        batch.commit().unwrap();
        println!("committed {round}");
    }
    unreachable!()
}

#[test]
fn a_writer_killed_while_committing_leaves_a_usable_consistent_index() {
    if let Some(dir) = std::env::var_os(CHILD) {
        write_forever(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    for attempt in 0..3u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_tests::a_writer_killed_while_committing_leaves_a_usable_consistent_index",
            ])
            .args(["--nocapture", "--test-threads=1"])
            .env(CHILD, dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut commits = 0;
        while commits < 3 + attempt {
            let line = lines.next().expect("the child stopped early").unwrap();
            commits += u64::from(line.starts_with("committed"));
        }
        // Mid-way through a later batch or its commit.
        std::thread::sleep(std::time::Duration::from_millis(7 * attempt + 3));
        child.kill().unwrap();
        child.wait().unwrap();

        let w = IndexWriter::open(dir.path(), Path::new("/repo"), &model(DIM), false).unwrap();
        let r = w.reader();
        let rtxn = w.env.read_txn().unwrap();
        let snippets = w.dbs.snippets.len(&rtxn).unwrap();
        let mut in_files = 0;
        for item in w.dbs.files.iter(&rtxn).unwrap() {
            let entry: FileEntry = parse(item.unwrap().1, "entry").unwrap();
            for id in &entry.snippets {
                assert!(w.dbs.vecs.get(&rtxn, *id).unwrap().is_some(), "vector of {id}");
                assert!(w.dbs.codes.get(&rtxn, *id).unwrap().is_some(), "code of {id}");
            }
            in_files += entry.snippets.len() as u64;
        }
        let rows = |store: &blocks::Store| -> u64 {
            let mut n = 0;
            for item in store.db.iter(&rtxn).unwrap() {
                let (block, bytes) = item.unwrap();
                n += store.view(block, bytes).unwrap().len() as u64;
            }
            n
        };
        assert_eq!((rows(&w.dbs.vecs), rows(&w.dbs.codes)), (snippets, snippets));
        assert_eq!(in_files, snippets, "files, snippets, vectors and codes agree");
        drop(rtxn);
        let n = snippets as usize;
        assert!(n >= 40 * 60, "at least one whole commit: {n}");
        let q = unit(&vec![0.5; DIM as usize]);
        let exact = r.search_exact(&q, 10).unwrap();
        let coded = r.search_with(&q, 10, Some(n)).unwrap();
        assert_eq!(exact, coded);
    }
}
