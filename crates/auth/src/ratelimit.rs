//! Limits failed logins, so that guessing passwords online stays slow
//! without letting anyone lock a user out.
//!
//! A lock on a user name alone is a weapon: ten wrong passwords for `admin`,
//! sent by anyone, would keep the real administrator out everywhere. So the
//! counts are kept per place, over fixed windows of [`Limits::window`] (5
//! minutes) that start at the first attempt counted:
//!
//! - per (user, address): 10 attempts for one user from one address block
//!   that user's logins *from that address*; the user's right password
//!   from anywhere else still works;
//! - per address: 50 attempts, for any users, block every login from that
//!   address, so one address cannot try a common password on every user;
//! - per user, over all addresses: a distributed attacker (a botnet) still
//!   gets 10 guesses per address. Once a user has 100 failures in a window,
//!   each address gets only 3 at that user: the botnet's rate drops to a
//!   third, and an address that has not failed for this user three times
//!   is never refused because of it, so this slows guessing without locking
//!   anyone out. What stops a large botnet is the password itself: local
//!   passwords are argon2id hashes, and a directory (LDAP) applies its own
//!   policy.
//!
//! An IPv6 address counts by its /64 prefix, which is what one host or
//! subscriber gets; counting single addresses would give an attacker 2^64
//! of them. An attempt is counted when it starts and forgiven when the
//! password was right (or could not be checked), so concurrent attempts
//! cannot all pass the check before the first failure is recorded.
//!
//! Every login path (Basic on `/v2` and `/api/v1`, `/service/token`, the web
//! UI) goes through `Auth::login` and so through one limiter. The address is
//! the TCP peer: behind a proxy every client shares the proxy's address and
//! its per-address limit. Kept per node in memory: a cluster of N nodes
//! allows at most N times the limits, which still stops online guessing.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limits; see the module documentation for why these values.
#[derive(Clone, Debug)]
pub struct Limits {
    pub window: Duration,
    /// Attempts for one user from one address.
    pub per_user_address: u32,
    /// Attempts for any users from one address.
    pub per_address: u32,
    /// Failures for one user from all addresses after which each address
    /// gets only [`Limits::per_user_address_under_attack`] at that user.
    pub user_under_attack: u32,
    pub per_user_address_under_attack: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            window: Duration::from_secs(300),
            per_user_address: 10,
            per_address: 50,
            user_under_attack: 100,
            per_user_address_under_attack: 3,
        }
    }
}

/// Why an attempt was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// Too many attempts for this user from this address.
    UserAtAddress,
    /// Too many attempts for this user from this address while the user is
    /// being guessed at from many addresses.
    UserUnderAttack,
    /// Too many attempts from this address, for any users.
    Address,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Blocked::UserAtAddress => "too many failures for this user from this address",
            Blocked::UserUnderAttack => {
                "too many failures for this user from this address, and from many others"
            }
            Blocked::Address => "too many failures from this address",
        })
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    UserAtAddress(String, String),
    Address(String),
    User(String),
}

pub struct FailedLogins {
    limits: Limits,
    /// Per key: when its window started, and the attempts counted in it.
    counts: Mutex<HashMap<Key, (Instant, u32)>>,
}

impl Default for FailedLogins {
    fn default() -> Self {
        FailedLogins::new(Limits::default())
    }
}

impl FailedLogins {
    pub fn new(limits: Limits) -> Self {
        FailedLogins {
            limits,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a login attempt for `user` from `address`: refused when a
    /// limit is reached, else counted as a failure until [`Self::forgive`]
    /// takes it back.
    pub fn attempt(&self, user: &str, address: &str) -> Result<(), Blocked> {
        let now = Instant::now();
        let address = address_key(address);
        let pair = Key::UserAtAddress(user.to_owned(), address.clone());
        let address = Key::Address(address);
        let user = Key::User(user.to_owned());
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = |counts: &HashMap<Key, (Instant, u32)>, key: &Key| match counts.get(key) {
            Some((start, n)) if now.duration_since(*start) < self.limits.window => *n,
            _ => 0,
        };
        let l = &self.limits;
        if count(&counts, &address) >= l.per_address {
            return Err(Blocked::Address);
        }
        let tries = count(&counts, &pair);
        if tries >= l.per_user_address {
            return Err(Blocked::UserAtAddress);
        }
        if tries >= l.per_user_address_under_attack && count(&counts, &user) >= l.user_under_attack
        {
            return Err(Blocked::UserUnderAttack);
        }
        if counts.len() > 100_000 {
            // Bound memory under a flood of distinct names; the
            // per-address limit bounds what one address adds per window.
            counts.retain(|_, (start, _)| now.duration_since(*start) < l.window);
        }
        for key in [pair, address, user] {
            let entry = counts.entry(key).or_insert((now, 0));
            if now.duration_since(entry.0) >= l.window {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
        Ok(())
    }

    /// Takes back an attempt that [`Self::attempt`] let through: the
    /// password was right, or it could not be checked (a storage or
    /// directory error is not a guess).
    pub fn forgive(&self, user: &str, address: &str) {
        let address = address_key(address);
        let keys = [
            Key::UserAtAddress(user.to_owned(), address.clone()),
            Key::Address(address),
            Key::User(user.to_owned()),
        ];
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            if let Some((_, n)) = counts.get_mut(&key) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

/// The address as counted: an IPv6 address by its /64 prefix (an
/// IPv4-mapped one as the IPv4 address it is), anything else as given.
fn address_key(address: &str) -> String {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => address.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            window: Duration::from_secs(60),
            per_user_address: 3,
            per_address: 5,
            user_under_attack: 6,
            per_user_address_under_attack: 1,
        }
    }

    /// `n` failed attempts.
    fn fail(l: &FailedLogins, user: &str, address: &str, n: u32) {
        for _ in 0..n {
            assert_eq!(l.attempt(user, address), Ok(()));
        }
    }

    #[test]
    fn failures_from_one_address_do_not_lock_the_user_out_elsewhere() {
        let l = FailedLogins::new(limits());
        fail(&l, "admin", "1.1.1.1", 3);
        assert_eq!(l.attempt("admin", "1.1.1.1"), Err(Blocked::UserAtAddress));
        assert_eq!(l.attempt("admin", "2.2.2.2"), Ok(()), "another address");
        assert_eq!(l.attempt("bob", "1.1.1.1"), Ok(()), "another user");
    }

    #[test]
    fn one_address_is_limited_over_all_users() {
        let l = FailedLogins::new(limits());
        for user in ["a", "b", "c", "d", "e"] {
            fail(&l, user, "1.1.1.1", 1);
        }
        assert_eq!(l.attempt("f", "1.1.1.1"), Err(Blocked::Address));
        assert_eq!(l.attempt("f", "2.2.2.2"), Ok(()));
    }

    #[test]
    fn a_user_under_attack_from_many_addresses_is_slowed_not_locked() {
        let l = FailedLogins::new(limits());
        for (i, n) in [2, 2, 2].into_iter().enumerate() {
            fail(&l, "admin", &format!("10.0.0.{i}"), n);
        }
        // Six failures: each address gets one attempt at admin now, so
        // those that failed are refused ...
        assert_eq!(
            l.attempt("admin", "10.0.0.0"),
            Err(Blocked::UserUnderAttack)
        );
        // ... but an address that has not failed for admin still gets in,
        // and other users are not affected.
        assert_eq!(l.attempt("admin", "10.0.0.9"), Ok(()));
        l.forgive("admin", "10.0.0.9");
        assert_eq!(l.attempt("bob", "10.0.0.0"), Ok(()));
    }

    #[test]
    fn right_passwords_and_errors_are_not_counted() {
        let l = FailedLogins::new(limits());
        for _ in 0..10 {
            assert_eq!(l.attempt("alice", "1.1.1.1"), Ok(()));
            l.forgive("alice", "1.1.1.1");
        }
        fail(&l, "alice", "1.1.1.1", 3);
        assert_eq!(l.attempt("alice", "1.1.1.1"), Err(Blocked::UserAtAddress));
    }

    #[test]
    fn the_window_ends() {
        let l = FailedLogins::new(Limits {
            window: Duration::from_millis(50),
            ..limits()
        });
        fail(&l, "alice", "1.1.1.1", 3);
        assert!(l.attempt("alice", "1.1.1.1").is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(l.attempt("alice", "1.1.1.1"), Ok(()));
    }

    #[test]
    fn an_ipv6_address_counts_by_its_64_prefix() {
        let l = FailedLogins::new(limits());
        fail(&l, "admin", "2001:db8:1:2::1", 1);
        fail(&l, "admin", "2001:db8:1:2:ffff::7", 2);
        assert_eq!(
            l.attempt("admin", "2001:db8:1:2:abcd::1"),
            Err(Blocked::UserAtAddress)
        );
        assert_eq!(l.attempt("admin", "2001:db8:1:3::1"), Ok(()));
        assert_eq!(address_key("::ffff:10.1.2.3"), "10.1.2.3");
        assert_eq!(address_key("10.1.2.3"), "10.1.2.3");
    }
}
