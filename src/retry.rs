//! The one backoff policy of every retry loop (SMTP delivery, HTTP sources):
//! how many tries, how long to wait between them. The loops themselves stay
//! with their stage, since what counts as temporary differs.
//!
//! The rule: the wait after failed try `k` is `first_wait · 2^(k-1)`, plus up
//! to a quarter of that at random so that many clients failing together do
//! not come back in step, all capped by `max_wait`. A server's Retry-After is
//! honoured as the least wait, under the same cap.
//!
//! Configuration speaks two dialects: SMTP `attempts` counts the first try,
//! an API source's `max_retries` does not. The call sites convert with
//! [`Backoff::tries`] or [`Backoff::retries`]; inside, everything is tries.

use rand::Rng;
use std::time::Duration;

/// A retry policy: tries in all and the waits between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    tries: u32,
    first_wait: Duration,
    max_wait: Duration,
}

impl Backoff {
    /// `tries` in all, the first included (at least one), waiting
    /// `first_wait` before the second, doubled each time, never more than
    /// `max_wait` at once.
    pub fn tries(tries: u32, first_wait: Duration, max_wait: Duration) -> Backoff {
        Backoff { tries: tries.max(1), first_wait, max_wait }
    }

    /// The first try and then `retries` more.
    pub fn retries(retries: u32, first_wait: Duration, max_wait: Duration) -> Backoff {
        Backoff::tries(retries.saturating_add(1), first_wait, max_wait)
    }

    /// Tries in all, the first included.
    pub fn max_tries(&self) -> u32 {
        self.tries
    }

    /// How long to wait after try number `failed` (1-based) failed, or
    /// `None` when that was the last try. `retry_after` is the server's
    /// Retry-After, if it sent one.
    pub fn wait_after(&self, failed: u32, retry_after: Option<Duration>) -> Option<Duration> {
        self.wait_after_with(failed, retry_after, &mut rand::thread_rng())
    }

    /// [`Backoff::wait_after`] with the jitter drawn from `rng`.
    fn wait_after_with(&self, failed: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Option<Duration> {
        if failed >= self.tries {
            return None;
        }
        let cap = self.max_wait.as_millis().min(u128::from(u64::MAX)) as u64;
        let first = self.first_wait.as_millis().min(u128::from(u64::MAX)) as u64;
        // 2^20 already exceeds any sensible cap; the shift must not overflow.
        let base = first.saturating_mul(1u64 << failed.saturating_sub(1).min(20)).min(cap);
        let jitter = if base >= 4 { rng.gen_range(0..=base / 4) } else { 0 };
        let mut ms = base.saturating_add(jitter).min(cap);
        if let Some(after) = retry_after {
            ms = ms.max((after.as_millis().min(u128::from(u64::MAX)) as u64).min(cap));
        }
        Some(Duration::from_millis(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn waits_double_with_a_quarter_of_jitter_up_to_the_cap() {
        let policy = Backoff::tries(6, ms(100), ms(1_000));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let waits: Vec<u64> =
                (1..6).map(|k| policy.wait_after_with(k, None, &mut rng).expect("a try is left").as_millis() as u64).collect();
            for (k, (w, base)) in waits.iter().zip([100u64, 200, 400, 800, 1_000]).enumerate() {
                assert!(*w >= base && *w <= (base + base / 4).min(1_000), "wait {} after try {}: {w} ms", k + 1, k + 1);
            }
        }
        // The jitter varies: not every draw is the bare base.
        let draws: std::collections::BTreeSet<u64> =
            (0..50).map(|_| policy.wait_after_with(1, None, &mut rng).expect("wait").as_millis() as u64).collect();
        assert!(draws.len() > 1, "{draws:?}");
    }

    #[test]
    fn tries_count_the_first_and_retries_do_not() {
        let smtp = Backoff::tries(4, ms(20), Duration::MAX);
        assert_eq!(smtp.max_tries(), 4);
        assert!(smtp.wait_after(3, None).is_some(), "a fourth try follows the third");
        assert_eq!(smtp.wait_after(4, None), None, "the fourth was the last");
        let api = Backoff::retries(2, ms(20), ms(100));
        assert_eq!(api.max_tries(), 3, "two retries after the first try");
        assert!(api.wait_after(2, None).is_some());
        assert_eq!(api.wait_after(3, None), None);
        assert_eq!(Backoff::tries(0, ms(1), ms(1)).max_tries(), 1, "there is always one try");
        assert_eq!(Backoff::retries(u32::MAX, ms(1), ms(1)).max_tries(), u32::MAX);
    }

    #[test]
    fn retry_after_is_the_least_wait_but_stays_under_the_cap() {
        let policy = Backoff::retries(5, ms(10), ms(3_000));
        assert_eq!(policy.wait_after(1, Some(Duration::from_secs(2))), Some(ms(2_000)));
        assert_eq!(policy.wait_after(1, Some(Duration::from_secs(60))), Some(ms(3_000)));
        // A shorter Retry-After does not shorten the backoff.
        let long = Backoff::retries(5, ms(1_000), ms(30_000));
        assert!(long.wait_after(3, Some(ms(1))).expect("wait") >= ms(4_000));
        // No overflow far out, with no cap.
        let uncapped = Backoff::tries(u32::MAX, Duration::from_secs(3_600), Duration::MAX);
        assert!(uncapped.wait_after(1_000, None).is_some());
    }
}
