//! The server's clock as this device sees it: the offset every new action's timestamp gets.
//!
//! Last-write-wins compares the times users acted, taken on different devices. A device whose
//! clock is an hour fast would win every conflict for an hour (and a server that refuses
//! stamps from the future would refuse its calls); one an hour slow would silently lose. So
//! the service stamps with its clock plus the offset to the server's clock, learnt from the
//! server's answers (the transport reports them: [`ActionContext::note_server_time`], or
//! [`SyncService::observe_server_time`]) and saved in the store
//! ([`Store::set_clock_offset`]) so that it holds after a restart and offline.

use super::*;
use std::sync::atomic::AtomicI64;

/// How far (beyond a reading's own uncertainty) a reading must move the offset before the
/// service takes it: a second, the precision of the HTTP `Date` header. Network jitter below
/// that never changes the stamps; the skews that decide conflicts (minutes, hours) always do.
const OFFSET_STEP_MILLIS: i64 = 1_000;

/// How far ahead of the corrected clock the last stamp may be and still hold the next ones
/// back (so they stay after it): half of what a server accepts by default
/// ([`crate::server::TimestampPolicy`]), so the held stamps are still accepted. A last stamp
/// further ahead came from a clock found to be fast, and a server refuses it anyway.
const MAX_HELD_AHEAD_MILLIS: u64 = 60_000;

/// What the service knows of the server's clock. Atomics, because every call reads them;
/// changes (rare: a new offset) take `changing`, so that they do not interleave.
#[derive(Debug, Default)]
pub(super) struct ServerClock {
    /// Server time minus device time, in milliseconds.
    offset: AtomicI64,
    /// Whether `offset` came from the store or from an answer (else it is the initial zero and
    /// the store may know better). Set after `offset`.
    known: AtomicBool,
    /// An answer moved `offset` since it was last saved.
    unsaved: AtomicBool,
    changing: Mutex<()>,
}

impl SyncService {
    /// This device's own clock, uncorrected: take it when a request is sent, to pass to
    /// [`observe_server_time`](Self::observe_server_time) when its answer arrives.
    pub fn local_time(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// The server's time as this device estimates it: [`local_time`](Self::local_time) plus
    /// the [`clock_offset`](Self::clock_offset). New actions are stamped with it (never going
    /// backwards: see [`ActionContext::timestamp`]).
    pub fn corrected_time(&self) -> Timestamp {
        Timestamp(shift(self.local_time().as_millis(), self.clock_offset()))
    }

    /// How far the server's clock is ahead of this device's, in milliseconds (negative when
    /// the device is ahead), as last learnt; 0 until the first answer or saved offset.
    pub fn clock_offset(&self) -> i64 {
        self.inner.server_clock.offset.load(Ordering::SeqCst)
    }

    /// Reports the server's clock, read from the answer to a request sent at `sent_at` (a
    /// [`local_time`](Self::local_time) reading) and received now. A transport calls it with
    /// each successful answer ([`crate::http::server_time`] reads the `x-server-time` or
    /// `Date` header); inside an action, [`ActionContext::note_server_time`] passes the time
    /// the attempt started.
    ///
    /// As NTP does, the server's reading is taken to be from the middle of the round trip, give
    /// or take half of it. The service adopts the new offset only when it differs from the one
    /// it has by more than that uncertainty plus a second, so jitter does not move it, and
    /// saves it in the store after the running call.
    ///
    /// Stamps never go backwards, even when the device's clock steps back or a new offset
    /// moves the corrected clock back (the ids they come from only move forward, holding at
    /// the last stamp until the clock passes it), with one exception: when the last stamp is
    /// more than a minute ahead of the corrected clock, it came from a clock now known to be
    /// far too fast, and the next stamps go by the corrected clock at once. Holding them at
    /// it would keep the device in the server's future, where a server refuses stamps (see
    /// [`crate::server::TimestampPolicy`]), until its clock caught up. So a device stamps by
    /// the server's clock from its first answer on (and, with the offset saved, after a
    /// restart); what it stamped before, by a clock more than the server's tolerance fast,
    /// is refused, and its local writes keep their stamps.
    ///
    /// ```
    /// use sync_runtime::{ManualClock, MemoryStore, SyncService, Timestamp};
    ///
    /// let clock = ManualClock::new(Timestamp(10_000_000)); // this device: an hour fast
    /// let service = SyncService::builder().store(MemoryStore::new()).clock(clock.clone()).build()?;
    /// let sent_at = service.local_time();
    /// clock.advance(std::time::Duration::from_millis(200)); // the round trip
    /// service.observe_server_time(Timestamp(10_000_100 - 3_600_000), sent_at);
    /// assert_eq!(service.clock_offset(), -3_600_000);
    /// # Ok::<(), sync_runtime::SyncError>(())
    /// ```
    pub fn observe_server_time(&self, server_time: Timestamp, sent_at: Timestamp) {
        let received = i128::from(self.local_time().as_millis());
        let sent = i128::from(sent_at.as_millis()).min(received);
        let midpoint = (sent + received) / 2;
        let uncertainty = (received - sent) / 2;
        let reading = saturate(i128::from(server_time.as_millis()) - midpoint);
        {
            let clock = &self.inner.server_clock;
            let _changing = lock(&clock.changing);
            let (offset, known) = (
                clock.offset.load(Ordering::SeqCst),
                clock.known.load(Ordering::SeqCst),
            );
            let moved = i128::from(reading) - i128::from(offset);
            if known && moved.abs() <= i128::from(OFFSET_STEP_MILLIS) + uncertainty {
                return;
            }
            if !known || offset != reading {
                clock.unsaved.store(true, Ordering::SeqCst);
            }
            clock.offset.store(reading, Ordering::SeqCst);
            clock.known.store(true, Ordering::SeqCst);
        }
        // Ids minted by a clock now known to be far too fast are in the server's future: the
        // next ones go by the corrected clock instead of waiting for it to catch up.
        let limit = self
            .corrected_millis()
            .saturating_add(MAX_HELD_AHEAD_MILLIS);
        lock(&self.inner.ids).forget_after(limit);
    }

    /// Loads the saved offset, once, unless an answer already gave one. Says whether the
    /// offset is known now (else the next call tries again).
    pub(super) async fn load_clock_offset(&self) -> bool {
        let clock = &self.inner.server_clock;
        if clock.known.load(Ordering::SeqCst) {
            return true;
        }
        match self.inner.store.clock_offset().await {
            Ok(saved) => {
                let _changing = lock(&clock.changing);
                if !clock.known.load(Ordering::SeqCst) {
                    clock.offset.store(saved.unwrap_or(0), Ordering::SeqCst);
                    clock.known.store(true, Ordering::SeqCst);
                }
                true
            }
            // Stamps then go by the device's clock until the next answer: not a reason to
            // fail the call.
            Err(e) => {
                trace::store_error("read the clock offset", &e);
                false
            }
        }
    }

    /// Saves the offset if an answer moved it.
    pub(super) async fn save_clock_offset(&self) {
        let clock = &self.inner.server_clock;
        if !clock.unsaved.swap(false, Ordering::SeqCst) {
            return;
        }
        let offset = clock.offset.load(Ordering::SeqCst);
        if let Err(e) = self.inner.store.set_clock_offset(offset).await {
            trace::store_error("save the clock offset", &e);
            clock.unsaved.store(true, Ordering::SeqCst);
        }
    }

    /// The device's clock corrected by the offset, in milliseconds: what new ids carry.
    pub(super) fn corrected_millis(&self) -> u64 {
        self.corrected_millis_at(self.inner.clock.now())
    }

    /// The device's clock reading `local`, corrected by the offset.
    pub(super) fn corrected_millis_at(&self, local: Timestamp) -> u64 {
        shift(
            local.as_millis(),
            self.inner.server_clock.offset.load(Ordering::SeqCst),
        )
    }
}

fn shift(millis: u64, offset: i64) -> u64 {
    u64::try_from((i128::from(millis) + i128::from(offset)).max(0)).unwrap_or(u64::MAX)
}

fn saturate(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}
