//! Free loopback ports for the processes a test starts.

use std::net::{Ipv4Addr, TcpListener};

use crate::error::{HarnessError, Result};

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it; nothing holds it now).
pub fn free_port() -> Result<u16> {
    Ok(free_ports::<1>()?[0])
}

/// `N` distinct free TCP ports on 127.0.0.1: all are held until all are chosen, so they differ.
pub fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(HarnessError::ReservePort)?;
        *port = listener
            .local_addr()
            .map_err(HarnessError::ReservePort)?
            .port();
        listeners.push(listener);
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
