//! Free loopback ports for the processes a test starts.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

use crate::error::{HarnessError, Result};

/// Every port this process handed out: a port chosen for one member but not yet bound by it is
/// free again to the OS, which could hand it to the next member (of the same cluster, or of a
/// test running in parallel); a port is therefore handed out once per process.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
/// Bound on OS picks of ports handed out before.
const MAX_PICKS: usize = 1000;

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it; nothing holds it now).
pub fn free_port() -> Result<u16> {
    Ok(free_ports::<1>()?[0])
}

/// `N` distinct free TCP ports on 127.0.0.1, none handed out before by this process.
pub fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let mut picks = 0;
        *port = loop {
            let listener =
                TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(HarnessError::ReservePort)?;
            let picked = listener
                .local_addr()
                .map_err(HarnessError::ReservePort)?
                .port();
            // Held until all are chosen, so the OS picks a different one next.
            listeners.push(listener);
            picks += 1;
            if handed_out.insert(picked) || picks >= MAX_PICKS {
                break picked;
            }
        };
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_nonzero() -> Result<()> {
        let [a, b, c] = free_ports::<3>()?;
        assert!(a != 0 && b != 0 && c != 0);
        assert!(a != b && b != c && a != c);
        Ok(())
    }

    #[test]
    fn a_free_port_can_be_bound_on_loopback() -> Result<()> {
        let port = free_port()?;
        assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok());
        Ok(())
    }
}
