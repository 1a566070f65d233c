//! The cross-region replication (svc-crr) model: state, actions and safety invariants.
//!
//! One state is the whole system. Per region: the outcome log (durable, fsync'd before any
//! answer: svc-verify's `LogDurability`), the dedup index keyed by record (set-if-absent: the
//! first write wins, as `Engine::decide` and `answer_stored` in `svc-verify/src/engine.rs` do),
//! and for each peer two watermarks: `acked[source][target]`, how much of the source's feed the
//! target has acknowledged (persisted at the source), and `applied[target][source]`, how much of
//! the source's feed the target has applied (persisted at the target, in the same write as the
//! applied records). A region's *feed* is the subsequence of its log that it decided itself;
//! the sender ships it to each peer in order from a cursor kept in memory, at most `window`
//! records beyond the acknowledged watermark, and goes back to the watermark when nothing of
//! that pair is in flight (a timeout: after a loss, a gap or a restart). The target applies
//! only the next record in order and acknowledges its applied watermark. The network is a set
//! of messages: any of them may be delivered in any order (reordering), delivered and kept
//! (duplication, bounded), or dropped (loss, bounded). A partition isolates one region until it
//! heals; a restart drops everything the region held in memory and its connections' messages.
//!
//! The names of the invariants are the ones in `formal/crr_idempotency.tla`; keep them in step.

use std::collections::BTreeSet;

use stateright::{Model, Property};

/// A region's index (0-based here, `r1..` in the TLA+ specification).
pub type Region = u8;
/// A record's key, `(tenant_id, pcs_id)` in the services.
pub type Key = u8;
/// The signed content of a submission (its canonical digest in the services): two submissions
/// of one key with different values are a conflicting duplicate.
pub type Value = u8;

/// One decision record in a region's outcome log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Record {
    pub key: Key,
    pub value: Value,
    /// The region that decided it (whose feed ships it).
    pub origin: Region,
}

/// A message in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
    /// The source's feed record number `index` (1-based) shipped to `target`.
    Ship {
        source: Region,
        target: Region,
        index: u8,
        record: Record,
    },
    /// The target's applied watermark for `source`'s feed.
    Ack {
        target: Region,
        source: Region,
        watermark: u8,
    },
}

impl Msg {
    fn endpoints(&self) -> (Region, Region) {
        match *self {
            Msg::Ship { source, target, .. } | Msg::Ack { source, target, .. } => (source, target),
        }
    }
}

/// A client's submission of `key` with `value` to `region` (each one is submitted at most once;
/// retries of the same content are separate items).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Submission {
    pub region: Region,
    pub key: Key,
    pub value: Value,
}

/// A bug to inject; [`Bug::None`] is the model of the design.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    None,
    /// The target persists its applied watermark and acknowledges a shipped record before the
    /// record itself is durable (it waits in memory until a later `Persist`).
    AckBeforeDurable,
    /// Applying a peer's record overwrites the dedup entry of a key already decided with other
    /// content (set instead of set-if-absent).
    LastWriteWins,
    /// The sender takes an acknowledgement's watermark as it is instead of the maximum with
    /// what it had (a stale, reordered acknowledgement moves it back).
    AckOverwrite,
}

/// What can happen next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// A client submits workload item `n` (environment).
    Submit(usize),
    /// `source` ships the feed record at its cursor to `target` (progress).
    Send { source: Region, target: Region },
    /// Nothing of the pair is in flight but records are unacknowledged: `source` moves its
    /// cursor for `target` back to the acknowledged watermark (a timeout; progress).
    Retransmit { source: Region, target: Region },
    /// A message is delivered and consumed (progress).
    Deliver(Msg),
    /// A message is delivered and a copy stays in flight (fault).
    Duplicate(Msg),
    /// A message is dropped (fault).
    Lose(Msg),
    /// Bug variant `AckBeforeDurable` only: the region writes the records it acknowledged
    /// (progress).
    Persist(Region),
    /// The region is cut off from every other region (fault).
    Partition(Region),
    /// The partition heals (progress).
    Heal,
    /// The region crashes and restarts with its durable state only (fault).
    Restart(Region),
}

impl Action {
    /// Whether the action moves the system towards delivery once faults stop: what
    /// [`crate::liveness`] assumes fair. Faults and client submissions are bounded.
    pub fn is_progress(&self) -> bool {
        matches!(
            self,
            Action::Send { .. }
                | Action::Retransmit { .. }
                | Action::Deliver(_)
                | Action::Persist(_)
                | Action::Heal
        )
    }
}

/// The whole system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// Per region: the outcome log (durable).
    pub log: Vec<Vec<Record>>,
    /// Per region and key: the dedup entry's value (durable, re-derived from the log).
    pub dedup: Vec<Vec<Option<Value>>>,
    /// `acked[source][target]`: the target's acknowledged watermark, persisted at the source.
    pub acked: Vec<Vec<u8>>,
    /// `applied[target][source]`: records of the source's feed applied, persisted at the target.
    pub applied: Vec<Vec<u8>>,
    /// `next[source][target]`: the feed index the source ships next (memory).
    pub next: Vec<Vec<u8>>,
    /// Messages in flight.
    pub net: BTreeSet<Msg>,
    /// Per region: records acknowledged but not yet written (bug `AckBeforeDurable`; memory).
    pub staged: Vec<Vec<Record>>,
    /// Per workload item: whether it was submitted.
    pub submitted: Vec<bool>,
    /// History: the decisions answered to clients as fresh, `(region, key, value)`.
    pub client_acks: BTreeSet<(Region, Key, Value)>,
    /// The region cut off by a partition, if any.
    pub isolated: Option<Region>,
    pub restarts: u8,
    pub losses: u8,
    pub duplicates: u8,
    pub partitions: u8,
    /// History: whether some step moved a watermark back (`WatermarkMonotonic` as a state
    /// predicate).
    pub regressed: bool,
}

impl State {
    /// The region's feed: the records it decided itself, in log order.
    pub fn feed(&self, region: Region) -> impl Iterator<Item = &Record> {
        self.log[usize::from(region)]
            .iter()
            .filter(move |r| r.origin == region)
    }

    pub fn feed_len(&self, region: Region) -> u8 {
        u8::try_from(self.feed(region).count()).unwrap_or(u8::MAX)
    }

    fn feed_at(&self, region: Region, index: u8) -> Option<Record> {
        self.feed(region)
            .nth(usize::from(index).checked_sub(1)?)
            .copied()
    }

    /// Writes `record` at `region` if its key is new there (first write wins); the
    /// `LastWriteWins` bug overwrites other content.
    fn apply(&mut self, region: Region, record: Record, bug: Bug) {
        let r = usize::from(region);
        let slot = &mut self.dedup[r][usize::from(record.key)];
        match *slot {
            None => {}
            Some(v) if bug == Bug::LastWriteWins && v != record.value => {}
            Some(_) => return,
        }
        *slot = Some(record.value);
        self.log[r].push(record);
    }

    /// Whether a restart of `region` would lose anything: messages to or from it, records
    /// shipped but unacknowledged (its send cursors), records acknowledged but not written. A
    /// restart that loses nothing is a step that changes nothing, so it is not generated.
    pub fn volatile(&self, region: Region) -> bool {
        let r = usize::from(region);
        self.net.iter().any(|m| {
            let (a, b) = m.endpoints();
            a == region || b == region
        }) || self.next[r]
            .iter()
            .zip(&self.acked[r])
            .any(|(next, acked)| *next > acked + 1)
            || !self.staged[r].is_empty()
    }

    fn pair_in_flight(&self, source: Region, target: Region) -> bool {
        self.net.iter().any(|m| m.endpoints() == (source, target))
    }
}

/// The model with its bounds (each fault budget counts events over a whole run).
#[derive(Clone, Debug)]
pub struct CrrModel {
    pub regions: u8,
    /// The number of distinct keys.
    pub keys: u8,
    /// The PCS records clients submit (two with one key and different content are a
    /// conflicting duplicate).
    pub workload: Vec<Submission>,
    /// Whether the workload is submitted in its order (interleaved with everything else) rather
    /// than in any order.
    pub ordered_workload: bool,
    /// How many records a sender ships beyond the acknowledged watermark.
    pub window: u8,
    pub max_restarts: u8,
    pub max_losses: u8,
    pub max_duplicates: u8,
    pub max_partitions: u8,
    pub bug: Bug,
}

impl CrrModel {
    /// Whether two submissions of `key` carry different content (a conflicting duplicate):
    /// per-region first write wins may then keep different content in different regions, and
    /// reconciling them is the reconciler's job, not replication's.
    pub fn conflicted(&self, key: Key) -> bool {
        let mut values = self
            .workload
            .iter()
            .filter(|s| s.key == key)
            .map(|s| s.value);
        match values.next() {
            Some(first) => values.any(|v| v != first),
            None => false,
        }
    }

    fn region_list(&self) -> impl Iterator<Item = Region> + Clone {
        0..self.regions
    }

    fn pairs(&self) -> impl Iterator<Item = (Region, Region)> {
        let rs = self.region_list();
        rs.clone()
            .flat_map(move |s| rs.clone().map(move |t| (s, t)))
            .filter(|(s, t)| s != t)
    }

    fn reachable(&self, state: &State, msg: &Msg) -> bool {
        let (a, b) = msg.endpoints();
        state.isolated != Some(a) && state.isolated != Some(b)
    }

    fn deliver(&self, state: &mut State, msg: Msg) {
        match msg {
            Msg::Ship {
                source,
                target,
                index,
                record,
            } => {
                let (t, s) = (usize::from(target), usize::from(source));
                let applied = state.applied[t][s];
                if index == applied + 1 {
                    if self.bug == Bug::AckBeforeDurable {
                        state.staged[t].push(record);
                    } else {
                        state.apply(target, record, self.bug);
                    }
                    state.applied[t][s] = index;
                } else if index > applied + 1 {
                    // A gap: dropped unacknowledged, the sender ships the missing one again.
                    return;
                }
                // New or a redelivery: acknowledge what is applied.
                state.net.insert(Msg::Ack {
                    target,
                    source,
                    watermark: state.applied[t][s],
                });
            }
            Msg::Ack {
                target,
                source,
                watermark,
            } => {
                let slot = &mut state.acked[usize::from(source)][usize::from(target)];
                let next = if self.bug == Bug::AckOverwrite {
                    watermark
                } else {
                    (*slot).max(watermark)
                };
                if next < *slot {
                    state.regressed = true;
                }
                *slot = next;
            }
        }
    }
}

impl Model for CrrModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let n = usize::from(self.regions);
        vec![State {
            log: vec![Vec::new(); n],
            dedup: vec![vec![None; usize::from(self.keys)]; n],
            acked: vec![vec![0; n]; n],
            applied: vec![vec![0; n]; n],
            next: vec![vec![1; n]; n],
            net: BTreeSet::new(),
            staged: vec![Vec::new(); n],
            submitted: vec![false; self.workload.len()],
            client_acks: BTreeSet::new(),
            isolated: None,
            restarts: 0,
            losses: 0,
            duplicates: 0,
            partitions: 0,
            regressed: false,
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        for (n, done) in state.submitted.iter().enumerate() {
            if !done {
                actions.push(Action::Submit(n));
                if self.ordered_workload {
                    break;
                }
            }
        }
        for (source, target) in self.pairs() {
            let (si, ti) = (usize::from(source), usize::from(target));
            let (acked, next) = (state.acked[si][ti], state.next[si][ti]);
            let len = state.feed_len(source);
            let index = next.max(acked + 1);
            if index <= len && index <= acked + self.window {
                actions.push(Action::Send { source, target });
            }
            if acked < len && next > acked + 1 && !state.pair_in_flight(source, target) {
                actions.push(Action::Retransmit { source, target });
            }
        }
        for msg in &state.net {
            if self.reachable(state, msg) {
                actions.push(Action::Deliver(*msg));
                if state.duplicates < self.max_duplicates {
                    actions.push(Action::Duplicate(*msg));
                }
            }
            if state.losses < self.max_losses {
                actions.push(Action::Lose(*msg));
            }
        }
        for r in self.region_list() {
            if !state.staged[usize::from(r)].is_empty() {
                actions.push(Action::Persist(r));
            }
            if state.restarts < self.max_restarts && state.volatile(r) {
                actions.push(Action::Restart(r));
            }
            if state.isolated.is_none() && state.partitions < self.max_partitions {
                actions.push(Action::Partition(r));
            }
        }
        if state.isolated.is_some() {
            actions.push(Action::Heal);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::Submit(n) => {
                let sub = self.workload[n];
                s.submitted[n] = true;
                let r = usize::from(sub.region);
                // Dedup lookup; a hit is answered with the stored outcome (first write wins).
                if s.dedup[r][usize::from(sub.key)].is_none() {
                    // Log append (fsync) and index write, then the answer (`LogDurability`).
                    s.apply(
                        sub.region,
                        Record {
                            key: sub.key,
                            value: sub.value,
                            origin: sub.region,
                        },
                        Bug::None,
                    );
                    s.client_acks.insert((sub.region, sub.key, sub.value));
                }
            }
            Action::Send { source, target } => {
                let (si, ti) = (usize::from(source), usize::from(target));
                let index = s.next[si][ti].max(s.acked[si][ti] + 1);
                let record = s.feed_at(source, index)?;
                s.net.insert(Msg::Ship {
                    source,
                    target,
                    index,
                    record,
                });
                s.next[si][ti] = index + 1;
            }
            Action::Retransmit { source, target } => {
                let (si, ti) = (usize::from(source), usize::from(target));
                s.next[si][ti] = s.acked[si][ti] + 1;
            }
            Action::Deliver(msg) => {
                s.net.remove(&msg);
                self.deliver(&mut s, msg);
            }
            Action::Duplicate(msg) => {
                s.duplicates += 1;
                self.deliver(&mut s, msg);
            }
            Action::Lose(msg) => {
                s.losses += 1;
                s.net.remove(&msg);
            }
            Action::Persist(region) => {
                let staged = std::mem::take(&mut s.staged[usize::from(region)]);
                for record in staged {
                    s.apply(region, record, self.bug);
                }
            }
            Action::Partition(region) => {
                s.partitions += 1;
                s.isolated = Some(region);
            }
            Action::Heal => s.isolated = None,
            Action::Restart(region) => {
                s.restarts += 1;
                let r = usize::from(region);
                s.staged[r].clear();
                // The send cursors start again from the durable acknowledged watermarks.
                for (next, acked) in s.next[r].iter_mut().zip(&s.acked[r]) {
                    *next = acked + 1;
                }
                s.net.retain(|m| {
                    let (a, b) = m.endpoints();
                    a != region && b != region
                });
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("Idempotency", |_, s| idempotency(s)),
            Property::always("FirstWriteWins", |_, s| first_write_wins(s)),
            Property::always("LogDurability", log_durability),
            Property::always("WatermarkMonotonic", |_, s| watermark_monotonic(s)),
        ]
    }
}

/// `Idempotency`: however often a record is redelivered or resubmitted, each region's log holds
/// at most one decision per key (svc-verify's `Idempotency`, across regions).
pub fn idempotency(s: &State) -> bool {
    s.log.iter().all(|log| {
        let keys: BTreeSet<Key> = log.iter().map(|r| r.key).collect();
        keys.len() == log.len()
    })
}

/// `FirstWriteWins`: each region's dedup entry for a key holds the content of the first record
/// of that key in its log, and there is an entry exactly for the keys in the log.
pub fn first_write_wins(s: &State) -> bool {
    s.log.iter().zip(&s.dedup).all(|(log, dedup)| {
        dedup.iter().enumerate().all(|(key, entry)| {
            let first = log.iter().find(|r| usize::from(r.key) == key);
            *entry == first.map(|r| r.value)
        })
    })
}

/// `LogDurability`: what was acknowledged is durable. A decision answered to a client is in
/// the region's log (`LogDurability`); a feed record under the target's applied watermark (and
/// so under the source's acknowledged one) is in the target's dedup index; no watermark is
/// past the end of the feed; and a source never holds an acknowledgement beyond what the
/// target applied.
pub fn log_durability(m: &CrrModel, s: &State) -> bool {
    let clients = s.client_acks.iter().all(|&(region, key, value)| {
        s.log[usize::from(region)]
            .iter()
            .any(|r| r.key == key && r.value == value && r.origin == region)
    });
    clients
        && m.pairs().all(|(source, target)| {
            let (si, ti) = (usize::from(source), usize::from(target));
            let applied = s.applied[ti][si];
            s.acked[si][ti] <= applied
                && applied <= s.feed_len(source)
                && s.feed(source)
                    .take(usize::from(applied))
                    .all(|r| s.dedup[ti][usize::from(r.key)].is_some())
        })
}

/// `WatermarkMonotonic`: no step moved an acknowledged or applied watermark back (both are
/// durable, so restarts keep them).
pub fn watermark_monotonic(s: &State) -> bool {
    !s.regressed
}

/// What `EventualDelivery` waits for: every feed record is in every peer's dedup index and
/// acknowledged to its source.
pub fn delivered(m: &CrrModel, s: &State) -> bool {
    m.pairs().all(|(source, target)| {
        let (si, ti) = (usize::from(source), usize::from(target));
        s.acked[si][ti] == s.feed_len(source)
            && s.feed(source)
                .all(|r| s.dedup[ti][usize::from(r.key)].is_some())
    })
}

/// What `EventualConvergence` waits for: every region holds the same keys, with the same
/// content unless the key was submitted with conflicting content.
pub fn converged(m: &CrrModel, s: &State) -> bool {
    let first = &s.dedup[0];
    s.dedup.iter().all(|dedup| {
        dedup.iter().zip(first).enumerate().all(|(key, (a, b))| {
            a.is_some() == b.is_some()
                && (a == b || m.conflicted(Key::try_from(key).unwrap_or(Key::MAX)))
        })
    })
}
