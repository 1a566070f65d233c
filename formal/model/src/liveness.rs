//! `EventualDelivery` and `EventualConvergence`, checked on the whole reachable state graph.
//!
//! Faults (loss, duplication, partitions, restarts) and client submissions are bounded, so every
//! run has a last one; after it only progress actions ([`Action::is_progress`]: send, deliver,
//! persist, heal) happen, each weakly fair. The two properties hold on every such run when,
//! from every reachable state (with any faults before it):
//! 1. the graph of progress actions has no cycle, so progress alone always comes to an end
//!    (no livelock: a fair run cannot avoid the end), and
//! 2. every state where no progress action is enabled is `delivered` (every feed record is in
//!    every peer's index and acknowledged: `EventualDelivery`) and `converged` (every region
//!    holds the same keys and the same content for keys never submitted with conflicting
//!    content: `EventualConvergence`).
//!
//! stateright's own `eventually` properties are not used: its breadth-first checker does not
//! report a violation on a path that joins an already visited state.

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use stateright::Model;

use crate::crr::{Action, CrrModel, State, converged, delivered};

/// A run that ends (no progress action enabled) with a property unmet, or a progress cycle.
#[derive(Debug, Clone)]
pub struct Violation {
    /// `EventualDelivery` or `EventualConvergence`.
    pub property: &'static str,
    /// The actions from the initial state to `state`.
    pub trace: Vec<Action>,
    pub state: State,
}

/// The outcome of [`check`].
#[derive(Debug, Clone)]
pub struct Report {
    /// Distinct reachable states.
    pub states: usize,
    /// States where progress has come to an end (no progress action enabled).
    pub quiescent: usize,
    /// A violation, if any: the shortest run that ends with a property unmet (the search stops
    /// there), or else a progress cycle.
    pub violation: Option<Violation>,
}

fn fingerprint(s: &State) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Explores every state reachable in `model` (breadth first) and checks both properties.
pub fn check(model: &CrrModel) -> Report {
    let mut index: HashMap<u64, u32> = HashMap::new();
    // Per state: its parent and the action from it (for traces), and its progress successors.
    let mut parent: Vec<Option<(u32, Action)>> = Vec::new();
    let mut progress: Vec<Vec<u32>> = Vec::new();
    let mut queue: VecDeque<(u32, State)> = VecDeque::new();
    for s in model.init_states() {
        if let Entry::Vacant(e) = index.entry(fingerprint(&s)) {
            let id = u32::try_from(parent.len()).unwrap_or(u32::MAX);
            e.insert(id);
            parent.push(None);
            progress.push(Vec::new());
            queue.push_back((id, s));
        }
    }
    let mut quiescent = 0usize;
    let mut actions = Vec::new();
    while let Some((id, state)) = queue.pop_front() {
        let mut ended = true;
        model.actions(&state, &mut actions);
        for action in actions.drain(..) {
            let Some(next) = model.next_state(&state, action) else {
                continue;
            };
            let next_id = match index.entry(fingerprint(&next)) {
                Entry::Occupied(e) => *e.get(),
                Entry::Vacant(e) => {
                    let next_id = u32::try_from(parent.len()).unwrap_or(u32::MAX);
                    e.insert(next_id);
                    parent.push(Some((id, action)));
                    progress.push(Vec::new());
                    queue.push_back((next_id, next));
                    next_id
                }
            };
            if action.is_progress() {
                ended = false;
                progress[id as usize].push(next_id);
            }
        }
        if ended {
            quiescent += 1;
            let unmet = if !delivered(model, &state) {
                Some("EventualDelivery")
            } else if !converged(model, &state) {
                Some("EventualConvergence")
            } else {
                None
            };
            if let Some(property) = unmet {
                // Breadth first: the shortest run that ends unmet.
                return Report {
                    states: parent.len(),
                    quiescent,
                    violation: Some(Violation {
                        property,
                        trace: trace(&parent, id),
                        state,
                    }),
                };
            }
        }
    }
    let mut violation = None;
    if let Some(id) = on_a_cycle(&progress) {
        // A livelock: progress may go on forever without ending, so neither property is
        // guaranteed. The trace leads to a state on the cycle.
        violation = Some(Violation {
            property: "EventualDelivery",
            trace: trace(&parent, id),
            state: replay(model, &trace(&parent, id)),
        });
    }
    Report {
        states: parent.len(),
        quiescent,
        violation,
    }
}

fn trace(parent: &[Option<(u32, Action)>], mut id: u32) -> Vec<Action> {
    let mut out = Vec::new();
    while let Some((p, a)) = parent[id as usize] {
        out.push(a);
        id = p;
    }
    out.reverse();
    out
}

fn replay(model: &CrrModel, trace: &[Action]) -> State {
    let mut s = model.init_states().remove(0);
    for a in trace {
        if let Some(next) = model.next_state(&s, *a) {
            s = next;
        }
    }
    s
}

/// A state on a cycle of the graph `succ`, if there is one (Kahn's algorithm: what cannot be
/// peeled off in topological order lies on or behind a cycle).
fn on_a_cycle(succ: &[Vec<u32>]) -> Option<u32> {
    let mut indegree = vec![0u32; succ.len()];
    for targets in succ {
        for &t in targets {
            indegree[t as usize] += 1;
        }
    }
    let mut ready: Vec<u32> = (0..succ.len())
        .filter(|&i| indegree[i] == 0)
        .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
        .collect();
    let mut removed = 0usize;
    while let Some(i) = ready.pop() {
        removed += 1;
        for &t in &succ[i as usize] {
            indegree[t as usize] -= 1;
            if indegree[t as usize] == 0 {
                ready.push(t);
            }
        }
    }
    if removed == succ.len() {
        return None;
    }
    // Every remaining state has a remaining predecessor (that is why it remains): walking
    // predecessors for `len` steps from any remaining state ends on a cycle.
    let mut pred: Vec<Option<usize>> = vec![None; succ.len()];
    for (from, targets) in succ.iter().enumerate() {
        if indegree[from] > 0 {
            for &t in targets {
                pred[t as usize] = Some(from);
            }
        }
    }
    let mut at = (0..succ.len()).find(|&i| indegree[i] > 0)?;
    for _ in 0..succ.len() {
        at = pred[at]?;
    }
    u32::try_from(at).ok()
}
