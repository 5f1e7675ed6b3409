#![no_main]
//! See `meshprobe::fuzzing::peers_file`: the body is shared with the stable corpus replay
//! (`tests/fuzz_corpus.rs`).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| meshprobe::fuzzing::peers_file(data));
