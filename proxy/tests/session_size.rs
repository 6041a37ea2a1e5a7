//! Memory budget: a client that is not parked holds one task with the session's future in it, a parked one
//! only the session's state (boxed). Keep both small. The future was 2.4 kB before the rarely-used startup and
//! connect states were boxed, 1.97 kB before startup moved out into its own boxed future, 1.52 kB before the
//! server connection was boxed, 1.21 kB before the wait became a poll function and the slow checkout paths were
//! boxed, 608 bytes before the session's state was boxed for parking.

#[test]
fn a_session_future_and_its_state_stay_small() {
    let toml = "[[cluster]]\nname = \"t\"\nengine = \"postgres\"\n[[cluster.node]]\nname = \"a\"\nhost = \"127.0.0.1\"\nport = 5432\n[[cluster.user]]\nname = \"app\"\npassword = \"x\"\n";
    let config = hapool_config::parse(toml, "t.toml", &|_| None, std::path::Path::new(".")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let config = hapool_proxy::PgProxyConfig {
            cluster: config.cluster[0].clone(),
            shutdown_grace: std::time::Duration::from_secs(1),
        };
        let (_, topology) = tokio::sync::watch::channel(std::sync::Arc::new(hapool_topology::Topology::default()));
        let shutdown = tokio_util::sync::CancellationToken::new();
        let listener = hapool_proxy::PgListener::new(config, shutdown, topology).unwrap();
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(socket.local_addr().unwrap()).await.unwrap();
        let session = hapool_proxy::pg::session::Session::run(listener.shared().clone(), client);
        let size = std::mem::size_of_val(&session);
        let state = std::mem::size_of::<hapool_proxy::pg::session::Session>();
        eprintln!("a session future takes {size} bytes, of which the session's state {state}");
        assert!(size <= 256, "a session future takes {size} bytes");
        // A parked client's state is one allocation: up to 392 bytes it takes one of glibc's 400-byte chunks, at
        // 408 a 416-byte one (16 bytes more of live heap per parked client; bench/RESULTS.md).
        assert!(state <= 392, "a session's state takes {state} bytes");
    });
}

/// Every client, parked or not, holds one cancel slot (in an `Arc`). Its size class matters more than its
/// size: one more byte (a flag) made it 80 bytes and cost ≈ 90 bytes per idle client in resident memory
/// (bench/RESULTS.md).
#[test]
fn a_cancel_slot_stays_in_its_size_class() {
    let size = std::mem::size_of::<hapool_proxy::pg::cancel::CancelSlot>();
    assert!(size <= 72, "a cancel slot takes {size} bytes");
}
