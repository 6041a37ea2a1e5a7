//! The sandbox leaves nothing behind: no server process and no folder, after a drop and after a panic.

use std::path::PathBuf;
use std::time::Duration;

use hapool_sandbox::{process_tree, MyCluster, MyClusterOptions, PgCluster, PgClusterOptions};

/// Every process of every server in the cluster, and the cluster's folder.
fn footprint_pg(c: &PgCluster) -> (Vec<i32>, PathBuf) {
    let pids = c.nodes().iter().flat_map(|n| process_tree(n.pid().unwrap())).collect();
    (pids, c.root().to_path_buf())
}

fn footprint_my(c: &MyCluster) -> (Vec<i32>, PathBuf) {
    let pids = c.nodes().iter().flat_map(|n| process_tree(n.pid().unwrap())).collect();
    (pids, c.root().to_path_buf())
}

fn assert_gone((pids, root): &(Vec<i32>, PathBuf)) {
    // Backends of a stopped postmaster may take a moment to notice; give them a bounded while.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let alive = |p: &i32| std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| !s.contains(") Z "));
    while pids.iter().any(alive) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<&i32> = pids.iter().filter(|p| alive(p)).collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
    assert!(!root.exists(), "folder left behind: {}", root.display());
}

#[test]
fn dropping_clusters_stops_every_process_and_removes_every_folder() {
    let pg = PgCluster::start(PgClusterOptions { replicas: 1, ..Default::default() }).unwrap();
    let my = MyCluster::start(MyClusterOptions::default()).unwrap();
    let pg_print = footprint_pg(&pg);
    let my_print = footprint_my(&my);
    assert!(pg_print.0.len() >= 2 * 5, "postmasters and their children: {:?}", pg_print.0);
    drop(pg);
    drop(my);
    assert_gone(&pg_print);
    assert_gone(&my_print);
}

#[test]
fn a_panicking_test_still_cleans_up() {
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let pg = PgCluster::start(PgClusterOptions { replicas: 1, ..Default::default() }).unwrap();
        let my = MyCluster::start(MyClusterOptions::default()).unwrap();
        tx.send((footprint_pg(&pg), footprint_my(&my))).unwrap();
        panic!("a test failing while its clusters run");
    })
    .join();
    assert!(outcome.is_err(), "the thread panicked");
    let (pg_print, my_print) = rx.recv().unwrap();
    assert_gone(&pg_print);
    assert_gone(&my_print);
}
