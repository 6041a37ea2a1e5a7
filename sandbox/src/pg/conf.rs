//! The text of postgresql.conf additions and pg_hba.conf for sandbox clusters (pure functions).

use crate::Credentials;

/// Settings appended to the primary's postgresql.conf (replicas inherit them through pg_basebackup).
pub fn postgresql_conf(max_connections: u32, tls: bool) -> String {
    let mut conf = format!(
        "\n# hapool sandbox\n\
         listen_addresses = '127.0.0.1'\n\
         max_connections = {max_connections}\n\
         shared_buffers = 32MB\n\
         wal_level = replica\n\
         max_wal_senders = 10\n\
         max_replication_slots = 10\n\
         wal_keep_size = 256MB\n\
         hot_standby = on\n\
         hot_standby_feedback = on\n\
         wal_log_hints = on\n\
         wal_receiver_status_interval = 1s\n\
         wal_receiver_timeout = 10s\n\
         wal_sender_timeout = 10s\n\
         password_encryption = 'scram-sha-256'\n\
         # Throwaway data: a killed process loses nothing (the OS keeps the pages), only an OS crash would.\n\
         fsync = off\n\
         logging_collector = off\n\
         log_line_prefix = '%m [%p] %q%u@%d '\n\
         log_min_messages = warning\n"
    );
    if tls {
        conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
    }
    conf
}

/// Makes the first replica a synchronous standby (run once it streams).
pub const SYNC_PG1: &str = "ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (pg1)'";

/// Client authentication: local socket trusted (the sandbox's own administration), passwords over TCP.
pub fn pg_hba(creds: &Credentials) -> String {
    format!(
        "# hapool sandbox\n\
         local all all trust\n\
         host replication {repl} 127.0.0.1/32 scram-sha-256\n\
         host all all 127.0.0.1/32 scram-sha-256\n\
         host all all ::1/128 scram-sha-256\n",
        repl = creds.replication_user
    )
}

/// SQL that creates the sandbox's users and the application database on a new primary.
pub fn bootstrap_sql(creds: &Credentials) -> Vec<String> {
    let c = creds;
    vec![
        format!("CREATE ROLE {} LOGIN PASSWORD '{}'", c.app_user, c.app_password),
        format!("CREATE DATABASE {} OWNER {}", c.app_user, c.app_user),
        format!("CREATE ROLE {} LOGIN PASSWORD '{}' IN ROLE pg_monitor", c.monitor_user, c.monitor_password),
        format!("CREATE ROLE {} LOGIN REPLICATION PASSWORD '{}'", c.replication_user, c.replication_password),
        "ALTER ROLE postgres PASSWORD 'postgres'".to_string(),
    ]
}

/// Recovery settings for a replica streaming from `primary_port` (the primary's relay) through slot `name`.
pub fn standby_conf(creds: &Credentials, primary_port: u16, name: &str) -> String {
    format!(
        "\nprimary_conninfo = 'host=127.0.0.1 port={primary_port} user={} password={} application_name={name}'\n\
         primary_slot_name = '{name}'\n",
        creds.replication_user, creds.replication_password
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_appear_only_when_asked() {
        let plain = postgresql_conf(100, false);
        assert!(plain.contains("wal_log_hints = on"));
        assert!(!plain.contains("ssl = on"));
        assert!(postgresql_conf(100, true).contains("ssl = on"));
    }

    #[test]
    fn standby_points_at_the_given_port_and_slot() {
        let conf = standby_conf(&Credentials::default(), 4321, "pg2");
        assert!(conf.contains("port=4321"));
        assert!(conf.contains("application_name=pg2"));
        assert!(conf.contains("primary_slot_name = 'pg2'"));
    }
}
