//! Unit tests of the index across its parts (store, search, migrate),
//! on real LMDB environments in temp dirs; and the helpers other test
//! modules share.

use super::*;

pub(crate) fn model(dim: u32) -> ModelIdentity {
    ModelIdentity { name: "m".into(), sha256: "ab".repeat(32), dim, identity: format!("i{dim}") }
}

pub(crate) fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

pub(crate) fn snippet(path: &str, line: u32) -> Snippet {
    Snippet {
        path: path.into(),
        start_line: line,
        end_line: line + 1,
        symbol: None,
        text: format!("{path}:{line}"),
    }
}

/// An index of `n` random unit vectors in 8 dimensions, 5 per file.
fn filled(dir: &Path, n: usize) -> (IndexWriter, Vec<Vec<f32>>) {
    let w = IndexWriter::open(dir, Path::new("/repo"), &model(8), false).unwrap();
    let vectors = fill(&w, n);
    (w, vectors)
}

/// Writes `n` random unit vectors in 8 dimensions, 5 per file.
fn fill(w: &IndexWriter, n: usize) -> Vec<Vec<f32>> {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
    let vectors: Vec<Vec<f32>> = (0..n)
        .map(|_| {
            unit(
                &(0..8)
                    .map(|_| rand::RngExt::random_range(&mut rng, -1.0..1.0))
                    .collect::<Vec<f32>>(),
            )
        })
        .collect();
    let mut batch = w.batch().unwrap();
    for (f, group) in vectors.chunks(5).enumerate() {
        let path = format!("f{f}.py");
        let snippets: Vec<(Snippet, &[f32])> = group
            .iter()
            .enumerate()
            .map(|(i, v)| (snippet(&path, i as u32 * 3 + 1), v.as_slice()))
            .collect();
        batch.put_file(&path, "h", &snippets).unwrap();
    }
    batch.commit().unwrap();
    vectors
}

#[test]
fn lexical_and_hybrid_find_identifiers_and_follow_removals() {
    let dir = tempfile::tempdir().unwrap();
    let w = IndexWriter::open(dir.path(), Path::new("/repo"), &model(3), false).unwrap();
    let text = |t: &str, path: &str| Snippet { text: t.into(), ..snippet(path, 1) };
    let mut batch = w.batch().unwrap();
    let (a, b) = (unit(&[1.0, 0.0, 0.0]), unit(&[0.0, 1.0, 0.0]));
    batch
        .put_file(
            "auth.py",
            "h",
            &[(text("def hash_password(pw): return pbkdf2(pw)", "auth.py"), &a)],
        )
        .unwrap();
    batch
        .put_file(
            "net.py",
            "h",
            &[(text("def retry_with_backoff(f): sleep and call again", "net.py"), &b)],
        )
        .unwrap();
    batch.commit().unwrap();
    let r = w.reader();
    let hits = r.search_lexical("where is hash_password", 5).unwrap();
    assert_eq!(hits[0].snippet.path, "auth.py");
    assert!(hits[0].score > 0.0 && hits[0].lexical.unwrap().0 == 1, "{hits:?}");
    assert_eq!(r.search_lexical("backoff", 5).unwrap()[0].snippet.path, "net.py");
    assert!(r.search_lexical("nothing matches this", 5).unwrap().is_empty());
    // Hybrid: the vector says net.py, the words say auth.py; both come back.
    let hybrid = r.search_hybrid("hash_password", &b, 5).unwrap();
    let paths: Vec<_> = hybrid.iter().map(|h| h.snippet.path.as_str()).collect();
    assert!(paths.contains(&"auth.py") && paths.contains(&"net.py"), "{hybrid:?}");
    assert!(hybrid.iter().any(|h| h.lexical.is_some() && h.semantic.is_some()));
    // Removal takes its postings with it.
    let mut batch = w.batch().unwrap();
    batch.remove_file("auth.py").unwrap();
    batch.commit().unwrap();
    assert!(r.search_lexical("hash_password", 5).unwrap().is_empty());
    let stats = {
        let rtxn = r.env.read_txn().unwrap();
        lexical::stats(&r.dbs.meta, &rtxn).unwrap()
    };
    assert_eq!(stats.docs, 1);
}

fn keys(hits: &[Hit]) -> Vec<(String, u32)> {
    hits.iter().map(|h| (h.snippet.path.clone(), h.snippet.start_line)).collect()
}

#[test]
fn codes_re_ranked_equal_the_exact_scan_and_small_indexes_search_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (w, vectors) = filled(dir.path(), 400);
    let r = w.reader();
    for q in vectors.iter().step_by(37) {
        let exact = r.search_exact(q, 10).unwrap();
        // Every code a candidate: the re-rank is the exact answer.
        let all = r.search_with(q, 10, Some(400)).unwrap();
        assert_eq!(keys(&exact), keys(&all), "same top 10");
        for (a, b) in exact.iter().zip(&all) {
            assert_eq!(a.score, b.score);
        }
        // Fewer candidates: the hits are still exact cosines, best first.
        let some = r.search_with(q, 10, Some(40)).unwrap();
        assert_eq!(some.len(), 10);
        assert!(some.windows(2).all(|w| w[0].score >= w[1].score));
        // A query that is a stored vector finds itself first.
        assert!(exact[0].score > 0.9999 && some[0].score > 0.9999);
        // Below EXACT_MAX_ITEMS a plain search is the exact one.
        assert_eq!(keys(&r.search(q, 10).unwrap()), keys(&exact));
    }
    // Removed files leave the vectors and the codes.
    let mut batch = w.batch().unwrap();
    batch.remove_file("f0.py").unwrap();
    batch.commit().unwrap();
    let exact = r.search_exact(&vectors[0], 400).unwrap();
    let coded = r.search_with(&vectors[0], 400, Some(400)).unwrap();
    for hits in [exact, coded] {
        assert_eq!(hits.len(), 395);
        assert!(hits.iter().all(|h| h.snippet.path != "f0.py"));
    }
}

#[test]
fn vector_blocks_fill_their_pages_and_a_schema_3_index_of_64s_is_read_and_migrated() {
    for dim in [8usize, 384, 768, 1024] {
        let n = vectors_per_block(dim) as usize;
        let bytes = 16 + n * (4 + rows::width(dim));
        let waste = bytes.div_ceil(4096) * 4096 - bytes;
        assert!(bytes <= 256 << 10 && waste * 50 < bytes, "{dim}: {n} ids, {bytes} B");
    }
    assert_eq!(vectors_per_block(384), 61);
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = filled(dir.path(), 10);
    assert_eq!(w.reader().dbs.vecs.per_block, vectors_per_block(8));
    drop(w);

    // A schema-3 index (blocks of 64 ids, unrecorded).
    let dir = tempfile::tempdir().unwrap();
    let mut w = IndexWriter::open(dir.path(), Path::new("/repo"), &model(8), false).unwrap();
    w.dbs.vecs.per_block = LEGACY_VECTORS_PER_BLOCK;
    let mut wtxn = w.env.write_txn().unwrap();
    assert!(w.dbs.meta.delete(&mut wtxn, META_VECTOR_BLOCK).unwrap());
    w.dbs.meta.put(&mut wtxn, META_SCHEMA, &json(&3u32)).unwrap();
    wtxn.commit().unwrap();
    let vectors = fill(&w, 400);
    drop(w);
    let schema = |r: &IndexReader| -> (u32, Option<u32>) {
        let rtxn = r.env.read_txn().unwrap();
        let get = |k| r.dbs.meta.get(&rtxn, k).unwrap().map(|b| parse(b, k).unwrap());
        (get(META_SCHEMA).unwrap(), get(META_VECTOR_BLOCK))
    };
    let check = |r: &IndexReader| {
        assert_eq!(r.dbs.vecs.per_block, LEGACY_VECTORS_PER_BLOCK);
        for q in vectors.iter().step_by(41) {
            let exact = r.search_exact(q, 10).unwrap();
            assert!(exact[0].score > 0.9999);
            assert_eq!(keys(&exact), keys(&r.search_with(q, 10, Some(400)).unwrap()));
        }
    };
    // Readers read it as it is; the writer records its 64 (schema 4).
    let r = IndexReader::open(dir.path(), None).unwrap();
    check(&r);
    assert_eq!(schema(&r), (3, None));
    drop(r);
    let w = IndexWriter::open(dir.path(), Path::new("/repo"), &model(8), false).unwrap();
    assert_eq!(schema(&w.reader()), (SCHEMA_VERSION, Some(LEGACY_VECTORS_PER_BLOCK)));
    let mut batch = w.batch().unwrap();
    batch.remove_file("f3.py").unwrap();
    batch.commit().unwrap();
    check(&w.reader());
    drop(w);
    check(&IndexReader::open(dir.path(), None).unwrap());
    // A newer schema is refused with what to do.
    let w = IndexWriter::open(dir.path(), Path::new("/repo"), &model(8), false).unwrap();
    let mut wtxn = w.env.write_txn().unwrap();
    w.dbs.meta.put(&mut wtxn, META_SCHEMA, &json(&(SCHEMA_VERSION + 1))).unwrap();
    wtxn.commit().unwrap();
    drop(w);
    let err = IndexReader::open(dir.path(), None).err().unwrap().to_string();
    assert!(err.contains("newer vembed"), "{err}");
}

#[test]
fn a_schema_2_index_is_migrated_by_the_writer_and_refused_by_readers_until_then() {
    let dir = tempfile::tempdir().unwrap();
    let (w, vectors) = filled(dir.path(), 700);
    let r = w.reader();
    let queries: Vec<&Vec<f32>> = vectors.iter().step_by(7).collect();
    let search = |r: &IndexReader| -> Vec<_> {
        queries
            .iter()
            .map(|q| {
                let exact = keys(&r.search_exact(q, 10).unwrap());
                (exact, keys(&r.search_with(q, 10, Some(60)).unwrap()))
            })
            .collect()
    };
    let before = search(&r);
    // Make it what schema 2 wrote: a scan store per file, no blocks.
    let (scan, forest): (Database<Str, Bytes>, Database<Bytes, Bytes>) = w
        .env
        .create_databases_and_commit(w.env.write_txn().unwrap(), |dbo, wtxn| -> heed::Result<_> {
            Ok(CommitOrAbort::<_, ()>::Commit((
                dbo.create_database(wtxn, Some("scan"))?,
                dbo.create_database(wtxn, Some("vectors"))?,
            )))
        })
        .unwrap()
        .commit()
        .expect("never aborted");
    let mut wtxn = w.env.write_txn().unwrap();
    forest.put(&mut wtxn, b"forest node", b"stale").unwrap();
    let mut files = Vec::new();
    for item in w.dbs.files.iter(&wtxn).unwrap() {
        let (path, bytes) = item.unwrap();
        files.push((path.to_string(), parse::<FileEntry>(bytes, "entry").unwrap()));
    }
    for (path, entry) in files {
        let vs: Vec<Vec<f32>> =
            entry.snippets.iter().map(|&id| vectors[id as usize].clone()).collect();
        scan.put(&mut wtxn, &path, &migrate::legacy_value(&entry.snippets, &vs)).unwrap();
    }
    w.dbs.vecs.db.clear(&mut wtxn).unwrap();
    w.dbs.codes.db.clear(&mut wtxn).unwrap();
    w.dbs.meta.put(&mut wtxn, META_SCHEMA, &json(&2u32)).unwrap();
    wtxn.commit().unwrap();
    drop((w, r));

    let err = IndexReader::open(dir.path(), None).err().unwrap().to_string();
    assert!(err.contains("schema 2") && err.contains("vembed index"), "{err}");
    let w = IndexWriter::open(dir.path(), Path::new("/repo"), &model(8), false).unwrap();
    let r = w.reader();
    assert_eq!(r.stats().unwrap().snippets, 700);
    assert_eq!(before, search(&r), "migrated: the same exact and coded results");
    type Legacy = (Option<Database<Str, Bytes>>, Option<Database<Bytes, Bytes>>);
    let (scan, forest): Legacy = w
        .env
        .open_databases_and_commit(w.env.read_txn().unwrap(), |dbo, rtxn| -> heed::Result<_> {
            Ok(CommitOrAbort::<_, ()>::Commit((
                dbo.open_database(rtxn, Some("scan"))?,
                dbo.open_database(rtxn, Some("vectors"))?,
            )))
        })
        .unwrap()
        .commit()
        .expect("never aborted");
    let rtxn = w.env.read_txn().unwrap();
    assert!(scan.unwrap().is_empty(&rtxn).unwrap(), "the scan store is emptied");
    assert!(forest.unwrap().is_empty(&rtxn).unwrap(), "the forest is emptied");
    drop(rtxn);
    // Another schema is not migrated.
    let mut wtxn = w.env.write_txn().unwrap();
    w.dbs.meta.put(&mut wtxn, META_SCHEMA, &json(&7u32)).unwrap();
    wtxn.commit().unwrap();
    drop((w, r));
    let err = IndexWriter::open(dir.path(), Path::new("/repo"), &model(8), false).err().unwrap();
    assert!(err.to_string().contains("schema 7") && err.to_string().contains("--rebuild"), "{err}");
}

#[test]
fn vector_rows_round_trip() {
    let mut row = Vec::new();
    rows::encode(&[3.0, 4.0, 0.0], &mut row);
    let (norm, v) = rows::split(&row);
    assert_eq!((norm, row.len()), (5.0, rows::width(3)));
    assert_eq!(rows::dot(v, &[1.0, 1.0, 1.0]), 7.0);
    // Eight lanes and a remainder agree with a plain loop.
    let v: Vec<f32> = (0..19).map(|i| i as f32 * 0.5 - 3.0).collect();
    let q: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 * 0.1).collect();
    let mut row = Vec::new();
    rows::encode(&v, &mut row);
    let d = rows::dot(rows::split(&row).1, &q);
    let want: f32 = v.iter().zip(&q).map(|(x, y)| x * y).sum();
    assert!((d - want).abs() < 1e-4, "{d} vs {want}");
}

#[test]
fn write_search_replace_remove_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new("/repo");
    let w = IndexWriter::open(dir.path(), root, &model(3), false).unwrap();
    // Readers can open a fresh, empty index.
    let r = w.reader();
    assert!(r.search(&unit(&[1.0, 0.0, 0.0]), 5).unwrap().is_empty());

    let (a, b, c) = (unit(&[1.0, 0.1, 0.0]), unit(&[0.0, 1.0, 0.1]), unit(&[0.1, 0.0, 1.0]));
    let mut batch = w.batch().unwrap();
    batch.put_file("a.py", "h1", &[(snippet("a.py", 1), &a), (snippet("a.py", 10), &b)]).unwrap();
    batch.put_file("c.py", "h2", &[(snippet("c.py", 1), &c)]).unwrap();
    // Not visible before the commit.
    assert!(r.search(&a, 5).unwrap().is_empty());
    batch.commit().unwrap();

    let hits = r.search(&unit(&[0.0, 0.0, 1.0]), 2).unwrap();
    assert_eq!(hits[0].snippet.path, "c.py");
    assert!(hits[0].score > 0.99 && hits[0].score >= hits[1].score, "{hits:?}");
    assert_eq!(r.stats().unwrap().snippets, 3);

    // Replacing a file replaces only its snippets.
    let mut batch = w.batch().unwrap();
    assert_eq!(batch.put_file("a.py", "h3", &[(snippet("a.py", 5), &a)]).unwrap(), 2);
    batch.commit().unwrap();
    let s = r.stats().unwrap();
    assert_eq!((s.files, s.snippets), (2, 2));
    let files = w.files().unwrap();
    assert_eq!(files.iter().find(|(p, _)| p == "a.py").unwrap().1.hash, "h3");

    // Removing a file removes its snippets.
    let mut batch = w.batch().unwrap();
    assert_eq!(batch.remove_file("c.py").unwrap(), 1);
    batch.commit().unwrap();
    let hits = r.search(&unit(&[0.0, 0.0, 1.0]), 5).unwrap();
    assert!(hits.iter().all(|h| h.snippet.path == "a.py"), "{hits:?}");

    drop((w, r));

    // Another model: a clear error, for the writer and for readers.
    let err = IndexWriter::open(dir.path(), root, &model(4), false).err().unwrap().to_string();
    assert!(err.contains("rebuild"), "{err}");
    let err = IndexReader::open(dir.path(), Some(&model(4))).err().unwrap().to_string();
    assert!(err.contains("was built with m") && err.contains("rebuild"), "{err}");
    // --rebuild empties it for the new model.
    IndexWriter::open(dir.path(), root, &model(4), true).unwrap();
    let r = IndexReader::open(dir.path(), Some(&model(4))).unwrap();
    assert_eq!(r.stats().unwrap().snippets, 0);
    assert!(matches!(
        IndexReader::open(&dir.path().join("nope"), None),
        Err(IndexError::Missing(_))
    ));
}
