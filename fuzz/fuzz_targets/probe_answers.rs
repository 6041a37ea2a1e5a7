//! Whatever a monitored server answers, turning it into an observation (and positions into a distance) returns a
//! value or an error: never a panic, nor an overflow. The input is cut into fields at `\n`; a field `~` is NULL.
#![no_main]

use std::collections::HashMap;

use hapool_manager::position::{GtidSet, Lsn, Position};
use hapool_manager::probe::{mysql, pg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let fields: Vec<Option<&str>> = text.split('\n').map(|f| (f != "~").then_some(f)).collect();
    let _ = pg::parse(&fields);
    let owned: Vec<Option<String>> = fields.iter().map(|f| f.map(str::to_string)).collect();
    let names = ["Slave_IO_Running", "Slave_SQL_Running", "Seconds_Behind_Master", "Master_Host", "Master_Port"];
    let status: HashMap<String, Option<String>> =
        names.iter().map(|n| n.to_string()).zip(owned.iter().rev().cloned()).collect();
    for dialect in [mysql::MARIADB, mysql::MYSQL] {
        let _ = mysql::parse(&dialect, &owned, None);
        let _ = mysql::parse(&dialect, &owned, Some(&status));
    }
    let positions: Vec<Position> = fields
        .iter()
        .flatten()
        .flat_map(|f| [Lsn::parse(f).map(Position::Lsn), GtidSet::parse(f).map(Position::Gtid)])
        .flatten()
        .collect();
    for a in &positions {
        let _ = a.to_string();
        for b in &positions {
            let _ = a.distance_to(b);
        }
    }
});
