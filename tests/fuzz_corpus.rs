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
    let echo = meshprobe::probe::pmtu::Echo {
        ident: u16::from_be_bytes([icmp[0], icmp[1]]),
        seq: u16::from_be_bytes([icmp[2], icmp[3]]),
        cookie: icmp[4..12].try_into().unwrap(),
    };
    let dest = std::net::Ipv4Addr::new(icmp[12], icmp[13], icmp[14], icmp[15]);
    assert_eq!(
        echo.parse(&icmp[16..], dest),
        Some(meshprobe::probe::pmtu::Reply::Echo)
    );
    let frag = read("icmp_reply", "frag-needed");
    assert!(matches!(
        echo.parse(&frag[16..], dest),
        Some(meshprobe::probe::pmtu::Reply::TooBig {
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
