//! Free loopback ports.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};

/// A TCP port on 127.0.0.1 that was free a moment ago, never the same one twice in this
/// process.
///
/// The kernel picks it (bind to port 0), then the listener is dropped so a server can bind
/// it. Between the two another process may take the port; that race is small, and the
/// services in this crate retry with a new port when their start fails with "address in
/// use". Code of your own that binds the port should do the same, or better, bind port 0
/// itself and report the port it got.
pub fn free_port() -> u16 {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(Default::default);
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("test-support: cannot bind 127.0.0.1:0 to find a free port");
        let port = listener
            .local_addr()
            .expect("test-support: local_addr of a bound listener")
            .port();
        drop(listener);
        let mut set = handed_out.lock().unwrap_or_else(|e| e.into_inner());
        if set.insert(port) {
            return port;
        }
    }
}
