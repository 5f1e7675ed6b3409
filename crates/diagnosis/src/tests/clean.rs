//! Stage 1, cleaning: one cell's verdict ([`crate::cell_state`]).

use super::helpers::*;
use crate::input::*;
use crate::Params;

#[test]
fn cleaning_rules() {
    use crate::engine::{cell_state, CellState};
    use crate::matrix::Cell;
    let p = Params::default();
    let st = |s: LayerStats| cell_state(&Cell::from(&s), Some(1.0), Some(10.0), &p);
    let table: Vec<(&str, LayerStats, CellState)> = vec![
        ("clean", ok(), CellState::Ok),
        (
            "one lost probe, the last one: no answer yet",
            one_lost(),
            CellState::Unknown,
        ),
        (
            "one lost probe, answered since",
            LayerStats {
                reachable: Some(true),
                consecutive_failures: 0,
                ..one_lost()
            },
            CellState::Ok,
        ),
        (
            "two failures in a row",
            LayerStats {
                consecutive_failures: 2,
                ..one_lost()
            },
            CellState::Down,
        ),
        ("few probes", fresh_failing(), CellState::Unknown),
        ("30% loss", lossy(9), CellState::Lossy),
        ("1 of 30 echoes lost", lossy(1), CellState::Ok),
        (
            "stale",
            LayerStats {
                last_probe_age_seconds: Some(60.0),
                ..timeout()
            },
            CellState::Unknown,
        ),
        ("prober error", down(err("io")), CellState::Unknown),
        (
            "mostly failing, last one too",
            LayerStats {
                consecutive_failures: 1,
                successes: 1,
                success_ratio: Some(0.1),
                ..one_lost()
            },
            CellState::Down,
        ),
        (
            "recovering: an outage's failures, answering for 2.5 intervals",
            LayerStats {
                successes: 3,
                received: 3,
                success_ratio: Some(0.3),
                last_error_age_seconds: Some(2.5),
                ..ok()
            },
            CellState::Unknown,
        ),
        (
            "recovered: an outage's failures, answering for over 3 intervals: a working path",
            LayerStats {
                successes: 3,
                received: 3,
                success_ratio: Some(0.3),
                last_error_age_seconds: Some(5.0),
                ..ok()
            },
            CellState::Ok,
        ),
        (
            "a cleared outage: 8 of 10 probes fine, quiet for 4 s (loss spaced 1.1 s)",
            LayerStats {
                last_error_age_seconds: Some(4.0),
                ..lossy(9)
            },
            CellState::Unknown,
        ),
        (
            "steady loss, quiet for 4 s between sparse losses (spaced 3.3 s)",
            LayerStats {
                last_error_age_seconds: Some(4.0),
                ..lossy(3)
            },
            CellState::Lossy,
        ),
    ];
    for (label, s, want) in table {
        assert_eq!(st(s), want, "{label}");
    }
}

#[test]
fn loss_is_what_answered_probes_lost() {
    use crate::engine::{cell_state, CellState};
    use crate::matrix::Cell;
    let p = Params::default();
    let st = |s: LayerStats| cell_state(&Cell::from(&s), Some(1.0), Some(8.0), &p);
    let table: Vec<(&str, LayerStats, CellState)> = vec![
        (
            "an earlier outage's failed probe + a cut round",
            cut_after_residue(),
            CellState::Lossy, // 2/24: below the per-pair threshold (3 packets, 20%)
        ),
        (
            "a cut round, then a whole failure",
            cut_then_failed(),
            CellState::Unknown,
        ),
        (
            "a whole failure + 1 echo lost before",
            echo_cell(1, 1, 1, true),
            CellState::Unknown,
        ),
        (
            "two whole failures: down",
            echo_cell(2, 1, 2, true).with_cf(2),
            CellState::Down,
        ),
        ("steady loss", steady_pair_loss(), CellState::Lossy),
        (
            "steady loss read from a scrape 5 s old (last probe 5.2 s ago, its loss 5.3 s ago): loss, not quiet",
            LayerStats {
                last_error_age_seconds: Some(5.3),
                last_probe_age_seconds: Some(5.2),
                ..steady_pair_loss()
            },
            CellState::Lossy,
        ),
        (
            "... the same loss 5.3 s ago, probed since (last probe 0.1 s ago): quiet, recovered",
            LayerStats {
                last_error_age_seconds: Some(5.3),
                ..steady_pair_loss()
            },
            CellState::Unknown,
        ),
        (
            "steady loss with a whole failure too",
            echo_cell(1, 3, 4, false),
            CellState::Lossy,
        ),
        (
            "loss onset: 1 echo lost in each of 2 probes",
            echo_cell(0, 2, 2, false),
            CellState::Lossy,
        ),
        (
            "2 echoes lost in a single probe, answered",
            echo_cell(0, 1, 2, false),
            CellState::Lossy,
        ),
        (
            "... then an answer after a whole failure",
            echo_cell(1, 2, 3, false),
            CellState::Lossy,
        ),
        (
            "an outage that began and ended in the window: whole failures + a cut round each edge, answering cleanly for 2 intervals since",
            LayerStats {
                last_error_age_seconds: Some(2.5),
                ..echo_cell(5, 2, 2, false)
            },
            CellState::Unknown,
        ),
        (
            "heavy loss: as many whole failures, its last loss 0.1 s ago",
            echo_cell(5, 2, 2, false),
            CellState::Lossy,
        ),
        (
            "... answering for over 3 intervals since: a working path",
            LayerStats {
                last_error_age_seconds: Some(3.5),
                ..echo_cell(5, 2, 2, false)
            },
            CellState::Ok,
        ),
        (
            "two whole failures and partial losses in three answered probes: loss",
            echo_cell(2, 3, 3, false),
            CellState::Lossy,
        ),
        (
            "no error counts (older agents): the packets alone",
            LayerStats {
                errors: Vec::new(),
                ..echo_cell(1, 1, 2, true)
            },
            CellState::Lossy,
        ),
    ];
    for (label, s, want) in table {
        assert_eq!(st(s), want, "{label}");
    }
}
