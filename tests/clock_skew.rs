//! Device clocks that are wrong: stamps by the server's clock (the offset learnt from its
//! answers, kept in the store), and stamps that keep one device's order when its clock steps
//! back.

use futures::executor::block_on;
use std::cell::Cell;
use std::time::Duration;
use sync_runtime::{
    offline_action, ActionContext, ManualClock, ManualConnectivity, MemoryStore, SyncError,
    SyncService, Timestamp,
};

const HOUR_MILLIS: i64 = 3_600_000;
/// The server's clock in these tests; 0 means "the server sends no time".
const SERVER_NOW: u64 = 1_800_000_000_000;

thread_local! {
    static SERVER_CLOCK: Cell<u64> = const { Cell::new(SERVER_NOW) };
}

/// Keeps a note; the server's answer carries its clock, as an HTTP answer's `x-server-time`.
#[offline_action(local = set_note_locally)]
pub async fn set_note(key: String, text: String) -> Result<Timestamp, SyncError> {
    let cx = ActionContext::current().expect("inside the action");
    cx.note_server_time(Timestamp(SERVER_CLOCK.with(Cell::get)));
    cx.collection::<String>("notes").put(key, &text).await?;
    Ok(cx.timestamp())
}

async fn set_note_locally(key: String, text: String) -> Result<Timestamp, SyncError> {
    let cx = ActionContext::current().expect("inside the action");
    cx.collection::<String>("notes").put(key, &text).await?;
    Ok(cx.timestamp())
}

fn device(
    clock: &ManualClock,
    store: MemoryStore,
    online: bool,
) -> (SyncService, ManualConnectivity) {
    let network = ManualConnectivity::new(online);
    let service = SyncService::builder()
        .store(store)
        .clock(clock.clone())
        .connectivity(network.clone())
        .build()
        .unwrap();
    (service, network)
}

fn note(service: &SyncService, key: &str) -> Option<String> {
    block_on(service.collection::<String>("notes").get(key)).unwrap()
}

#[test]
fn a_clock_that_jumps_back_an_hour_between_two_edits_keeps_their_order() {
    let clock = ManualClock::new(Timestamp(SERVER_NOW));
    let (service, _network) = device(&clock, MemoryStore::new(), false);
    let first = block_on(service.scope(set_note("n".into(), "first".into()))).unwrap();
    clock.set(Timestamp(SERVER_NOW - 3_600_000));
    let second = block_on(service.scope(set_note("n".into(), "second".into()))).unwrap();
    assert!(second >= first, "{second:?} before {first:?}");
    assert_eq!(note(&service, "n").as_deref(), Some("second"));
    let queued = block_on(service.queued()).unwrap();
    assert_eq!(queued.len(), 2);
    assert!(queued[0].id < queued[1].id && queued[0].timestamp <= queued[1].timestamp);
}

#[test]
fn a_fast_device_learns_the_servers_clock_from_an_answer_and_keeps_it_across_a_restart() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(Timestamp(SERVER_NOW + 3_600_000)); // an hour fast
    let (service, network) = device(&clock, store.clone(), true);
    assert_eq!(service.clock_offset(), 0);
    // The first call is stamped by the wrong clock: nothing told it better yet.
    let first = block_on(service.scope(set_note("n".into(), "a".into()))).unwrap();
    assert_eq!(first, Timestamp(SERVER_NOW + 3_600_000));
    assert_eq!(service.clock_offset(), -HOUR_MILLIS);
    // From then on, the server's clock, not the held-back id floor of the fast one.
    clock.advance(Duration::from_millis(5));
    let second = block_on(service.scope(set_note("n".into(), "b".into()))).unwrap();
    assert_eq!(second, Timestamp(SERVER_NOW + 5));
    assert_eq!(service.corrected_time(), Timestamp(SERVER_NOW + 5));

    // Readings within a second (plus half the round trip) of it do not move it: jitter.
    SERVER_CLOCK.with(|c| c.set(SERVER_NOW + 5 + 900));
    block_on(service.scope(set_note("n".into(), "c".into()))).unwrap();
    assert_eq!(service.clock_offset(), -HOUR_MILLIS);

    // A new process on the same store, offline: the saved offset stamps its calls.
    drop(service);
    let (restarted, _) = device(&clock, store, false);
    network.set_online(false);
    let offline = block_on(restarted.scope(set_note("m".into(), "offline".into()))).unwrap();
    assert_eq!(offline, Timestamp(SERVER_NOW + 5));
    assert_eq!(restarted.clock_offset(), -HOUR_MILLIS);
}

#[test]
fn a_slow_device_moves_its_stamps_forward_and_the_midpoint_of_the_round_trip_counts() {
    let clock = ManualClock::new(Timestamp(SERVER_NOW - 3_600_000)); // an hour slow
    let (service, _network) = device(&clock, MemoryStore::new(), true);
    let sent_at = service.local_time();
    clock.advance(Duration::from_secs(4)); // a slow round trip
    service.observe_server_time(Timestamp(SERVER_NOW + 2_000), sent_at);
    assert_eq!(service.clock_offset(), HOUR_MILLIS);
    // The answer said nothing new (a second and a half off, within the round trip's
    // uncertainty of two seconds plus one): kept.
    let sent_at = service.local_time();
    clock.advance(Duration::from_secs(4));
    service.observe_server_time(Timestamp(SERVER_NOW + 7_500), sent_at);
    assert_eq!(service.clock_offset(), HOUR_MILLIS);
    let stamp = block_on(service.scope(set_note("n".into(), "x".into()))).unwrap();
    assert!(stamp >= Timestamp(SERVER_NOW + 8_000), "{stamp:?}");
}
