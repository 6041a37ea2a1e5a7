//! Table tests of the decisions: rounds of made-up probe results through `decide`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hapool_topology::{ClusterId, Engine, Health, NodeId, Role};

use super::*;
use crate::observation::Replication;
use crate::position::{Lsn, Position};
use crate::state::ClusterState;

fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5000 + i))
}

fn id(name: &str) -> NodeId {
    NodeId(name.into())
}

fn cluster() -> ClusterState {
    ClusterState::new(
        ClusterId("app".into()),
        Engine::Postgres,
        [(id("db1"), addr(1), 1), (id("db2"), addr(2), 1), (id("db3"), addr(3), 1)],
    )
}

fn limits() -> Limits {
    Limits { thresholds: Thresholds { failure: 3, recovery: 2 }, max_lag_seconds: None, max_lag_bytes: Some(1000) }
}

/// A probe result written short: `P100` primary at LSN 100, `R90@1` replica replayed to 90 streaming from
/// node 1, `R90@1!` the same with its receiver down, `N` read-only without replication, `-` failed probe.
fn result(spec: &str) -> Result<Observation, String> {
    if spec == "-" {
        return Err("connection refused".into());
    }
    let (claimed, rest) = spec.split_at(1);
    let claimed = match claimed {
        "P" => Claimed::Primary,
        "R" => Claimed::Replica,
        _ => Claimed::Neither,
    };
    let broken = rest.ends_with('!');
    let rest = rest.trim_end_matches('!');
    let (pos, upstream) = match rest.split_once('@') {
        Some((p, u)) => (p, Some(addr(u.parse().unwrap()))),
        None => (rest, None),
    };
    let position = pos.parse().ok().map(|v| Position::Lsn(Lsn(v)));
    let replication = (claimed == Claimed::Replica).then_some(Replication {
        receiving: !broken,
        applying: true,
        error: None,
        upstream,
    });
    Ok(Observation {
        claimed,
        position,
        received: None,
        reported_delay: None,
        replication,
        timeline: Some(1),
        downstream: Vec::new(),
        server_id: None,
    })
}

/// Runs rounds (one spec per node, space separated), one second apart, returning the final state and the
/// changes of each round as text.
fn run(rounds: &[&str]) -> (ClusterState, Vec<Vec<String>>) {
    let t0 = Instant::now();
    let mut state = cluster();
    let mut all = Vec::new();
    for (i, round) in rounds.iter().enumerate() {
        let results = round.split(' ').zip(["db1", "db2", "db3"]).map(|(s, n)| (id(n), result(s))).collect();
        let round = Round { at: t0 + Duration::from_secs(i as u64), results };
        let (next, changes) = decide(&state, &round, &limits());
        all.push(changes.iter().map(|c| c.to_string()).collect());
        state = next;
    }
    (state, all)
}

fn healths(state: &ClusterState) -> Vec<Health> {
    state.nodes.iter().map(|n| n.health.health).collect()
}

#[test]
fn first_round_finds_the_primary_wherever_it_is_listed() {
    let (state, changes) = run(&["R100@2 P100 R100@2"]);
    assert_eq!(state.primary, Some(id("db2")));
    assert_eq!(healths(&state), [Health::Up; 3]);
    assert_eq!(state.nodes.iter().map(|n| n.role).collect::<Vec<_>>(), [Role::Replica, Role::Primary, Role::Replica]);
    assert_eq!(changes[0][0], "primary none → db2");
}

#[test]
fn a_steady_cluster_changes_nothing() {
    let (_, changes) = run(&["P100 R100@1 R100@1", "P200 R200@1 R150@1", "P300 R300@1 R300@1"]);
    assert!(changes[1].is_empty() && changes[2].is_empty(), "{changes:?}");
}

#[test]
fn failed_probes_make_a_node_suspect_then_down_then_up_again() {
    let (state, changes) = run(&[
        "P100 R100@1 R100@1",
        "P100 - R100@1",
        "P100 - R100@1",
        "P100 - R100@1",
        "P100 R100@1 R100@1",
        "P100 R100@1 R100@1",
    ]);
    assert_eq!(changes[1], ["node db2 up → suspect (connection refused)"]);
    assert!(changes[2].is_empty());
    assert_eq!(changes[3], ["node db2 suspect → down (connection refused)"]);
    assert!(changes[4].is_empty(), "one good probe is not enough: {:?}", changes[4]);
    assert_eq!(changes[5], ["node db2 down → up"]);
    assert_eq!(state.nodes[1].role, Role::Replica, "the role is kept while unreachable");
}

#[test]
fn a_replica_with_broken_replication_goes_down_though_it_answers() {
    let (state, changes) =
        run(&["P100 R100@1 R100@1", "P100 R100@1! R100@1", "P100 R100@1! R100@1", "P100 R100@1! R100@1"]);
    assert_eq!(changes[1], ["node db2 up → suspect (not receiving from its primary)"]);
    assert_eq!(state.nodes[1].health.health, Health::Down);
}

#[test]
fn a_missed_primary_probe_is_not_a_demotion() {
    let (state, changes) = run(&["P100 R100@1 R100@1", "- R100@1 R100@1"]);
    assert_eq!(state.primary, Some(id("db1")));
    assert_eq!(changes[1], ["node db1 up → suspect (connection refused)"]);
}

#[test]
fn a_primary_that_reports_recovery_is_no_longer_primary() {
    let (state, changes) = run(&["P100 R100@1 R100@1", "R100@1 R100@1 R100@1"]);
    assert_eq!(state.primary, None);
    assert!(changes[1].contains(&"primary db1 → none".to_string()), "{changes:?}");
    assert!(changes[1].contains(&"primary db1 now reports it is a replica".to_string()), "{changes:?}");
}

#[test]
fn two_primaries_are_flagged_and_the_old_one_kept() {
    let (state, changes) = run(&["P100 R100@1 R100@1", "P100 P100 R100@1", "P100 R100@1 R100@1"]);
    assert_eq!(state.primary, Some(id("db1")));
    assert_eq!(changes[1], ["node db2 role replica → primary", "more than one node accepts writes: db1, db2"]);
    assert!(changes[2].contains(&"resolved: more than one node accepts writes: db1, db2".to_string()));
}

#[test]
fn with_no_previous_primary_the_replicas_vote() {
    let (state, _) = run(&["P100 P100 R100@2"]);
    assert_eq!(state.primary, Some(id("db2")));
    let (state, _) = run(&["P100 P100 R100"]);
    assert_eq!(state.primary, None, "a tie elects nobody");
}

#[test]
fn a_replica_following_another_node_is_flagged_and_the_flag_survives_a_missed_probe() {
    let (state, changes) = run(&["P100 R100@1 R100@2", "P100 R100@1 -"]);
    let flag = "replica db3 replicates from 127.0.0.1:5002, not from the primary";
    assert!(changes[0].contains(&flag.to_string()), "{changes:?}");
    assert_eq!(state.flags.len(), 1, "kept while db3 cannot be probed");
}

#[test]
fn lag_crossing_the_limit_is_a_change_and_lag_figures_alone_are_not() {
    let (state, changes) =
        run(&["P100 R100@1 R100@1", "P5000 R4500@1 R100@1", "P6000 R5500@1 R4000@1", "P6000 R6000@1 R6000@1"]);
    assert!(
        changes[1].iter().any(|c| c.starts_with("node db3 lag") && c.ends_with("over the limit: no reads")),
        "{changes:?}"
    );
    assert!(!changes[1].iter().any(|c| c.contains("db2")), "db2 is 500 bytes behind, under the limit");
    assert!(changes[2].is_empty(), "{changes:?}");
    assert!(changes[3].iter().any(|c| c.contains("db3") && c.ends_with("back under the limit")), "{changes:?}");
    assert_eq!(state.nodes[2].lag.bytes, Some(0));
    assert_eq!(state.nodes[2].lag.seconds, Some(0.0));
}

#[test]
fn lag_seconds_grow_while_a_replica_stands_still() {
    let (state, _) = run(&["P100 R100@1 R100@1", "P200 R200@1 R100@1", "P300 R300@1 R100@1", "P400 R400@1 R100@1"]);
    // The primary passed 100 at round 1 (1 s); round 3 is at 3 s.
    assert_eq!(state.nodes[2].lag.seconds, Some(2.0));
    assert_eq!(state.nodes[1].lag.seconds, Some(0.0));
}
