//! Password guessing, slowed down. After [`MAX_FAILURES`] failed logins in a row from one IP
//! address, logins from that address are refused unchecked for a lockout that starts at
//! [`FIRST_LOCKOUT`] and doubles with each lockout up to [`MAX_LOCKOUT`]; a successful login
//! clears the address, and so do [`FORGET_AFTER`] without failures. A locked-out client gets
//! the same answer as a wrong password (nothing tells it apart), the node's audit log and
//! `minitrue_auth_throttled_total` say what happened.
//!
//! Only passwords are throttled: tokens and session ids are 256-bit random values nobody
//! guesses, and a browser presenting an expired session must not lock its own address out.
//!
//! Memory is bounded: at most [`MAX_TRACKED`] addresses are remembered; when full, the one
//! idle longest is forgotten.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Failed logins in a row before an address is locked out.
pub const MAX_FAILURES: u32 = 10;
/// The first lockout of an address.
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(10);
/// The longest lockout.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(300);
/// An address without failures for this long starts afresh.
pub const FORGET_AFTER: Duration = Duration::from_secs(900);
/// Addresses remembered at most.
pub const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    lockouts: u32,
    locked_until: Option<Instant>,
    last_failure: Instant,
}

/// The failed logins of recent client addresses.
#[derive(Debug, Default)]
pub struct Throttle {
    records: Mutex<HashMap<IpAddr, Record>>,
}

impl Throttle {
    /// `Err(remaining)` while `ip` is locked out at `now`.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let records = self.records.lock();
        match records.get(&ip).and_then(|record| record.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failed login from `ip`; returns the lockout it starts, if it starts one.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let mut records = self.records.lock();
        if records.len() >= MAX_TRACKED && !records.contains_key(&ip) {
            let idle =
                records.iter().min_by_key(|(_, record)| record.last_failure).map(|(ip, _)| *ip);
            if let Some(idle) = idle {
                records.remove(&idle);
            }
        }
        let record = records.entry(ip).or_insert(Record {
            failures: 0,
            lockouts: 0,
            locked_until: None,
            last_failure: now,
        });
        if now.duration_since(record.last_failure) > FORGET_AFTER {
            *record = Record { failures: 0, lockouts: 0, locked_until: None, last_failure: now };
        }
        record.last_failure = now;
        record.failures += 1;
        if record.failures < MAX_FAILURES {
            return None;
        }
        let lockout = FIRST_LOCKOUT.saturating_mul(1 << record.lockouts.min(16)).min(MAX_LOCKOUT);
        record.failures = 0;
        record.lockouts += 1;
        record.locked_until = Some(now + lockout);
        Some(lockout)
    }

    /// Records a successful login from `ip`: its failures are forgotten.
    pub fn succeeded(&self, ip: IpAddr) {
        self.records.lock().remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 66));
    const USER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7));

    #[test]
    fn ten_failures_lock_an_address_out_for_longer_each_time() {
        let throttle = Throttle::default();
        let start = Instant::now();
        for attempt in 1..MAX_FAILURES {
            assert_eq!(throttle.failed(ATTACKER, start), None, "attempt {attempt}");
            assert!(throttle.check(ATTACKER, start).is_ok());
        }
        assert_eq!(throttle.failed(ATTACKER, start), Some(FIRST_LOCKOUT));
        assert_eq!(
            throttle.check(ATTACKER, start + Duration::from_secs(4)),
            Err(Duration::from_secs(6))
        );
        // Other addresses are not affected.
        assert!(throttle.check(USER, start).is_ok());
        // After the lockout, ten more failures lock it out twice as long.
        let later = start + FIRST_LOCKOUT;
        assert!(throttle.check(ATTACKER, later).is_ok());
        let mut lockout = None;
        for _ in 0..MAX_FAILURES {
            lockout = throttle.failed(ATTACKER, later);
        }
        assert_eq!(lockout, Some(FIRST_LOCKOUT * 2));
        // Never longer than the maximum.
        let mut now = later;
        for _ in 0..20 {
            now += MAX_LOCKOUT;
            for _ in 0..MAX_FAILURES {
                lockout = throttle.failed(ATTACKER, now);
            }
        }
        assert_eq!(lockout, Some(MAX_LOCKOUT));
    }

    #[test]
    fn a_success_or_a_quiet_quarter_hour_clears_an_address() {
        let throttle = Throttle::default();
        let start = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            throttle.failed(USER, start);
        }
        throttle.succeeded(USER);
        assert_eq!(throttle.failed(USER, start), None, "counting starts again");
        for _ in 0..MAX_FAILURES - 2 {
            throttle.failed(USER, start);
        }
        let quiet = start + FORGET_AFTER + Duration::from_secs(1);
        assert_eq!(throttle.failed(USER, quiet), None, "old failures are forgotten");
    }

    #[test]
    fn memory_stays_bounded() {
        let throttle = Throttle::default();
        let now = Instant::now();
        for n in 0..(MAX_TRACKED as u32 + 100) {
            throttle.failed(
                IpAddr::V4(std::net::Ipv4Addr::from(n)),
                now + Duration::from_millis(n as u64),
            );
        }
        assert_eq!(throttle.records.lock().len(), MAX_TRACKED);
    }
}
