//! Splits written by the dataset writer: a rule never puts one source photo (and so
//! never one chain or pair) in two splits, a split file is checked, and splits are part
//! of the dataset version.

use std::collections::{HashMap, HashSet};

use editfeed::dataset::manifest::Manifest;
use editfeed::dataset::splits::{SplitFile, SplitRule, SplitSource};
use editfeed::dataset::writer::{DatasetWriter, ShardTarget, WriteOptions};
use editfeed::dataset::Subset;
use proptest::prelude::*;

fn opts() -> WriteOptions {
    WriteOptions {
        target: ShardTarget::Samples(7),
        level: 1,
        compress_literals: false,
        overwrite: true,
    }
}

/// Writes `n` tiny samples per subset; sample `i` of every subset has source photo
/// `i % photos`. Returns the manifest.
fn write(
    dir: &std::path::Path,
    n: u64,
    photos: u64,
    splits: Option<SplitSource>,
) -> Result<Manifest, String> {
    let mut w = DatasetWriter::create(dir, opts())
        .unwrap()
        .with_splits(splits);
    for subset in Subset::ALL {
        for i in 0..n {
            let json = format!(
                r#"{{"text":"edit {i}","source_url":"https://photos.invalid/{}.jpg"}}"#,
                i % photos
            );
            w.add_members(
                subset,
                None,
                &format!("{i:04}"),
                [("json", json.as_bytes())],
            )
            .map_err(|e| e.to_string())?;
        }
    }
    w.finish().map_err(|e| e.to_string())
}

/// Split id of every sample, by (subset, ordinal).
fn split_ids(m: &Manifest) -> Vec<(Subset, u64, u8)> {
    let mut out = Vec::new();
    for (subset, s) in &m.subsets {
        for (i, b) in s.shards.iter().flat_map(|sh| sh.splits.bytes()).enumerate() {
            out.push((*subset, i as u64, b - b'0'));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn train_and_test_never_share_a_source_photo(
        seed in any::<u64>(),
        train in 0.0f64..1.0,
        val_share in 0.0f64..1.0,
        photos in 1u64..12,
    ) {
        let val = (1.0 - train) * val_share;
        let test = 1.0 - train - val;
        let rule = format!("seed={seed},train={train},val={val},test={test}");
        let dir = tempfile::tempdir().unwrap();
        let m = write(dir.path(), 20, photos, Some(SplitSource::Rule(SplitRule::parse(&rule).unwrap()))).unwrap();
        prop_assert_eq!(&m.splits[..3], &["train", "val", "test"]);
        let mut photo_split: HashMap<u64, u8> = HashMap::new();
        let mut by_split: [HashSet<(Subset, u64)>; 3] = Default::default();
        for (subset, i, id) in split_ids(&m) {
            prop_assert!(id < 3);
            // Each sample in exactly one split.
            prop_assert!(by_split[id as usize].insert((subset, i)));
            let prev = photo_split.insert(i % photos, id);
            prop_assert!(prev.is_none() || prev == Some(id), "photo {} in two splits", i % photos);
        }
        prop_assert!(by_split[0].is_disjoint(&by_split[2]));
        prop_assert_eq!(by_split.iter().map(|s| s.len()).sum::<usize>(), 60);
    }
}

#[test]
fn splits_are_part_of_the_version() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let plain = write(a.path(), 5, 5, None).unwrap();
    let r1 = SplitRule::parse("seed=1,train=0.5,test=0.5").unwrap();
    let r2 = SplitRule::parse("seed=2,train=0.5,test=0.5").unwrap();
    let s1 = write(b.path(), 5, 5, Some(SplitSource::Rule(r1))).unwrap();
    let s2 = write(c.path(), 5, 5, Some(SplitSource::Rule(r2))).unwrap();
    assert!(plain.splits.is_empty());
    assert_ne!(plain.version, s1.version);
    assert_ne!(split_ids(&s1), split_ids(&s2));
    assert_ne!(s1.version, s2.version);
    // Tampering with a split character breaks validation.
    let mut bad = s1.clone();
    let sh = &mut bad.subsets.get_mut(&Subset::Sft).unwrap().shards[0];
    sh.splits = sh
        .splits
        .chars()
        .map(|c| if c == '0' { '2' } else { '0' })
        .collect();
    let e = Manifest::parse(&bad.to_json()).unwrap_err().to_string();
    assert!(e.contains("does not match"), "{e}");
}

#[test]
fn split_files_are_checked_against_the_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for subset in Subset::ALL {
        for i in 0..3 {
            text.push_str(&format!(
                "{subset}/{i:04} {}\n",
                if i == 0 { "test" } else { "train" }
            ));
        }
    }
    let file = |t: &str| {
        Some(SplitSource::File(
            SplitFile::parse("splits.txt", t).unwrap(),
        ))
    };
    let m = write(dir.path(), 3, 3, file(&text)).unwrap();
    let ids: Vec<u8> = split_ids(&m).into_iter().map(|x| x.2).collect();
    assert_eq!(ids, [2, 0, 0, 2, 0, 0, 2, 0, 0]);
    let e = write(dir.path(), 3, 3, file(&format!("{text}sft/9999 val\n"))).unwrap_err();
    assert!(
        e.contains("splits.txt: 1 keys are not in the dataset, first sft/9999 at line 10"),
        "{e}"
    );
    let e = write(dir.path(), 4, 3, file(&text)).unwrap_err();
    assert!(e.contains("sample sft/0003 is not listed"), "{e}");
}
