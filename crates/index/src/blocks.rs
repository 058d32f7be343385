//! Rows stored in blocks addressed by snippet id: block `id / per_block`
//! holds the rows of the live ids in that range, in id order, as one LMDB
//! value. Snippet ids only grow, so new rows go to the last block, and a
//! removal rewrites only the blocks of the removed ids. Both the vectors
//! (small blocks, read one by one to re-rank) and the sign codes (large
//! segments, scanned whole from the memory map) are kept this way.
//!
//! A value is `n` ids (`u32`, little endian, ascending), then `n` rows of
//! the store's fixed width.

use std::collections::BTreeMap;

use heed::types::{Bytes, U32};

use crate::{BigEndian, Database, IndexError, Result};

/// One block store: its database, how many ids a block spans and the bytes
/// of one row.
#[derive(Clone, Copy)]
pub(crate) struct Store {
    pub db: Database<U32<BigEndian>, Bytes>,
    pub per_block: u32,
    pub width: usize,
}

/// A decoded value, borrowed from the map.
pub(crate) struct View<'a> {
    pub ids: &'a [u8],
    pub rows: &'a [u8],
    pub width: usize,
}

impl<'a> View<'a> {
    /// Rows held.
    pub fn len(&self) -> usize {
        self.ids.len() / 4
    }

    /// The `i`th id.
    pub fn id(&self, i: usize) -> u32 {
        let b = &self.ids[4 * i..4 * i + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The `i`th row.
    pub fn row(&self, i: usize) -> &'a [u8] {
        &self.rows[i * self.width..(i + 1) * self.width]
    }

    /// The row of `id`, if the block holds it.
    pub fn find(&self, id: u32) -> Option<&'a [u8]> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.id(mid).cmp(&id) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.row(mid)),
            }
        }
        None
    }
}

impl Store {
    /// The block of `id`.
    pub fn block_of(&self, id: u32) -> u32 {
        id / self.per_block
    }

    /// Splits a stored value, or says which block is damaged.
    pub fn view<'a>(&self, block: u32, bytes: &'a [u8]) -> Result<View<'a>> {
        let row = 4 + self.width;
        let n = bytes.len() / row;
        if n * row != bytes.len() {
            return Err(IndexError::Corrupt(format!(
                "block {block} of a store of {}-byte rows has {} bytes",
                self.width,
                bytes.len()
            )));
        }
        let (ids, rows) = bytes.split_at(4 * n);
        Ok(View { ids, rows, width: self.width })
    }

    /// The row of `id` in the snapshot `txn`.
    pub fn get<'t>(&self, txn: &'t heed::RoTxn<'_>, id: u32) -> Result<Option<&'t [u8]>> {
        let block = self.block_of(id);
        match self.db.get(txn, &block)? {
            Some(bytes) => Ok(self.view(block, bytes)?.find(id)),
            None => Ok(None),
        }
    }
}

/// A block being changed in a write transaction: its ids and rows, owned.
#[derive(Default)]
struct Owned {
    ids: Vec<u32>,
    rows: Vec<u8>,
}

/// The blocks a batch changes, loaded on first touch and written back at
/// [`Pending::flush`] (an empty block is deleted).
pub(crate) struct Pending {
    store: Store,
    blocks: BTreeMap<u32, Owned>,
}

impl Pending {
    pub fn new(store: Store) -> Pending {
        Pending { store, blocks: BTreeMap::new() }
    }

    fn load(&mut self, wtxn: &heed::RwTxn<'_>, block: u32) -> Result<&mut Owned> {
        if !self.blocks.contains_key(&block) {
            let mut owned = Owned::default();
            if let Some(bytes) = self.store.db.get(wtxn, &block)? {
                let view = self.store.view(block, bytes)?;
                owned.ids = (0..view.len()).map(|i| view.id(i)).collect();
                owned.rows = view.rows.to_vec();
            }
            self.blocks.insert(block, owned);
        }
        Ok(self.blocks.get_mut(&block).expect("just loaded"))
    }

    /// Adds the row of an id not stored yet (new ids are the largest, so
    /// this appends; a migration inserts in any order).
    pub fn insert(&mut self, wtxn: &heed::RwTxn<'_>, id: u32, row: &[u8]) -> Result<()> {
        debug_assert_eq!(row.len(), self.store.width);
        let width = self.store.width;
        let block = self.store.block_of(id);
        let owned = self.load(wtxn, block)?;
        if owned.ids.last().is_none_or(|&last| last < id) {
            owned.ids.push(id);
            owned.rows.extend_from_slice(row);
            return Ok(());
        }
        match owned.ids.binary_search(&id) {
            Ok(_) => Err(IndexError::Corrupt(format!("snippet {id} is stored twice"))),
            Err(i) => {
                owned.ids.insert(i, id);
                owned.rows.splice(i * width..i * width, row.iter().copied());
                Ok(())
            }
        }
    }

    /// Removes the row of `id`, if stored.
    pub fn remove(&mut self, wtxn: &heed::RwTxn<'_>, id: u32) -> Result<()> {
        let width = self.store.width;
        let owned = self.load(wtxn, self.store.block_of(id))?;
        if let Ok(i) = owned.ids.binary_search(&id) {
            owned.ids.remove(i);
            owned.rows.drain(i * width..(i + 1) * width);
        }
        Ok(())
    }

    /// Writes every changed block back (and forgets them).
    pub fn flush(&mut self, wtxn: &mut heed::RwTxn<'_>) -> Result<()> {
        let mut value = Vec::new();
        for (block, owned) in std::mem::take(&mut self.blocks) {
            if owned.ids.is_empty() {
                self.store.db.delete(wtxn, &block)?;
                continue;
            }
            value.clear();
            for id in &owned.ids {
                value.extend_from_slice(&id.to_le_bytes());
            }
            value.extend_from_slice(&owned.rows);
            self.store.db.put(wtxn, &block, &value)?;
        }
        Ok(())
    }
}
