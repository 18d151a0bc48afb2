//! `idgraph train`: re-estimates the matching model from the match records in a store,
//! without labels (see [`super::batch::train`]), and writes it where the resolver loads it.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::batch;
use super::compare::Attributes;
use super::model::ModelFile;
use crate::store::{GraphStore, IdentKey, StoreError};

/// Fewer records than this cannot say much about who matches whom.
pub const MIN_RECORDS: usize = 50;
/// Match records read per store call.
const PAGE: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the store holds {0} match records; training needs at least {MIN_RECORDS} (turn on \
         matching.enabled and ingest events with person traits first)"
    )]
    TooFew(usize),
    #[error("no two records share a blocking key, so there is nothing to estimate `m` from")]
    NoPairs,
}

/// Trains on at most `sample` records of the store, drawn uniformly (reservoir sampling)
/// with `seed`, so the same store and seed give the same model.
pub fn train_store(
    store: &dyn GraphStore,
    sample: usize,
    seed: u64,
) -> Result<ModelFile, TrainError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut records: Vec<Attributes> = Vec::new();
    let mut seen = 0usize;
    let mut after: Option<IdentKey> = None;
    loop {
        let page = store.match_records_after(after.as_ref(), PAGE)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        for (_, record) in page {
            seen += 1;
            if records.len() < sample {
                records.push(record.attributes);
            } else {
                let slot = rng.gen_range(0..seen);
                if let Some(r) = records.get_mut(slot) {
                    *r = record.attributes;
                }
            }
        }
    }
    if records.len() < MIN_RECORDS {
        return Err(TrainError::TooFew(records.len()));
    }
    let trained = batch::train(&records, seed);
    if trained.blocked_pairs == 0 {
        return Err(TrainError::NoPairs);
    }
    Ok(trained.into_file(records.len()))
}
