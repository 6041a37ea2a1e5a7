//! Whatever text a client sends, classifying it never panics, and the cache of verdicts by statement shape
//! never makes a statement that parses look more replica-safe than its own text does.
#![no_main]

use hapool_config::UnknownFunctions;
use hapool_proxy::pg::classify::{normalize, Classifier, Kind};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = "[[cluster]]\nname = \"c\"\nengine = \"postgres\"\n[[cluster.node]]\nname = \"a\"\n\
                      host = \"127.0.0.1\"\n[[cluster.user]]\nname = \"u\"\npassword = \"p\"\n";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let config = hapool_config::parse(CONFIG, "fuzz.toml", &|_| None, std::path::Path::new(".")).unwrap();
    let classifier = Classifier::new(&config.cluster[0].routing);
    // Lines share one classifier: earlier shapes are in the cache when later lines come.
    for sql in text.split('\n') {
        let _ = normalize::literals(sql);
        let cached = classifier.classify(sql).replica_ok(UnknownFunctions::Primary);
        let own = classifier.classify_uncached(sql);
        if own.kind != Kind::Unparsed {
            assert!(!cached || own.replica_ok(UnknownFunctions::Primary), "the cache let {sql:?} reach a replica");
        }
    }
});
