-------------------------------- MODULE RCU --------------------------------
(***************************************************************************)
(* Read-copy-update with several independent flavors (domains).            *)
(*                                                                         *)
(* A thread's read-side critical section belongs to exactly one flavor.    *)
(* A grace period of flavor f waits only for the readers of f that were    *)
(* inside a section when it started; readers of other flavors, and readers *)
(* that enter later, never hold it up.  call_rcu(f, cb) callbacks run only *)
(* after a grace period of f that started after the call.                  *)
(*                                                                         *)
(* Kernel: rcu_read_lock/unlock, rcu_read_lock_sched, call_rcu,            *)
(* call_rcu_sched (before 4.20 "rcu" and "sched" were distinct flavors).   *)
(* Swift: the flavor types MembarrierRCU (the default), QuiescentStateRCU, *)
(* MemoryBarrierRCU and BulletproofRCU, one per liburcu flavor; each has   *)
(* its own grace periods.  Swift: Flavor._readLock, _readUnlock, call.     *)
(*                                                                         *)
(* The module has no Next of its own: clients conjoin these actions with   *)
(* their own state changes (see MCRCU.tla, PercpuRef.tla, Lifecycle.tla).  *)
(* Every action leaves the RCU variables it does not mention unchanged,    *)
(* so a client step can contain at most one RCU action.                    *)
(***************************************************************************)
EXTENDS FiniteSets

CONSTANTS
    Threads,    \* threads that may enter read-side critical sections
    Flavors,    \* RCU flavors; grace periods of one do not wait for another
    Callbacks   \* identifiers of rcu_head structures handed to call_rcu

VARIABLES
    rcuReaders,     \* rcuReaders[f]: threads inside a read section of flavor f
    rcuGp,          \* rcuGp[f]: the grace period of f in progress, if any
    rcuCallbacks    \* rcuCallbacks[f]: callbacks of f by stage

rcuVars == <<rcuReaders, rcuGp, rcuCallbacks>>

NoGracePeriod == [active |-> FALSE, waitFor |-> {}]

NoCallbacks == [queued |-> {}, waiting |-> {}, ready |-> {}]

(* Stages of a callback: queued (call_rcu returned, no grace period covers *)
(* it yet), waiting (the grace period in progress covers it), ready (that  *)
(* grace period ended; the callback may now be invoked).                   *)
Pending(f) == rcuCallbacks[f].queued \cup rcuCallbacks[f].waiting
                \cup rcuCallbacks[f].ready

TypeOK ==
    /\ rcuReaders \in [Flavors -> SUBSET Threads]
    /\ rcuGp \in [Flavors -> [active: BOOLEAN, waitFor: SUBSET Threads]]
    /\ rcuCallbacks \in [Flavors -> [queued: SUBSET Callbacks,
                                     waiting: SUBSET Callbacks,
                                     ready: SUBSET Callbacks]]

Init ==
    /\ rcuReaders = [f \in Flavors |-> {}]
    /\ rcuGp = [f \in Flavors |-> NoGracePeriod]
    /\ rcuCallbacks = [f \in Flavors |-> NoCallbacks]

(* rcu_read_lock() of flavor f (no nesting of one flavor in the model).    *)
ReadLock(t, f) ==
    /\ t \notin rcuReaders[f]
    /\ rcuReaders' = [rcuReaders EXCEPT ![f] = @ \cup {t}]
    /\ UNCHANGED <<rcuGp, rcuCallbacks>>

(* rcu_read_unlock(): the thread stops holding up the current grace period.*)
ReadUnlock(t, f) ==
    /\ t \in rcuReaders[f]
    /\ rcuReaders' = [rcuReaders EXCEPT ![f] = @ \ {t}]
    /\ rcuGp' = [rcuGp EXCEPT ![f].waitFor = @ \ {t}]
    /\ UNCHANGED rcuCallbacks

(* call_rcu(head, fn) of flavor f.  Queuing an rcu_head that is still      *)
(* pending is a client bug; clients state that as an invariant.            *)
CallRcu(f, cb) ==
    /\ rcuCallbacks' = [rcuCallbacks EXCEPT ![f].queued = @ \cup {cb}]
    /\ UNCHANGED <<rcuReaders, rcuGp>>

(* A broken call_rcu, for model checking to refute: while a grace period   *)
(* of f is in progress, the callback joins the batch that grace period     *)
(* covers instead of waiting for the next one.  That grace period waits    *)
(* only for the readers inside a section when it started, not for one      *)
(* that entered later and is inside now.                                   *)
CallRcuJoiningGracePeriod(f, cb) ==
    /\ rcuCallbacks' =
          [rcuCallbacks EXCEPT ![f] =
              IF rcuGp[f].active THEN [@ EXCEPT !.waiting = @ \cup {cb}]
                                 ELSE [@ EXCEPT !.queued = @ \cup {cb}]]
    /\ UNCHANGED <<rcuReaders, rcuGp>>

(* The RCU core starts a grace period of f for the queued callbacks: it    *)
(* must wait for exactly the readers of f that are inside a section now.   *)
GpStart(f) ==
    /\ ~rcuGp[f].active
    /\ rcuCallbacks[f].queued # {}
    /\ rcuGp' = [rcuGp EXCEPT ![f] = [active |-> TRUE,
                                       waitFor |-> rcuReaders[f]]]
    /\ rcuCallbacks' = [rcuCallbacks EXCEPT
                          ![f] = [queued |-> {},
                                  waiting |-> @.queued,
                                  ready |-> @.ready]]
    /\ UNCHANGED rcuReaders

(* Every pre-existing reader has left: the grace period ends and the       *)
(* callbacks it covered become ready.                                      *)
GpEnd(f) ==
    /\ rcuGp[f].active
    /\ rcuGp[f].waitFor = {}
    /\ rcuGp' = [rcuGp EXCEPT ![f] = NoGracePeriod]
    /\ rcuCallbacks' = [rcuCallbacks EXCEPT
                          ![f] = [queued |-> @.queued,
                                  waiting |-> {},
                                  ready |-> @.ready \cup @.waiting]]
    /\ UNCHANGED rcuReaders

(* The RCU core invokes a ready callback (rcu_do_batch); the client        *)
(* conjoins the callback's body.                                           *)
InvokeCallback(f, cb) ==
    /\ cb \in rcuCallbacks[f].ready
    /\ rcuCallbacks' = [rcuCallbacks EXCEPT ![f].ready = @ \ {cb}]
    /\ UNCHANGED <<rcuReaders, rcuGp>>

(* A client step that does not touch RCU state.                            *)
Unchanged == UNCHANGED rcuVars

(* A grace period waits only for readers that are still inside the         *)
(* section they were in when it started.                                   *)
WaitsOnlyForReaders ==
    \A f \in Flavors : rcuGp[f].waitFor \subseteq rcuReaders[f]

(* Callbacks are covered by at most one stage, and only an active grace    *)
(* period covers callbacks.                                                *)
StagesConsistent ==
    \A f \in Flavors :
        /\ rcuCallbacks[f].queued \cap rcuCallbacks[f].waiting = {}
        /\ rcuCallbacks[f].queued \cap rcuCallbacks[f].ready = {}
        /\ rcuCallbacks[f].waiting \cap rcuCallbacks[f].ready = {}
        /\ rcuCallbacks[f].waiting # {} => rcuGp[f].active
        /\ ~rcuGp[f].active => rcuGp[f].waitFor = {}
=============================================================================
