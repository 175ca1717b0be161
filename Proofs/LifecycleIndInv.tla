--------------------------- MODULE LifecycleIndInv ---------------------------
(***************************************************************************)
(* Bounded check (TLC, at the constants of each .cfg; not a proof for      *)
(* all constants): IndInv is an inductive invariant of Spec/Lifecycle.tla  *)
(* with Bug = "None", and it implies every safety property of that module. *)
(*                                                                         *)
(*   LifecycleIndInvBase.cfg   Init => IndInv                              *)
(*   LifecycleIndInv.cfg       TypeOK /\ IndInv /\ Next => IndInv'         *)
(*                             and IndInv => the safety properties: TLC    *)
(*                             starts from EVERY state satisfying          *)
(*                             TypeOK /\ IndInv, reachable or not, and     *)
(*                             checks IndInv and the properties on all     *)
(*                             their successors.                           *)
(*   LifecycleIndInvWide*.cfg  the same two checks at larger constants,    *)
(*                             with one flavor.                            *)
(*                                                                         *)
(* TLC enumerates an initial predicate conjunct by conjunct, binding each  *)
(* variable at its first "x \in S" or "x = e" and pruning with the         *)
(* conjuncts that follow.  IndInv is written in that order (each variable  *)
(* bound by a bounded set, then constrained), and IndInit puts it before   *)
(* TypeOK, whose sets (Nat, Int) cannot be enumerated; the predicate is    *)
(* the same conjunction.                                                   *)
(*                                                                         *)
(* The invariant pins down each context almost completely:                 *)
(*  - its references hold exactly the references the threads, the          *)
(*    creator and the requests hold, in the mode its creation chose;       *)
(*  - its callbacks and work item are pending exactly when the stage of    *)
(*    the teardown says so, each in its own flavor;                        *)
(*  - the RCU fact behind the double bounce: a thread that loaded c under  *)
(*    rcu_read_lock is still counted by the table-flavor grace period      *)
(*    that covers c's free_rcu callback, so that callback is not ready     *)
(*    and the work item is not queued while the thread is inside.          *)
(***************************************************************************)
EXTENDS Lifecycle, TLC

Holders(c) == {t \in Threads : Holding(t, c)}
Loaders(c) == {t \in Threads : Loading(t, c)}

Allocated(c) == ctxState[c] \in {"reserved", "live", "dying", "freed"}
Destroyed(c) == ctxState[c] \in {"dying", "freed"}

(* users of c, given the mode its creation chose and whether the switch    *)
(* kill started has been confirmed.                                        *)
ExpectedUsers(c, initMode, confirmed) ==
    LET atomicNow == initMode = "atomic" \/ confirmed
        n == Cardinality(Holders(c))
    IN CASE ~Allocated(c) -> NoRef
         [] ~Destroyed(c) -> [NewRef(initMode) EXCEPT !.count = 1 + n]
         [] OTHER -> [count |-> n,
                      mode |-> IF atomicNow THEN "atomic" ELSE "switching",
                      dead |-> TRUE,
                      forceAtomic |-> initMode = "atomic",
                      releases |-> IF atomicNow /\ n = 0 THEN 1 ELSE 0]

(* reqs of c: the initial and the extra reference until users' release     *)
(* kills it and puts the extra one; one per request in flight.             *)
ExpectedReqs(c, initMode, confirmed) ==
    LET atomicNow == initMode = "atomic" \/ confirmed
    IN CASE ~Allocated(c) -> NoRef
         [] "users" \notin releaseRan[c] ->
                [NewRef(initMode) EXCEPT !.count = 2 + inFlight[c]]
         [] OTHER -> [count |-> inFlight[c],
                      mode |-> IF atomicNow THEN "atomic" ELSE "switching",
                      dead |-> TRUE,
                      forceAtomic |-> initMode = "atomic",
                      releases |-> IF atomicNow /\ inFlight[c] = 0
                                   THEN 1 ELSE 0]

(* The rcu_heads that must be pending.                                     *)
DueCallbacks ==
    {<<"users", c>> : c \in {x \in Contexts : users[x].mode = "switching"}}
    \cup {<<"reqs", c>> : c \in {x \in Contexts : reqs[x].mode = "switching"}}
    \cup {<<"free", c>> : c \in {x \in Contexts :
                                   /\ ctxState[x] = "dying"
                                   /\ "reqs" \in releaseRan[x]
                                   /\ ~work[x]}}

FlavorOfCallback(id) == IF id[1] = "free" THEN TableFlavor ELSE RefFlavor

RCUInv == INSTANCE RCUIndInv

IndInv ==
    \* Contexts, table slots and the budget.
    /\ ctxState \in [Contexts -> CtxStates]
    /\ aioNr = MaxRequests * Cardinality({c \in Contexts :
                                            ctxState[c] \in {"reserved", "live"}})
    /\ aioNr <= AioMaxNr
    /\ table \in [Slots -> Contexts \cup {NoContext}]
    /\ \A s \in Slots : table[s] # NoContext => ctxState[table[s]] = "live"
    /\ \A c \in Contexts : ctxState[c] = "live" =>
          Cardinality({s \in Slots : table[s] = c}) = 1
    \* Threads reach only published or dying contexts; those inside a lookup
    \* are exactly the table flavor's readers.
    /\ reader \in [Threads -> ReaderStates]
    /\ \A t \in Threads : reader[t] # Idle =>
          ctxState[reader[t].ctx] \in {"live", "dying"}
    /\ rcuReaders = [f \in Flavors |->
                       IF f = TableFlavor
                       THEN {t \in Threads : reader[t].phase = "loaded"}
                       ELSE {}]
    \* Release callbacks, the work item, requests, the ring.
    /\ releaseRan \in [Contexts -> SUBSET {"users", "reqs"}]
    /\ \A c \in Contexts :
          /\ "users" \in releaseRan[c] => Destroyed(c) /\ Holders(c) = {}
          /\ "reqs" \in releaseRan[c] => "users" \in releaseRan[c]
          /\ ctxState[c] = "freed" => releaseRan[c] = {"users", "reqs"}
          /\ ~Destroyed(c) => releaseRan[c] = {}
    /\ work \in [Contexts -> BOOLEAN]
    /\ \A c \in Contexts :
          work[c] => ctxState[c] = "dying" /\ "reqs" \in releaseRan[c]
    /\ frees = [c \in Contexts |-> IF ctxState[c] = "freed" THEN 1 ELSE 0]
    /\ inFlight \in [Contexts -> 0..MaxRequests]
    /\ reqsAvail \in [Contexts -> 0..MaxRequests]
    /\ ring \in [Contexts -> [head: RingIndex, tail: RingIndex]]
    /\ \A c \in Contexts :
          IF Allocated(c)
          THEN /\ reqsAvail[c] + inFlight[c] <= MaxRequests
               /\ ctxState[c] = "reserved" =>
                     inFlight[c] = 0 /\ ring[c] = [head |-> 0, tail |-> 0]
               /\ "reqs" \in releaseRan[c] => inFlight[c] = 0
          ELSE /\ inFlight[c] = 0 /\ reqsAvail[c] = 0
               /\ ring[c] = [head |-> 0, tail |-> 0]
    \* The references.
    /\ users \in {[c \in Contexts |-> ExpectedUsers(c, m[c], confirmed[c])] :
                    m \in [Contexts -> RefInitModes],
                    confirmed \in [Contexts -> BOOLEAN]}
    /\ reqs \in {[c \in Contexts |-> ExpectedReqs(c, m[c], confirmed[c])] :
                   m \in [Contexts -> RefInitModes],
                   confirmed \in [Contexts -> BOOLEAN]}
    \* ... both in the mode the context was created with.
    /\ \A c \in Contexts : users[c].forceAtomic = reqs[c].forceAtomic
    /\ \A c \in Contexts :
          /\ "users" \in releaseRan[c] => users[c].releases = 1
          /\ "reqs" \in releaseRan[c] => reqs[c].releases = 1
    \* RCU: the pending callbacks and the grace periods covering them.
    /\ RCUInv!CallbacksPending(DueCallbacks, FlavorOfCallback)
    /\ RCUInv!GracePeriodsMatchCallbacks
    \* The double bounce: a thread inside a lookup of c holds up c's free.
    /\ \A c \in Contexts : \A t \in Loaders(c) :
          /\ ~work[c]
          /\ RCUInv!HoldsUp(t, TableFlavor, <<"free", c>>)

(* The induction step starts from one state per rotation class of the    *)
(* rings' indices (Lifecycle's RingRotationView): the one whose tails are  *)
(* 0.  IndInv and Next are invariant under rotating the head and tail of  *)
(* a published or destroyed context's ring together (an unpublished one    *)
(* has both at 0 already), so the successors of the other states are       *)
(* rotations of these states' successors, and satisfy IndInv and the      *)
(* properties alike.  The configurations' VIEW RingRotationView keeps one  *)
(* successor per rotation class.                                           *)
(* The rings are bound first, so that TLC never enumerates the others.    *)
IndInit ==
    /\ ring \in [Contexts -> [head: RingIndex, tail: {0}]]
    /\ IndInv
    /\ TypeOK

Symmetry ==
    Permutations(Contexts) \cup Permutations(Threads) \cup Permutations(Slots)

(* For the base case: an action constraint no step satisfies, so TLC       *)
(* checks the initial state only.  (TLC rejects a constant FALSE.)         *)
NoStep == aioNr' # aioNr /\ aioNr' = aioNr
=============================================================================
