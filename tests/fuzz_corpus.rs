//! Replays every checked-in fuzz corpus file (`fuzz/corpus/<target>/*`) through the same target
//! bodies the fuzzer runs ([`meshprobe::fuzzing::TARGETS`]), on stable, without libFuzzer:
//! the smoke run of the test command. A file that panics (or violates a target's invariant)
//! fails the test, naming the file.

use std::path::Path;

#[test]
fn every_corpus_file_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut failures = Vec::new();
    for (name, body) in meshprobe::fuzzing::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: no corpus files", dir.display());
        for f in &files {
            let data = std::fs::read(f).expect("read corpus file");
            if std::panic::catch_unwind(|| body(&data)).is_err() {
                failures.push(f.display().to_string());
            }
        }
        eprintln!("{name}: {} files replayed", files.len());
    }
    // Every corpus directory is a target (a renamed target would otherwise go unreplayed).
    for entry in std::fs::read_dir(&root).expect("fuzz/corpus") {
        let n = entry
            .expect("dir entry")
            .file_name()
            .into_string()
            .expect("utf-8");
        assert!(
            meshprobe::fuzzing::target(&n).is_some(),
            "fuzz/corpus/{n}: no such target"
        );
    }
    assert!(failures.is_empty(), "corpus files that fail: {failures:#?}");
}
