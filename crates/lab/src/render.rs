//! Pictures of the block tree one node saw: SVG (drawn here, no system program needed) and
//! Graphviz DOT (for people who use it).
//!
//! Blocks stand left to right by round (epoch), one column per round, so a round without a
//! block is a visible gap. The chain through the highest block sits on the top row, with forks
//! below it. Colour says how far each block got (proposed, notarized, finalized), the finalized
//! prefix sits on a highlighted band, and each block shows its leader, votes and transactions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use agora_consensus::{BlockStatus, BlockView};
use agora_crypto::Digest;
use agora_pbft::PbftKind;
use agora_types::{NodeId, Round};

/// What to draw besides the blocks.
#[derive(Clone)]
pub struct ChainPicture<'a> {
    /// Title at the top.
    pub title: String,
    /// The blocks one node saw (genesis included).
    pub blocks: &'a [BlockView],
    /// Committee size (for "votes k/n").
    pub nodes: usize,
    /// The leader of each round, to label rounds that have no block.
    pub leader_of: &'a dyn Fn(Round) -> NodeId,
    /// Rounds shown: `1..=last_round` (and genesis).
    pub last_round: u64,
    /// What a round is called ("epoch", "view").
    pub round_name: &'static str,
}

const COL_W: f64 = 150.0;
const ROW_H: f64 = 100.0;
const BOX_W: f64 = 118.0;
const BOX_H: f64 = 74.0;
const LEFT: f64 = 30.0;
const TOP: f64 = 96.0;

impl std::fmt::Debug for ChainPicture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainPicture")
            .field("title", &self.title)
            .field("blocks", &self.blocks.len())
            .field("nodes", &self.nodes)
            .field("last_round", &self.last_round)
            .finish()
    }
}

fn colours(status: BlockStatus) -> (&'static str, &'static str, &'static str) {
    // (fill, stroke, label)
    match status {
        BlockStatus::Finalized => ("#c8e6c9", "#2e7d32", "finalized"),
        BlockStatus::Notarized => ("#bbdefb", "#1565c0", "notarized"),
        BlockStatus::Proposed => ("#f5f5f5", "#9e9e9e", "proposed"),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Row of each block: the chain through the highest (then latest) block on row 0, forks below.
fn layout(blocks: &[BlockView]) -> BTreeMap<Digest, usize> {
    let by_digest: BTreeMap<Digest, &BlockView> = blocks.iter().map(|b| (b.digest, b)).collect();
    // The highest certified block (the finalized chain is its prefix), then the latest.
    let tip = blocks.iter().max_by_key(|b| (b.status != BlockStatus::Proposed, b.height, b.round));
    let mut main = BTreeSet::new();
    let mut at = tip.map(|b| b.digest);
    while let Some(d) = at {
        main.insert(d);
        at = by_digest.get(&d).map(|b| b.parent).filter(|p| by_digest.contains_key(p));
    }
    let mut rows = BTreeMap::new();
    let mut taken: BTreeSet<(u64, usize)> = BTreeSet::new();
    let mut ordered: Vec<&BlockView> = blocks.iter().collect();
    ordered.sort_by_key(|b| (b.round, b.height, b.digest));
    for b in &ordered {
        if main.contains(&b.digest) {
            rows.insert(b.digest, 0);
            taken.insert((b.round.0, 0));
        }
    }
    for b in ordered {
        if rows.contains_key(&b.digest) {
            continue;
        }
        // Row 0 is the main chain, plus a proposal extending its tip; every other block goes
        // beside its parent's row if free, otherwise on the first free row below (never row 0).
        let extends_tip = tip.is_some_and(|t| t.digest == b.parent);
        let preferred =
            if extends_tip { 0 } else { rows.get(&b.parent).copied().unwrap_or(1).max(1) };
        let row =
            (preferred..).find(|r| !taken.contains(&(b.round.0, *r))).expect("rows are unbounded");
        taken.insert((b.round.0, row));
        rows.insert(b.digest, row);
    }
    rows
}

fn cell(round: Round, row: usize) -> (f64, f64) {
    (LEFT + round.0 as f64 * COL_W, TOP + row as f64 * ROW_H)
}

/// The picture as an SVG document.
pub fn svg(p: &ChainPicture<'_>) -> String {
    let rows = layout(p.blocks);
    let row_count = rows.values().copied().max().unwrap_or(0) + 1;
    let width = LEFT * 2.0 + (p.last_round as f64 + 1.0) * COL_W;
    let height = TOP + row_count as f64 * ROW_H + 70.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="Helvetica, Arial, sans-serif">"#
    );
    s.push_str(r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>"##);
    s.push('\n');
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="30" font-size="18" font-weight="bold">{}</text>"#,
        escape(&p.title)
    );

    // The finalized prefix: a band behind the finalized blocks of row 0.
    let last_final =
        p.blocks.iter().filter(|b| b.status == BlockStatus::Finalized).map(|b| b.round.0).max();
    if let Some(last) = last_final {
        let (x0, y0) = cell(Round(0), 0);
        let (x1, _) = cell(Round(last), 0);
        let _ = writeln!(
            s,
            r##"<rect x="{:.0}" y="{:.0}" width="{:.0}" height="{:.0}" rx="12" fill="#e8f5e9" stroke="#81c784" stroke-dasharray="6 4"/>"##,
            x0 - 8.0,
            y0 - 10.0,
            x1 - x0 + BOX_W + 16.0,
            BOX_H + 20.0
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.0}" y="{:.0}" font-size="11" fill="#2e7d32">finalized prefix (through {} {last})</text>"##,
            x0 - 4.0,
            y0 + BOX_H + 24.0,
            p.round_name
        );
    }

    // Round headers.
    let rounds_with_blocks: BTreeSet<u64> = p.blocks.iter().map(|b| b.round.0).collect();
    for r in 0..=p.last_round {
        let (x, _) = cell(Round(r), 0);
        let label = if r == 0 { "genesis".to_owned() } else { format!("{} {r}", p.round_name) };
        let _ = writeln!(
            s,
            r##"<text x="{:.0}" y="60" font-size="13" fill="#333">{label}</text>"##,
            x + 4.0
        );
        if r > 0 {
            let leader = (p.leader_of)(Round(r));
            let _ = writeln!(
                s,
                r##"<text x="{:.0}" y="75" font-size="10" fill="#777">leader n{leader}</text>"##,
                x + 4.0
            );
        }
    }

    // Edges: each block points at its parent.
    let place: BTreeMap<Digest, (f64, f64)> =
        p.blocks.iter().map(|b| (b.digest, cell(b.round, rows[&b.digest]))).collect();
    for b in p.blocks {
        let (Some(&(x, y)), Some(&(px, py))) = (place.get(&b.digest), place.get(&b.parent)) else {
            continue;
        };
        let _ = writeln!(
            s,
            r##"<line x1="{:.0}" y1="{:.0}" x2="{:.0}" y2="{:.0}" stroke="#555" stroke-width="1.6" marker-end="url(#arrow)"/>"##,
            x,
            y + BOX_H / 2.0,
            px + BOX_W,
            py + BOX_H / 2.0
        );
    }

    // Rounds without a block: a placeholder on the main row, over the edge that skips it.
    for r in (1..=p.last_round).filter(|r| !rounds_with_blocks.contains(r)) {
        let (x, y) = cell(Round(r), 0);
        let _ = writeln!(
            s,
            r##"<rect x="{x:.0}" y="{y:.0}" width="{BOX_W}" height="{BOX_H}" rx="8" fill="white" stroke="#e57373" stroke-width="1.5" stroke-dasharray="5 4"/><text x="{:.0}" y="{:.0}" font-size="12" fill="#c62828" text-anchor="middle">no block</text>"##,
            x + BOX_W / 2.0,
            y + BOX_H / 2.0 + 4.0
        );
    }

    // Blocks.
    for b in p.blocks {
        let (x, y) = place[&b.digest];
        let (fill, stroke, _) = colours(b.status);
        let dash =
            if b.status == BlockStatus::Proposed { r#" stroke-dasharray="4 3""# } else { "" };
        let _ = writeln!(
            s,
            r#"<rect x="{x:.0}" y="{y:.0}" width="{BOX_W}" height="{BOX_H}" rx="8" fill="{fill}" stroke="{stroke}" stroke-width="2"{dash}/>"#
        );
        let lines = if b.height.0 == 0 {
            vec!["genesis".to_owned(), format!("#{}", b.digest.short())]
        } else {
            vec![
                format!("h{} · #{}", b.height, b.digest.short()),
                format!("leader n{}", b.proposer),
                format!("votes {}/{}", b.votes, p.nodes),
                format!("{} txs", b.txs),
            ]
        };
        for (i, line) in lines.iter().enumerate() {
            let weight = if i == 0 { r#" font-weight="bold""# } else { "" };
            let _ = writeln!(
                s,
                r##"<text x="{:.0}" y="{:.0}" font-size="12" fill="#212121"{weight}>{}</text>"##,
                x + 8.0,
                y + 17.0 + 16.0 * i as f64,
                escape(line)
            );
        }
    }

    // Legend.
    let ly = height - 30.0;
    let mut lx = LEFT;
    for status in [BlockStatus::Finalized, BlockStatus::Notarized, BlockStatus::Proposed] {
        let (fill, stroke, label) = colours(status);
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.0}" y="{:.0}" width="18" height="14" rx="3" fill="{fill}" stroke="{stroke}" stroke-width="2"/><text x="{:.0}" y="{ly:.0}" font-size="12">{label}</text>"#,
            ly - 11.0,
            lx + 24.0
        );
        lx += 120.0;
    }
    let _ = writeln!(
        s,
        r##"<text x="{lx:.0}" y="{ly:.0}" font-size="12" fill="#555">arrows point to the parent block</text>"##
    );
    s.push_str("</svg>\n");
    s
}

/// The picture as a Graphviz DOT digraph (left to right, children pointing at parents).
pub fn dot(p: &ChainPicture<'_>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "digraph chain {{");
    let _ =
        writeln!(s, "  label=\"{}\"; labelloc=t; rankdir=LR;", p.title.replace(['"', '\\'], "'"));
    let _ = writeln!(s, "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];");
    let mut blocks: Vec<&BlockView> = p.blocks.iter().collect();
    blocks.sort_by_key(|b| (b.round, b.height, b.digest));
    for b in &blocks {
        let (fill, stroke, status) = colours(b.status);
        let label = if b.height.0 == 0 {
            "genesis".to_owned()
        } else {
            format!(
                "{} {} · h{}\\n#{}\\nleader n{} · votes {}/{}\\n{} txs · {status}",
                p.round_name,
                b.round,
                b.height,
                b.digest.short(),
                b.proposer,
                b.votes,
                p.nodes,
                b.txs
            )
        };
        let _ = writeln!(
            s,
            "  \"{}\" [label=\"{label}\", fillcolor=\"{fill}\", color=\"{stroke}\"];",
            b.digest.short()
        );
    }
    for b in &blocks {
        if blocks.iter().any(|p| p.digest == b.parent) {
            let _ = writeln!(s, "  \"{}\" -> \"{}\";", b.digest.short(), b.parent.short());
        }
    }
    s.push_str("}\n");
    s
}

/// The kinds a sequence chart draws in colour, in the order of its legend.
const CHARTED: [PbftKind; 6] = [
    PbftKind::PrePrepare,
    PbftKind::Prepare,
    PbftKind::Commit,
    PbftKind::Reply,
    PbftKind::ViewChange,
    PbftKind::NewView,
];

/// Colour of a message kind in sequence charts (grey for the others).
fn kind_colour(kind: Option<PbftKind>) -> &'static str {
    match kind {
        Some(PbftKind::PrePrepare) => "#e53935",
        Some(PbftKind::Prepare) => "#00897b",
        Some(PbftKind::Commit) => "#1e88e5",
        Some(PbftKind::Reply) => "#43a047",
        Some(PbftKind::ViewChange) => "#fb8c00",
        Some(PbftKind::NewView) => "#8e24aa",
        _ => "#757575",
    }
}

/// One delivered message in a sequence chart.
struct Arrow {
    from: usize,
    to: usize,
    sent: u64,
    at: u64,
    kind: Option<PbftKind>,
}

/// A labelled point on a replica's line: an execution, a crash, a restart.
type Mark = (usize, u64, String, &'static str);

/// The arrows and marks of `instance`'s chart: its messages, the view-change traffic of the same
/// time span (from a crash before it, which caused the view change), executions and faults.
/// `None` when the trace has no message of the instance.
fn chart_events(
    events: &[agora_netsim::TraceEvent],
    instance: u64,
) -> Option<(Vec<Arrow>, Vec<Mark>)> {
    use agora_netsim::TraceEvent as E;
    // Messages of the instance itself; view-change traffic carries a view, not a sequence number.
    let view_traffic = |kind: &str| PbftKind::from_name(kind).is_some_and(PbftKind::is_view_change);
    let mine = |i: &Option<u64>, kind: &str| *i == Some(instance) && !view_traffic(kind);
    let span: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            E::Deliver { t_ns, sent_ns, instance: i, kind, .. } if mine(i, kind) => {
                Some([*sent_ns, *t_ns])
            }
            _ => None,
        })
        .flatten()
        .collect();
    let (first, last) = (*span.iter().min()?, *span.iter().max()?);
    // If a crash came before the instance, start there: the view change it caused belongs to
    // the picture.
    let start = events
        .iter()
        .filter_map(|e| match e {
            E::Crash { t_ns, .. } if *t_ns <= first => Some(*t_ns),
            _ => None,
        })
        .max()
        .unwrap_or(first);
    let mut arrows = Vec::new();
    let mut marks: Vec<Mark> = Vec::new();
    for e in events {
        match e {
            E::Deliver { t_ns, from, to, kind, sent_ns, instance: i } => {
                let view_change = view_traffic(kind) && *sent_ns >= start && *t_ns <= last;
                if mine(i, kind) || view_change {
                    arrows.push(Arrow {
                        from: from.index(),
                        to: to.index(),
                        sent: *sent_ns,
                        at: *t_ns,
                        kind: PbftKind::from_name(kind),
                    });
                }
            }
            E::Commit { t_ns, node, height, .. } if *height == instance => {
                marks.push((node.index(), *t_ns, format!("executed #{instance}"), "#1b5e20"));
            }
            E::Crash { t_ns, node } if *t_ns <= last => {
                marks.push((node.index(), *t_ns, "crashed".into(), "#c62828"))
            }
            E::Restart { t_ns, node } if *t_ns <= last => {
                marks.push((node.index(), *t_ns, "restarted".into(), "#2e7d32"))
            }
            _ => {}
        }
    }
    Some((arrows, marks))
}

/// Time → y: 4 px per ms, but a gap longer than 25 ms takes 50 px and is labelled. Returns each
/// time's y, the breaks (y, the gap in ms) and the last y.
fn time_axis(
    arrows: &[Arrow],
    marks: &[Mark],
    top: f64,
) -> (BTreeMap<u64, f64>, Vec<(f64, f64)>, f64) {
    let mut times: Vec<u64> =
        arrows.iter().flat_map(|a| [a.sent, a.at]).chain(marks.iter().map(|m| m.1)).collect();
    times.sort_unstable();
    times.dedup();
    let mut y_of = BTreeMap::new();
    let mut breaks = Vec::new();
    let mut y = top;
    let mut prev: Option<u64> = None;
    for &t in &times {
        if let Some(p) = prev {
            let gap_ms = (t - p) as f64 / 1e6;
            if gap_ms > 25.0 {
                breaks.push((y + 25.0, gap_ms));
                y += 50.0;
            } else {
                y += (gap_ms * 4.0).max(8.0);
            }
        }
        y_of.insert(t, y);
        prev = Some(t);
    }
    (y_of, breaks, y)
}

/// A message sequence chart of one protocol instance (a PBFT sequence number): one column per
/// replica, time downward, one arrow per delivered message of the instance, coloured by phase,
/// with the view-change messages of the same time span, executions and crashes. Long quiet
/// stretches (a timeout running out) are compressed and labelled with their real length.
/// `None` when the trace has no message of the instance.
pub fn sequence_chart(
    events: &[agora_netsim::TraceEvent],
    nodes: usize,
    instance: u64,
    title: &str,
) -> Option<String> {
    let (mut arrows, marks) = chart_events(events, instance)?;
    let (y_of, breaks, y) = time_axis(&arrows, &marks, 110.0);
    let col_w = 150.0;
    let left = 110.0;
    let x = |node: usize| left + node as f64 * col_w;
    let width = left + nodes as f64 * col_w + 40.0;
    let height = y + 110.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="Helvetica, Arial, sans-serif">"#
    );
    out.push_str(r#"<defs><marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="context-stroke"/></marker></defs>"#);
    out.push('\n');
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="20" y="30" font-size="18" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for node in 0..nodes {
        let _ = writeln!(
            out,
            r##"<text x="{:.0}" y="80" font-size="13" text-anchor="middle">replica {node}</text><line x1="{:.0}" y1="90" x2="{:.0}" y2="{:.0}" stroke="#bdbdbd" stroke-width="2"/>"##,
            x(node),
            x(node),
            x(node),
            y + 20.0
        );
    }
    for (by, gap_ms) in &breaks {
        let _ = writeln!(
            out,
            r##"<line x1="{left:.0}" y1="{by:.0}" x2="{:.0}" y2="{by:.0}" stroke="#9e9e9e" stroke-dasharray="3 5"/><text x="12" y="{:.0}" font-size="11" fill="#616161">… {gap_ms:.0} ms …</text>"##,
            left + (nodes - 1) as f64 * col_w,
            by + 4.0
        );
    }
    let mut last_label = f64::NEG_INFINITY;
    for (t, ty) in &y_of {
        if *ty - last_label < 12.0 {
            continue;
        }
        last_label = *ty;
        let _ = writeln!(
            out,
            r##"<text x="12" y="{:.0}" font-size="10" fill="#9e9e9e">{:.1} ms</text>"##,
            ty + 3.0,
            *t as f64 / 1e6
        );
    }
    // View-change traffic is drawn last and dashed, so it stays visible over the phases.
    arrows.sort_by_key(|a| a.kind.is_some_and(PbftKind::is_view_change));
    for a in &arrows {
        let (x1, y1, x2, y2) = (x(a.from), y_of[&a.sent], x(a.to), y_of[&a.at]);
        let colour = kind_colour(a.kind);
        if a.from == a.to {
            continue;
        }
        let dash = if a.kind.is_some_and(PbftKind::is_view_change) {
            r#" stroke-dasharray="7 4""#
        } else {
            ""
        };
        let _ = writeln!(
            out,
            r#"<line x1="{x1:.0}" y1="{y1:.1}" x2="{x2:.0}" y2="{y2:.1}" stroke="{colour}" stroke-width="1.6"{dash} marker-end="url(#head)"/>"#
        );
    }
    for (node, t, label, colour) in &marks {
        let (cx, cy) = (x(*node), y_of[t]);
        let _ = writeln!(
            out,
            r#"<circle cx="{cx:.0}" cy="{cy:.1}" r="5" fill="{colour}"/><text x="{:.0}" y="{:.1}" font-size="11" fill="{colour}" paint-order="stroke" stroke="white" stroke-width="3">{}</text>"#,
            cx + 8.0,
            cy + 4.0,
            escape(label)
        );
    }
    let mut lx = 20.0;
    let ly = height - 30.0;
    for kind in CHARTED {
        let _ = writeln!(
            out,
            r#"<line x1="{lx:.0}" y1="{:.0}" x2="{:.0}" y2="{:.0}" stroke="{}" stroke-width="3"/><text x="{:.0}" y="{ly:.0}" font-size="12">{kind}</text>"#,
            ly - 4.0,
            lx + 22.0,
            ly - 4.0,
            kind_colour(Some(kind)),
            lx + 28.0,
            kind = kind.as_str(),
        );
        lx += 118.0;
    }
    out.push_str("</svg>\n");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_crypto::domain;
    use agora_types::Height;

    fn view(name: &str, parent: Digest, round: u64, height: u64, status: BlockStatus) -> BlockView {
        BlockView {
            digest: domain::BLOCK.hash(name.as_bytes()),
            parent,
            round: Round(round),
            height: Height(height),
            proposer: NodeId((round % 4) as u16),
            txs: 3,
            status,
            votes: 3,
            proposed_at_ns: 0,
            notarized_at_ns: None,
            finalized_at_ns: None,
        }
    }

    fn sample() -> Vec<BlockView> {
        let g = view("g", Digest::ZERO, 0, 0, BlockStatus::Finalized);
        let b1 = view("b1", g.digest, 1, 1, BlockStatus::Finalized);
        let b2 = view("b2", b1.digest, 2, 2, BlockStatus::Notarized);
        let fork = view("fork<&>", b1.digest, 2, 2, BlockStatus::Proposed);
        let b4 = view("b4", b2.digest, 4, 3, BlockStatus::Notarized);
        vec![g, b1, b2, fork, b4]
    }

    #[test]
    fn forks_get_their_own_row_and_the_main_chain_row_zero() {
        let blocks = sample();
        let rows = layout(&blocks);
        assert_eq!(rows[&blocks[2].digest], 0);
        assert_eq!(rows[&blocks[3].digest], 1, "the fork of epoch 2 sits below");
        assert_eq!(rows[&blocks[4].digest], 0);
    }

    #[test]
    fn svg_shows_every_block_gap_and_status() {
        let blocks = sample();
        let leader = |r: Round| NodeId((r.0 % 4) as u16);
        let picture = ChainPicture {
            title: "n = 4 <test>".into(),
            blocks: &blocks,
            nodes: 4,
            leader_of: &leader,
            last_round: 4,
            round_name: "epoch",
        };
        let svg = svg(&picture);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("no block").count(), 1, "epoch 3 has no block");
        for b in &blocks[1..] {
            assert!(svg.contains(&b.digest.short()));
        }
        assert!(svg.contains("finalized prefix (through epoch 1)"));
        assert!(svg.contains("&lt;test&gt;"), "text is escaped");
        assert!(svg.contains("votes 3/4") && svg.contains("leader n2"));
        let dot = dot(&picture);
        assert!(dot.starts_with("digraph chain {"));
        assert_eq!(dot.matches(" -> ").count(), 4);
    }
}
