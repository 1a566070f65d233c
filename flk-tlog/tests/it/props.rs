//! Properties of appending: the tree does not depend on how entries are batched, and entries
//! read back as written, across tile borders.

use flk_tlog::{Log, MemStore};
use proptest::prelude::*;

use crate::common::{ORIGIN, entries, mem_log, signer};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn root_is_independent_of_batch_splits(
        total in 1u64..1400,
        cuts in prop::collection::vec(1usize..600, 0..12),
    ) {
        let all = entries(0..total);
        let mut log = Log::open(MemStore::new(), signer(), ORIGIN).unwrap();
        let mut at = 0usize;
        for c in cuts {
            let end = (at + c).min(all.len());
            let (first, size) = log.append_batch(&all[at..end]).unwrap();
            prop_assert_eq!((first, size), (at as u64, end as u64));
            at = end;
        }
        log.append_batch(&all[at..]).unwrap();
        let whole = mem_log(total, total as usize);
        prop_assert_eq!(log.checkpoint(), whole.checkpoint());
        for size in [1, total / 2 + 1, total] {
            prop_assert_eq!(log.root_at(size).unwrap(), whole.root_at(size).unwrap());
        }
        for i in [0, total / 3, total - 1] {
            prop_assert_eq!(log.entry(i).unwrap(), crate::common::entry(i));
        }
    }
}

#[test]
fn empty_batches_and_limits() {
    let mut log = mem_log(10, 3);
    let before = log.checkpoint_note().to_owned();
    assert_eq!(log.append_batch::<Vec<u8>>(&[]).unwrap(), (10, 10));
    assert_eq!(log.checkpoint_note(), before);
    assert!(matches!(
        log.append_batch(&[vec![0u8; 65_536]]),
        Err(flk_tlog::Error::EntryTooLarge {
            position: 0,
            len: 65_536
        })
    ));
    assert!(matches!(
        log.append_batch(&vec![vec![1u8]; flk_tlog::MAX_BATCH_ENTRIES + 1]),
        Err(flk_tlog::Error::BatchTooLarge { .. })
    ));
    log.append_batch(&[vec![0u8; 65_535], vec![]]).unwrap();
    assert_eq!(log.entry(10).unwrap().len(), 65_535);
    assert_eq!(log.entry(11).unwrap(), Vec::<u8>::new());
    assert_eq!(log.size(), 12);
}
