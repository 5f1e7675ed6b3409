//! Replays every checked-in fuzz corpus file (`fuzz/corpus/<target>/*`) through the same target
//! bodies the fuzzer runs ([`meshprobe::fuzzing::TARGETS`]), on stable, without libFuzzer:
//! the smoke run of the test command. A file that panics (or violates a target's invariant)
//! fails the test, naming the file.

use std::path::Path;

/// A target's corpus files, sorted.
fn corpus_files(root: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let dir = root.join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut failures = Vec::new();
    for (name, body) in meshprobe::fuzzing::TARGETS {
        let files = corpus_files(&root, name);
        assert!(!files.is_empty(), "fuzz/corpus/{name}: no corpus files");
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

/// The seeds reach the accepting paths (a seed every parser refuses would fuzz nothing).
#[test]
fn seeds_reach_the_accepting_paths() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let read = |t: &str, f: &str| std::fs::read(root.join(t).join(f)).expect("seed");

    let peers = String::from_utf8(read("peers_file", "yaml")).unwrap();
    assert_eq!(meshprobe::peers::parse(&peers).unwrap().targets.len(), 2);

    let body = read("ondemand", "request-1");
    meshprobe::ondemand::request::parse_body(&body).unwrap();

    let icmp = read("icmp_reply", "echo-reply");
    let echo = meshprobe::probe::wire::Echo {
        ident: u16::from_be_bytes([icmp[0], icmp[1]]),
        seq: u16::from_be_bytes([icmp[2], icmp[3]]),
        cookie: icmp[4..12].try_into().unwrap(),
    };
    let dest = std::net::Ipv4Addr::new(icmp[12], icmp[13], icmp[14], icmp[15]);
    assert_eq!(
        echo.parse(&icmp[16..], dest),
        Some(meshprobe::probe::wire::Reply::Echo)
    );
    let frag = read("icmp_reply", "frag-needed");
    assert!(matches!(
        echo.parse(&frag[16..], dest),
        Some(meshprobe::probe::wire::Reply::TooBig {
            mtu: Some(1400),
            ..
        })
    ));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let judge = |f: &str| {
        rt.block_on(meshprobe::probe::http::judge_reply(
            &read("http_reply", f),
            Some("node-2"),
            std::time::Duration::from_secs(2),
        ))
    };
    assert_eq!(judge("ok"), Ok(()));
    assert_eq!(judge("chunked"), Ok(()));
    assert!(matches!(
        judge("wrong-peer"),
        Err(meshprobe::model::ErrorClass::WrongPeer { .. })
    ));
    assert!(matches!(
        judge("status-503"),
        Err(meshprobe::model::ErrorClass::HttpStatus { code: 503 })
    ));
    assert!(matches!(
        judge("truncated"),
        Err(meshprobe::model::ErrorClass::Protocol { .. })
    ));

    let docs = String::from_utf8(read("results", "two-agents")).unwrap();
    for d in docs.split('\0') {
        let r = meshprobe::diagnosis::AgentReport::from_json(d).unwrap();
        assert!(!r.peers.is_empty());
    }
}

/// SplitMix64: a seeded, dependency-free source for the mutator (runs are reproducible).
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to the parsers (JSON, YAML, HTTP, numbers, addresses).
const INTERESTING: &[u8] = b"\0\xff\x7f\x80\"'{}[]:,-. \n\r\t0129/%\\";

/// One libFuzzer-style mutation (up to 4 stacked) of a corpus input, optionally spliced with
/// another.
fn mutate(rng: &mut Mix, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(16)).min(len);
                v.drain(a..b);
            }
            3 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                let chunk = v[a..b].to_vec();
                let at = rng.below(len + 1);
                v.splice(at..at, chunk);
            }
            4 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(at..at, bytes);
            }
            5 if !other.is_empty() => {
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            _ => {
                let at = rng.below(len + 1);
                v.truncate(at);
            }
        }
    }
    v
}

/// The test command's fuzz smoke run, on stable: every target gets seeded mutations of its
/// corpus (bit flips, interesting bytes, deletions, duplications, insertions, splices,
/// truncations). libFuzzer (nightly, `fuzz/run-all.sh`) explores far more; this catches a
/// regression that the checked-in corpus alone would not. MESHPROBE_FUZZ_SMOKE_ITERS (default
/// 1,500) inputs per target, MESHPROBE_FUZZ_SMOKE_SEED (default 1). A failing input is written
/// to the temp directory and named.
#[test]
fn mutated_corpus_inputs_pass_their_targets() {
    let iters: usize = std::env::var("MESHPROBE_FUZZ_SMOKE_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let seed: u64 = std::env::var("MESHPROBE_FUZZ_SMOKE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut failures = Vec::new();
    for (name, body) in meshprobe::fuzzing::TARGETS {
        let files = corpus_files(&root, name);
        let corpus: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
        let mut rng = Mix(seed ^ name.len() as u64 ^ (name.as_bytes()[0] as u64) << 8);
        let started = std::time::Instant::now();
        for i in 0..iters {
            let a = &corpus[rng.below(corpus.len())];
            let b = &corpus[rng.below(corpus.len())];
            let input = mutate(&mut rng, a, b);
            if std::panic::catch_unwind(|| body(&input)).is_err() {
                let out =
                    std::env::temp_dir().join(format!("meshprobe-fuzz-smoke-{name}-{seed}-{i}"));
                std::fs::write(&out, &input).expect("write the failing input");
                failures.push(format!(
                    "{name}: input {i} (seed {seed}) → {}",
                    out.display()
                ));
                break;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{name}: {iters} mutated inputs in {secs:.2}s ({:.0}/s)",
            iters as f64 / secs
        );
    }
    assert!(
        failures.is_empty(),
        "mutated inputs that fail (replay: cargo +nightly fuzz run TARGET FILE): {failures:#?}"
    );
}
