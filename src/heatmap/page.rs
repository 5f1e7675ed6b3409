//! The agent page (`GET /`): header, layer links, findings and the selected matrices, refreshed
//! in place by a small script.

use std::fmt::Write as _;

use crate::diagnosis::Finding;
use crate::model::Family;

use super::matrix::{matrix, node_heads, Input, State, View};
use super::svg::{escape, svg};

/// The agent's identity and settings, for the page header.
#[derive(Debug, Clone, Default)]
pub struct Header<'a> {
    pub node: &'a str,
    pub zone: Option<&'a str>,
    pub ready: bool,
    pub rounds: u64,
    pub interval_seconds: f64,
    pub window_seconds: f64,
    pub icmp_socket: &'a str,
    pub discovery_error: Option<&'a str>,
    /// The families the mesh view holds figures of (a selector shows when there are two).
    pub families: &'a [Family],
    /// The family the matrices show (`?family=`); `None`: each destination's first family.
    pub family: Option<Family>,
}

/// Above this many nodes the page shows one layer at a time (a 200-node matrix is 40,000 cells).
pub const ALL_LAYERS_UP_TO: usize = 50;

/// The whole page: header, layer links, the selected matrices (all four for small meshes, else
/// `only` or ICMP to pod IPs), and the current findings with evidence. Reads without JavaScript
/// (`<noscript>` refresh); a small script refreshes the live part in place, keeping scroll positions.
pub fn page(h: &Header, input: &Input, only: Option<View>) -> String {
    let refresh = h.interval_seconds.ceil().max(1.0) as u64;
    let node_count = node_heads(input).len();
    let views: Vec<View> = match only {
        Some(v) => vec![v],
        None if node_count <= ALL_LAYERS_UP_TO => View::ALL.to_vec(),
        None => vec![View::IcmpPod],
    };
    let mut o = String::with_capacity(64 * 1024);
    let _ = write!(
        o,
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
<title>meshprobe {node}</title><noscript><meta http-equiv=refresh content={refresh}></noscript><style>{CSS}</style></head><body>\
<h1>meshprobe agent on {node}</h1><p class=meta>zone {zone} · {ready} · {rounds} rounds · interval {iv} s · window {win} s · \
ICMP socket {sock} · <a href=/metrics>metrics</a> · <a href=/api/v1/results>results</a> · <a href=/api/v1/diagnosis>diagnosis</a> · \
<a href=/heatmap.svg>heatmap.svg</a></p>",
        node = escape(h.node),
        zone = escape(h.zone.unwrap_or("-")),
        ready = if h.ready {
            "ready"
        } else {
            "first round running"
        },
        rounds = h.rounds,
        iv = h.interval_seconds,
        win = h.window_seconds,
        sock = escape(h.icmp_socket),
    );
    o.push_str("<div id=live>");
    if let Some(e) = h.discovery_error {
        let _ = write!(
            o,
            "<p class=bad>discovery failing, last good peer set kept: {}</p>",
            escape(e)
        );
    }
    let fam = h
        .family
        .map_or(String::new(), |f| format!("family={}", f.as_str()));
    let _ = write!(
        o,
        "<nav>layers: <a href=\"/{q}\">all</a>",
        q = if fam.is_empty() {
            String::new()
        } else {
            format!("?{fam}")
        }
    );
    for v in View::ALL {
        let _ = write!(
            o,
            " · <a href=\"/?layer={0}{2}\"{1}>{0}</a>",
            v.as_str(),
            if only == Some(v) { " class=sel" } else { "" },
            if fam.is_empty() {
                String::new()
            } else {
                format!("&amp;{fam}")
            }
        );
    }
    o.push_str("</nav>");
    if h.families.len() > 1 {
        // Dual-stack: the matrices of one family at a time; the findings are both's.
        let layer = only.map_or(String::new(), |v| format!("layer={}", v.as_str()));
        let link = |f: Option<Family>| {
            let q: Vec<String> = [layer.clone()]
                .into_iter()
                .chain(f.map(|f| format!("family={}", f.as_str())))
                .filter(|s| !s.is_empty())
                .collect();
            let sel = if f == h.family { " class=sel" } else { "" };
            let name = f.map_or("first (primary)", |f| f.as_str());
            let href = if q.is_empty() {
                "/".to_string()
            } else {
                format!("/?{}", q.join("&amp;"))
            };
            format!("<a href=\"{href}\"{sel}>{name}</a>")
        };
        let links: Vec<String> = std::iter::once(link(None))
            .chain(h.families.iter().map(|f| link(Some(*f))))
            .collect();
        let _ = write!(o, "<nav>family: {}</nav>", links.join(" · "));
    }
    let _ = write!(
        o,
        "<p>mesh view: results from {} of {} agent(s)",
        input.reports.len(),
        node_count
    );
    if !input.silent.is_empty() {
        let silent: Vec<String> = input
            .silent
            .iter()
            .map(|u| escape(&format!("{} ({})", u.node, u.error)))
            .collect();
        let _ = write!(
            o,
            "; <span class=bad>no answer from {}</span>",
            silent.join(", ")
        );
    }
    o.push_str("</p>");
    findings(&mut o, input.findings);
    held(&mut o, input.held);
    for v in views {
        let m = matrix(input, v);
        let failing = m
            .cells
            .iter()
            .flatten()
            .filter(|c| {
                matches!(
                    c.state,
                    State::Down | State::Lossy | State::Mismatch | State::Blackhole
                )
            })
            .count();
        let _ = write!(
            o,
            "<section class=layer id=\"layer-{id}\"><h2>{t}{f} <small>{failing} failing or lossy pair(s)</small></h2><div class=scroll>{svg}</div></section>",
            id = v.as_str(),
            t = v.title(),
            f = h.family.map_or(String::new(), |f| format!(" ({f})")),
            svg = svg(&m),
        );
    }
    o.push_str("</div>");
    let _ = write!(o, "<script>{}</script></body></html>", script(refresh));
    o
}

fn findings(o: &mut String, fs: &[Finding]) {
    o.push_str("<section id=findings><h2>Findings</h2>");
    if fs.is_empty() {
        o.push_str("<p class=good>healthy: no findings</p>");
    }
    finding_list(o, fs, "finding");
    o.push_str("</section>");
}

/// Findings about held peers, when there are any: what is wrong, but not an alarm yet.
fn held(o: &mut String, fs: &[Finding]) {
    if fs.is_empty() {
        return;
    }
    o.push_str("<section id=held><h2>Held <small>peers on NotReady or cordoned nodes, or just Ready: not alarms</small></h2>");
    finding_list(o, fs, "held");
    o.push_str("</section>");
}

fn finding_list(o: &mut String, fs: &[Finding], class: &str) {
    for f in fs {
        let _ = write!(
            o,
            "<div class={class} data-cause=\"{c}\"><b>[{c}]</b> {s} <small>({conf:.0}% confidence)</small>",
            c = escape(f.cause.as_str()),
            s = escape(&f.summary),
            conf = f.confidence * 100.0
        );
        if !f.evidence.is_empty() {
            o.push_str("<div>evidence:<ul>");
            for e in &f.evidence {
                let _ = write!(o, "<li>{}</li>", escape(e));
            }
            o.push_str("</ul></div>");
        }
        if !f.next_steps.is_empty() {
            o.push_str("<div>next steps:<ul>");
            for e in &f.next_steps {
                let _ = write!(o, "<li>{}</li>", escape(e));
            }
            o.push_str("</ul></div>");
        }
        o.push_str("</div>");
    }
}

const CSS: &str = "body{font:14px sans-serif;margin:1em 1.5em;color:#222}h2{font-size:16px;margin:1em 0 .3em}\
h2 small{font-weight:normal;color:#666}.meta{color:#444}.scroll{overflow:auto;max-width:100%;max-height:85vh;border:1px solid #ddd}\
.bad{color:#8b0000}.good{color:#1a6b35}.finding{background:#fdecea;border-left:4px solid #b2182b;padding:4px 8px;margin:6px 0}\
.finding ul,.held ul{margin:2px 0}.held{background:#f3f3f3;border-left:4px solid #999;padding:4px 8px;margin:6px 0}nav a.sel{font-weight:bold}";

fn script(refresh: u64) -> String {
    // Fetch the page again and swap the live part; keep the matrices' scroll positions; count
    // the swaps in <body data-refreshed> (the browser test reads it).
    format!(
        "(function(){{var ms={ms};function tick(){{var sc=[].map.call(document.querySelectorAll('.scroll'),function(e){{return[e.scrollLeft,e.scrollTop]}});\
fetch(location.href,{{cache:'no-store'}}).then(function(r){{return r.text()}}).then(function(t){{var d=new DOMParser().parseFromString(t,'text/html');\
var n=d.getElementById('live');if(n){{document.getElementById('live').replaceWith(n);var b=document.body;b.setAttribute('data-refreshed',(+b.getAttribute('data-refreshed')||0)+1);[].forEach.call(document.querySelectorAll('.scroll'),function(e,i){{if(sc[i]){{e.scrollLeft=sc[i][0];e.scrollTop=sc[i][1]}}}})}}}})\
.catch(function(){{}}).then(function(){{setTimeout(tick,ms)}})}}setTimeout(tick,ms)}})();",
        ms = refresh * 1000
    )
}
