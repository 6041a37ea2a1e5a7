//! Which functions keep a statement off the replicas: built-in functions with side effects or that only work
//! on a primary, and the user's own lists.

use std::collections::HashSet;

/// Every function in PostgreSQL 15's `pg_catalog` (`SELECT DISTINCT proname FROM pg_proc WHERE pronamespace =
/// 'pg_catalog'::regnamespace`): calls to anything else are user functions the proxy cannot vouch for.
const BUILTIN: &str = include_str!("builtin_functions.txt");

/// Built-in functions that write, take locks, depend on the session's own writes, or fail on a standby.
const WRITES: &[&str] = &[
    "nextval",
    "setval",
    "currval",
    "lastval",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_all",
    "pg_advisory_unlock_shared",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "txid_current",
    "txid_current_if_assigned",
    "pg_current_xact_id",
    "pg_current_xact_id_if_assigned",
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_flush_lsn",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_notify",
    "set_config",
    "pg_export_snapshot",
    "pg_logical_emit_message",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot",
    "pg_replication_slot_advance",
    "pg_logical_slot_get_changes",
    "pg_logical_slot_get_binary_changes",
    "pg_promote",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_stat_reset",
    "pg_stat_reset_shared",
    "pg_stat_reset_single_table_counters",
    "pg_stat_reset_single_function_counters",
    "pg_stat_reset_slru",
    "pg_stat_reset_replication_slot",
    "pg_stat_reset_subscription_stats",
    "lo_create",
    "lo_creat",
    "lo_import",
    "lo_export",
    "lo_unlink",
    "lo_put",
    "lo_from_bytea",
    "lo_open",
    "lo_truncate",
    "lo_truncate64",
    "lowrite",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_import_system_collations",
    "brin_summarize_new_values",
    "brin_summarize_range",
    "brin_desummarize_range",
    "gin_clean_pending_list",
    "pg_replication_origin_create",
    "pg_replication_origin_drop",
    "pg_replication_origin_advance",
    "pg_replication_origin_session_setup",
    // These run SQL handed to them as text, which may write.
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "ts_stat",
];

/// What the proxy knows about functions.
#[derive(Debug)]
pub struct Functions {
    builtin: HashSet<&'static str>,
    writes: HashSet<&'static str>,
    user_read_only: HashSet<String>,
    user_writes: HashSet<String>,
}

/// What calling one function means for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    ReadOnly,
    Writes,
    Unknown,
}

impl Functions {
    pub fn new(read_only: &[String], writes: &[String]) -> Functions {
        let lower = |list: &[String]| list.iter().map(|f| f.to_ascii_lowercase()).collect();
        Functions {
            builtin: BUILTIN.lines().map(str::trim).filter(|l| !l.is_empty()).collect(),
            writes: WRITES.iter().copied().collect(),
            user_read_only: lower(read_only),
            user_writes: lower(writes),
        }
    }

    /// The effect of calling `name` (as written: `f` or `schema.f`). The user's lists win, then the built-in
    /// write list; a name in `pg_catalog` (or unqualified and built in) is read-only; anything else is unknown.
    pub fn effect(&self, name: &str) -> Effect {
        let name = name.to_ascii_lowercase();
        let (schema, bare) = match name.rsplit_once('.') {
            Some((s, b)) => (Some(s), b),
            None => (None, name.as_str()),
        };
        if self.user_writes.contains(&name) || self.user_writes.contains(bare) {
            return Effect::Writes;
        }
        if self.user_read_only.contains(&name) || self.user_read_only.contains(bare) {
            return Effect::ReadOnly;
        }
        let catalog = matches!(schema, None | Some("pg_catalog"));
        if catalog && self.writes.contains(bare) {
            return Effect::Writes;
        }
        if catalog && self.builtin.contains(bare) {
            return Effect::ReadOnly;
        }
        Effect::Unknown
    }
}
