//! Free TCP ports for tests that start a server as a child process and tell it which port
//! to bind.
//!
//! Binding port 0 to find one picks from Linux's ephemeral range (32768-60999), which every
//! outgoing connection on the machine draws from too: a port found free there can belong to
//! a publisher's, a client's or docker-proxy's connection by the time the child binds it
//! (seen in CI: an echo STS that never answered `/health`, a service failing with "address
//! in use"). The ports here come from a fixed range below it instead, are free on loopback
//! and on every interface, and are never handed out twice by one process (a test binary's
//! tests run in parallel threads).

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Mutex;

/// Where the media-service, sts-client and sts-service tests take their servers' ports.
pub const TEST_SERVERS: Range<u16> = 10_000..20_000;

/// Where the e2e suite takes its pairs' ports (five per pair, several pairs at once).
pub const E2E_STACKS: Range<u16> = 20_000..32_000;

/// Fewer free ports in a range than were asked for.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("no {wanted} free TCP ports in {}..{} (found {found}): something else holds that range, or this test process has used it up", range.start, range.end)]
pub struct NoFreePorts {
    pub wanted: usize,
    pub found: usize,
    pub range: Range<u16>,
}

/// Ports this process has handed out.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// `n` distinct ports from `range`, each free on 127.0.0.1 and on 0.0.0.0 when checked
/// (compose publishes on every interface) and none handed out before by this process.
/// The walk starts at a place of its own per process and call, so test binaries run
/// one after another do not retry each other's ports first.
pub fn free_ports(range: Range<u16>, n: usize) -> Result<Vec<u16>, NoFreePorts> {
    let count = u32::from(range.end.saturating_sub(range.start));
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let mut found = Vec::with_capacity(n);
    if count > 0 {
        let start = start_offset() % count;
        for i in 0..count {
            if found.len() == n {
                break;
            }
            let port = range.start + ((start + i) % count) as u16;
            if !handed.contains(&port) && is_free(port) {
                found.push(port);
            }
        }
    }
    if found.len() < n {
        return Err(NoFreePorts {
            wanted: n,
            found: found.len(),
            range,
        });
    }
    handed.extend(&found);
    Ok(found)
}

/// One port from `range`, as [`free_ports`]; panics with [`NoFreePorts`]'s message (for
/// tests, where that ends the test with its cause).
pub fn free_port(range: Range<u16>) -> u16 {
    match free_ports(range, 1) {
        Ok(p) => p[0],
        Err(e) => panic!("{e}"),
    }
}

/// Whether nothing listens on `port`, on loopback or on any interface.
fn is_free(port: u16) -> bool {
    ["127.0.0.1", "0.0.0.0"]
        .iter()
        .all(|h| std::net::TcpListener::bind((*h, port)).is_ok())
}

/// A start that differs between processes and between calls.
fn start_offset() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::process::id().wrapping_mul(7919) ^ nanos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_in_range_and_never_handed_out_twice() {
        let a = free_ports(TEST_SERVERS, 5).unwrap();
        let set: BTreeSet<u16> = a.iter().copied().collect();
        assert_eq!(set.len(), 5, "{a:?}");
        assert!(a.iter().all(|p| TEST_SERVERS.contains(p)), "{a:?}");
        // Still free (nothing bound it), but handed out already: not again.
        let p = a[0];
        assert!(is_free(p));
        assert_eq!(free_ports(p..p + 1, 1).unwrap_err().found, 0);
    }

    #[test]
    fn a_port_in_use_is_not_handed_out() {
        // A range of one port, held by a listener: nothing to hand out.
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let err = free_ports(port..port + 1, 1).unwrap_err();
        assert_eq!(
            err,
            NoFreePorts {
                wanted: 1,
                found: 0,
                range: port..port + 1
            }
        );
        assert!(err
            .to_string()
            .contains(&format!("in {port}..{}", port + 1)));
    }

    #[test]
    fn an_empty_range_is_an_error_not_a_panic() {
        assert_eq!(free_ports(5..5, 1).unwrap_err().found, 0);
        assert_eq!(free_ports(TEST_SERVERS, 0).unwrap(), Vec::<u16>::new());
    }
}
