---------------------------- MODULE MemoryRegion ----------------------------
(***************************************************************************)
(* The RDMAVT memory-region lifecycle (drivers/infiniband/sw/rdmavt/mr.c), *)
(* the third change of the 2018 percpu_ref RCU audit: regions published in *)
(* an RCU-protected lkey_table, found by lookups that take a *plain*       *)
(* percpu_ref_get under rcu_read_lock (rvt_lkey_ok), and deregistered by   *)
(* rvt_dereg_mr -> rvt_check_refs, which waits (with a timeout) for the    *)
(* last reference before freeing.                                          *)
(*                                                                         *)
(* A plain get on an object found under RCU is safe only if the count      *)
(* cannot reach zero while a reader can still find the object: the         *)
(* reference that keeps it above zero must be dropped only after a grace   *)
(* period of the table's flavor that started after the unpublish.  The     *)
(* fixed order (Swift: MemoryRegionTable.deregister):                      *)
(*   unpublish, drop dependents, synchronize (TableFlavor), put the        *)
(*   table's reference, kill (drops the owner's), wait for zero and the    *)
(*   release to have finished (or time out), free.                         *)
(*                                                                         *)
(* Bug selects a broken deregistration for TLC to refute:                  *)
(*   "PutBeforeGracePeriod"  rdmavt's own fixed order: rvt_free_lkey       *)
(*        (unpublish, percpu_ref_kill), rvt_put_mr, then rvt_check_refs    *)
(*        (clean qps, synchronize_rcu, wait).  Both references that keep   *)
(*        the count above zero are dropped before the grace period.        *)
(*   "NoSynchronize"  the fixed order without the synchronize: trusts the  *)
(*        grace period inside percpu_ref_kill's switch to atomic mode      *)
(*        (of RefFlavor, and none at all in atomic mode).                  *)
(*   "IsZeroShortcut"  the pre-fix test at the top of rvt_check_refs: if   *)
(*        percpu_ref_is_zero() after the last put of the deregistering     *)
(*        thread, free at once, without waiting for the release callback   *)
(*        (a zero count does not mean the release has run).                *)
(***************************************************************************)
EXTENDS Naturals, Sequences, RefCount

CONSTANTS
    Regions,        \* memory regions; each is registered at most once
    Threads,        \* threads looking regions up (rvt_lkey_ok callers)
    Flavors,        \* RCU flavors
    TableFlavor,    \* flavor protecting the lkey_table (rcu_read_lock)
    RefFlavor,      \* flavor of percpu_ref's internal switch
    RefInitModes,   \* modes a region's percpu_ref may start in
    MaxDependents,  \* references a region's queue pairs may hold at once
    Bug

Bugs == {"None", "PutBeforeGracePeriod", "NoSynchronize", "IsZeroShortcut"}

ASSUME /\ Bug \in Bugs
       /\ {TableFlavor, RefFlavor} \subseteq Flavors
       /\ RefInitModes \subseteq {"percpu", "atomic"} /\ RefInitModes # {}
       /\ MaxDependents \in Nat

VARIABLES
    regionState,  \* regionState[r]: see RegionStates
    published,    \* published[r]: the lkey_table slot holds r
    ref,          \* ref[r]: mr->refcount, a RefCount record
    dependents,   \* dependents[r]: references r's queue pairs hold
    cleaned,      \* cleaned[r]: dependents dropped; later adoptions put
    step,         \* step[r]: index in Order of the next deregistration step
    released,     \* released[r]: the release callback has finished
    frees,        \* frees[r]: times r was freed
    reader,       \* reader[t]: what thread t is doing with which region
    rcuReaders, rcuGp, rcuCallbacks

rcuVars == <<rcuReaders, rcuGp, rcuCallbacks>>
regionVars == <<regionState, published, ref, dependents, cleaned, step,
                released, frees>>
vars == <<regionVars, reader, rcuVars>>

(* The rcu_heads of a region: its percpu_ref's switch (RefFlavor) and the  *)
(* synchronize of its deregistration (TableFlavor).                        *)
CallbackIds == {"switch", "sync"} \X Regions

RCU == INSTANCE RCU WITH Callbacks <- CallbackIds

(* unused         not registered yet                                       *)
(* live           registered: published, the owner holds it                *)
(* deregistering  rvt_dereg_mr running (step[r] says where)                *)
(* timedOut       rvt_check_refs timed out: unpublished, killed, not       *)
(*                freed; may be deregistered again                         *)
(* freed          rvt_deinit_mregion + kfree                               *)
RegionStates == {"unused", "live", "deregistering", "timedOut", "freed"}

(* The deregistration's steps, in the order each variant runs them.        *)
FixedOrder == <<"unpublish", "dropDependents", "syncStart", "syncEnd",
                "putTable", "kill", "wait">>
Order ==
    CASE Bug = "PutBeforeGracePeriod" ->
            <<"unpublish", "kill", "putTable", "dropDependents",
              "syncStart", "syncEnd", "wait">>
      [] Bug = "NoSynchronize" ->
            <<"unpublish", "dropDependents", "putTable", "kill", "wait">>
      [] Bug = "IsZeroShortcut" ->
            <<"unpublish", "dropDependents", "syncStart", "syncEnd",
              "putTable", "kill", "isZero", "wait">>
      [] OTHER -> FixedOrder

Idle == [phase |-> "idle", region |-> CHOOSE r \in Regions : TRUE]
ReaderStates == {Idle} \cup [phase: {"loaded", "holding"}, region: Regions]

NoRef == [count |-> 0, mode |-> "percpu", dead |-> FALSE,
          forceAtomic |-> FALSE, releases |-> 0]

TypeOK ==
    /\ regionState \in [Regions -> RegionStates]
    /\ published \in [Regions -> BOOLEAN]
    /\ ref \in [Regions -> RefRecords]
    /\ dependents \in [Regions -> 0..MaxDependents]
    /\ cleaned \in [Regions -> BOOLEAN]
    /\ step \in [Regions -> 1..Len(Order)]
    /\ released \in [Regions -> BOOLEAN]
    /\ frees \in [Regions -> Nat]
    /\ reader \in [Threads -> ReaderStates]
    /\ RCU!TypeOK

Init ==
    /\ regionState = [r \in Regions |-> "unused"]
    /\ published = [r \in Regions |-> FALSE]
    /\ ref = [r \in Regions |-> NoRef]
    /\ dependents = [r \in Regions |-> 0]
    /\ cleaned = [r \in Regions |-> FALSE]
    /\ step = [r \in Regions |-> 1]
    /\ released = [r \in Regions |-> FALSE]
    /\ frees = [r \in Regions |-> 0]
    /\ reader = [t \in Threads |-> Idle]
    /\ RCU!Init

Loading(t, r) == reader[t] = [phase |-> "loaded", region |-> r]
Holding(t, r) == reader[t] = [phase |-> "holding", region |-> r]

(* percpu_ref_put_many(ref, n).                                            *)
PutMany(rec, n) == IF n = 0 THEN rec
                   ELSE [rec EXCEPT !.count = @ - n,
                                    !.releases = IF rec.mode = "atomic"
                                                    /\ rec.count = n
                                                 THEN @ + 1 ELSE @]

(* The release is done: the count is zero and the callback has finished.   *)
ReleaseFinished(r) == IsZero(ref[r]) /\ released[r]

-----------------------------------------------------------------------------
(* Registration: rvt_init_mregion (percpu_ref_init: the owner's           *)
(* reference), rvt_alloc_lkey (rvt_get_mr: the table's reference,          *)
(* rcu_assign_pointer into the lkey_table).                                *)
(* Swift: MemoryRegionTable.register.                                      *)
Register(r, mode) ==
    /\ regionState[r] = "unused"
    /\ regionState' = [regionState EXCEPT ![r] = "live"]
    /\ ref' = [ref EXCEPT ![r] = Got(NewRef(mode))]
    /\ published' = [published EXCEPT ![r] = TRUE]
    /\ UNCHANGED <<dependents, cleaned, step, released, frees, reader,
                   rcuVars>>

-----------------------------------------------------------------------------
(* Lookups: rvt_lkey_ok.  Swift: MemoryRegionTable.lookup.                 *)

(* mr = rcu_dereference(rkt->table[...]), without the read lock (trace    *)
(* validation records the lock apart: TraceMemoryRegion.tla).              *)
LoadSlot(t, r) ==
    /\ reader[t] = Idle
    /\ published[r]
    /\ reader' = [reader EXCEPT ![t] = [phase |-> "loaded", region |-> r]]
    /\ UNCHANGED regionVars

(* rcu_read_lock(); mr = rcu_dereference(rkt->table[...]).                 *)
LookupLoad(t, r) == LoadSlot(t, r) /\ RCU!ReadLock(t, TableFlavor)

(* rvt_get_mr(mr): a plain percpu_ref_get, whatever state the count is in, *)
(* without the read unlock.                                                *)
PlainGet(t, r) ==
    /\ Loading(t, r)
    /\ ref' = [ref EXCEPT ![r] = Got(@)]
    /\ reader' = [reader EXCEPT ![t] = [phase |-> "holding", region |-> r]]
    /\ UNCHANGED <<regionState, published, dependents, cleaned, step,
                   released, frees>>

(* The plain get; rcu_read_unlock().                                       *)
LookupGet(t, r) == PlainGet(t, r) /\ RCU!ReadUnlock(t, TableFlavor)

(* rvt_put_mr(mr) when the work request is done.                           *)
(* Swift: MemoryRegionReference.put() (consuming) or its deinit.           *)
ReaderPut(t, r) ==
    /\ Holding(t, r)
    /\ ref' = [ref EXCEPT ![r] = Put(@)]
    /\ reader' = [reader EXCEPT ![t] = Idle]
    /\ UNCHANGED <<regionState, published, dependents, cleaned, step,
                   released, frees, rcuVars>>

(* The reference moves into the region's queue-pair state (an rvt_sge of   *)
(* a QP), which rvt_dereg_clean_qps drops; once that has run, the          *)
(* reference is put instead.  Swift: MemoryRegionReference.keepInRegion(). *)
Adopt(t, r) ==
    /\ Holding(t, r)
    /\ IF cleaned[r]
       THEN ref' = [ref EXCEPT ![r] = Put(@)] /\ UNCHANGED dependents
       ELSE /\ dependents[r] < MaxDependents
            /\ dependents' = [dependents EXCEPT ![r] = @ + 1]
            /\ UNCHANGED ref
    /\ reader' = [reader EXCEPT ![t] = Idle]
    /\ UNCHANGED <<regionState, published, cleaned, step, released, frees,
                   rcuVars>>

-----------------------------------------------------------------------------
(* Deregistration: rvt_dereg_mr.  Swift: MemoryRegionTable.deregister.     *)

Deregister(r) ==
    /\ regionState[r] = "live"
    /\ regionState' = [regionState EXCEPT ![r] = "deregistering"]
    /\ UNCHANGED <<published, ref, dependents, cleaned, step, released,
                   frees, reader, rcuVars>>

At(r, name) ==
    /\ regionState[r] = "deregistering"
    /\ Order[step[r]] = name

Advance(r) == step' = [step EXCEPT ![r] = @ + 1]

(* rvt_free_lkey: rcu_assign_pointer(rkt->table[r], NULL).                 *)
(* Swift: the slot's initialize(to: nil).                                  *)
Unpublish(r) ==
    /\ At(r, "unpublish")
    /\ published' = [published EXCEPT ![r] = FALSE]
    /\ Advance(r)
    /\ UNCHANGED <<regionState, ref, dependents, cleaned, released, frees,
                   reader, rcuVars>>

(* rvt_dereg_clean_qps: the QPs drop the references they hold.             *)
DropDependents(r) ==
    /\ At(r, "dropDependents")
    /\ ref' = [ref EXCEPT ![r] = PutMany(@, dependents[r])]
    /\ dependents' = [dependents EXCEPT ![r] = 0]
    /\ cleaned' = [cleaned EXCEPT ![r] = TRUE]
    /\ Advance(r)
    /\ UNCHANGED <<regionState, published, released, frees, reader,
                   rcuVars>>

(* synchronize_rcu() of the table's flavor: a grace period that starts     *)
(* now (queued like a callback) and ends before the next step.             *)
SyncStart(r) ==
    /\ At(r, "syncStart")
    /\ RCU!CallRcu(TableFlavor, <<"sync", r>>)
    /\ Advance(r)
    /\ UNCHANGED <<regionState, published, ref, dependents, cleaned,
                   released, frees, reader>>

SyncEnd(r) ==
    /\ At(r, "syncEnd")
    /\ RCU!InvokeCallback(TableFlavor, <<"sync", r>>)
    /\ Advance(r)
    /\ UNCHANGED <<regionState, published, ref, dependents, cleaned,
                   released, frees, reader>>

(* rvt_put_mr: the reference rvt_alloc_lkey took for the table.            *)
PutTable(r) ==
    /\ At(r, "putTable")
    /\ ref' = [ref EXCEPT ![r] = Put(@)]
    /\ Advance(r)
    /\ UNCHANGED <<regionState, published, dependents, cleaned, released,
                   frees, reader, rcuVars>>

(* percpu_ref_kill: drops the owner's (initial) reference.                 *)
Kill(r) ==
    /\ At(r, "kill")
    /\ ref' = [ref EXCEPT ![r] = Killed(@)]
    /\ IF SwitchNeedsGracePeriod(ref[r])
       THEN RCU!CallRcu(RefFlavor, <<"switch", r>>)
       ELSE RCU!Unchanged
    /\ Advance(r)
    /\ UNCHANGED <<regionState, published, dependents, cleaned, released,
                   frees, reader>>

Freed(r) ==
    /\ regionState' = [regionState EXCEPT ![r] = "freed"]
    /\ frees' = [frees EXCEPT ![r] = @ + 1]

(* IsZeroShortcut: if (percpu_ref_is_zero(&mr->refcount)) return 0;        *)
(* and the caller frees.                                                   *)
IsZeroCheck(r) ==
    /\ At(r, "isZero")
    /\ IF IsZero(ref[r]) THEN Freed(r) /\ UNCHANGED step
                         ELSE Advance(r) /\ UNCHANGED <<regionState, frees>>
    /\ UNCHANGED <<published, ref, dependents, cleaned, released, reader,
                   rcuVars>>

(* wait_for_completion_timeout(&mr->comp) returns in time;                 *)
(* rvt_deinit_mregion, kfree.                                              *)
WaitAndFree(r) ==
    /\ At(r, "wait")
    /\ ReleaseFinished(r)
    /\ Freed(r)
    /\ UNCHANGED <<published, ref, dependents, cleaned, step, released,
                   reader, rcuVars>>

(* The wait times out: report, return an error, free nothing.  The region  *)
(* stays unpublished and killed.                                           *)
Timeout(r) ==
    /\ At(r, "wait")
    /\ ~ReleaseFinished(r)
    /\ regionState' = [regionState EXCEPT ![r] = "timedOut"]
    /\ UNCHANGED <<published, ref, dependents, cleaned, step, released,
                   frees, reader, rcuVars>>

(* Deregistering a timed-out region again: only the wait is left.          *)
Retry(r) ==
    /\ regionState[r] = "timedOut"
    /\ regionState' = [regionState EXCEPT ![r] = "deregistering"]
    /\ UNCHANGED <<published, ref, dependents, cleaned, step, released,
                   frees, reader, rcuVars>>

DeregStep(r) ==
    \/ Unpublish(r) \/ DropDependents(r) \/ SyncStart(r) \/ SyncEnd(r)
    \/ PutTable(r) \/ Kill(r) \/ IsZeroCheck(r) \/ WaitAndFree(r)

-----------------------------------------------------------------------------
(* percpu_ref's switch to atomic mode completes (RefFlavor grace period).  *)
RefSwitchConfirm(r) ==
    /\ RCU!InvokeCallback(RefFlavor, <<"switch", r>>)
    /\ ref' = [ref EXCEPT ![r] = Confirmed(@)]
    /\ UNCHANGED <<regionState, published, dependents, cleaned, step,
                   released, frees, reader>>

(* __rvt_mregion_complete: complete(&mr->comp), on the thread of the last  *)
(* put, after the count reached zero (a step of its own: the deregistering *)
(* thread may read the zero count before it).  Swift: the region's         *)
(* PercpuRef release closure.                                              *)
Release(r) ==
    /\ ref[r].releases > 0
    /\ ~released[r]
    /\ released' = [released EXCEPT ![r] = TRUE]
    /\ UNCHANGED <<regionState, published, ref, dependents, cleaned, step,
                   frees, reader, rcuVars>>

GracePeriodStart(f) == RCU!GpStart(f) /\ UNCHANGED <<regionVars, reader>>
GracePeriodEnd(f) == RCU!GpEnd(f) /\ UNCHANGED <<regionVars, reader>>

Terminated == \A r \in Regions : regionState[r] = "freed"
Done == Terminated /\ UNCHANGED vars

Next ==
    \/ \E r \in Regions :
          \/ \E mode \in RefInitModes : Register(r, mode)
          \/ Deregister(r) \/ DeregStep(r) \/ Timeout(r) \/ Retry(r)
          \/ RefSwitchConfirm(r) \/ Release(r)
    \/ \E t \in Threads, r \in Regions :
          \/ LookupLoad(t, r) \/ LookupGet(t, r)
          \/ ReaderPut(t, r) \/ Adopt(t, r)
    \/ \E f \in Flavors : GracePeriodStart(f) \/ GracePeriodEnd(f)
    \/ Done

Spec == Init /\ [][Next]_vars

(* Fairness: the RCU core, percpu_ref's switch, the release callback and   *)
(* each deregistration step (a timed-out deregistration is retried) are    *)
(* not starved; a thread inside a lookup finishes it and eventually drops  *)
(* (or hands to a QP) the reference it holds.  Nothing forces a            *)
(* registration or a deregistration to start, or a timeout.                *)
Fairness ==
    /\ \A f \in Flavors : WF_vars(GracePeriodStart(f)) /\ WF_vars(GracePeriodEnd(f))
    /\ \A r \in Regions : /\ WF_vars(DeregStep(r)) /\ WF_vars(Retry(r))
                         /\ WF_vars(RefSwitchConfirm(r)) /\ WF_vars(Release(r))
    /\ \A t \in Threads : /\ WF_vars(\E r \in Regions : LookupGet(t, r))
                         /\ WF_vars(\E r \in Regions : ReaderPut(t, r) \/ Adopt(t, r))

FairSpec == Spec /\ Fairness

-----------------------------------------------------------------------------
(* Safety.                                                                 *)

(* Nothing reaches a freed region: not a reader inside its read section    *)
(* with the pointer it loaded, not a reference holder, not a QP.           *)
NoUseAfterFree ==
    /\ \A t \in Threads : reader[t] # Idle =>
                             regionState[reader[t].region] # "freed"
    /\ \A r \in Regions : regionState[r] = "freed" => dependents[r] = 0

(* The lkey_table never points to a freed region.                          *)
NoDanglingSlot == \A r \in Regions : published[r] => regionState[r] # "freed"

(* A region is freed only once its count is zero and its release callback  *)
(* has finished (what the completion says and percpu_ref_is_zero does not).*)
FreedOnlyAfterRelease ==
    \A r \in Regions : regionState[r] = "freed" => ReleaseFinished(r)

FreedAtMostOnce == \A r \in Regions : frees[r] <= 1

(* The release is due at most once: no count revived after reaching zero.  *)
ReleasedAtMostOnce == \A r \in Regions : ref[r].releases <= 1

(* Action property: a lookup's plain get never finds the count at zero     *)
(* (released, in atomic mode).  What makes the plain get of rvt_lkey_ok    *)
(* safe without tryget_live.                                               *)
PlainGetNeverRevives ==
    [][\A t \in Threads, r \in Regions :
          Loading(t, r) /\ Holding(t, r)' => ~IsZero(ref[r])]_vars

-----------------------------------------------------------------------------
(* Liveness (under Fairness).                                              *)

(* A deregistration started is eventually completed: the region is freed  *)
(* (after any number of timeouts and retries).                             *)
DeregisteredEventuallyFreed ==
    \A r \in Regions :
        regionState[r] \in {"deregistering", "timedOut"} ~>
            regionState[r] = "freed"
=============================================================================
