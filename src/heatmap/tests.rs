use super::svg::legend_width;
use super::*;
use crate::diagnosis::{AgentReport, Cause, Finding, LayerStats};
use crate::mesh::Unanswered;

/// One layer's window JSON: `ok` (no loss), `lossy` (loss 10%), `down` (last 3 failed).
fn layer(kind: &str) -> String {
    match kind {
        "ok" => r#"{"reachable":true,"consecutive_failures":0,"probes":10,"successes":10,"sent":30,"received":30,"success_ratio":1.0,"loss_ratio":0.0,"rtt_seconds":{"p50":0.0001,"p90":0.0002,"p99":0.0003,"max":0.0004}}"#.into(),
        "lossy" => r#"{"reachable":true,"consecutive_failures":0,"probes":10,"successes":10,"sent":30,"received":27,"success_ratio":1.0,"loss_ratio":0.1,"last_error":{"kind":"timeout"}}"#.into(),
        "down" => r#"{"reachable":false,"consecutive_failures":3,"probes":10,"successes":7,"sent":30,"received":21,"success_ratio":0.7,"loss_ratio":0.3,"last_error":{"kind":"net_unreachable","from":"198.19.1.1"},"last_error_age_seconds":1.2}"#.into(),
        _ => unreachable!(),
    }
}

/// A report from `src` with, per peer, the state of every layer (and an MTU state).
fn report(src: &str, zone: &str, peers: &[(&str, &str, &str)]) -> AgentReport {
    let peers: Vec<String> = peers
        .iter()
        .map(|(n, st, mtu)| {
            format!(
                r#"{{"node":"{n}","layers":{{"icmp_pod":{l},"icmp_node":{l},"http":{l}}},"mtu":{{"icmp_pod":{{"path_mtu":1400,"state":"{mtu}"}}}}}}"#,
                l = layer(st)
            )
        })
        .collect();
    AgentReport::from_json(&format!(
        r#"{{"node":{src},"zone":{zone},"ready":true,"peers":[{}],"targets":[{{"name":"web-1","layers":{{"icmp_pod":{ok},"tcp":{down}}}}}]}}"#,
        peers.join(","),
        src = serde_json::to_string(src).unwrap(),
        zone = serde_json::to_string(zone).unwrap(),
        ok = layer("ok"),
        down = layer("down"),
    ))
    .unwrap()
}

fn nodes(list: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
    list.iter()
        .map(|(n, z)| (n.to_string(), Some(z.to_string())))
        .collect()
}

fn finding(pairs: &[[&str; 2]], nodes: &[&str]) -> Finding {
    Finding {
        cause: Cause::Cni,
        summary: "pod network of node-c isolated".into(),
        nodes: nodes.iter().map(|s| s.to_string()).collect(),
        pairs: pairs
            .iter()
            .map(|[a, b]| [a.to_string(), b.to_string()])
            .collect(),
        zones: vec![],
        targets: vec![],
        confidence: 0.9,
        evidence: vec!["<evidence & more>".into()],
        next_steps: vec!["check the CNI pod on node-c".into()],
        family: None,
    }
}

fn cell<'m>(m: &'m Matrix, src: &str, dst: &str) -> &'m Cell {
    let r = m.rows.iter().position(|h| h.name == src).unwrap();
    let c = m.cols.iter().position(|h| h.name == dst).unwrap();
    &m.cells[r][c]
}

#[test]
fn colour_scale_steps_with_loss_and_a_failed_probe_is_dark_red() {
    let table: [(Option<bool>, Option<f64>, State, &str); 9] = [
        (None, None, State::Unknown, "#d9d9d9"),
        (Some(true), None, State::Unknown, "#d9d9d9"),
        (Some(true), Some(0.0), State::Ok, "#1a9850"),
        (Some(true), Some(0.01), State::Lossy, "#a6d96a"),
        (Some(true), Some(0.05), State::Lossy, "#fee08b"),
        (Some(true), Some(0.2), State::Lossy, "#fc8d59"),
        (Some(true), Some(0.9), State::Lossy, "#d73027"),
        (Some(false), Some(0.0), State::Down, "#8b0000"),
        (Some(false), None, State::Down, "#8b0000"),
    ];
    for (reachable, loss, state, fill) in table {
        assert_eq!(
            loss_colour(reachable, loss),
            (state, fill),
            "{reachable:?} {loss:?}"
        );
    }
}

#[test]
fn layer_parameter_is_parsed_or_named_in_the_error() {
    for v in View::ALL {
        assert_eq!(View::parse(v.as_str()), Ok(v));
    }
    let e = View::parse("bogus<").unwrap_err();
    assert!(e.starts_with("layer: unknown value \"bogus<\""), "{e}");
}

#[test]
fn matrix_groups_by_zone_and_marks_states_silence_and_findings() {
    let reports = [
        report(
            "node-a",
            "z1",
            &[("node-b", "ok", "ok"), ("node-c", "down", "blackhole")],
        ),
        report(
            "node-b",
            "z2",
            &[("node-a", "lossy", "ok"), ("node-c", "down", "mismatch")],
        ),
    ];
    let silent = [Unanswered {
        node: "node-c".into(),
        error: "timeout".into(),
    }];
    let fs = [finding(
        &[["node-a", "node-c"], ["node-b", "node-c"]],
        &["node-c"],
    )];
    let input = Input {
        nodes: nodes(&[("node-c", "z1"), ("node-b", "z2"), ("node-a", "z1")]),
        reports: &reports,
        silent: &silent,
        findings: &fs,
        held: &[],
    };
    let m = matrix(&input, View::IcmpPod);
    let names: Vec<&str> = m.rows.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        ["node-a", "node-c", "node-b"],
        "zone z1 first, then z2"
    );
    let cols: Vec<&str> = m.cols.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(cols, ["node-a", "node-c", "node-b", "web-1"]);
    assert_eq!(m.cols[3].group, "targets");
    assert!(m.rows[1].suspect && !m.rows[0].suspect);

    assert_eq!(cell(&m, "node-a", "node-a").state, State::SelfPair);
    assert_eq!(cell(&m, "node-a", "node-b").state, State::Ok);
    let down = cell(&m, "node-a", "node-c");
    assert_eq!(down.state, State::Down);
    assert!(down.in_finding);
    assert!(
        down.tip.contains("node-a → node-c · icmp_pod"),
        "{}",
        down.tip
    );
    assert!(
        down.tip.contains("last probe FAILED (3 in a row)"),
        "{}",
        down.tip
    );
    assert!(
        down.tip.contains("net_unreachable from 198.19.1.1"),
        "{}",
        down.tip
    );
    assert!(down.tip.contains("loss 30.0% (9/30 lost)"), "{}", down.tip);
    assert!(cell(&m, "node-a", "node-b").tip.contains("RTT p50 0.10ms"));
    let lossy = cell(&m, "node-b", "node-a");
    assert_eq!((lossy.state, lossy.loss), (State::Lossy, Some(0.1)));
    assert!(!lossy.in_finding);
    let nodata = cell(&m, "node-c", "node-a");
    assert_eq!(nodata.state, State::NoData);
    assert!(
        nodata.tip.contains("did not answer: timeout"),
        "{}",
        nodata.tip
    );

    // The HTTP view reads a TCP target's tcp layer; ICMP to node IPs has no target columns.
    let http = matrix(&input, View::Http);
    assert_eq!(cell(&http, "node-a", "web-1").state, State::Down);
    assert_eq!(cell(&http, "node-a", "node-b").state, State::Ok);
    assert_eq!(matrix(&input, View::IcmpNode).cols.len(), 3);

    let mtu = matrix(&input, View::Mtu);
    assert_eq!(cell(&mtu, "node-a", "node-c").state, State::Blackhole);
    assert_eq!(cell(&mtu, "node-b", "node-c").state, State::Mismatch);
    assert_eq!(cell(&mtu, "node-a", "node-b").state, State::Ok);
    assert!(cell(&mtu, "node-b", "node-c")
        .tip
        .contains("icmp_pod: path MTU 1400 (mismatch)"));
    assert_eq!(cell(&mtu, "node-a", "web-1").state, State::Unknown);
}

#[test]
fn a_node_known_only_from_reports_and_one_not_yet_probed_get_cells() {
    let reports = [report("node-a", "z1", &[("node-x", "ok", "ok")])];
    let input = Input {
        nodes: nodes(&[("node-a", "z1"), ("node-new", "z1")]),
        reports: &reports,
        ..Input::default()
    };
    let m = matrix(&input, View::IcmpPod);
    assert_eq!(cell(&m, "node-a", "node-x").state, State::Ok);
    let new = cell(&m, "node-a", "node-new");
    assert_eq!(new.state, State::Unknown);
    assert!(new.tip.contains("not in its peer set yet"));
    assert_eq!(cell(&m, "node-new", "node-a").state, State::NoData);
}

fn heads(n: usize, zones: &[(&str, usize)], long: bool) -> Vec<Head> {
    let mut out = Vec::new();
    let mut i = 0;
    for (z, k) in zones {
        for _ in 0..*k {
            out.push(Head {
                name: if long && i % 7 == 0 {
                    format!("ip-10-0-{i}-1.eu-west-1.compute.internal")
                } else {
                    format!("node-{i}")
                },
                group: z.to_string(),
                suspect: false,
            });
            i += 1;
        }
    }
    assert_eq!(out.len(), n);
    out
}

fn assert_readable(rows: &[Head], cols: &[Head]) {
    let lay = layout(rows, cols);
    let check_disjoint = |what: &str, ls: &[&Label]| {
        for (i, a) in ls.iter().enumerate() {
            for b in &ls[i + 1..] {
                assert!(
                    !a.bbox.overlaps(&b.bbox),
                    "{what}: {:?} overlaps {:?}",
                    a,
                    b
                );
            }
        }
    };
    let all: Vec<&Label> = lay
        .row_labels
        .iter()
        .chain(&lay.col_labels)
        .chain(&lay.zone_labels)
        .collect();
    check_disjoint("labels", &all);
    for l in &all {
        assert!(!l.bbox.overlaps(&lay.grid), "{l:?} overlaps the grid");
        assert!(l.bbox.x >= 0.0 && l.bbox.y >= 0.0, "{l:?} off the canvas");
        assert!(l.bbox.x + l.bbox.w <= lay.width && l.bbox.y + l.bbox.h <= lay.height);
        assert!(l.text.chars().count() <= MAX_LABEL_CHARS);
    }
    // A row label sits inside its row; a column label inside its column (so it names its cells).
    for (l, y) in lay.row_labels.iter().zip(&lay.row_y) {
        assert!(l.bbox.y >= *y && l.bbox.y + l.bbox.h <= y + lay.cell);
    }
    for (l, x) in lay.col_labels.iter().zip(&lay.col_x) {
        assert!(l.bbox.x >= *x && l.bbox.x + l.bbox.w <= x + lay.cell);
    }
    // Cells never overlap and zone groups are separated by the gap.
    for w in lay.col_x.windows(2) {
        assert!(w[1] - w[0] >= lay.cell);
    }
    for (i, w) in lay.row_y.windows(2).enumerate() {
        if rows[i].group != rows[i + 1].group {
            assert!(w[1] - w[0] >= lay.cell + ZONE_GAP);
        }
    }
    assert!(lay.grid.x + lay.grid.w <= lay.width);
    assert!(lay.grid.y + lay.grid.h <= lay.height);
}

#[test]
fn labels_do_not_overlap_at_5_nodes() {
    let h = heads(5, &[("zone-a", 3), ("zone-b", 2)], false);
    assert_readable(&h, &h);
    let lay = layout(&h, &h);
    assert_eq!(lay.cell, 22.0);
    assert_eq!(lay.zone_labels.len(), 4, "every zone named, on both axes");
}

#[test]
fn labels_do_not_overlap_at_200_nodes_with_long_names_and_tiny_zones() {
    let h = heads(
        200,
        &[
            ("a-very-long-availability-zone-name-1a", 97),
            ("eu-west-1b", 1),
            ("eu-west-1c", 100),
            ("z", 2),
        ],
        true,
    );
    let mut cols = h.clone();
    cols.push(Head {
        name: "web-frontend".into(),
        group: "targets".into(),
        suspect: false,
    });
    assert_readable(&h, &cols);
    let lay = layout(&h, &cols);
    assert_eq!(lay.cell, 13.0);
    // The long names were cut, and the one-node zone's label fits its 13 px band.
    assert!(lay.row_labels[0].text.ends_with('…'));
    assert_eq!(
        lay.row_labels[0].full,
        "ip-10-0-0-1.eu-west-1.compute.internal"
    );
    let tiny = lay
        .zone_labels
        .iter()
        .find(|l| l.full == "eu-west-1b" && !l.vertical)
        .unwrap();
    assert!(tiny.bbox.w <= 13.0, "{tiny:?}");
}

#[test]
fn names_are_escaped_everywhere() {
    let evil = "n<script>&\"'";
    let reports = [report(evil, "z&1", &[("node-b", "down", "ok")])];
    let fs = [finding(&[[evil, "node-b"]], &[evil])];
    let input = Input {
        nodes: nodes(&[(evil, "z&1"), ("node-b", "z2")]),
        reports: &reports,
        silent: &[],
        findings: &fs,
        held: &[],
    };
    let svg_text = svg(&matrix(&input, View::IcmpPod));
    assert!(!svg_text.contains("<script"), "{svg_text}");
    assert!(svg_text.contains(r#"data-src="n&lt;script&gt;&amp;&quot;&#39;""#));
    assert!(svg_text.contains("z&amp;1"));
    let html = page(&Header::default(), &input, None);
    assert!(!html.contains("n<script"));
    assert!(html.contains("&lt;evidence &amp; more&gt;"));
    assert_eq!(
        html.matches("<script>").count(),
        1,
        "only the refresh script"
    );
}

#[test]
fn svg_marks_failing_cells_and_is_balanced() {
    let reports = [
        report("node-a", "z1", &[("node-b", "down", "ok")]),
        report("node-b", "z2", &[("node-a", "ok", "ok")]),
    ];
    let fs = [finding(&[["node-a", "node-b"]], &["node-b"])];
    let input = Input {
        nodes: nodes(&[("node-a", "z1"), ("node-b", "z2")]),
        reports: &reports,
        silent: &[],
        findings: &fs,
        held: &[],
    };
    let s = svg(&matrix(&input, View::IcmpPod));
    assert!(s.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(s.contains(r#"<g class="r" data-src="node-a">"#));
    assert!(
        s.contains(r#"class="finding" data-dst="node-b" data-state="down" data-loss="0.300""#),
        "{s}"
    );
    assert!(s.contains(r#"data-dst="node-a" data-state="ok""#));
    for tag in ["g", "text", "title", "svg"] {
        assert_eq!(
            s.matches(&format!("<{tag}")).count(),
            s.matches(&format!("</{tag}>")).count(),
            "<{tag}> balanced"
        );
    }
    // Rects: every cell is closed (self-closing legend swatches aside).
    assert_eq!(
        s.matches("<rect").count(),
        s.matches("</rect>").count() + s.matches("/>").count()
    );
}

#[test]
fn page_shows_every_layer_when_small_and_one_when_large() {
    let reports = [report("node-a", "z1", &[("node-b", "ok", "ok")])];
    let small = Input {
        nodes: nodes(&[("node-a", "z1"), ("node-b", "z1")]),
        reports: &reports,
        ..Input::default()
    };
    let h = Header {
        node: "node-a",
        interval_seconds: 2.0,
        ..Header::default()
    };
    let p = page(&h, &small, None);
    for v in View::ALL {
        assert!(p.contains(&format!("id=\"layer-{}\"", v.as_str())), "{v:?}");
    }
    assert!(p.contains("healthy: no findings"));
    assert!(p.contains("<noscript><meta http-equiv=refresh content=2>"));
    assert!(p.contains("var ms=2000"));
    let only = page(&h, &small, Some(View::Mtu));
    assert!(only.contains("id=\"layer-mtu\"") && !only.contains("id=\"layer-http\""));

    let many: Vec<(String, Option<String>)> = (0..200)
        .map(|i| (format!("node-{i:03}"), Some(format!("zone-{}", i % 3))))
        .collect();
    let big = Input {
        nodes: many,
        reports: &reports,
        ..Input::default()
    };
    let p = page(&h, &big, None);
    assert!(p.contains("id=\"layer-icmp_pod\"") && !p.contains("id=\"layer-http\""));
    // 201 columns × 200 rows, a bounded page (no figures for most rows here, so short titles).
    assert!(p.len() < 10 * 1024 * 1024, "{}", p.len());
    let m = matrix(&big, View::IcmpPod);
    assert_eq!(
        (m.rows.len(), m.cols.len()),
        (202, 203),
        "200 + node-a, node-b; + web-1"
    );
    assert_eq!(p.matches("data-state=\"").count(), 202 * 203);
}

#[test]
fn the_canvas_holds_the_legend_even_for_a_tiny_mesh() {
    let reports = [report("a", "z", &[])];
    let input = Input {
        nodes: nodes(&[("a", "z")]),
        reports: &reports,
        ..Input::default()
    };
    for v in View::ALL {
        let s = svg(&matrix(&input, v));
        let w: f64 = s
            .split("width=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .parse()
            .unwrap();
        let lay = layout(&matrix(&input, v).rows, &matrix(&input, v).cols);
        assert!(w > lay.width, "{v:?}: the legend is wider than a 1×1 grid");
        assert!(w >= legend_width(v), "{v:?}: {w} < {}", legend_width(v));
    }
}

#[test]
fn a_full_200_node_mesh_renders_one_layer_in_bounded_size_and_time() {
    use crate::diagnosis::PeerReport;
    let st: LayerStats = serde_json::from_str(&layer("lossy")).unwrap();
    let names: Vec<String> = (0..200).map(|i| format!("node-{i:03}")).collect();
    let reports: Vec<AgentReport> = names
        .iter()
        .map(|src| AgentReport {
            node: src.clone(),
            zone: Some(format!("zone-{}", src.len() % 3)),
            peers: names
                .iter()
                .filter(|d| *d != src)
                .map(|d| PeerReport {
                    node: d.clone(),
                    layers: [("icmp_pod".to_string(), st.clone())].into(),
                    ..PeerReport::default()
                })
                .collect(),
            ..AgentReport::default()
        })
        .collect();
    let input = Input {
        nodes: names
            .iter()
            .map(|n| (n.clone(), Some("zone-x".into())))
            .collect(),
        reports: &reports,
        ..Input::default()
    };
    let t0 = std::time::Instant::now();
    let p = page(&Header::default(), &input, None);
    let took = t0.elapsed();
    eprintln!("200-node page: {} bytes in {took:?}", p.len());
    assert_eq!(p.matches("data-state=\"lossy\"").count(), 200 * 199);
    assert!(p.len() < 12 * 1024 * 1024, "{} bytes", p.len());
    // Measured 0.42 s (debug build, 2-core VM, 2026-12-06): 6× that for a loaded CI machine.
    assert!(took.as_secs_f64() < 2.5, "200-node page took {took:?}");
}

#[test]
fn held_findings_are_shown_apart_and_not_as_alarms() {
    let reports = [report("node-a", "z1", &[("node-b", "down", "down")])];
    let held = [finding(&[["node-a", "node-b"]], &["node-b"])];
    let input = Input {
        nodes: nodes(&[("node-a", "z1"), ("node-b", "z2")]),
        reports: &reports,
        held: &held,
        ..Input::default()
    };
    let html = page(&Header::default(), &input, None);
    assert!(html.contains("healthy: no findings"), "{html}");
    assert!(html.contains("<section id=held>"), "{html}");
    assert!(
        html.contains("<div class=held data-cause=\"cni\">"),
        "{html}"
    );
    assert!(!html.contains("<div class=finding"), "{html}");
    // Without held findings, no section at all.
    let none = page(&Header::default(), &Input { held: &[], ..input }, None);
    assert!(!none.contains("id=held"));
}

#[test]
fn a_dual_stack_page_selects_a_family_and_links_keep_it() {
    use crate::diagnosis::{family, FamilyReport, Inputs};
    use crate::model::Family;
    // node-a's IPv4 to node-b works, its IPv6 does not.
    let mut r = report("node-a", "z1", &[("node-b", "ok", "ok")]);
    let down = report("node-a", "z1", &[("node-b", "down", "ok")]);
    r.peers[0].family = Some("ipv4".into());
    r.peers[0].pod_ip = "10.1.0.2".parse().ok();
    r.peers[0].families.insert(
        "ipv6".into(),
        FamilyReport {
            ip: "fd01::2".parse().ok(),
            layers: down.peers[0].layers.clone(),
            ..FamilyReport::default()
        },
    );
    let inputs = Inputs {
        agents: vec![r],
        ..Inputs::default()
    };
    let fams: Vec<Family> = family::families(&inputs).into_iter().collect();
    assert_eq!(fams, [Family::Ipv4, Family::Ipv6]);
    let v6 = family::project(&inputs, Family::Ipv6).agents;
    let h = Header {
        node: "node-a",
        interval_seconds: 2.0,
        families: &fams,
        family: Some(Family::Ipv6),
        ..Header::default()
    };
    let ns = nodes(&[("node-a", "z1"), ("node-b", "z1")]);
    let input = Input {
        nodes: ns.clone(),
        reports: &v6,
        ..Input::default()
    };
    let p = page(&h, &input, Some(View::IcmpPod));
    assert!(p.contains("<nav>family: <a href=\"/?layer=icmp_pod\">first (primary)</a> · <a href=\"/?layer=icmp_pod&amp;family=ipv4\">ipv4</a> · <a href=\"/?layer=icmp_pod&amp;family=ipv6\" class=sel>ipv6</a></nav>"), "{p}");
    assert!(
        p.contains("href=\"/?layer=http&amp;family=ipv6\""),
        "layer links keep the family"
    );
    assert!(p.contains("(ipv6) <small>1 failing"), "{p}");
    // The primary family's matrix of the same mesh: nothing failing, no selector without two.
    let v4 = family::project(&inputs, Family::Ipv4).agents;
    let single = Header {
        families: &fams[..1],
        family: None,
        ..h.clone()
    };
    let p = page(
        &single,
        &Input {
            nodes: ns,
            reports: &v4,
            ..Input::default()
        },
        Some(View::IcmpPod),
    );
    assert!(
        !p.contains("family:") && p.contains("<small>0 failing"),
        "{p}"
    );
}
