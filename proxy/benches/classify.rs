//! What routing costs per statement: the classifier over every statement of the routing fixtures, from its
//! cache (a repeated or prepared statement) and parsed afresh (a statement seen for the first time), and
//! statements whose inlined values differ each time (one cached shape).
//!
//!   cargo bench -p hapool-proxy --bench classify

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use hapool_proxy::pg::classify::Classifier;

fn statements() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/routing/postgres.tsv");
    let text = std::fs::read_to_string(path).expect("routing fixtures");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t').map(|(_, sql)| sql.to_string()))
        .collect()
}

fn classify(c: &mut Criterion) {
    let toml = "[[cluster]]\nname = \"c\"\nengine = \"postgres\"\n[[cluster.node]]\nname = \"a\"\n\
                host = \"127.0.0.1\"\n[[cluster.user]]\nname = \"u\"\npassword = \"p\"\n";
    let config = hapool_config::parse(toml, "bench.toml", &|_| None, std::path::Path::new(".")).expect("config");
    let classifier = Classifier::new(&config.cluster[0].routing);
    let all = statements();
    for sql in &all {
        classifier.classify(sql);
    }
    let mut group = c.benchmark_group("classify");
    // Per statement: each iteration classifies one statement, walking the whole set in turn.
    let mut i = 0;
    group.bench_function("cached", |b| {
        b.iter(|| {
            i = (i + 1) % all.len();
            black_box(classifier.classify(black_box(&all[i])))
        })
    });
    let mut j = 0;
    group.bench_function("uncached", |b| {
        b.iter(|| {
            j = (j + 1) % all.len();
            black_box(classifier.classify_uncached(black_box(&all[j])))
        })
    });
    // Simple-protocol clients inline their values: every text differs, the shape repeats (pgbench -S -M simple).
    let inlined: Vec<String> = (0..1000)
        .map(|i| format!("SELECT abalance FROM pgbench_accounts WHERE aid = {};", i * 7919 % 1_000_000))
        .collect();
    let mut k = 0;
    group.bench_function("cached_shape_inlined_values", |b| {
        b.iter(|| {
            k = (k + 1) % inlined.len();
            black_box(classifier.classify(black_box(&inlined[k])))
        })
    });
    group.finish();
}

criterion_group!(benches, classify);
criterion_main!(benches);
