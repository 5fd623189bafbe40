//! Minting action ids: time-ordered uuids (v7) that never go backwards within one service.

/// Mints the [`ActionId`](crate::ActionId)s of one service, as uuid v7 (RFC 9562): 48 bits of
/// Unix milliseconds, then a 42-bit counter (12 bits in `rand_a`, the top 30 of `rand_b`), then
/// 32 random bits.
///
/// Each new millisecond draws fresh randomness from the operating system: the counter's start
/// (below 2^41, so it cannot run out within the millisecond) and the seed of a small generator
/// for the random tails. Within a millisecond the counter counts up, so the ids of one service
/// strictly increase, also when the clock stands still or steps back (they then keep the last
/// millisecond). One system call per millisecond instead of one per id (as `Uuid::new_v7`
/// makes) matters: that call was a third of what the runtime adds to an online call.
pub(crate) struct IdMinter {
    /// The millisecond and counter of the last id.
    last: Option<(u64, u64)>,
    tails: fastrand::Rng,
}

const COUNTER_BITS: u32 = 42;

impl IdMinter {
    pub(crate) fn new() -> Self {
        Self {
            last: None,
            tails: fastrand::Rng::with_seed(0),
        }
    }

    /// The next id, for a call made at `millis` (Unix milliseconds).
    pub(crate) fn mint(&mut self, millis: u64) -> uuid::Uuid {
        let (millis, counter) = match self.last {
            Some((last, counter)) if millis <= last && counter < (1 << COUNTER_BITS) - 1 => {
                (last, counter + 1)
            }
            // 2^41 ids within one millisecond (never in practice): borrow the next one.
            Some((last, _)) if millis <= last => (last + 1, self.reseed()),
            _ => (millis, self.reseed()),
        };
        self.last = Some((millis, counter));
        let rand_a = ((counter >> 30) & 0xFFF) as u16;
        let rand_b = ((counter & 0x3FFF_FFFF) << 32) | u64::from(self.tails.u32(..));
        let mut bytes = [0u8; 10];
        bytes[..2].copy_from_slice(&rand_a.to_be_bytes());
        bytes[2..].copy_from_slice(&rand_b.to_be_bytes());
        uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid()
    }

    /// Lets the next id go back to `millis` if the last one is later: for a clock found to be
    /// fast (see `SyncService::observe_server_time`), whose readings would otherwise hold
    /// every id at its last, wrong, millisecond until the corrected clock caught up.
    pub(crate) fn forget_after(&mut self, millis: u64) {
        if self.last.is_some_and(|(last, _)| last > millis) {
            self.last = None;
        }
    }

    /// Makes every later id greater than `id` (an id minted earlier, perhaps by an earlier run
    /// of the program whose clock was ahead): the queue is ordered by id, so a call made now
    /// must not sort before calls already queued.
    pub(crate) fn floor(&mut self, id: uuid::Uuid) {
        let bits = id.as_u128();
        let millis = u64::try_from(bits >> 80).unwrap_or(u64::MAX);
        let rand_a = u64::try_from((bits >> 64) & 0xFFF).unwrap_or(0);
        let rand_b = u64::try_from(bits & ((1 << 62) - 1)).unwrap_or(0);
        let counter = (rand_a << 30) | (rand_b >> 32);
        if self.last.is_none_or(|last| last < (millis, counter)) {
            self.last = Some((millis, counter));
            // The ids after a floor count up from it: their random tails are what keeps them
            // apart from the ids an earlier run minted above the same floor (a call it
            // completed or dead-lettered, no longer queued), so they must not repeat.
            self.reseed();
        }
    }

    /// Fresh randomness from the operating system: reseeds the tails and returns a counter
    /// start.
    fn reseed(&mut self) -> u64 {
        // A v4 uuid is 122 random bits: the low 64 hold 62 of them (the variant is fixed), the
        // top 48 are all random.
        let fresh = uuid::Uuid::new_v4().as_u128();
        self.tails = fastrand::Rng::with_seed(fresh as u64);
        (fresh >> 80) as u64 & ((1 << (COUNTER_BITS - 1)) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::IdMinter;

    #[test]
    fn ids_are_v7_and_carry_the_time() {
        let mut ids = IdMinter::new();
        let id = ids.mint(1_750_000_000_123);
        assert_eq!(id.get_version(), Some(uuid::Version::SortRand));
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        let (seconds, nanos) = id.get_timestamp().expect("v7 has a time").to_unix();
        assert_eq!(
            seconds * 1000 + u64::from(nanos) / 1_000_000,
            1_750_000_000_123
        );
    }

    #[test]
    fn ids_strictly_increase_within_a_millisecond_and_when_the_clock_steps_back() {
        let mut ids = IdMinter::new();
        let mut last = ids.mint(1_750_000_000_000);
        for millis in (0..10_000u64).map(|i| 1_750_000_000_000 + i / 1000 - u64::from(i % 7 == 0)) {
            let next = ids.mint(millis);
            assert!(next > last, "{next} after {last}");
            last = next;
        }
    }

    #[test]
    fn a_floor_keeps_later_ids_above_an_earlier_runs() {
        let mut earlier = IdMinter::new();
        let queued = earlier.mint(1_750_000_000_000 + 3_600_000);
        for id in [queued, earlier.mint(1_750_000_000_000 + 3_600_000)] {
            let mut restarted = IdMinter::new();
            restarted.floor(id);
            // The clock now reads an hour earlier than when `id` was minted.
            let next = restarted.mint(1_750_000_000_000);
            assert!(next > id, "{next} after {id}");
        }
        let mut fresh = IdMinter::new();
        fresh.floor(uuid::Uuid::nil());
        assert!(fresh.mint(1_750_000_000_000) > uuid::Uuid::nil());
    }

    #[test]
    fn two_runs_floored_at_the_same_id_mint_different_ids() {
        // A run mints above the queue's last id; that call leaves the queue (replayed, or
        // dead-lettered while calls of other scopes stay queued); the next run floors at the
        // same id with the clock no later: its ids must not repeat the earlier run's.
        let queued = IdMinter::new().mint(1_750_000_000_000);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            let mut run = IdMinter::new();
            run.floor(queued);
            let next = run.mint(1_750_000_000_000);
            assert!(next > queued);
            assert!(seen.insert(next), "{next} minted twice");
        }
    }

    #[test]
    fn two_minters_do_not_collide() {
        let (mut a, mut b) = (IdMinter::new(), IdMinter::new());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            assert!(seen.insert(a.mint(42)));
            assert!(seen.insert(b.mint(42)));
        }
    }
}
