-------------------------- MODULE crr_idempotency --------------------------
(***************************************************************************)
(* Cross-region replication (svc-crr) of FLK's decisions, and why replay   *)
(* is idempotent.                                                          *)
(*                                                                         *)
(* Each region runs a whole stack. Its outcome log is durable (a decision  *)
(* is fsync'd before it is answered: svc-verify's LogDurability) and its   *)
(* dedup index keeps, per key (tenant_id, pcs_id), the first content       *)
(* written (set-if-absent: Engine::decide and answer_stored in             *)
(* svc-verify/src/engine.rs). A region's feed is the part of its log it    *)
(* decided itself; svc-crr ships it in order to every peer. The target     *)
(* applies the next record in order (first write wins: a key it already    *)
(* holds is skipped) and persists its applied watermark in the same write, *)
(* then acknowledges that watermark; the source persists the highest       *)
(* acknowledgement. The sender ships from a cursor kept in memory, at most *)
(* Window records beyond the acknowledged watermark, and goes back to the  *)
(* watermark when nothing of the pair is in flight (a timeout).            *)
(*                                                                         *)
(* The network is a set of messages: delivered in any order, duplicated,   *)
(* or lost. A partition cuts one region off until it heals. A restart      *)
(* loses what a region held in memory (its send cursors) and the messages  *)
(* of its connections, and keeps its log, index and watermarks. Faults are *)
(* bounded (Max* constants), so every behaviour has a last one.            *)
(*                                                                         *)
(* The Rust model formal/model/src/crr.rs is this specification, checked   *)
(* exhaustively with stateright; the invariants have the same names.       *)
(***************************************************************************)
EXTENDS Naturals, Sequences, FiniteSets

CONSTANTS
    Regions,        \* the regions
    Keys,           \* record keys, (tenant_id, pcs_id)
    Values,         \* record contents (canonical digests)
    NoValue,        \* an empty dedup slot (not in Values)
    NoRegion,       \* no region is cut off (not in Regions)
    Workload,       \* the submissions: records [region, key, value]
    Window,         \* records shipped beyond the acknowledged watermark
    MaxRestarts,
    MaxLosses,
    MaxDuplicates,
    MaxPartitions

ASSUME /\ NoValue \notin Values
       /\ NoRegion \notin Regions
       /\ Window \in Nat \ {0}
       /\ Workload \subseteq [region : Regions, key : Keys, value : Values]

VARIABLES
    log,          \* log[r]: region r's outcome log, a sequence of records (durable)
    dedup,        \* dedup[r][k]: the content indexed for key k at r, or NoValue (durable)
    acked,        \* acked[s][t]: t's acknowledged watermark of s's feed, kept at s (durable)
    applied,      \* applied[t][s]: how much of s's feed t applied, kept at t (durable)
    next,         \* next[s][t]: the feed index s ships to t next (memory)
    net,          \* the messages in flight
    submitted,    \* the workload items submitted
    clientAcks,   \* history: submissions answered as fresh decisions
    isolated,     \* the region cut off, or NoRegion
    restarts, losses, duplicates, partitions  \* fault counters

durable == <<log, dedup, acked, applied>>
vars == <<log, dedup, acked, applied, next, net, submitted, clientAcks,
          isolated, restarts, losses, duplicates, partitions>>

Max(a, b) == IF a >= b THEN a ELSE b

Rec(k, v, o) == [key |-> k, value |-> v, origin |-> o]
Records == [key : Keys, value : Values, origin : Regions]

\* The records region s decided itself, in log order: what it ships.
Feed(s) == SelectSeq(log[s], LAMBDA rec : rec.origin = s)

MaxFeed == Cardinality(Workload)

Ships == [type : {"ship"}, source : Regions, target : Regions,
          index : 1..MaxFeed, record : Records]
Acks == [type : {"ack"}, source : Regions, target : Regions,
         watermark : 0..MaxFeed]
Messages == Ships \cup Acks

\* Two submissions of a key with different content: a conflicting duplicate.
Conflicted(k) == \E w1, w2 \in Workload :
                    w1.key = k /\ w2.key = k /\ w1.value # w2.value

PairInFlight(s, t) == \E m \in net : m.source = s /\ m.target = t

Reachable(m) == isolated \notin {m.source, m.target}

\* What a restart of r would lose; a restart that loses nothing changes nothing.
Volatile(r) == \/ \E m \in net : r \in {m.source, m.target}
               \/ \E t \in Regions : next[r][t] > acked[r][t] + 1

\* Writing rec at r: set-if-absent, so the first write wins.
Written(r, rec) == dedup[r][rec.key] = NoValue
LogAfter(r, rec) == IF Written(r, rec) THEN [log EXCEPT ![r] = Append(@, rec)] ELSE log
DedupAfter(r, rec) ==
    IF Written(r, rec) THEN [dedup EXCEPT ![r][rec.key] = rec.value] ELSE dedup

TypeOK ==
    /\ log \in [Regions -> Seq(Records)]
    /\ dedup \in [Regions -> [Keys -> Values \cup {NoValue}]]
    /\ acked \in [Regions -> [Regions -> 0..MaxFeed]]
    /\ applied \in [Regions -> [Regions -> 0..MaxFeed]]
    /\ next \in [Regions -> [Regions -> 1..(MaxFeed + 1)]]
    /\ net \subseteq Messages
    /\ submitted \subseteq Workload
    /\ clientAcks \subseteq Workload
    /\ isolated \in Regions \cup {NoRegion}

Init ==
    /\ log = [r \in Regions |-> <<>>]
    /\ dedup = [r \in Regions |-> [k \in Keys |-> NoValue]]
    /\ acked = [s \in Regions |-> [t \in Regions |-> 0]]
    /\ applied = [t \in Regions |-> [s \in Regions |-> 0]]
    /\ next = [s \in Regions |-> [t \in Regions |-> 1]]
    /\ net = {}
    /\ submitted = {}
    /\ clientAcks = {}
    /\ isolated = NoRegion
    /\ restarts = 0 /\ losses = 0 /\ duplicates = 0 /\ partitions = 0

(***************************************************************************)
(* A client submits w at w.region: dedup lookup; a hit is answered with    *)
(* the stored outcome; otherwise the decision is logged (fsync) and        *)
(* indexed, then answered.                                                 *)
(***************************************************************************)
Submit(w) ==
    /\ w \in Workload \ submitted
    /\ submitted' = submitted \cup {w}
    /\ LET rec == Rec(w.key, w.value, w.region) IN
       IF Written(w.region, rec)
       THEN /\ log' = LogAfter(w.region, rec)
            /\ dedup' = DedupAfter(w.region, rec)
            /\ clientAcks' = clientAcks \cup {w}
       ELSE UNCHANGED <<log, dedup, clientAcks>>
    /\ UNCHANGED <<acked, applied, next, net, isolated,
                   restarts, losses, duplicates, partitions>>

\* s ships the feed record at its cursor for t.
Send(s, t) ==
    LET i == Max(next[s][t], acked[s][t] + 1) IN
    /\ s # t
    /\ i <= Len(Feed(s))
    /\ i <= acked[s][t] + Window
    /\ net' = net \cup {[type |-> "ship", source |-> s, target |-> t,
                         index |-> i, record |-> Feed(s)[i]]}
    /\ next' = [next EXCEPT ![s][t] = i + 1]
    /\ UNCHANGED <<log, dedup, acked, applied, submitted, clientAcks, isolated,
                   restarts, losses, duplicates, partitions>>

\* Nothing of the pair is in flight and records are unacknowledged: go back.
Retransmit(s, t) ==
    /\ s # t
    /\ acked[s][t] < Len(Feed(s))
    /\ next[s][t] > acked[s][t] + 1
    /\ ~PairInFlight(s, t)
    /\ next' = [next EXCEPT ![s][t] = acked[s][t] + 1]
    /\ UNCHANGED <<log, dedup, acked, applied, net, submitted, clientAcks,
                   isolated, restarts, losses, duplicates, partitions>>

(***************************************************************************)
(* The receiver handles m; rest is the network without m (delivery) or     *)
(* with it (duplication).                                                  *)
(***************************************************************************)
Receive(m, rest) ==
    IF m.type = "ship"
    THEN LET t == m.target
             s == m.source
             a == applied[t][s]
             ack(w) == [type |-> "ack", source |-> s, target |-> t, watermark |-> w]
         IN IF m.index = a + 1
            THEN \* the next record: written (first write wins) with the watermark
                 /\ log' = LogAfter(t, m.record)
                 /\ dedup' = DedupAfter(t, m.record)
                 /\ applied' = [applied EXCEPT ![t][s] = m.index]
                 /\ net' = rest \cup {ack(m.index)}
                 /\ UNCHANGED acked
            ELSE IF m.index <= a
            THEN \* a redelivery: acknowledged again, nothing written
                 /\ net' = rest \cup {ack(a)}
                 /\ UNCHANGED <<log, dedup, applied, acked>>
            ELSE \* a gap: dropped, the sender goes back
                 /\ net' = rest
                 /\ UNCHANGED <<log, dedup, applied, acked>>
    ELSE /\ acked' = [acked EXCEPT ![m.source][m.target] = Max(@, m.watermark)]
         /\ net' = rest
         /\ UNCHANGED <<log, dedup, applied>>

Deliver(m) ==
    /\ m \in net
    /\ Reachable(m)
    /\ Receive(m, net \ {m})
    /\ UNCHANGED <<next, submitted, clientAcks, isolated,
                   restarts, losses, duplicates, partitions>>

Duplicate(m) ==
    /\ duplicates < MaxDuplicates
    /\ m \in net
    /\ Reachable(m)
    /\ Receive(m, net)
    /\ duplicates' = duplicates + 1
    /\ UNCHANGED <<next, submitted, clientAcks, isolated,
                   restarts, losses, partitions>>

Lose(m) ==
    /\ losses < MaxLosses
    /\ m \in net
    /\ net' = net \ {m}
    /\ losses' = losses + 1
    /\ UNCHANGED <<log, dedup, acked, applied, next, submitted, clientAcks,
                   isolated, restarts, duplicates, partitions>>

Partition(r) ==
    /\ isolated = NoRegion
    /\ partitions < MaxPartitions
    /\ isolated' = r
    /\ partitions' = partitions + 1
    /\ UNCHANGED <<log, dedup, acked, applied, next, net, submitted, clientAcks,
                   restarts, losses, duplicates>>

Heal ==
    /\ isolated # NoRegion
    /\ isolated' = NoRegion
    /\ UNCHANGED <<log, dedup, acked, applied, next, net, submitted, clientAcks,
                   restarts, losses, duplicates, partitions>>

\* Only the durable state survives; connections are reset.
Restart(r) ==
    /\ restarts < MaxRestarts
    /\ Volatile(r)
    /\ restarts' = restarts + 1
    /\ net' = {m \in net : r \notin {m.source, m.target}}
    /\ next' = [next EXCEPT ![r] = [t \in Regions |-> acked[r][t] + 1]]
    /\ UNCHANGED <<log, dedup, acked, applied, submitted, clientAcks, isolated,
                   losses, duplicates, partitions>>

Progress ==
    \/ \E s, t \in Regions : Send(s, t) \/ Retransmit(s, t)
    \/ \E m \in net : Deliver(m)
    \/ Heal

Faults ==
    \/ \E m \in net : Duplicate(m) \/ Lose(m)
    \/ \E r \in Regions : Partition(r) \/ Restart(r)

Next ==
    \/ \E w \in Workload : Submit(w)
    \/ Progress
    \/ Faults

\* Progress is weakly fair; faults and submissions need no fairness (they are bounded).
Fairness ==
    /\ \A s, t \in Regions : WF_vars(Send(s, t)) /\ WF_vars(Retransmit(s, t))
    /\ \A m \in Messages : WF_vars(Deliver(m))
    /\ WF_vars(Heal)

Spec == Init /\ [][Next]_vars /\ Fairness

(***************************************************************************)
(* Safety.                                                                 *)
(***************************************************************************)

\* However often a record is redelivered or resubmitted, each region's log holds at most
\* one decision per key (svc-verify's Idempotency, across regions).
Idempotency ==
    \A r \in Regions : \A i, j \in 1..Len(log[r]) :
        i # j => log[r][i].key # log[r][j].key

\* Each region's index holds, for a key, the content of the first record of that key in its
\* log, and nothing for keys not in the log.
FirstIndex(r, k) == CHOOSE i \in 1..Len(log[r]) :
                        /\ log[r][i].key = k
                        /\ \A j \in 1..(i - 1) : log[r][j].key # k
FirstWriteWins ==
    \A r \in Regions, k \in Keys :
        dedup[r][k] = IF \E i \in 1..Len(log[r]) : log[r][i].key = k
                      THEN log[r][FirstIndex(r, k)].value
                      ELSE NoValue

\* What was acknowledged is durable: a decision answered to a client is in its region's log
\* (LogDurability); a feed record under the target's applied watermark is in the target's
\* index; and a source never holds an acknowledgement beyond what the target applied.
LogDurability ==
    /\ \A w \in clientAcks :
           \E i \in 1..Len(log[w.region]) :
               log[w.region][i] = Rec(w.key, w.value, w.region)
    /\ \A s, t \in Regions : s # t =>
           /\ acked[s][t] <= applied[t][s]
           /\ applied[t][s] <= Len(Feed(s))
           /\ \A i \in 1..applied[t][s] : dedup[t][Feed(s)[i].key] # NoValue

\* No step moves a watermark back, restarts included (both are durable).
WatermarkMonotonic ==
    [][\A s, t \in Regions : /\ acked'[s][t] >= acked[s][t]
                             /\ applied'[s][t] >= applied[s][t]]_vars

(***************************************************************************)
(* Liveness, under Fairness: faults are bounded, so partitions heal for    *)
(* good and the network stops losing messages.                             *)
(***************************************************************************)

\* Every feed record reaches every peer's index and is acknowledged to its source.
Delivered(s, t, i) ==
    /\ i <= Len(Feed(s))
    /\ acked[s][t] >= i
    /\ dedup[t][Feed(s)[i].key] # NoValue

EventualDelivery ==
    \A s, t \in Regions : \A i \in 1..MaxFeed :
        (s # t /\ i <= Len(Feed(s))) ~> Delivered(s, t, i)

\* Every region ends with the same keys, and the same content unless the key was submitted
\* with conflicting content (per-region first write wins may then keep different content;
\* reconciling it is the reconciler's job, not replication's).
Converged ==
    \A r1, r2 \in Regions, k \in Keys :
        /\ (dedup[r1][k] = NoValue) = (dedup[r2][k] = NoValue)
        /\ Conflicted(k) \/ dedup[r1][k] = dedup[r2][k]

EventualConvergence == <>[]Converged

\* The Rust model's bounds: three regions, region 1 decides key 1, region 2 key 2, then
\* region 2 receives key 1 with other content (a conflicting duplicate).
ModelWorkload ==
    LET rs == CHOOSE f \in [1..3 -> Regions] : f[1] # f[2] /\ f[2] # f[3] /\ f[1] # f[3]
        ks == CHOOSE f \in [1..2 -> Keys] : f[1] # f[2]
        vs == CHOOSE f \in [1..2 -> Values] : f[1] # f[2]
    IN {[region |-> rs[1], key |-> ks[1], value |-> vs[1]],
        [region |-> rs[2], key |-> ks[2], value |-> vs[1]],
        [region |-> rs[2], key |-> ks[1], value |-> vs[2]]}

=============================================================================
