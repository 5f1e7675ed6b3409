//! End-to-end: the agent page in a real browser. A lab (root) with a CNI fault on node-3;
//! headless Chromium (Debian's `chromium`) loads node-1's page through the live view, dumps the
//! DOM and takes a screenshot (saved under target/tmp/). The DOM must mark exactly node-3's
//! pod-network cells as failing, keep its node-IP cells up, and show the `cni` finding.
//! Skips with a message when not root or chromium is missing.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use support::lab::Lab;
use support::sys::{have_or_skip, root_or_skip};

/// `(data-src, data-dst, data-state)` of every cell in the section `layer-LAYER` of the page.
fn cells(dom: &str, layer: &str) -> Vec<(String, String, String)> {
    let start = dom
        .find(&format!("id=\"layer-{layer}\""))
        .unwrap_or_else(|| panic!("no section layer-{layer}"));
    let section = &dom[start..];
    let section = &section[..section.find("</section>").expect("section end")];
    let attr = |s: &str, name: &str| -> Option<String> {
        let i = s.find(&format!("{name}=\""))? + name.len() + 2;
        Some(s[i..i + s[i..].find('"')?].to_string())
    };
    let mut out = Vec::new();
    for row in section.split("<g class=\"r\"").skip(1) {
        let src = attr(row, "data-src").unwrap();
        for rect in row.split("<rect").skip(1) {
            if let (Some(dst), Some(state)) = (attr(rect, "data-dst"), attr(rect, "data-state")) {
                out.push((src.clone(), dst, state));
            }
        }
    }
    out
}

fn chromium(args: &[&str]) -> std::process::Output {
    let profile = std::env::temp_dir().join(format!("mp-chromium-{}", std::process::id()));
    let out = Command::new("timeout")
        .arg("90")
        .arg("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium");
    let _ = std::fs::remove_dir_all(&profile);
    out
}

#[test]
fn the_page_in_chromium_marks_the_failing_cells_of_a_cni_fault() {
    if !root_or_skip("the heatmap end-to-end test needs root (it builds a lab)")
        || !have_or_skip("chromium", "chromium")
    {
        return;
    }
    let lab = Lab::up(&format!("mph{}", std::process::id() % 100_000));
    let url = format!("http://{}/", lab.proxies["node-1"]);

    // The page without a browser: server-rendered, four matrices, healthy.
    let (code, page) = lab.get("node-1", "/", Duration::from_secs(10)).unwrap();
    assert_eq!(code, 200);
    assert_eq!(page.matches("<svg").count(), 4, "four layers at 4 nodes");
    let (code, body) = lab
        .get("node-1", "/heatmap.svg?layer=bogus", Duration::from_secs(5))
        .unwrap();
    assert_eq!(code, 400);
    assert!(body.contains("layer: unknown value \"bogus\""), "{body}");
    let (code, svg) = lab
        .get(
            "node-1",
            "/heatmap.svg?layer=icmp_node",
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(code, 200);
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"")
            && svg.contains("data-view=\"icmp_node\"")
    );

    lab.ok(&["fault", "cni", "node-3"]);
    // Wait until node-1's mesh view has it (the page renders what the agents know).
    let t0 = Instant::now();
    loop {
        let (_, page) = lab
            .get("node-1", "/", Duration::from_secs(10))
            .unwrap_or_default();
        if page.contains("data-cause=\"cni\"") {
            eprintln!(
                "cni finding on the page after {:.1}s",
                t0.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no cni finding on node-1's page:\n{page}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let out = chromium(&["--virtual-time-budget=5000", "--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("<svg"),
        "chromium dumped no page: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Pod network: every cell into or out of node-3 failing (down, or no data from node-3's
    // silent agent), every other off-diagonal cell up.
    let pod = cells(&dom, "icmp_pod");
    let peers: Vec<_> = pod
        .iter()
        .filter(|(_, d, _)| d.starts_with("node-"))
        .collect();
    assert_eq!(peers.len(), 16, "4 × 4 node cells: {pod:?}");
    for (s, d, state) in &peers {
        let want: &[&str] = if s == d {
            &["self"]
        } else if d == "node-3" {
            &["down"]
        } else if s == "node-3" {
            &["down", "nodata"]
        } else {
            &["ok", "lossy"]
        };
        assert!(
            want.contains(&state.as_str()),
            "icmp_pod {s} → {d}: {state}, want {want:?}"
        );
    }
    // Underlay: node-3's node IP still answers the others.
    for (s, d, state) in cells(&dom, "icmp_node") {
        if d == "node-3" && s != "node-3" {
            assert!(
                ["ok", "lossy"].contains(&state.as_str()),
                "icmp_node {s} → {d}: {state}"
            );
        }
    }
    assert!(
        dom.contains("data-cause=\"cni\""),
        "finding missing from the DOM"
    );
    // The embedded script refreshed the live part in place at least once (1 s interval).
    assert!(
        dom.contains("data-refreshed=\""),
        "the refresh script never swapped the page"
    );
    // Hover text: figures on a healthy cell, the error on a failing one.
    assert!(
        dom.contains("node-1 → node-2 · icmp_pod\nlast probe ok\nloss "),
        "no figures in the hover text"
    );
    assert!(dom.contains("RTT p50 "), "no RTT in the hover text");
    assert!(
        dom.contains("node-1 → node-3 · icmp_pod\nlast probe FAILED"),
        "no failure in the hover text"
    );
    assert!(
        dom.contains("class=\"finding\" data-dst=\"node-3\" data-state=\"down\""),
        "failing cells of the finding not outlined"
    );

    let shot: PathBuf = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("heatmap-e2e.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(&[
        "--window-size=1400,1800",
        &format!("--screenshot={}", shot.display()),
        &url,
    ]);
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot {}: {e}\n{}",
            shot.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // A blank 1400×1800 page compresses to a few KB; four coloured matrices and text do not.
    assert!(
        png.len() > 40_000,
        "screenshot suspiciously small: {} bytes",
        png.len()
    );
    eprintln!("screenshot: {} ({} bytes)", shot.display(), png.len());
}
