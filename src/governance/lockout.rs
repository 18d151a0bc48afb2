//! Failed authentications per client: each client address may fail `auth.failed_auth_per_minute`
//! times in a burst, refilled evenly over a minute; past that, a failed attempt answers 429
//! with `Retry-After` instead of 401, so guessing keys is slowed down. A request with a valid
//! key is never held back by it (a client sharing an address with a guesser keeps working).
//!
//! The client is the TCP peer: behind a proxy every client shares the proxy's address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Most client addresses tracked; past it, those back at a full allowance are forgotten.
const MAX_CLIENTS: usize = 65_536;

struct Allowance {
    left: f64,
    at: Instant,
}

pub struct FailedAuth {
    per_minute: f64,
    clients: Mutex<HashMap<IpAddr, Allowance>>,
}

impl FailedAuth {
    /// `per_minute` 0 turns the limit off.
    pub fn new(per_minute: u32) -> FailedAuth {
        FailedAuth {
            per_minute: f64::from(per_minute),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a failed authentication of `client`: `Some(seconds to wait)` when it is over
    /// its allowance.
    pub fn failed(&self, client: IpAddr) -> Option<u64> {
        self.failed_at(client, Instant::now())
    }

    fn failed_at(&self, client: IpAddr, now: Instant) -> Option<u64> {
        if self.per_minute <= 0.0 {
            return None;
        }
        let rate = self.per_minute / 60.0;
        let refill = |a: &mut Allowance| {
            let elapsed = now.saturating_duration_since(a.at).as_secs_f64();
            a.left = (a.left + elapsed * rate).min(self.per_minute);
            a.at = now;
        };
        let Ok(mut clients) = self.clients.lock() else {
            return Some(1);
        };
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            clients.retain(|_, a| {
                refill(a);
                a.left < self.per_minute
            });
        }
        let a = clients.entry(client).or_insert(Allowance {
            left: self.per_minute,
            at: now,
        });
        refill(a);
        if a.left < 1.0 {
            return Some(((1.0 - a.left) / rate).ceil().max(1.0) as u64);
        }
        a.left -= 1.0;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_client_over_its_failures_waits_and_others_do_not() {
        let limit = FailedAuth::new(3);
        let (guesser, other): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(limit.failed_at(guesser, t), None);
        }
        // 3 a minute: one more failure is allowed 20 s later.
        assert_eq!(limit.failed_at(guesser, t), Some(20));
        assert_eq!(limit.failed_at(other, t), None);
        assert_eq!(
            limit.failed_at(guesser, t + Duration::from_secs(10)),
            Some(10)
        );
        assert_eq!(limit.failed_at(guesser, t + Duration::from_secs(20)), None);
        assert_eq!(
            limit.failed_at(guesser, t + Duration::from_secs(20)),
            Some(20)
        );
    }

    #[test]
    fn zero_turns_it_off() {
        let limit = FailedAuth::new(0);
        let ip: IpAddr = "::1".parse().unwrap();
        assert!((0..1000).all(|_| limit.failed(ip).is_none()));
    }
}
