//! The architecture ARCHITECTURE.md describes, checked: the pure crates' dependency lists, their
//! `#![forbid(unsafe_code)]`, and no import circle between the modules of any crate.
//!
//! The module graph is read from the sources as text: an edge A → B for every `crate::B…`,
//! `super::…`, `self::…` or child-module path in A outside comments and `#[cfg(test)]` modules.
//! A module declaring a child (`mod b;`) is not an edge: only what a module uses counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every crate of the workspace: (name, source dir).
fn crates() -> Vec<(String, PathBuf)> {
    let mut out = vec![("meshprobe".to_string(), Path::new(ROOT).join("src"))];
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("crates"))
        .expect("crates/")
        .map(|e| e.expect("entry").path())
        .collect();
    dirs.sort();
    for d in dirs {
        let name = format!("meshprobe-{}", d.file_name().unwrap().to_string_lossy());
        out.push((name, d.join("src")));
    }
    out
}

/// `[dependencies]` of a crate's Cargo.toml: the keys.
fn dependencies(crate_dir: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(crate_dir.join("Cargo.toml")).expect("Cargo.toml");
    let mut deps = BTreeSet::new();
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if inside && !line.is_empty() && !line.starts_with('#') {
            let key = line.split(['=', '.', ' ']).next().unwrap_or_default();
            deps.insert(key.to_string());
        }
    }
    deps
}

#[test]
fn pure_crates_depend_on_no_io() {
    let io = [
        "tokio",
        "axum",
        "hyper",
        "hyper-util",
        "kube",
        "k8s-openapi",
        "socket2",
        "surge-ping",
        "libc",
        "tower",
    ];
    for (name, allowed_extra) in [
        ("core", &[][..]),
        ("diagnosis", &["meshprobe-core"][..]),
        ("store", &["meshprobe-core", "tokio"][..]),
    ] {
        let deps = dependencies(&Path::new(ROOT).join("crates").join(name));
        for d in &deps {
            assert!(
                !io.contains(&d.as_str()) || allowed_extra.contains(&d.as_str()),
                "crates/{name} depends on {d}: the pure crates take no I/O dependency"
            );
        }
        if name == "core" {
            // ipnet: the IP-prefix arithmetic, a well-kept crate instead of hand-written masks.
            let expected: BTreeSet<String> = [
                "http",
                "ipnet",
                "rand",
                "serde",
                "serde_json",
                "serde_yaml_ng",
                "thiserror",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            assert_eq!(
                deps, expected,
                "core's dependencies are pure and listed here"
            );
        }
        if name == "diagnosis" {
            let expected: BTreeSet<String> = ["meshprobe-core", "serde", "serde_json"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            assert_eq!(deps, expected, "the engine depends on core and serde only");
        }
    }
    // The store takes tokio for its Instant type only.
    let store = std::fs::read_to_string(Path::new(ROOT).join("crates/store/Cargo.toml")).unwrap();
    assert!(
        store.contains(r#"tokio = { workspace = true, features = ["time"] }"#),
        "crates/store: tokio with the time feature only"
    );
}

#[test]
fn crates_without_unsafe_forbid_it() {
    for name in ["core", "store", "diagnosis", "server"] {
        let lib =
            std::fs::read_to_string(Path::new(ROOT).join("crates").join(name).join("src/lib.rs"))
                .unwrap();
        assert!(
            lib.contains("#![forbid(unsafe_code)]"),
            "crates/{name}/src/lib.rs must forbid unsafe code"
        );
    }
}

/// Module path of a source file relative to its crate's `src/`: `a/b.rs` and `a/b/mod.rs` → `a::b`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)] mod …` blocks.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<i32> = None;
    let mut depth = 0i32;
    let mut test_attr = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        if skip_depth.is_none() && test_attr && t.starts_with("mod ") && t.ends_with('{') {
            skip_depth = Some(depth);
        }
        test_attr = t.starts_with("#[cfg(test)]");
        depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
        if let Some(d) = skip_depth {
            if depth <= d {
                skip_depth = None;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The identifier paths after `prefix` in `code`, braces expanded one level:
/// `crate::{a, b::c}` gives `a` and `b::c`.
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let p: String = item.trim().chars().take_while(|&c| ident(c)).collect();
                out.push(p);
            }
        } else {
            out.push(rest.chars().take_while(|&c| ident(c)).collect());
        }
    }
    out
}

/// The module graph of one crate: module → modules it uses.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    let resolve = |path: &str| -> Option<String> {
        let mut p: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        while !p.is_empty() {
            let m = p.join("::");
            if modules.contains(&m) {
                return Some(m);
            }
            p.pop();
        }
        None
    };
    let mut graph = BTreeMap::new();
    for f in &files {
        let me = module_of(src, f);
        let code = code_of(&std::fs::read_to_string(f).unwrap());
        let parent = me.rsplit_once("::").map_or("", |(p, _)| p).to_string();
        let join = |base: &str, p: &str| {
            if base.is_empty() {
                p.to_string()
            } else {
                format!("{base}::{p}")
            }
        };
        let mut targets = BTreeSet::new();
        for p in paths_after(&code, "crate::") {
            targets.extend(resolve(&p));
        }
        for p in paths_after(&code, "super::") {
            targets.extend(resolve(&join(&parent, &p)));
        }
        for p in paths_after(&code, "self::") {
            targets.extend(resolve(&join(&me, &p)));
        }
        // `use child::…` and `child::item` of a child module.
        for p in paths_after(&code, "use ") {
            let first = p.split("::").next().unwrap_or_default();
            let child = join(&me, first);
            if !first.is_empty() && modules.contains(&child) {
                targets.insert(child);
            }
        }
        targets.remove(&me);
        graph.insert(me, targets);
    }
    graph
}

/// A circle in `graph`, if any (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            match state.get(m.as_str()) {
                Some(1) => {
                    let at = stack.iter().position(|s| s == m).unwrap();
                    let mut c = stack[at..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, graph, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if !state.contains_key(n.as_str()) {
            if let Some(c) = visit(n, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn no_import_circle_inside_any_crate() {
    for (name, src) in crates() {
        let graph = module_graph(&src);
        assert!(
            graph.len() > 1 || name != "meshprobe",
            "{name}: no modules read"
        );
        if let Some(c) = find_cycle(&graph) {
            panic!("{name}: import circle {}", c.join(" → "));
        }
    }
}

#[test]
fn the_cycle_finder_finds_circles() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    let code = "use crate::{x, y::z};\n// crate::commented\n#[cfg(test)]\nmod tests {\n    use crate::t;\n}\nfn f() { crate::w::g(); }\n";
    let code = code_of(code);
    assert_eq!(paths_after(&code, "crate::"), ["x", "y::z", "w::g"]);
}

/// The binary defines `pow` and `exp` itself (src/main.rs) so that libm.so is not linked: its
/// mapping cost the agent ~0.5 MiB resident. A new libm function called anywhere brings it
/// back; this names it. Needs `readelf` (binutils, beside the linker).
#[test]
fn the_binary_does_not_link_libm() {
    let exe = env!("CARGO_BIN_EXE_meshprobe");
    let out = std::process::Command::new("readelf")
        .args(["--dynamic", "--dyn-syms", "--wide", exe])
        .output()
        .expect("readelf (binutils) runs");
    assert!(out.status.success(), "readelf {exe}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = text.lines().filter(|l| l.contains("(NEEDED)")).collect();
    assert!(
        !needed.is_empty(),
        "readelf found no NEEDED entries in {exe}"
    );
    assert!(
        !needed.iter().any(|l| l.contains("libm.so")),
        "{exe} links libm again; its undefined functions: {:?}",
        text.lines()
            .filter(|l| l.contains(" UND ") && l.contains("GLIBC"))
            .collect::<Vec<_>>()
    );
}
