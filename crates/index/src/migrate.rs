//! Schema 2 → the current one, in place, in the transaction that opens the
//! index: the vectors move from the per-file scan store into blocks by id
//! (of the page-fitted size, recorded), each gets its sign-bit code, and
//! the arroy forest and the scan store are emptied.
//! The snippets, files and BM25 postings are the same in both.

use heed::types::Bytes;

use crate::blocks::Pending;
use crate::{
    Database, Dbs, IndexError, META_SCHEMA, META_VECTOR_BLOCK, Result, SCHEMA_VERSION, codes, json,
    rows,
};

/// Rows held in memory before a migration writes its blocks out.
const ROWS_PER_FLUSH: usize = 50_000;

/// The schema-2 databases that schemas 3 and 4 no longer read.
pub(crate) struct Legacy {
    /// arroy's forest, with its own copy of each vector.
    pub forest: Option<Database<Bytes, Bytes>>,
    /// Per file: ids (`u32`), norms (`f32`), vectors (`dim` `f32` each).
    pub scan: Option<Database<Bytes, Bytes>>,
}

impl Legacy {
    /// Empties them (an index of the current schema keeps them empty).
    pub fn clear(&self, wtxn: &mut heed::RwTxn<'_>) -> Result<()> {
        for db in [self.forest, self.scan].into_iter().flatten() {
            db.clear(wtxn)?;
        }
        Ok(())
    }
}

/// Moves a schema-2 index to the current schema.
pub(crate) fn from_v2(
    dbs: &Dbs,
    legacy: &Legacy,
    wtxn: &mut heed::RwTxn<'_>,
    dim: usize,
) -> Result<()> {
    let scan = legacy.scan.ok_or_else(|| {
        IndexError::Corrupt("a schema 2 index without its scan store".to_string())
    })?;
    let (mut vecs, mut codes_) = (Pending::new(dbs.vecs), Pending::new(dbs.codes));
    let (mut row, mut code) = (Vec::new(), Vec::new());
    let mut held = 0;
    // Read by path, in pages: the values borrow the transaction, which
    // each flush writes to.
    let mut after: Option<Vec<u8>> = None;
    loop {
        let mut page = Vec::new();
        let range = match &after {
            Some(key) => scan.range(
                wtxn,
                &(std::ops::Bound::Excluded(key.as_slice()), std::ops::Bound::Unbounded),
            )?,
            None => scan.range(wtxn, &(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded))?,
        };
        for item in range {
            let (path, value) = item?;
            page.push((path.to_vec(), value.to_vec()));
            if page.len() == 256 {
                break;
            }
        }
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (path, value) in &page {
            for (id, vector) in legacy_rows(value, dim, path)? {
                row.clear();
                rows::encode(&vector, &mut row);
                vecs.insert(wtxn, id, &row)?;
                code.clear();
                codes::encode(&vector, &mut code);
                codes_.insert(wtxn, id, &code)?;
                held += 1;
            }
        }
        if held >= ROWS_PER_FLUSH {
            vecs.flush(wtxn)?;
            codes_.flush(wtxn)?;
            held = 0;
        }
    }
    vecs.flush(wtxn)?;
    codes_.flush(wtxn)?;
    legacy.clear(wtxn)?;
    dbs.meta.put(wtxn, META_SCHEMA, &json(&SCHEMA_VERSION))?;
    dbs.meta.put(wtxn, META_VECTOR_BLOCK, &json(&dbs.vecs.per_block))?;
    Ok(())
}

/// `(id, vector)` of each snippet in a schema-2 scan value.
fn legacy_rows(value: &[u8], dim: usize, path: &[u8]) -> Result<Vec<(u32, Vec<f32>)>> {
    let row = 8 + 4 * dim;
    let n = value.len() / row;
    if n * row != value.len() {
        let path = String::from_utf8_lossy(path);
        return Err(IndexError::Corrupt(format!("scan store of {path}: bad length")));
    }
    let (ids, rest) = value.split_at(4 * n);
    let vectors = &rest[4 * n..];
    Ok(ids
        .chunks_exact(4)
        .zip(vectors.chunks_exact(4 * dim))
        .map(|(i, v)| {
            let id = u32::from_le_bytes(rows::le(i));
            (id, v.chunks_exact(4).map(|b| f32::from_le_bytes(rows::le(b))).collect())
        })
        .collect())
}

/// Writes `vectors` (one file's, with their ids) as schema 2 did, for the
/// migration's test.
#[cfg(test)]
pub(crate) fn legacy_value(ids: &[u32], vectors: &[Vec<f32>]) -> Vec<u8> {
    let mut out = Vec::new();
    for id in ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
    for v in vectors {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        out.extend_from_slice(&norm.to_le_bytes());
    }
    for v in vectors {
        for x in v {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out
}
